"""connection.py against a real PostgreSQL: connect errors and their hints, the pool, passfiles with psql, the libpq
URL forms (socket directories, multiple hosts). The server-free checks: tests/unit/plugins/module_utils/test_dburl.py,
test_passfile.py and test_connection.py."""

import os
import stat
import subprocess
from urllib.parse import quote

import pytest

from ansible_collections.homelab.migrations.plugins.module_utils.connection import (
    ConnectError, ConnectionPool, connect, quote_ident)
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl
from ansible_collections.homelab.migrations.plugins.module_utils.passfile import PassFile

CANARY = 'Cnry0123abcd@:/%?'


def url_with(password, host='db.example', port=5432, db='app', scheme='postgresql'):
    return '%s://svc:%s@%s:%d/%s' % (scheme, quote(password, safe=''), host, port, db)


def test_quote_ident_on_real_server(fresh_db):
    name = 'we"ird name;--'
    fresh_db.execute('CREATE TABLE %s (x int)' % quote_ident(name))
    assert fresh_db.query("SELECT 1 FROM pg_tables WHERE tablename = %s", (name,)) == [(1,)]
    for bad in ('', None, 'a\x00b'):
        with pytest.raises(ValueError):
            quote_ident(bad)


# ------------------------------------------------------------------------------------- connecting
def test_connect_with_canary_password_and_application_name(fresh_db):
    conn = connect(fresh_db.password_url, service='stream-bot', connect_timeout=5)
    try:
        assert conn.autocommit
        with conn.cursor() as cur:
            cur.execute('SELECT current_user, current_setting(%s)', ('application_name',))
            assert cur.fetchone() == ('homelab', 'homelab.migrations:stream-bot')
    finally:
        conn.close()


def test_sqlalchemy_url_connects(fresh_db):
    url = fresh_db.password_url.replace('postgresql://', 'postgresql+psycopg2://')
    conn = connect(url)
    conn.close()


def _connect_error(url):
    with pytest.raises(ConnectError) as err:
        connect(url, connect_timeout=3)
    return str(err.value)


def test_wrong_password_is_masked_with_a_hint(fresh_db, pg):
    url = url_with('Wrong' + CANARY, host=pg.host, port=pg.port, db=fresh_db.name).replace('svc:', 'homelab:')
    text = _connect_error(url)
    assert 'Cnry0123abcd' not in text
    assert 'password authentication failed' in text
    assert 'check the user and password' in text


def test_missing_database_hint(pg):
    text = _connect_error(pg.url('no_such_db_here', password=True))
    assert pg.password not in text and quote(pg.password, safe='') not in text
    assert 'does not exist' in text and 'create the database' in text


def test_closed_port_hint(pg):
    from harness.pg import free_port
    url = 'postgresql://homelab:%s@127.0.0.1:%d/x' % (quote(pg.password, safe=''), free_port())
    text = _connect_error(url)
    assert pg.password not in text and quote(pg.password, safe='') not in text
    assert 'cannot connect to' in text and 'check that the server is running' in text


# ---------------------------------------------------------------------------------------- the pool
def test_pool_reuses_one_connection_per_database(fresh_db, make_db, pg):
    other = make_db()
    with ConnectionPool(connect_timeout=5, application='status') as pool:
        a = pool.get(fresh_db.password_url, service='a')
        b = pool.get(fresh_db.password_url.replace('postgresql://', 'postgres://'), service='b')
        d = pool.get(other.password_url, service='d')
        assert a is b and a is not d
        with a.cursor() as cur:
            cur.execute('SELECT current_setting(%s)', ('application_name',))
            assert cur.fetchone()[0] == 'homelab.migrations:status'
        a.close()
        again = pool.get(fresh_db.password_url, service='a')
        assert again is not a and not again.closed  # a closed connection is replaced
    assert again.closed and d.closed  # closed with the pool


def test_pool_remembers_a_failed_server(pg):
    from harness.pg import free_port
    url = 'postgresql://u:pw-secret@127.0.0.1:%d/x' % free_port()
    pool = ConnectionPool(connect_timeout=2)
    with pytest.raises(ConnectError) as first:
        pool.get(url)
    with pytest.raises(ConnectError) as second:
        pool.get(url)
    assert str(first.value) == str(second.value) and 'pw-secret' not in str(first.value)


# ------------------------------------------------------------------------------------- passfiles
def test_passfile_is_0600_removed_and_works_with_psql(fresh_db, pg):
    d = DbUrl(fresh_db.password_url)
    with PassFile(d) as pf:
        assert stat.S_IMODE(os.stat(pf.path).st_mode) == 0o600
        env = dict(os.environ, **pf.env())
        env.pop('PGPASSWORD', None)
        out = subprocess.run([pg.tool('psql'), '-XAtc', 'SELECT current_user'], env=env, capture_output=True,
                             text=True, timeout=30, check=False)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == 'homelab'
        path = pf.path
    assert not os.path.exists(path)


def test_socket_directory_options_and_keyword_forms(pg, fresh_db):
    """postgresql:///app?host=/socket/dir, ?options=-c%20search_path%3Dapp and host=... dbname=... connect."""
    socket_url = 'postgresql:///%s?host=%s&port=%d&user=postgres&options=-c%%20search_path%%3Dapp' % (
        fresh_db.name, pg.tmp, pg.port)
    d = DbUrl(socket_url)
    assert d.host == pg.tmp and d.params['options'] == '-c search_path=app' and d.dbname == fresh_db.name
    conn = connect(d)
    try:
        with conn.cursor() as cur:
            cur.execute('SHOW search_path')
            assert cur.fetchone()[0] == 'app'
    finally:
        conn.close()
    keywords = "host=%s port=%d dbname=%s user=homelab password='%s'" % (
        pg.host, pg.port, fresh_db.name, pg.password.replace('\\', '\\\\').replace("'", "\\'"))
    k = DbUrl(keywords)
    assert k.password == pg.password and pg.password not in k.masked
    conn = connect(k)
    conn.close()
    # the SQLAlchemy URL built for env.py from a keyword string carries the same connection
    s = DbUrl(k.sqlalchemy_url())
    assert (s.host, s.port, s.dbname, s.user, s.password) == (k.host, k.port, k.dbname, k.user, k.password)


def test_multi_host_url_connects_to_the_live_one(pg, fresh_db):
    from harness.pg import free_port
    url = 'postgresql://homelab:%s@127.0.0.1:%d,%s:%d/%s?connect_timeout=3' % (
        quote(pg.password, safe=''), free_port(), pg.host, pg.port, fresh_db.name)
    d = DbUrl(url)
    assert d.host == '127.0.0.1,%s' % pg.host and d.port is None and len(d.ports) == 2
    conn = connect(d)
    conn.close()
    assert DbUrl(d.libpq_uri()).conninfo() == d.conninfo()
    assert pg.password not in d.masked and quote(pg.password, safe='') not in d.masked
