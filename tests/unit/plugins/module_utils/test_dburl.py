"""dburl.py: URL forms (schemes, encoded passwords, query forms, IPv6), masking and scrubbing every spelling of the
password, what libpq itself reads from an unencoded password. No server needed."""

import re
from urllib.parse import quote

import pytest

from ansible_collections.homelab.migrations.plugins.module_utils.dburl import MASK, DbUrl, UrlError, mask_url

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
