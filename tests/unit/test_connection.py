"""connection.py against a real PostgreSQL: URL forms, masking, connect errors, the pool, passfiles."""

import os
import re
import stat
import subprocess
from urllib.parse import quote

import psycopg2
import pytest

from ansible_collections.homelab.migrations.plugins.module_utils import connection as c
from ansible_collections.homelab.migrations.plugins.module_utils.connection import (
    ConnectError, ConnectionPool, connect, quote_ident)
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import MASK, DbUrl, UrlError, mask_url
from ansible_collections.homelab.migrations.plugins.module_utils.passfile import PassFile

CANARY = 'Cnry0123abcd@:/%?'


def url_with(password, host='db.example', port=5432, db='app', scheme='postgresql'):
    return '%s://svc:%s@%s:%d/%s' % (scheme, quote(password, safe=''), host, port, db)


# -------------------------------------------------------------------------------- parsing, masking
@pytest.mark.parametrize('scheme', ['postgresql', 'postgres', 'postgresql+psycopg2'])
def test_schemes_and_encoded_password(scheme):
    d = DbUrl(url_with(CANARY, scheme=scheme))
    assert (d.user, d.password, d.host, d.port, d.dbname) == ('svc', CANARY, 'db.example', 5432, 'app')
    assert d.driver == ('psycopg2' if '+' in scheme else None)
    assert d.libpq_uri().startswith('postgresql://svc:')
    assert CANARY not in d.masked and quote(CANARY, safe='') not in d.masked
    assert d.libpq_uri(with_password=False) == 'postgresql://svc@db.example:5432/app'


def test_query_forms():
    d = DbUrl('postgresql:///app?host=/run/pg&port=6543&user=bob&password=s3cret-pw&sslmode=require')
    assert (d.host, d.port, d.user, d.password, d.dbname) == ('/run/pg', 6543, 'bob', 's3cret-pw', 'app')
    assert d.params == {'sslmode': 'require'}
    assert 's3cret-pw' not in d.masked
    env = d.libpq_env()
    assert env['PGHOST'] == '/run/pg' and env['PGPORT'] == '6543' and env['PGSSLMODE'] == 'require'
    assert env['PGPASSWORD'] == 's3cret-pw'
    assert 'PGPASSWORD' not in d.libpq_env(passfile='/x') and d.libpq_env(passfile='/x')['PGPASSFILE'] == '/x'


def test_ipv6_host_round_trip():
    d = DbUrl('postgres://u@[::1]:5432/db')
    assert d.host == '::1' and d.libpq_uri() == 'postgresql://u@[::1]:5432/db'


@pytest.mark.parametrize('bad', ['mysql://u:%s@h/db' % CANARY.replace('%', ''), 'postgresql://u:pw-x@h:99999/db',
                                 'postgresql://u:pw-x@h:abc/db', '', None])
def test_bad_urls_are_masked(bad):
    with pytest.raises(UrlError) as err:
        DbUrl(bad)
    text = str(err.value)
    assert 'pw-x' not in text and 'Cnry0123abcd' not in text
    assert 'database_url' in text


def test_mask_url_masks_query_passwords_and_never_raises():
    assert mask_url('postgresql://u@h/db?password=abc123&sslpassword=def456') == \
        'postgresql://u@h/db?password=%s&sslpassword=%s' % (MASK, MASK)
    assert mask_url(None) == '<database_url>'
    assert 'hunter22' not in mask_url('postgresql://u:hunter22@h/db')


def test_scrub_removes_every_form_of_the_password():
    raw = url_with(CANARY)
    d = DbUrl(raw)
    text = 'url=%s plain=%s encoded=%s' % (raw, CANARY, quote(CANARY, safe=''))
    out = d.scrub(text)
    assert 'Cnry0123abcd' not in out
    assert d.masked in out


def test_scrub_with_two_passwords_in_one_url():
    """A password in the userinfo and another in the query: neither may survive scrub()."""
    raw = 'postgresql://u:first-secret@h/db?password=second-secret'
    d = DbUrl(raw)
    out = d.scrub('failed for %s' % raw)
    assert 'first-secret' not in out and 'second-secret' not in out


def test_neon_and_server_key():
    assert DbUrl('postgresql://u:p@ep-cool-1.eu-central-1.aws.neon.tech/db').is_neon
    assert not DbUrl('postgresql://u:p@neon.tech.example.org/db').is_neon
    a = DbUrl('postgresql://u:p@h:5432/db')
    b = DbUrl('postgres://u:other@h/db')
    assert a.server_key == b.server_key  # same server, database and user: one connection
    assert a.server_key != DbUrl('postgresql://u:p@h:5432/db2').server_key


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


def test_no_passfile_without_password():
    with PassFile(DbUrl('postgresql://u@h/db')) as pf:
        assert pf.path is None and 'PGPASSFILE' not in pf.env()


def test_psycopg2_is_the_driver():
    assert c.HAS_PSYCOPG2 and c.psycopg2 is psycopg2


@pytest.mark.parametrize('url', ['homelab:s3cret-pw@db:5432/app', 's3cret-pw@db/app',
                                 'postgresql:homelab:s3cret-pw@db/app'])
def test_a_url_without_scheme_slashes_is_not_shown(url):
    """A mistyped URL (no //) would otherwise reach the error message, the play output and the audit log."""
    assert 's3cret-pw' not in mask_url(url)
    with pytest.raises(UrlError) as err:
        DbUrl(url)
    assert 's3cret-pw' not in str(err.value)


# ------------------------------------------------------------ libpq's parser: what users really write
def _refused(url):
    with pytest.raises(UrlError) as err:
        DbUrl(url)
    return str(err.value)


@pytest.mark.parametrize('scheme', ['postgresql', 'postgres', 'postgresql+psycopg2'])
def test_unencoded_question_mark_in_password_is_what_libpq_reads(scheme):
    """Issue 13 input 1: the password typed as is. libpq (and SQLAlchemy) read it; urlsplit said 'invalid port'."""
    d = DbUrl('%s://app:Zq7Vx?K9wRt@db.lan:5432/app' % scheme)
    assert (d.user, d.password, d.host, d.port, d.dbname) == ('app', 'Zq7Vx?K9wRt', 'db.lan', 5432, 'app')
    assert 'Zq7Vx' not in d.masked and 'K9wRt' not in d.masked


@pytest.mark.parametrize('password', ['Pq7@Ss9:Wx3/Oo5#Rd2', 'Ab1@Bc2', 'Xy7/Yz8@Zq9', 'In4@Va5:Lq6/Id7?#', 'Tw8@@Oq9'])
def test_unencoded_at_or_slash_is_refused_without_any_userinfo(password):
    """Issue 13 input 1: with @:/# in the password, nothing of the userinfo may reach the message."""
    for scheme in ('postgresql', 'postgres', 'postgresql+psycopg2'):
        text = _refused('%s://app:%s@db.lan:5432/app' % (scheme, password))
        assert 'app:' not in text and scheme + '://' + MASK in text
        for piece in [p for p in re.split(r'[@:/#?]', password) if p]:
            assert piece not in text
        assert '%40' in text  # says how to fix it


@pytest.mark.parametrize('url', ['postgresql://u:50%off@h/db', 'postgresql://u:Sec%zzret@h/db',
                                 'postgresql://u:Secret"q@[::1/db', 'postgresql://u:Secret-pw@h:99999/db',
                                 'postgresql://u:Secret-pw@h:abc/db', 'postgresql://u:Secret-pw@h/db?bogus=1',
                                 "host=h password=Secret pw dbname=x", "host=h password='Secret-pw dbname=x"])
def test_libpq_parse_errors_show_no_userinfo(url):
    text = _refused(url)
    assert 'Secret' not in text and '50%off' not in text and 'off' not in text and 'zz' not in text
    assert 'database_url' in text


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


def test_passfile_lives_in_a_private_directory_and_stale_ones_are_swept(tmp_path):
    d = DbUrl('postgresql://u:S3cret:pw\\x@h/db')
    with PassFile(d, directory=str(tmp_path)) as pf:
        parent = os.path.dirname(pf.path)
        assert stat.S_IMODE(os.stat(parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(pf.path).st_mode) == 0o600
        assert open(pf.path).read() == '*:*:*:*:S3cret\\:pw\\\\x\n'
    assert not os.path.exists(parent)
    # what a SIGKILLed run leaves: a directory named after a dead process, and an old-style file
    dead = subprocess.Popen(['true'])
    dead.wait()
    stale = tmp_path / ('.homelab-pgpass-%d-abc' % dead.pid)
    stale.mkdir(mode=0o700)
    (stale / 'pgpass').write_text('*:*:*:*:S3cret\n')
    old = tmp_path / '.homelab-pgpass-xyz'
    old.write_text('h:5432:*:u:S3cret\n')
    mine = tmp_path / ('.homelab-pgpass-%d-live' % os.getpid())
    mine.mkdir(mode=0o700)
    with PassFile(d, directory=str(tmp_path)):
        assert not stale.exists() and not old.exists()
        assert mine.exists()  # a live process's directory is left alone
    mine.rmdir()


def test_libpq_parser_without_psycopg2(monkeypatch):
    """homelab_pg_backup runs where only the client tools are: libpq's PQconninfoParse through ctypes."""
    with_psycopg2 = [DbUrl(u).conninfo() for u in ('postgresql://app:Zq7Vx?K9wRt@db.lan:5432/app',
                                                   "host=/run/pg dbname=app password='a b\\'c'",
                                                   'postgresql://u:p@h1:1,h2:2/db?options=-c%20x%3Dy')]
    monkeypatch.setattr(c, 'psycopg2', None)
    without = [DbUrl(u).conninfo() for u in ('postgresql://app:Zq7Vx?K9wRt@db.lan:5432/app',
                                             "host=/run/pg dbname=app password='a b\\'c'",
                                             'postgresql://u:p@h1:1,h2:2/db?options=-c%20x%3Dy')]
    assert without == with_psycopg2
    text = _refused('postgresql://u:Secret50%off@h/db')
    assert 'Secret' not in text and 'percent-encoded' in text
