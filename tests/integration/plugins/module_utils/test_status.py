"""status.py (the report builder) with the real adapters against real PostgreSQL, real alembic, real drizzle-orm.

The example homelab (examples/homelab: an Alembic dashboard and two drizzle-kit bots) is moved to several
points with the services' own tools (the alembic CLI, drizzle-orm's migrate() through the peer), and the
report must say exactly what those tools say. Failures of one service never hide the others.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from urllib.parse import quote

import psycopg2
import pytest

from harness.pg import free_port
from harness.ansible import REPO

from ansible_collections.homelab.migrations.plugins.module_utils import status as status_mod
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import Adapter, AdapterError
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.registry import (
    get_adapter as real_get_adapter,
)
from ansible_collections.homelab.migrations.plugins.module_utils.connection import ConnectionPool
from ansible_collections.homelab.migrations.plugins.module_utils.lock import lock_key
from ansible_collections.homelab.migrations.plugins.module_utils.spec import SpecError, service_defaults
from ansible_collections.homelab.migrations.plugins.module_utils.status import build_report

SERVICES = os.path.join(REPO, 'examples', 'homelab', 'services')
ALEMBIC = os.path.join(os.path.dirname(sys.executable), 'alembic')
STREAM = ['0000_initial_schema', '0001_add_giveaways', '0002_add_currency_system',
          '0003_add_platform_user_unique_constraint', '0004_add_giveaway_concurrency_improvements']
DISCORD = ['0000_initial_schema', '0001_add_ticket_categories', '0002_add_stream_notifications']
DASHBOARD = ['001', '002', '003', '004', '005', '006']


# ------------------------------------------------------------------------------------------ helpers
def homelab(urls, root=SERVICES):
    """Service specs of the example homelab; ``urls`` maps service name -> database URL."""
    specs = [
        dict(name='dashboard', tool='alembic', path=os.path.join(root, 'dashboard'), database_url=urls['dashboard'],
             alembic_command=[ALEMBIC]),
        dict(name='stream-bot', tool='drizzle', path=os.path.join(root, 'stream-bot'),
             database_url=urls['stream-bot'], depends_on=['dashboard']),
        dict(name='discord-bot', tool='drizzle', path=os.path.join(root, 'discord-bot'),
             database_url=urls['discord-bot'], depends_on=['dashboard', 'stream-bot']),
    ]
    return [service_defaults(s) for s in specs]


def alembic_to(db, revision, root=SERVICES):
    env = dict(os.environ, DATABASE_URL=db.url)
    out = subprocess.run([ALEMBIC, 'upgrade', revision], cwd=os.path.join(root, 'dashboard'), env=env,
                         capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr


def drizzle_to(peer, db, bot, count, tmp_path):
    """drizzle-orm's migrate() with the first ``count`` journal entries of a bot (a copy of its folder)."""
    src = os.path.join(SERVICES, bot, 'migrations')
    dest = str(tmp_path / ('%s-%d' % (bot, count)))
    shutil.copytree(src, dest)
    journal = os.path.join(dest, 'meta', '_journal.json')
    with open(journal) as fh:
        data = json.load(fh)
    data['entries'] = data['entries'][:count]
    with open(journal, 'w') as fh:
        json.dump(data, fh)
    peer.migrate(dest, db.url)


def canary_free(obj, password):
    text = json.dumps(obj)
    return password not in text and quote(password, safe='') not in text and quote(password) not in text


@pytest.fixture
def three(make_db):
    dbs = {'dashboard': make_db(), 'stream-bot': make_db(), 'discord-bot': make_db()}
    return dbs


def urls_of(dbs):
    return dict((name, db.password_url) for name, db in dbs.items())


# ----------------------------------------------------------------------------- the example homelab
def test_nothing_applied(three):
    report = build_report(homelab(urls_of(three)))
    assert report['overall_status'] == 'pending' and report['success'] is True
    assert report['total_pending'] == 6 + 5 + 3
    assert list(report['services']) == ['dashboard', 'stream-bot', 'discord-bot']
    dash = dict(report['services']['dashboard'])
    assert dash.pop('lint')['ran'] is False  # alembic SQL is not linted (it would run env.py)
    assert dash == {'status': 'pending', 'tool': 'alembic', 'current_revision': None, 'latest_revision': '006',
                    'applied': 0, 'pending': 6, 'pending_migrations': DASHBOARD, 'problems': [],
                    'lock': {'held': False, 'holder': None}, 'findings': []}
    assert report['services']['stream-bot']['pending_migrations'] == STREAM
    assert report['services']['discord-bot']['latest_revision'] == DISCORD[-1]


def test_partly_applied_by_the_tools_themselves(three, drizzle_peer, tmp_path):
    alembic_to(three['dashboard'], '003')
    drizzle_to(drizzle_peer, three['stream-bot'], 'stream-bot', 2, tmp_path)
    drizzle_to(drizzle_peer, three['discord-bot'], 'discord-bot', 3, tmp_path)
    before = dict((name, db.snapshot()) for name, db in three.items())

    report = build_report(homelab(urls_of(three)))
    services = report['services']
    assert services['dashboard']['current_revision'] == '003'
    assert services['dashboard']['applied'] == 3
    assert services['dashboard']['pending_migrations'] == ['004', '005', '006']
    assert services['stream-bot']['current_revision'] == STREAM[1]
    assert services['stream-bot']['pending_migrations'] == STREAM[2:]
    assert services['discord-bot']['status'] == 'up_to_date'
    assert services['discord-bot']['pending'] == 0 and services['discord-bot']['applied'] == 3
    assert report['overall_status'] == 'pending' and report['total_pending'] == 3 + 3

    # what drizzle-orm itself would run next, on the full folder
    peer = drizzle_peer.status(os.path.join(SERVICES, 'stream-bot', 'migrations'), three['stream-bot'].url)
    assert [p['tag'] if isinstance(p, dict) else p for p in peer['pending']] == STREAM[2:]
    # the report wrote nothing
    assert dict((name, db.snapshot()) for name, db in three.items()) == before


def test_everything_at_head(three, drizzle_peer):
    alembic_to(three['dashboard'], 'head')
    for bot in ('stream-bot', 'discord-bot'):
        drizzle_peer.migrate(os.path.join(SERVICES, bot, 'migrations'), three[bot].url)
    report = build_report(homelab(urls_of(three)))
    assert report['overall_status'] == 'up_to_date' and report['total_pending'] == 0
    assert [e['status'] for e in report['services'].values()] == ['up_to_date'] * 3
    assert report['services']['dashboard']['current_revision'] == '006'


# -------------------------------------------------------------------------- one service fails alone
def test_unreachable_service_does_not_hide_the_others(three, pg):
    urls = urls_of(three)
    urls['stream-bot'] = 'postgresql://homelab:%s@127.0.0.1:%d/x' % (quote(pg.password, safe=''), free_port())
    report = build_report(homelab(urls), connect_timeout=3)
    bad = report['services']['stream-bot']
    assert bad['status'] == 'error' and [p['code'] for p in bad['problems']] == ['unreachable']
    assert 'cannot connect to' in bad['problems'][0]['message']
    assert '********' in bad['problems'][0]['message']
    assert report['services']['dashboard']['status'] == 'pending'
    assert report['services']['discord-bot']['pending'] == 3
    assert report['overall_status'] == 'error' and report['success'] is False
    assert canary_free(report, pg.password)


@pytest.mark.parametrize('case', ['wrong_password', 'missing_database'])
def test_bad_credentials_and_missing_database(three, pg, case):
    urls = urls_of(three)
    if case == 'wrong_password':
        urls['discord-bot'] = urls['discord-bot'].replace(quote(pg.password, safe=''),
                                                          quote('Nope' + pg.password, safe=''))
        hint = 'check the user and password'
    else:
        urls['discord-bot'] = pg.url('db_that_does_not_exist', password=True)
        hint = 'create the database first'
    report = build_report(homelab(urls), connect_timeout=5)
    entry = report['services']['discord-bot']
    assert entry['status'] == 'error' and entry['problems'][0]['code'] == 'unreachable'
    assert hint in entry['problems'][0]['message']
    assert report['services']['dashboard']['status'] == 'pending'
    assert canary_free(report, pg.password) and canary_free(report, 'Nope' + pg.password)


def test_spec_errors_raise_before_anything_is_read(three):
    specs = homelab(urls_of(three))
    specs[2]['name'] = 'stream-bot'
    with pytest.raises(SpecError, match='used twice'):
        build_report(specs)
    specs = homelab(urls_of(three))
    specs[1]['depends_on'] = ['nginx']
    with pytest.raises(SpecError, match="depends on 'nginx'"):
        build_report(specs)
    specs = homelab(urls_of(three))
    specs[0]['depends_on'] = ['discord-bot']
    with pytest.raises(SpecError, match='cycle'):
        build_report(specs)


def test_bad_journal_and_missing_folder(three, tmp_path):
    root = tmp_path / 'services'
    shutil.copytree(SERVICES, str(root))
    with open(str(root / 'stream-bot' / 'migrations' / 'meta' / '_journal.json'), 'w') as fh:
        fh.write('{"version": "7", "entries": [')
    shutil.rmtree(str(root / 'discord-bot' / 'migrations'))
    report = build_report(homelab(urls_of(three), root=str(root)))
    stream = report['services']['stream-bot']
    assert stream['status'] == 'error' and stream['problems'][0]['code'] == 'bad_config'
    assert 'not valid JSON' in stream['problems'][0]['message']
    assert '_journal.json' in stream['problems'][0]['message']
    discord = report['services']['discord-bot']
    assert discord['status'] == 'error' and 'does not exist' in discord['problems'][0]['message']
    assert report['services']['dashboard']['status'] == 'pending'


def test_alembic_revision_cycle_is_bad_config(three, tmp_path):
    root = tmp_path / 'services'
    shutil.copytree(SERVICES, str(root))
    first = root / 'dashboard' / 'alembic' / 'versions' / '001_create_users.py'
    text = first.read_text()
    assert 'down_revision' in text
    lines = [('down_revision = "006"' if line.startswith('down_revision') else line) for line in text.splitlines()]
    first.write_text('\n'.join(lines) + '\n')
    before = three['dashboard'].snapshot()
    report = build_report(homelab(urls_of(three), root=str(root)))
    dash = report['services']['dashboard']
    assert dash['status'] == 'error'
    assert [p['code'] for p in dash['problems']] == ['bad_config']
    assert 'cycl' in dash['problems'][0]['message'].lower()
    assert report['services']['stream-bot']['status'] == 'pending'
    assert three['dashboard'].snapshot() == before


# ------------------------------------------------------------------------ unexpected adapter errors
class _Exploding(Adapter):
    tool = 'drizzle'

    def read_state(self, conn):
        return {}['missing']  # an adapter bug: KeyError


class _Writing(Adapter):
    tool = 'drizzle'

    def read_state(self, conn):
        with conn.cursor() as cur:
            cur.execute('CREATE TABLE status_must_not_write (x int)')


class _Failing(Adapter):
    tool = 'drizzle'

    def read_state(self, conn):
        raise AdapterError('the journal says hello', code='not_a_code')


def _with(cls, names):
    def factory(spec, dburl):
        if spec['name'] in names:
            return cls(spec, dburl)
        return real_get_adapter(spec, dburl)
    return factory


def test_unexpected_exception_becomes_bad_config(three):
    report = build_report(homelab(urls_of(three)), get_adapter=_with(_Exploding, ['stream-bot']))
    entry = report['services']['stream-bot']
    assert entry['status'] == 'error'
    problem = entry['problems'][0]
    assert problem['code'] == 'bad_config'
    assert 'unexpected KeyError while reading its migration state' in problem['message']
    assert 'Traceback' not in problem['message'] and 'test_status.py' in problem['message']
    assert report['services']['discord-bot']['status'] == 'pending'


def test_unknown_problem_code_is_bad_config(three):
    report = build_report(homelab(urls_of(three)), get_adapter=_with(_Failing, ['dashboard']))
    problem = report['services']['dashboard']['problems'][0]
    assert problem['code'] == 'bad_config' and "service 'dashboard': the journal says hello" == problem['message']


def test_status_sessions_are_read_only(three):
    report = build_report(homelab(urls_of(three)), get_adapter=_with(_Writing, ['discord-bot']))
    problem = report['services']['discord-bot']['problems'][0]
    assert problem['code'] == 'bad_config' and 'read-only transaction' in problem['message']
    assert three['discord-bot'].tables() == []
    assert report['services']['stream-bot']['status'] == 'pending'  # the next service still reads fine


# ------------------------------------------------------------------------------------------- locks
def test_lock_held_by_another_session_is_visible(three):
    holder = psycopg2.connect(three['stream-bot'].url, application_name='homelab.migrations:stream-bot')
    holder.autocommit = True
    try:
        with holder.cursor() as cur:
            cur.execute('SELECT pg_advisory_lock(%s, %s)', lock_key('stream-bot'))
            cur.execute('SELECT pg_backend_pid()')
            pid = cur.fetchone()[0]
        report = build_report(homelab(urls_of(three)))
        entry = report['services']['stream-bot']
        assert entry['lock']['held'] is True
        assert entry['lock']['holder']['pid'] == pid
        assert entry['lock']['holder']['application_name'] == 'homelab.migrations:stream-bot'
        assert entry['lock']['holder']['client_addr'] == '127.0.0.1'
        assert entry['lock']['holder']['since']
        assert [p['code'] for p in entry['problems']] == ['locked']
        assert str(pid) in entry['problems'][0]['message']
        assert entry['status'] == 'pending'  # a run in progress is not an error
        # the same lock key in another database is another service's business
        assert report['services']['discord-bot']['lock'] == {'held': False, 'holder': None}
    finally:
        holder.close()
    assert build_report(homelab(urls_of(three)))['services']['stream-bot']['lock']['held'] is False


def test_locked_tracking_table_times_out_as_locked(three, drizzle_peer, monkeypatch):
    drizzle_peer.migrate(os.path.join(SERVICES, 'stream-bot', 'migrations'), three['stream-bot'].url)
    monkeypatch.setattr(status_mod, 'STATUS_LOCK_TIMEOUT', '300ms')
    blocker = psycopg2.connect(three['stream-bot'].url)
    try:
        with blocker.cursor() as cur:
            cur.execute('LOCK TABLE drizzle.__drizzle_migrations IN ACCESS EXCLUSIVE MODE')
        started = time.monotonic()
        report = build_report(homelab(urls_of(three)))
        assert time.monotonic() - started < 10
    finally:
        blocker.rollback()
        blocker.close()
    entry = report['services']['stream-bot']
    assert entry['status'] == 'error'
    assert entry['problems'][0]['code'] in ('locked', 'unreachable', 'bad_config')
    assert entry['problems'][0]['code'] == 'locked', entry['problems']
    assert report['services']['discord-bot']['status'] == 'pending'


# --------------------------------------------------------------------------------- connection reuse
def test_one_connection_per_database(make_db, tmp_path):
    db = make_db()
    other = make_db()
    seen = []

    def recording(spec, dburl):
        adapter = real_get_adapter(spec, dburl)
        read = adapter.read_state

        def read_state(conn):
            seen.append((spec['name'], conn))
            return read(conn)
        adapter.read_state = read_state
        return adapter

    specs = []
    for i in range(4):
        specs.append(service_defaults(dict(
            name='bot%d' % i, tool='drizzle', path=os.path.join(SERVICES, 'stream-bot'),
            database_url=(db if i < 3 else other).password_url, migrations_schema='drizzle_%d' % i)))
    pool = ConnectionPool(connect_timeout=5, application='status')
    try:
        report = build_report(specs, pool=pool, get_adapter=recording)
        conns = [conn for name, conn in seen]
        assert conns[0] is conns[1] is conns[2] and conns[3] is not conns[0]
        with conns[0].cursor() as cur:
            cur.execute('SELECT current_setting(%s), current_setting(%s)',
                        ('application_name', 'default_transaction_read_only'))
            assert cur.fetchone() == ('homelab.migrations:status', 'on')
    finally:
        pool.close()
    assert all(e['status'] == 'pending' for e in report['services'].values())


def test_password_never_in_report(three, pg):
    urls = urls_of(three)
    urls['dashboard'] = urls['dashboard'].replace('postgresql://', 'postgresql+psycopg2://')
    urls['discord-bot'] = 'postgresql://homelab:%s@127.0.0.1:%d/x' % (quote(pg.password, safe=''), free_port())
    report = build_report(homelab(urls), connect_timeout=3)
    assert canary_free(report, pg.password)
    assert report['services']['dashboard']['status'] == 'pending'
