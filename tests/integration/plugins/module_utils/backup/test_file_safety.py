"""Backup files only the owner can touch (issue 13): the backup directory, the backups, restores.

Each attack is played for real: a world-writable or foreign backup directory, symlinks as the final
component, a .dump replaced (with its .sha256) by plain SQL holding a psql shell escape, and a backup swapped
after the restore's checks. Real pg_dump/pg_restore/psql against a real PostgreSQL. The audit log and report
paths: tests/unit/plugins/module_utils/test_audit.py and test_report.py.
"""

import hashlib
import os
import time

import pytest

from harness.backup_files import nobody as _nobody

from ansible_collections.homelab.migrations.plugins.module_utils.backup import entry, restore
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError
from ansible_collections.homelab.migrations.plugins.module_utils.backup.held import HeldBackup
from ansible_collections.homelab.migrations.plugins.module_utils.backup.params import defaults
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl


def _backup(db, dest, **kw):
    return entry.run(dict(database_url=db.password_url, state='present', dest=str(dest), service='svc', **kw))


def _restore(db, path, **kw):
    return entry.run(dict(database_url=db.password_url, state='restored', path=path, **kw))


@pytest.fixture
def dest(tmp_path):
    d = tmp_path / 'backups'
    d.mkdir(mode=0o700)
    return d


@pytest.mark.parametrize('mode', [0o777, 0o770, 0o1777, 0o702])
def test_a_backup_directory_others_can_write_is_refused(fresh_db, dest, mode):
    """Issue 13 input 5: an existing backup directory with mode 0777 was used without a word."""
    os.chmod(str(dest), mode)
    with pytest.raises(BackupError) as err:
        _backup(fresh_db, dest)
    assert 'writable by' in str(err.value) and 'chmod go-w %s' % dest in str(err.value)
    assert os.listdir(str(dest)) == []
    with pytest.raises(BackupError):  # check mode says so too, and prune touches nothing there
        entry.run(dict(database_url=fresh_db.password_url, state='present', dest=str(dest), service='svc'),
                  check_mode=True)
    with pytest.raises(BackupError):
        entry.run(dict(state='pruned', dest=str(dest), service='svc', keep_count=1))


@pytest.mark.skipif(os.geteuid() != 0, reason='chown to another user needs root')
def test_a_backup_directory_of_another_user_is_refused(fresh_db, dest):
    os.chown(str(dest), _nobody(), -1)
    with pytest.raises(BackupError) as err:
        _backup(fresh_db, dest)
    assert 'belongs to nobody' in str(err.value) and 'chown' in str(err.value)


def test_a_symlinked_backup_directory_or_backup_is_refused(fresh_db, dest, tmp_path):
    link = tmp_path / 'link'
    link.symlink_to(dest)
    with pytest.raises(BackupError) as err:
        _backup(fresh_db, link)
    assert 'symlink' in str(err.value)
    res = _backup(fresh_db, dest)
    alias = str(dest / 'alias.dump')
    os.symlink(res['path'], alias)
    os.symlink(res['path'] + '.sha256', alias + '.sha256')
    with pytest.raises(BackupError) as err:
        _restore(fresh_db, alias)
    assert 'symlink' in str(err.value)


def test_a_dump_replaced_by_plain_sql_with_a_shell_escape_is_refused(fresh_db, dest, tmp_path):
    """Issue 13 input 5: a .dump and its .sha256 replaced by plain SQL with psql's \\! ran it as root."""
    res = _backup(fresh_db, dest)
    marker = tmp_path / 'pwned'
    evil = ('\\! touch %s\nSELECT 1;\n-- PostgreSQL database dump complete\n' % marker).encode()
    with open(res['path'], 'wb') as fh:
        fh.write(evil)
    with open(res['path'] + '.sha256', 'w') as fh:
        fh.write('%s  %s\n' % (hashlib.sha256(evil).hexdigest(), os.path.basename(res['path'])))
    with pytest.raises(BackupError) as err:
        _restore(fresh_db, res['path'])
    assert 'PGDMP' in str(err.value) and 'custom-format' in str(err.value)
    assert not marker.exists()


def test_the_restore_uses_the_bytes_it_checked(fresh_db, make_db, dest):
    """A backup swapped (with a matching .sha256) between the checks and pg_restore is never read."""
    fresh_db.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('original')")
    res = _backup(fresh_db, dest)
    other = make_db()
    other.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('swapped in')")
    res_other = entry.run(dict(database_url=other.password_url, state='present', dest=str(dest), service='oth'))
    fresh_db.execute("UPDATE kept SET v = 'changed after the backup'")
    path = res['path']
    with HeldBackup(path) as held:
        original = open(held.source, 'rb').read()
        # the attacker's move after the checks: another valid dump and its checksum under the same names
        os.rename(res_other['path'], path)
        with open(path + '.sha256', 'w') as fh:
            fh.write('%s  %s\n' % (res_other['sha256'], os.path.basename(path)))
        assert open(held.source, 'rb').read() == original
        params = dict(database_url=fresh_db.password_url, state='restored', path=path)
        restore.restore_held(defaults(params), False, time.time(), 1, 'objects', DbUrl(fresh_db.password_url),
                             path, held)
    assert fresh_db.query('SELECT v FROM kept') == [('original',)]


def test_a_directory_backup_is_restored_from_a_private_copy(fresh_db, dest):
    fresh_db.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('original')")
    res = _backup(fresh_db, dest, format='directory')
    with HeldBackup(res['path']) as held:
        copy = held.source
        assert copy != res['path'] and os.path.isdir(copy)
        assert oct(os.stat(os.path.dirname(copy)).st_mode & 0o777) == oct(0o700)
    assert not os.path.exists(os.path.dirname(copy))  # removed afterwards
    assert _restore(fresh_db, res['path'])['changed'] is True
