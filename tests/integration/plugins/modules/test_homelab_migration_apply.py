"""homelab_migration_apply through real ansible-playbook, against real PostgreSQL, alembic and drizzle-orm.

Four passes up and down for both tools, a failure that leaves the database as it was, two runs at once,
a SIGKILL in the middle of a migration, the example homelab's round trip, the audit trail.
"""

import json
import os
import shutil
import signal
import stat
import sys
import threading
import uuid
import time
from urllib.parse import quote

import psycopg2
import pytest

from harness import drizzle_gen
from harness.ansible import run_module
from harness.ansible import REPO

from ansible_collections.homelab.migrations.plugins.module_utils import audit

SERVICES = os.path.join(REPO, 'examples', 'homelab', 'services')
ALEMBIC = os.path.join(os.path.dirname(sys.executable), 'alembic')
STREAM = ['0000_initial_schema', '0001_add_giveaways', '0002_add_currency_system',
          '0003_add_platform_user_unique_constraint', '0004_add_giveaway_concurrency_improvements']
DASHBOARD = ['001', '002', '003', '004', '005', '006']
MODULE = 'homelab_migration_apply'
GATE = (4242, 1)  # an advisory lock key the race test holds to keep a migration waiting


def drizzle(path, url, name='svc', **extra):
    return dict(name=name, tool='drizzle', path=str(path), database_url=url, **extra)


def dashboard(url, root=SERVICES, **extra):
    return dict(name='dashboard', tool='alembic', path=os.path.join(root, 'dashboard'), database_url=url,
                alembic_command=[ALEMBIC], **extra)


def apply(service, check=False, diff=False, verbosity=0, env=None, **args):
    args['service'] = service
    return run_module(MODULE, args, check=check, diff=diff, verbosity=verbosity, env=env)


def four_passes(service, **args):
    results = []
    for check in (True, False, True, False):
        result, proc = apply(service, check=check, diff=True, **args)
        assert not result.get('failed'), result.get('msg')
        results.append(result)
    assert [r['changed'] for r in results] == [True, True, False, False], [r['changed'] for r in results]
    return results


def advisory_locks(db):
    return db.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")[0][0]


def alembic_version(db):
    if not db.query("SELECT 1 FROM pg_tables WHERE tablename = 'alembic_version'"):
        return None
    return [r[0] for r in db.query('SELECT version_num FROM alembic_version')]


def assert_clean(proc, result, password):
    for text in (proc.stdout, proc.stderr, json.dumps(result)):
        assert password not in text and quote(password, safe='') not in text
        assert 'Traceback' not in text


# ------------------------------------------------------------------------------------ four passes
def test_drizzle_four_passes_up_and_down(fresh_db):
    svc = drizzle(os.path.join(SERVICES, 'stream-bot'), fresh_db.password_url, name='stream-bot')
    empty = fresh_db.snapshot()
    up = four_passes(svc)
    assert up[0]['applied'] == up[1]['applied'] == STREAM
    assert up[0]['diff']['prepared'] == up[1]['diff']['prepared']
    assert 'CREATE TABLE "bot_config"' in up[1]['diff']['prepared'] or 'CREATE TABLE' in up[1]['diff']['prepared']
    assert up[1]['queries'] and up[0]['queries'] == []
    assert up[1]['to_revision'] == STREAM[-1] and up[2]['from_revision'] == STREAM[-1]
    head = fresh_db.snapshot()
    assert head != empty

    down = four_passes(svc, target=STREAM[2])
    assert down[0]['reverted'] == down[1]['reverted'] == [STREAM[4], STREAM[3]]
    assert down[1]['to_revision'] == STREAM[2]
    assert 'DROP' in down[0]['diff']['prepared'] or 'ALTER' in down[0]['diff']['prepared']
    # -N is relative to where the database is: every run goes N further back
    minus = [apply(svc, target='-1', check=True)[0], apply(svc, target='-1')[0], apply(svc, target='-1')[0]]
    assert [r['reverted'] for r in minus] == [[STREAM[2]], [STREAM[2]], [STREAM[1]]]
    assert minus[2]['to_revision'] == STREAM[0]


def test_drizzle_revert_by_tag_four_passes(fresh_db):
    svc = drizzle(os.path.join(SERVICES, 'discord-bot'), fresh_db.password_url, name='discord-bot')
    four_passes(svc)
    down = four_passes(svc, target='0000_initial_schema')
    assert down[1]['reverted'] == ['0002_add_stream_notifications', '0001_add_ticket_categories']


def test_alembic_four_passes_up_and_down(fresh_db):
    svc = dashboard(fresh_db.password_url, alembic_sql_preview=True)
    up = four_passes(svc)
    assert up[0]['applied'] == up[1]['applied'] == DASHBOARD
    assert 'CREATE TABLE users' in up[0]['diff']['prepared']
    assert alembic_version(fresh_db) == ['006']
    down = four_passes(svc, target='003')
    assert down[1]['reverted'] == ['006', '005', '004'] and alembic_version(fresh_db) == ['003']
    back = apply(svc, target='-1')[0]
    assert back['reverted'] == ['003'] and alembic_version(fresh_db) == ['002']


# ---------------------------------------------------------------------------------------- failure
@pytest.mark.parametrize('transaction', ['all'])
def test_failing_third_of_five_leaves_everything_as_it_was(fresh_db, tmp_path, transaction):
    root = tmp_path / 'svc'
    tags = drizzle_gen.generate(str(root / 'migrations'), 5, broken={2: 2})
    fresh_db.execute('CREATE TABLE customer (id int PRIMARY KEY, name text)')
    fresh_db.execute("INSERT INTO customer VALUES (1, 'ada'), (2, 'bob')")
    before = fresh_db.snapshot()
    log = str(tmp_path / 'audit.jsonl')
    result, proc = apply(drizzle(root, fresh_db.password_url), transaction=transaction, audit_log=log)
    assert result['failed'] is True and result['changed'] is False
    assert tags[2] in result['msg'] and 'INSERT INTO "no_such_table_0002"' in result['msg']
    assert 'Fix the migration file and run again' in result['msg']
    assert result['applied'] == [] and result['reverted'] == []
    assert fresh_db.snapshot() == before
    assert advisory_locks(fresh_db) == 0
    assert audit.read_records(log)[-1]['outcome'] == 'failed'
    assert_clean(proc, result, fresh_db.password)


def test_alembic_failure_rolls_back(fresh_db, tmp_path):
    root = tmp_path / 'services'
    shutil.copytree(SERVICES, str(root))
    path = root / 'dashboard' / 'alembic' / 'versions' / '004_add_index.py'
    text = path.read_text()
    path.write_text(text.replace('def upgrade():', 'def upgrade():\n    op.execute("SELECT no_such_function_004()")', 1)
                    if 'def upgrade():' in text else text.replace('def upgrade() -> None:', 'def upgrade() -> None:\n'
                                                                  '    op.execute("SELECT no_such_function_004()")', 1))
    before = fresh_db.snapshot()
    result, proc = apply(dashboard(fresh_db.password_url, root=str(root)))
    assert result['failed'] is True
    assert '[SQL: SELECT no_such_function_004()]' in result['msg'] and 'upgrade head failed' in result['msg']
    assert result['applied'] == [] and fresh_db.snapshot() == before
    assert advisory_locks(fresh_db) == 0
    assert_clean(proc, result, fresh_db.password)


# ----------------------------------------------------------------------------------- concurrency
def test_two_playbooks_at_once_apply_each_migration_once(fresh_db, tmp_path):
    root = tmp_path / 'race'
    tags = drizzle_gen.generate(str(root / 'migrations'), 4)
    path = root / 'migrations' / (tags[1] + '.sql')
    path.write_text(path.read_text() + drizzle_gen.BP + '\nSELECT pg_sleep(5);')
    svc = drizzle(root, fresh_db.password_url, name='race')
    results = [None, None]

    def go(i, lock_wait):
        results[i] = apply(svc, lock_wait=lock_wait)[0]
    threads = [threading.Thread(target=go, args=(0, 60)), threading.Thread(target=go, args=(1, 60))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(len(r['applied']) for r in results) == [0, 4]
    assert not any(r.get('failed') for r in results)
    assert len(drizzle_gen.tracking_rows(fresh_db)) == 4

    # with a short lock_wait the second one fails naming the holder instead. The first run holds the lock until
    # the second one is done: its migration waits for an advisory lock (GATE) this test holds. A fixed
    # pg_sleep(5) raced ansible-playbook's start-up (about 4 s idle, more under load): the second run arrived
    # after the first had finished and found nothing to do.
    fresh_db.execute('DROP SCHEMA drizzle CASCADE')
    for i in range(4):
        fresh_db.execute('DROP TABLE IF EXISTS gen_%04d CASCADE' % i)
    path.write_text(path.read_text().replace('SELECT pg_sleep(5);', 'SELECT pg_advisory_xact_lock(%d, %d);' % GATE))
    gate = psycopg2.connect(fresh_db.url)
    gate.autocommit = True
    try:
        with gate.cursor() as cur:
            cur.execute('SELECT pg_advisory_lock(%s, %s)', GATE)
        results = [None, None]
        threads = [threading.Thread(target=go, args=(0, 60)), threading.Thread(target=go, args=(1, 1))]
        threads[0].start()
        deadline = time.time() + 120
        while time.time() < deadline and not fresh_db.query(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid <> %s", (GATE[0],)):
            time.sleep(0.05)
        threads[1].start()
        threads[1].join(300)
        assert results[0] is None  # still waiting at the gate, holding the service's lock
    finally:
        gate.close()  # opens the gate
    threads[0].join(300)
    assert results[0]['applied'] == tags
    assert results[1]['failed'] is True and 'is locked by pid' in results[1]['msg']
    assert 'homelab.migrations:race' in results[1]['msg']
    assert len(drizzle_gen.tracking_rows(fresh_db)) == 4


def _module_pids(name, tag):
    """Module processes of this test only: its runs carry ``tag`` in their environment (other tests, e.g. the
    fault suite on another xdist worker, run the same module at the same time)."""
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as fh:
                cmd = fh.read().replace(b'\0', b' ').decode('utf-8', 'replace')
        except OSError:
            continue
        if 'AnsiballZ_%s' % name in cmd and 'sh -c' not in cmd and '/bin/sh' not in cmd:
            try:
                with open('/proc/%s/environ' % entry, 'rb') as fh:
                    if tag.encode() not in fh.read().split(b'\0'):
                        continue
            except OSError:
                continue
            pids.append(int(entry))
    return pids


def _kill_during(db, start, marker, module=MODULE):
    """Run ``start`` in a thread; SIGKILL the module process once ``marker`` runs in the database."""
    out = {}
    value = uuid.uuid4().hex
    tag = 'HOMELAB_TEST_KILL=%s' % value
    thread = threading.Thread(target=lambda: out.update(result=start({'HOMELAB_TEST_KILL': value})))
    thread.start()
    deadline = time.time() + 120
    killed = []
    while time.time() < deadline and not killed:
        if db.query("SELECT 1 FROM pg_stat_activity WHERE query LIKE %s AND state = 'active' AND pid <> "
                    "pg_backend_pid()", ('%' + marker + '%',)):
            for pid in _module_pids(module, tag):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.05)
    thread.join(180)
    assert killed, 'the migration never started'
    return out['result'][0], killed


def test_sigkill_mid_drizzle_apply(fresh_db, tmp_path):
    root = tmp_path / 'kill'
    tags = drizzle_gen.generate(str(root / 'migrations'), 3)
    path = root / 'migrations' / (tags[1] + '.sql')
    original = path.read_text()
    path.write_text(original + drizzle_gen.BP + '\nSELECT pg_sleep(30) AS homelab_kill_marker;')
    svc = drizzle(root, fresh_db.password_url, name='kill')
    before = fresh_db.snapshot()
    result, killed = _kill_during(fresh_db, lambda env: apply(svc, env=env), 'homelab_kill_marker')
    assert result.get('failed') is True
    # the backend notices the dead client within client_connection_check_interval: no lock, no half migration
    deadline = time.time() + 15
    while time.time() < deadline and advisory_locks(fresh_db):
        time.sleep(0.2)
    assert advisory_locks(fresh_db) == 0
    assert fresh_db.snapshot() == before
    path.write_text(original)
    again = apply(svc, lock_wait=10)[0]
    assert again['applied'] == tags


def test_sigkill_mid_alembic_upgrade_leaves_no_orphan(fresh_db, tmp_path):
    root = tmp_path / 'services'
    shutil.copytree(SERVICES, str(root))
    path = root / 'dashboard' / 'alembic' / 'versions' / '003_create_user_preferences.py'
    text = path.read_text()
    marker = 'op.execute("SELECT pg_sleep(30) AS homelab_kill_marker")'
    for head in ('def upgrade() -> None:', 'def upgrade():'):
        if head in text:
            path.write_text(text.replace(head, head + '\n    ' + marker, 1))
            break
    else:
        pytest.fail('no upgrade() in %s' % path)
    svc = dashboard(fresh_db.password_url, root=str(root))
    result, killed = _kill_during(fresh_db, lambda env: apply(svc, env=env), 'homelab_kill_marker')
    assert result.get('failed') is True
    # the migrator dies with the module, and its backend (mid pg_sleep(30)) notices within seconds
    deadline = time.time() + 15
    while time.time() < deadline and (advisory_locks(fresh_db) or _alembic_children(str(root))
                                      or _marker_sessions(fresh_db)):
        time.sleep(0.2)
    assert _alembic_children(str(root)) == []
    assert advisory_locks(fresh_db) == 0
    assert _marker_sessions(fresh_db) == 0
    assert alembic_version(fresh_db) in (None, [])  # one transaction for the run: nothing half-applied
    path.write_text(text)
    again = apply(svc, lock_wait=10)[0]
    assert again['applied'] == DASHBOARD


def _marker_sessions(db):
    return db.query("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%homelab_kill_marker%' "
                    "AND pid <> pg_backend_pid()")[0][0]


def _alembic_children(root):
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink('/proc/%s/cwd' % entry)
            with open('/proc/%s/cmdline' % entry, 'rb') as fh:
                cmd = fh.read()
        except OSError:
            continue
        if cwd.startswith(root) and b'alembic' in cmd:
            found.append(int(entry))
    return found


# ------------------------------------------------------------------------------ the example homelab
def test_example_homelab_round_trip(make_db, tmp_path):
    dbs = {'dashboard': make_db(), 'stream-bot': make_db(), 'discord-bot': make_db()}
    specs = {
        'dashboard': dashboard(dbs['dashboard'].password_url),
        'stream-bot': drizzle(os.path.join(SERVICES, 'stream-bot'), dbs['stream-bot'].password_url, 'stream-bot'),
        'discord-bot': drizzle(os.path.join(SERVICES, 'discord-bot'), dbs['discord-bot'].password_url,
                               'discord-bot'),
    }
    log = str(tmp_path / 'audit' / 'migrations.jsonl')
    for name in specs:
        result = apply(specs[name], audit_log=log, confirmation='test')[0]
        assert not result.get('failed'), result.get('msg')
    head = dict((name, db.snapshot()) for name, db in dbs.items())
    for name in specs:
        result = apply(specs[name], target='base', audit_log=log, action='rollback')[0]
        assert not result.get('failed'), result.get('msg')
        assert result['to_revision'] is None and result['reverted']
    for name in specs:
        result = apply(specs[name], audit_log=log)[0]
        assert not result.get('failed'), result.get('msg')
    assert dict((name, db.snapshot()['schema']) for name, db in dbs.items()) == \
        dict((name, snap['schema']) for name, snap in head.items())
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o640
    records = audit.read_records(log)
    assert len(records) == 9 and {r['outcome'] for r in records} == {'success'}
    assert [r['action'] for r in records[3:6]] == ['rollback'] * 3
    with open(log) as fh:
        text = fh.read()
    assert dbs['dashboard'].password not in text and quote(dbs['dashboard'].password, safe='') not in text


def test_password_never_in_vvv_output_even_on_failure(fresh_db, pg, tmp_path):
    svc = drizzle(os.path.join(SERVICES, 'stream-bot'), fresh_db.password_url, name='stream-bot')
    result, proc = apply(svc, verbosity=3, diff=True)
    assert not result.get('failed')
    assert_clean(proc, result, pg.password)
    bad = dict(svc, database_url=fresh_db.password_url.replace(quote(pg.password, safe=''),
                                                               quote(pg.password + 'x', safe='')))
    result, proc = apply(bad, verbosity=3)
    assert result['failed'] is True and 'password authentication failed' in result['msg']
    assert_clean(proc, result, pg.password)
    assert_clean(proc, result, pg.password + 'x')


def test_spec_error_changes_nothing(fresh_db):
    result, proc = apply(drizzle(os.path.join(SERVICES, 'stream-bot'), fresh_db.password_url, name='Bad Name'))
    assert result['failed'] is True and "service name 'Bad Name' is not valid" in result['msg']
    assert fresh_db.tables() == []
