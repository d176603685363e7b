"""backup/tools.py: finding pg_dump/pg_restore/psql (the newest, a clear error naming the package), version parsing,
and the child's environment (the URL in, inherited PG* variables out)."""

import os
import stat

import pytest

from harness.backup_files import fake_tool as _fake_tool

from ansible_collections.homelab.migrations.plugins.module_utils.backup import entry, tools
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl
from ansible_collections.homelab.migrations.plugins.module_utils.passfile import PassFile


# ------------------------------------------------------------------------------- tools and versions


def test_newest_tool_is_chosen(tmp_path):
    _fake_tool(str(tmp_path / 'path1'), 'pg_dump', '13.4')
    _fake_tool(str(tmp_path / 'lib' / '16' / 'bin'), 'pg_dump', '16.2')
    _fake_tool(str(tmp_path / 'lib' / '9.6' / 'bin'), 'pg_dump', '9.6.24')
    path, version = tools.find_tool('pg_dump', search_path=str(tmp_path / 'path1'),
                                    globs=(str(tmp_path / 'lib' / '*' / 'bin'),))
    assert path == str(tmp_path / 'lib' / '16' / 'bin' / 'pg_dump') and version == 160002
    # and on this machine: the real one
    path, version = tools.find_tool('pg_dump')
    assert os.path.basename(path) == 'pg_dump' and version // 10000 >= 15


def test_missing_pg_dump_names_the_package(tmp_path):
    with pytest.raises(BackupError) as err:
        tools.find_tool('pg_dump', search_path=str(tmp_path), globs=())
    assert 'postgresql-client' in str(err.value)
    with pytest.raises(BackupError) as err:
        entry.run(dict(database_url='postgresql://u@127.0.0.1:1/db', dest=str(tmp_path / 'b'), service='svc',
                       pg_bindir=str(tmp_path / 'nowhere')))
    assert 'postgresql-client' in str(err.value) and 'not an executable file' in str(err.value)


def test_version_parsing():
    assert tools.parse_version('pg_dump (PostgreSQL) 15.13 (Debian 15.13-0+deb12u1)') == 150013
    assert tools.parse_version('pg_dump (PostgreSQL) 9.6.24') == 90624
    assert tools.parse_version('pg_dump (PostgreSQL) 18beta1') == 180000
    assert tools.major_of(150013) < tools.major_of(160000)
    assert tools.major_of(90624) < tools.major_of(100000)
    assert tools.parse_version('something else') is None


def test_child_env_carries_the_url_and_drops_inherited_pg_variables(monkeypatch):
    monkeypatch.setenv('PGPASSWORD', 'inherited-secret')
    monkeypatch.setenv('PGHOST', 'elsewhere.example')
    monkeypatch.setenv('LC_ALL', 'de_DE.UTF-8')
    url = DbUrl('postgresql://app:s3cret@db.example:6543/appdb?sslmode=verify-full&hostaddr=10.0.0.5'
                '&channel_binding=require&options=-c%20statement_timeout%3D0')
    with PassFile(url) as pf:
        env = tools.child_env(url, pf.env(), 7, 'dashboard')
        assert stat.S_IMODE(os.stat(env['PGPASSFILE']).st_mode) == 0o600
        assert 's3cret' in open(env['PGPASSFILE']).read()
    assert 'PGPASSWORD' not in env and 's3cret' not in repr(sorted(env.items()))
    assert (env['PGHOST'], env['PGPORT'], env['PGUSER'], env['PGDATABASE']) == ('db.example', '6543', 'app', 'appdb')
    assert env['PGSSLMODE'] == 'verify-full' and env['PGHOSTADDR'] == '10.0.0.5'
    assert env['PGCHANNELBINDING'] == 'require' and env['PGOPTIONS'] == '-c statement_timeout=0'
    assert env['PGCONNECT_TIMEOUT'] == '7' and env['LC_MESSAGES'] == 'C' and 'LC_ALL' not in env
    assert tools.dbname_conninfo(DbUrl("postgresql://u@h/it's")) == (
        "dbname='it\\'s' fallback_application_name='homelab.migrations'")
