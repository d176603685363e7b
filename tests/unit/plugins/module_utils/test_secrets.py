"""secrets.mask: the one masking function; every spelling a tool may print a password in."""

import base64
import json
import re
from urllib.parse import quote, quote_plus

import pytest

from ansible_collections.homelab.migrations.plugins.module_utils import secrets
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl

PASSWORDS = ['Zq7Vx?K9wRt', 'p@ss:w/o#rd 42', "q'uo\"te\\back%25sl", 'sp ace+plus%', 'ünï-cødé pw']


def spelled(password, user='app'):
    """The spellings tools print (one per line): the test's own list, independent of secrets.py."""
    pct = quote(password, safe='')
    lower = re.sub('%[0-9A-F]{2}', lambda m: m.group(0).lower(), pct)
    out = [password, pct, lower, quote_plus(password), quote(password, safe=' +'),  # SQLAlchemy
           pct.replace('%', '%%'), json.dumps(password)[1:-1], repr(password)[1:-1],
           json.dumps(json.dumps(password))[3:-3],
           base64.b64encode(('%s:%s' % (user, password)).encode()).decode()]
    return out


@pytest.mark.parametrize('password', PASSWORDS)
def test_every_spelling_is_masked(password):
    for form in spelled(password):
        text = 'before %s after' % form
        out = secrets.mask(text, [(('app', password))])
        assert form not in out, form
        assert out.startswith('before ') and out.endswith(' after')


@pytest.mark.parametrize('password', PASSWORDS)
def test_a_dburl_masks_its_password_everywhere(password):
    d = DbUrl('postgresql://app:%s@db.lan/app' % quote(password, safe=''))
    text = '\n'.join(spelled(password) + [d.raw, d.sqlalchemy_url(), d.libpq_uri()])
    out = d.scrub(text)
    for form in spelled(password):
        assert form not in out
    assert 'db.lan' in out


def test_unknown_url_userinfo_and_keyword_passwords_are_masked():
    text = ('health http://monitor:s3cr@t@host/healthz failed; dsn host=h password=\'a b\' x; '
            'PGPASSWORD=hunter22 {"password": "json-pw"} redis://:tok3n@cache:6379 ok')
    out = secrets.mask(text)
    for leak in ('s3cr', '@t@', "a b'", 'hunter22', 'json-pw', 'tok3n'):
        assert leak not in out, (leak, out)
    assert 'http://monitor:' in out and 'host=h' in out and 'cache:6379' in out


def test_mask_first_then_shorten():
    """Issue 13 input 3: a cut before masking leaves the password's tail."""
    password = 'TailSecret0123456789'
    text = 'url postgresql://app:%s@db/app\n' % password + 'x' * 3990
    cut = secrets.shorten(text, 4000, [('app', password)])
    assert len(cut) <= 4000 and 'Secret0123' not in cut and '456789' not in cut and 'Tail' not in cut


def test_mask_data_and_no_garbling_of_short_passwords():
    data = {'msg': ['a %s b' % quote('Zq7Vx?K9wRt', safe='')], 'n': 3, 'x': None}
    assert secrets.mask_data(data, ['Zq7Vx?K9wRt'])['msg'] == ['a %s b' % secrets.MASK]
    assert secrets.mask('a pw b', ['pw']) == 'a pw b'  # too short to mask as a substring
    assert secrets.mask('postgresql://u:pw@h/db') == 'postgresql://u:%s@h/db' % secrets.MASK
    assert secrets.mask(None) is None and secrets.mask(5) == 5


def test_dashboard_text_is_masked_before_it_is_cut():
    from ansible_collections.homelab.migrations.plugins.module_utils import publish
    password = 'DashSecret0123456789'
    text = 'x' * 280 + ' postgresql://app:%s@db/app' % password
    cut = publish._text(text, 310)  # the cut falls inside the password
    assert 'Dash' not in cut and 'Secret' not in cut


# --- red team (issue 13): libpq keyword strings with backslash escapes, health URLs with hostile credentials

KEYWORD_DSNS = [
    # (keyword string, a piece of the password that must show nowhere)
    (r'host=db password=secret\ tail12345 dbname=app', 'tail12345'),
    (r"host=db password='q\'uo\\te sp TailKw99' dbname=app", 'TailKw99'),
    (r'host=db password=a\\b\'c\ TailEsc77 dbname=app', 'TailEsc77'),
    (r'password = Tab\	TailTab55 host=db', 'TailTab55'),
]


@pytest.mark.parametrize('dsn,tail', KEYWORD_DSNS)
def test_keyword_string_password_with_backslash_escapes_is_masked(dsn, tail):
    """libpq lets an unquoted keyword value hold white space after a backslash (``password=a\\ b``): the masked
    URL, a message quoting the string, and the mask with no known secret show no piece of the password."""
    from ansible_collections.homelab.migrations.plugins.module_utils.dburl import mask_url
    d = DbUrl(dsn)
    assert tail in d.password
    for out in (d.masked, mask_url(dsn), d.scrub('psql said: %s' % dsn), secrets.mask('dsn: %s end' % dsn)):
        assert tail not in out, out
        assert 'host=db' in out
    # the way make_dsn and a pgpass line write it
    assert tail not in d.scrub(d.dsn()) and tail not in d.scrub(d.passfile_line())


@pytest.mark.parametrize('url', [
    'http://monitor:HlthSecret#tail@127.0.0.1:1/healthz',
    'http://monitor:HlthSecret?tail@127.0.0.1:1/healthz',
    'http://monitor:HlthSecret/tail@127.0.0.1:1/healthz',
    'http://monitor:12345/HlthSecret@127.0.0.1:1/healthz',
    'http://monitor:12345#HlthSecret@127.0.0.1:1/healthz',
])
def test_health_url_with_unencoded_delimiters_leaks_no_piece_of_the_password(url):
    """urllib's own error quoted the password's start as the "port"; a password whose '/' made the rest a path
    would have been sent in clear to the host "monitor". Refused, with no piece of the password shown."""
    from ansible_collections.homelab.migrations.plugins.module_utils import health
    with pytest.raises(health.HealthError) as info:
        health.check(url, timeout=1, retries=1)
    msg = str(info.value)
    assert 'HlthSecret' not in msg and '12345' not in msg and 'tail' not in msg, msg
    assert 'percent-encode' in msg and msg.startswith('health check URL http://monitor:')


def test_health_module_shows_no_credentials_in_its_invocation_at_vvv():
    """The module used on its own (not through the role's no_log task): -vvv prints the module arguments."""
    from harness.ansible import run_module
    password = 'HlthInv0c%s' % 'Q7z p@ss'
    url = 'http://monitor:%s@127.0.0.1:1/healthz' % quote(password, safe='')
    result, proc = run_module('homelab_migration_health', {'url': url, 'timeout': 1, 'retries': 1, 'delay': 0},
                              verbosity=3)
    assert result.get('healthy') is False and result.get('status') == -1, result
    basic = base64.b64encode(('monitor:%s' % password).encode()).decode()
    for leak in (password, quote(password, safe=''), 'HlthInv0c', basic):
        assert leak not in proc.stdout and leak not in json.dumps(result), leak
    assert 'module_args' in proc.stdout  # -vvv did print the arguments


@pytest.mark.parametrize('password', ['ünï-cødé pw', 'x\ty\nzeuro€abc', 'пароль-Secret1'])
def test_a_non_ascii_password_is_masked_as_bytes_and_backslash_escapes_print_it(password):
    """Red team (issue 13): a unicode password printed as Python bytes (b'\\xc3\\xbc...', an env.py printing
    url.encode() or a child's raw output), through ascii()/backslashreplace, decoded as Latin-1 by a tool, or
    with '?' for what an ASCII/Latin-1 output cannot show."""
    d = DbUrl('postgresql://app:%s@db.lan/app' % quote(password, safe=''))
    data = password.encode('utf-8')
    for form in (repr(data)[2:-1], str(d.sqlalchemy_url().encode()), ascii(password)[1:-1], data.decode('latin-1'),
                 password.encode('ascii', 'replace').decode(), password.encode('latin-1', 'replace').decode('latin-1'),
                 password.encode('unicode_escape').decode()):
        out = d.scrub('before %s after' % form)
        assert form not in out, (form, out)
        assert out.startswith('before ') and out.endswith(' after')


def test_masking_long_lines_is_linear():
    """Red team: the URL rule tried a scheme at every letter of a word, so 4 MB of long lines (an alembic
    --sql preview of a data migration) took 11 s to mask; now well under the bound, and a URL after a digit
    is still found."""
    import time
    text = ('x' * 1000 + '\n') * 4000 + ' 9postgresql://a:LongLineSecret@h/db'
    started = time.monotonic()
    out = secrets.mask(text, [('app', 'ünï-cødé pw')])
    assert time.monotonic() - started < 4
    assert 'LongLineSecret' not in out and out.endswith('9postgresql://a:%s@h/db' % secrets.MASK)


@pytest.mark.parametrize('text', [
    "LINE 1: CREATE ROLE app LOGIN PASSWORD 'CnrySql1' CONNECTON LIMIT 5",
    "statement `ALTER ROLE app WITH ENCRYPTED PASSWORD E'CnrySql1\\'x' VALID UNTIL 'x'`",
    "alter role app password $pw$CnrySql1$pw$ login",
    "LINE 1: ...ROLE app PASSWORD 'CnrySql1 it''s cut here",
    "create user app password 'CnrySql1'",
])
def test_sql_password_literals_are_masked_without_knowing_them(text):
    """Red team: PostgreSQL quotes a failing CREATE/ALTER ROLE ... PASSWORD '...' in its error."""
    masked = secrets.mask(text)
    assert 'CnrySql1' not in masked and "'x'" not in masked.split('PASSWORD')[-1][:14]
    assert secrets.mask('password authentication failed for user "app"') == \
        'password authentication failed for user "app"'


def test_a_secret_http_url_has_its_query_masked():
    url = 'https://dash.lan/healthz?probe=1&access_token=CnryTok9#CnryFrag'
    masked = secrets.mask('GET %s failed; token CnryTok9' % url, [url])
    assert 'CnryTok9' not in masked and 'CnryFrag' not in masked and 'https://dash.lan/healthz?' in masked
    db = 'postgresql://u:pw@h/db?sslmode=require'
    assert secrets.mask('sslmode=require required', [db]) == 'sslmode=require required'


@pytest.mark.parametrize('url', ['postgresql://app:p%zzChainLeak1@127.0.0.1:1/app',
                                 'host=db password=ChainLeak1 junk'])
def test_a_refused_url_leaves_no_password_in_its_traceback(url):
    """Red team: libpq's parse error quotes the URL; the UrlError raised while handling it carried it as its
    context, so any traceback of the refusal (a module's last-resort exception=, a crash at -vvvv) showed it.
    The hint itself is not eaten by the password rule either."""
    import traceback
    from ansible_collections.homelab.migrations.plugins.module_utils.dburl import UrlError
    with pytest.raises(UrlError) as info:
        DbUrl(url)
    text = ''.join(traceback.format_exception(info.type, info.value, info.tb))
    assert 'ChainLeak1' not in text
    assert 'ChainLeak1' not in secrets.mask(str(info.value)) and secrets.MASK not in str(info.value)[-60:]


def test_a_weak_password_is_masked_alone_but_not_inside_names_and_paths():
    """Red team: 'homelab' / 'bot' as the password garbled paths, service names and revisions (and showed the
    password by inference: stream-********). Alone, in a URL, or as a keyword value it is still masked."""
    text = ("backup /var/backups/homelab-migrations/stream-bot_1.dump; auth failed for 'homelab' "
            "postgresql://app:homelab@db/app password=homelab PGPASSWORD=homelab")
    out = secrets.mask(text, ['homelab'])
    assert '/var/backups/homelab-migrations/stream-bot_1.dump' in out
    assert out.count('homelab') == 1 and out.count(secrets.MASK) == 4, out
    result = {'path': '/b/stream-bot_1.dump', 'service': 'stream-bot', 'from_revision': 'cafe01',
              'msg': "service 'stream-bot' at cafe01: bot", 'services': {'stream-bot': {'current_revision': 'cafe01'}}}
    masked = secrets.mask_result(result, ['bot', 'cafe'])
    assert masked['path'] == result['path'] and masked['from_revision'] == 'cafe01'
    assert masked['services'] == result['services']
    assert masked['msg'] == "service 'stream-bot' at cafe01: %s" % secrets.MASK
    # a strong password is masked inside a longer word too
    assert 'Zq7Vx9K9wRt' not in secrets.mask('pw_Zq7Vx9K9wRt_x', ['Zq7Vx9K9wRt'])


@pytest.mark.parametrize('text', ['the password is hunter2.', 'hunter2 - wrong', '(hunter2)', 'pw: hunter2/ x',
                                  '"hunter2"', 'hunter2', 'x -hunter2- y'])
def test_a_weak_password_that_ends_a_sentence_is_still_masked(text):
    assert 'hunter2' not in secrets.mask(text, ['hunter2'])


@pytest.mark.parametrize('url', ['postgresql://app%3AColonLeak9@127.0.0.1:1/app',
                                 'postgres://app%3aColonLeak9@db/app?sslmode=disable'])
def test_a_fully_encoded_userinfo_is_refused_without_showing_it(url):
    """Red team: quote('app:pw', safe='') makes the password part of the user name: not masked anywhere, shown in
    connect errors and pg_dump's PGUSER. Refused, showing none of it; keyword strings may still name such a user."""
    from ansible_collections.homelab.migrations.plugins.module_utils.dburl import UrlError, mask_url
    with pytest.raises(UrlError) as info:
        DbUrl(url)
    assert 'ColonLeak9' not in str(info.value) and '%3A' in str(info.value)
    assert 'ColonLeak9' not in mask_url(url)
    assert DbUrl("host=db user='odd:name' password=pw12345").user == 'odd:name'


def test_a_strong_password_in_an_exact_field_is_still_masked():
    """The exact-field exemption is for weak passwords only: a migration label that holds a strong password
    (create role ... password 'Zq7Vx9K9wRtLong') is masked there as before."""
    class _Module:
        no_log_values = set()
    module = _Module()
    result = {'pending_migrations': ["0004 create role with password 'Zq7Vx9K9wRtLong'"], 'path': '/b/x_bot.dump'}
    out = secrets.module_result(module, result, ['Zq7Vx9K9wRtLong'])
    assert 'Zq7Vx9K9wRtLong' in module.no_log_values  # Ansible masks it in every field
    assert out['path'] == '/b/x_bot.dump'
    weak = _Module()
    weak.no_log_values = set()
    secrets.module_result(weak, result, ['bot'])
    assert 'bot' not in weak.no_log_values
