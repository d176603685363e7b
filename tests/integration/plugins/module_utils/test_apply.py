"""apply.py (the orchestration) with the real drizzle adapter against real PostgreSQL.

Four passes (check, apply, check, apply) up and down, failures that leave the database exactly as it
was, the lock, timeouts, the audit trail. The alembic side is in test_apply_alembic.py.
"""

import json
import os
import shutil
import stat
import threading
import time
from urllib.parse import quote

import psycopg2
import pytest

from harness import drizzle_gen
from harness.pg import free_port
from harness.ansible import REPO

from ansible_collections.homelab.migrations.plugins.module_utils import audit
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import Adapter, Plan, ServiceState
from ansible_collections.homelab.migrations.plugins.module_utils.apply import check_duration, run_apply, ApplyFailure
from ansible_collections.homelab.migrations.plugins.module_utils.lock import lock_key
from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults, validate_service

SERVICES = os.path.join(REPO, 'examples', 'homelab', 'services')
STREAM = ['0000_initial_schema', '0001_add_giveaways', '0002_add_currency_system',
          '0003_add_platform_user_unique_constraint', '0004_add_giveaway_concurrency_improvements']


def service(path, url, name='svc', **extra):
    spec = service_defaults(dict(name=name, tool='drizzle', path=str(path), database_url=url, **extra))
    return spec, validate_service(spec)


def run(spec_url, check=False, diff=False, **params):
    spec, dburl = spec_url
    return run_apply(spec, dburl, params, check_mode=check, diff=diff)


def locks_held(db):
    return db.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")[0][0]


def canary_free(obj, password):
    text = json.dumps(obj)
    return password not in text and quote(password, safe='') not in text


@pytest.fixture
def gen(tmp_path):
    """A generated drizzle service of 5 migrations (with down files)."""
    root = tmp_path / 'gen'
    tags = drizzle_gen.generate(str(root / 'migrations'), 5)
    return root, tags


# ---------------------------------------------------------------------------------- four passes
def test_four_passes_up_then_down(fresh_db):
    svc = service(os.path.join(SERVICES, 'stream-bot'), fresh_db.password_url, name='stream-bot')
    empty = fresh_db.snapshot()

    first = run(svc, check=True, diff=True)
    assert first['changed'] is True and 'failed' not in first
    assert first['applied'] == STREAM and first['reverted'] == [] and first['outcome'] == 'check'
    assert first['from_revision'] is None and first['to_revision'] == STREAM[-1]
    assert first['plan']['direction'] == 'up' and first['plan']['steps'] == STREAM
    assert 'CREATE TABLE' in first['diff']['prepared'] and first['queries'] == []
    assert first['diff']['after'] == 'revision: %s\n' % STREAM[-1]
    assert fresh_db.snapshot() == empty  # check mode wrote nothing, not even the tracking schema

    second = run(svc)
    assert second['changed'] is True and second['applied'] == STREAM and second['outcome'] == 'success'
    assert second['to_revision'] == STREAM[-1] and second['lock_wait_seconds'] < 1
    assert any(q.startswith('INSERT INTO "drizzle"."__drizzle_migrations"') for q in second['queries'])
    at_head = fresh_db.snapshot()
    assert at_head != empty

    third = run(svc, check=True)
    assert third['changed'] is False and third['applied'] == [] and third['outcome'] == 'unchanged'
    fourth = run(svc)
    assert fourth['changed'] is False and fourth['from_revision'] == fourth['to_revision'] == STREAM[-1]
    assert fresh_db.snapshot() == at_head

    # down to a tag: four passes again
    down = [run(svc, check=True, target=STREAM[2]), run(svc, target=STREAM[2]),
            run(svc, check=True, target=STREAM[2]), run(svc, target=STREAM[2])]
    assert [r['changed'] for r in down] == [True, True, False, False]
    assert down[0]['reverted'] == down[1]['reverted'] == [STREAM[4], STREAM[3]]
    assert down[1]['to_revision'] == STREAM[2] and down[1]['applied'] == []

    # -1, then base, then head again: the schema is the one we had at head
    assert run(svc, target='-1')['reverted'] == [STREAM[2]]
    back = run(svc, target='base')
    assert back['reverted'] == [STREAM[1], STREAM[0]] and back['to_revision'] is None
    assert run(svc)['applied'] == STREAM
    assert fresh_db.snapshot()['schema'] == at_head['schema']
    assert locks_held(fresh_db) == 0


def test_spec_target_is_the_default(fresh_db):
    svc = service(os.path.join(SERVICES, 'stream-bot'), fresh_db.password_url, target=STREAM[1])
    result = run(svc)
    assert result['applied'] == STREAM[:2] and result['target'] == STREAM[1]
    assert run(svc, target='head')['applied'] == STREAM[2:]


# ------------------------------------------------------------------------------------- failures
def test_failure_in_the_third_of_five_changes_nothing(fresh_db, tmp_path):
    root = tmp_path / 'svc'
    tags = drizzle_gen.generate(str(root / 'migrations'), 5, broken={2: 1})
    svc = service(root, fresh_db.password_url)
    fresh_db.execute('CREATE TABLE keep (id int PRIMARY KEY, v text)')
    fresh_db.execute("INSERT INTO keep VALUES (1, 'a'), (2, 'b')")
    before = fresh_db.snapshot()
    audit_log = str(tmp_path / 'audit' / 'log.jsonl')

    result = run(svc, audit_log=audit_log)
    assert result['failed'] is True and result['changed'] is False
    assert result['applied'] == [] and result['reverted'] == []
    assert tags[2] in result['msg'] and 'no_such_table_0002' in result['msg']
    assert 'nothing of this run stayed' in result['msg'] and 'Fix the migration file' in result['msg']
    assert fresh_db.snapshot() == before
    assert locks_held(fresh_db) == 0
    rec = audit.read_records(audit_log)[-1]
    assert rec['outcome'] == 'failed' and tags[2] in rec['error'] and rec['applied'] == []

    # transaction: each keeps what committed, and says so
    each = run(svc, transaction='each')
    assert each['failed'] is True and each['applied'] == tags[:2] and each['changed'] is True
    assert each['to_revision'] == tags[1]
    assert 'applied by this run: %s, %s' % (tags[0], tags[1]) in each['msg']
    assert 'target=base' in each['msg']

    # fixed file: the next run continues from there (the lock was released)
    path = root / 'migrations' / (tags[2] + '.sql')
    path.write_text(path.read_text().replace('INSERT INTO "no_such_table_0002" VALUES (1);', 'SELECT 1;'))
    fixed = run(svc)
    assert fixed['applied'] == tags[2:] and 'failed' not in fixed


def test_missing_down_file_fails_before_anything_runs(fresh_db, gen):
    root, tags = gen
    svc = service(root, fresh_db.password_url)
    run(svc)
    os.unlink(str(root / 'migrations' / (tags[3] + '.down.sql')))
    before = fresh_db.snapshot()
    result = run(svc, target=tags[1])
    assert result['failed'] is True and tags[3] + '.down.sql' in result['msg']
    assert 'nothing was changed' in result['msg']
    assert fresh_db.snapshot() == before and result['reverted'] == []


def test_unknown_target(fresh_db, gen):
    root, tags = gen
    result = run(service(root, fresh_db.password_url), target='0099_nope')
    assert result['failed'] is True and "'0099_nope' is not a tag" in result['msg']
    assert fresh_db.tables() == []


def test_out_of_order_and_modified_need_permission(fresh_db, gen):
    root, tags = gen
    svc = service(root, fresh_db.password_url)
    folder = str(root / 'migrations')
    assert run(svc)['applied'] == tags
    # a new entry whose `when` is older than the newest applied one: drizzle-orm would skip it forever
    late = drizzle_gen.generate(folder, 1, start=5, whens={5: drizzle_gen.BASE_WHEN + 500})
    before = fresh_db.snapshot()
    refused = run(svc)
    assert refused['failed'] is True and 'allow_out_of_order' in refused['msg'] and late[0] in refused['msg']
    assert fresh_db.snapshot() == before
    allowed = run(svc, allow_out_of_order=True)
    assert allowed['applied'] == late and 'failed' not in allowed

    # an applied file edited afterwards
    path = root / 'migrations' / (tags[4] + '.sql')
    path.write_text(path.read_text() + '\n-- edited\n')
    newer = drizzle_gen.generate(folder, 1, start=6)
    before = fresh_db.snapshot()
    refused = run(svc)
    assert refused['failed'] is True and 'allow_modified' in refused['msg'] and tags[4] in refused['msg']
    assert fresh_db.snapshot() == before
    assert run(svc, allow_modified=True)['applied'] == newer


def test_unreachable_database(pg, gen, tmp_path):
    root = gen[0]
    url = 'postgresql://homelab:%s@127.0.0.1:%d/x' % (quote(pg.password, safe=''), free_port())
    audit_log = str(tmp_path / 'a.jsonl')
    result = run(service(root, url), audit_log=audit_log, connect_timeout=3)
    assert result['failed'] is True and 'cannot connect to' in result['msg'] and 'nothing was changed' in result['msg']
    assert canary_free(result, pg.password)
    records = audit.read_records(audit_log)
    assert len(records) == 1 and records[0]['outcome'] == 'failed'
    with open(audit_log) as fh:
        assert pg.password not in fh.read()


# ---------------------------------------------------------------------------------------- locking
def test_lock_wait_names_the_holder_and_check_mode_only_warns(fresh_db, gen):
    root, tags = gen
    svc = service(root, fresh_db.password_url, name='gen')
    holder = psycopg2.connect(fresh_db.url, application_name='someone-else')
    holder.autocommit = True
    try:
        with holder.cursor() as cur:
            cur.execute('SELECT pg_advisory_lock(%s, %s)', lock_key('gen'))
            cur.execute('SELECT pg_backend_pid()')
            pid = cur.fetchone()[0]
        started = time.monotonic()
        result = run(svc, lock_wait=1)
        assert 1 <= time.monotonic() - started < 5
        assert result['failed'] is True and 'pid %d (someone-else)' % pid in result['msg']
        assert 'lock_wait' in result['msg'] and 'pg_terminate_backend(%d)' % pid in result['msg']
        assert fresh_db.tables() == []
        checked = run(svc, check=True)
        assert 'failed' not in checked and checked['changed'] is True
        assert any('locked by pid %d' % pid in w for w in checked['warnings'])
    finally:
        holder.close()
    assert run(svc, lock_wait=5)['applied'] == tags
    assert result.get('conflict') is True, 'a lock held past lock_wait is another run at work'


def test_expect_from_refuses_a_service_another_run_moved(fresh_db, gen):
    """Going back to where a run started must not undo what another run applied in between."""
    root, tags = gen
    svc = service(root, fresh_db.password_url, name='gen')
    assert run(svc, target=tags[2])['applied'] == tags[:3]        # this run: up to tags[2]
    assert run(svc, target=tags[4])['applied'] == tags[3:]        # another run, in between
    before = fresh_db.snapshot()
    for check in (True, False):
        back = run(svc, target=tags[0], expect_from=tags[2], check=check)
        assert back['failed'] is True and back['conflict'] is True, back
        assert 'is at %s, not at %s (expect_from)' % (tags[4], tags[2]) in back['msg']
        assert back['msg'].rstrip('.').endswith('by hand') and 'nothing was changed' in back['msg']
        assert back['reverted'] == [] and fresh_db.snapshot() == before
    # where it expects the service to be, it goes back; base / '' mean nothing applied
    back = run(svc, target=tags[0], expect_from=tags[4])
    assert 'failed' not in back and back['reverted'] == tags[4:0:-1] and back['conflict'] is False
    assert run(svc, target='base', expect_from='base')['failed'] is True
    assert run(svc, target='base', expect_from=tags[0])['reverted'] == [tags[0]]
    assert run(svc, target=tags[1], expect_from='')['applied'] == tags[:2]


def test_second_run_waits_then_finds_nothing(fresh_db, tmp_path):
    root = tmp_path / 'slow'
    tags = drizzle_gen.generate(str(root / 'migrations'), 3)
    path = root / 'migrations' / (tags[1] + '.sql')
    path.write_text(path.read_text() + drizzle_gen.BP + '\nSELECT pg_sleep(1.5);')
    svc = service(root, fresh_db.password_url)
    results = {}

    def go(key):
        results[key] = run(svc, lock_wait=30)
    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.2)
    for t in threads:
        t.join(60)
    applied = sorted((r['applied'] for r in results.values()), key=len)
    assert applied == [[], tags]
    waited = [r for r in results.values() if not r['applied']][0]
    assert waited['lock_wait_seconds'] > 0.5 and waited['changed'] is False
    rows = drizzle_gen.tracking_rows(fresh_db)
    assert len(rows) == 3


def test_session_settings_reach_the_migration(fresh_db, tmp_path):
    root = tmp_path / 'timeouts'
    tags = drizzle_gen.generate(str(root / 'migrations'), 2)
    path = root / 'migrations' / (tags[1] + '.sql')
    path.write_text(path.read_text() + drizzle_gen.BP + '\nSELECT pg_sleep(2);')
    svc = service(root, fresh_db.password_url)
    before = fresh_db.snapshot()
    result = run(svc, statement_timeout='300ms')
    assert result['failed'] is True and 'statement timeout' in result['msg'] and 'pg_sleep' in result['msg']
    assert fresh_db.snapshot() == before
    bad = run(svc, lock_timeout='soon')
    assert bad['failed'] is True and "lock_timeout 'soon' is not a PostgreSQL duration" in bad['msg']
    assert check_duration('x', ' 5 s ') == '5s' and check_duration('x', None) is None
    with pytest.raises(ApplyFailure):
        check_duration('x', '5s; DROP TABLE x')


# ------------------------------------------------------------------------------------------ audit
def test_audit_record_per_run(fresh_db, gen, tmp_path):
    root, tags = gen
    svc = service(root, fresh_db.password_url, name='gen')
    log = str(tmp_path / 'logs' / 'migrations.jsonl')
    run(svc, check=True, audit_log=log, confirmation='extra-var migrate_all_confirm')
    run(svc, audit_log=log, confirmation='prompt')
    run(svc, audit_log=log)
    run(svc, audit_log=log, target='-2', action='rollback')
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o640
    records = audit.read_records(log)
    assert [r['outcome'] for r in records] == ['check', 'success', 'unchanged', 'success']
    assert [r['action'] for r in records] == ['apply', 'apply', 'apply', 'rollback']
    assert records[0]['confirmation'] == 'extra-var migrate_all_confirm' and records[1]['confirmation'] == 'prompt'
    assert records[1]['applied'] == tags and records[1]['from'] is None and records[1]['to'] == tags[-1]
    assert records[3]['reverted'] == [tags[4], tags[3]] and records[3]['to'] == tags[2]
    for rec in records:
        for key in audit.AUDIT_FIELDS + ('applied', 'reverted', 'duration_seconds'):
            assert key in rec
        assert rec['service'] == 'gen'
    with open(log) as fh:
        text = fh.read()
    assert fresh_db.password not in text and quote(fresh_db.password, safe='') not in text


def test_unwritable_audit_log_fails_before_touching_anything(fresh_db, gen, tmp_path):
    root = gen[0]
    target = tmp_path / 'is-a-dir'
    target.mkdir()
    result = run(service(root, fresh_db.password_url), audit_log=str(target))
    assert result['failed'] is True and 'is a directory' in result['msg']
    assert fresh_db.tables() == []


# -------------------------------------------------------------------------- adapters that misbehave
class _BrokenApply(Adapter):
    """Reads and plans like a real adapter would, then crashes in apply (a bug)."""
    tool = 'drizzle'

    def read_state(self, conn):
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('client_connection_check_interval'), "
                        "current_setting('application_name')")
            seen = cur.fetchone()
        if not hasattr(self, 'seen'):  # the run's own session (after a failure, a new one re-reads)
            self.seen = seen
        return ServiceState('drizzle', current=[], heads=['x'], pending=['x'], history=['x'])

    def plan(self, state, target, options=None):
        return Plan('up', ['x'], None, 'x', target)

    def preview_sql(self, plan):
        raise RuntimeError('cannot render')

    def apply(self, conn, plan, options=None):
        raise ZeroDivisionError('oops')


def test_adapter_bug_in_apply_is_reported_and_the_lock_released(fresh_db, gen, tmp_path):
    root = gen[0]
    spec, dburl = service(root, fresh_db.password_url, name='buggy')
    made = []

    def factory(s, u):
        made.append(_BrokenApply(s, u))
        return made[-1]
    result = run_apply(spec, dburl, {'audit_log': str(tmp_path / 'a.jsonl')}, diff=True, get_adapter=factory)
    assert result['failed'] is True
    assert 'unexpected ZeroDivisionError while applying the plan: oops' in result['msg']
    assert 'Traceback' not in result['msg']
    assert 'could not be rendered (cannot render)' in result['diff']['prepared']
    assert made[0].seen == ('1s', 'homelab.migrations:buggy')
    assert locks_held(fresh_db) == 0
    assert audit.read_records(str(tmp_path / 'a.jsonl'))[0]['outcome'] == 'failed'


def test_copy_of_example_round_trip_with_down_files(fresh_db, tmp_path):
    root = tmp_path / 'discord-bot'
    shutil.copytree(os.path.join(SERVICES, 'discord-bot'), str(root))
    svc = service(root, fresh_db.password_url, name='discord-bot')
    start = fresh_db.snapshot()
    up = run(svc)
    head = fresh_db.snapshot()
    down = run(svc, target='base')
    assert fresh_db.snapshot()['schema'] != head['schema']
    again = run(svc)
    assert up['changed'] and down['changed'] and again['changed']
    assert fresh_db.snapshot()['schema'] == head['schema']
    run(svc, target='base')
    rows = drizzle_gen.tracking_rows(fresh_db)
    assert rows == []  # the tracking table stays (as drizzle-orm leaves it), empty
    assert set(fresh_db.tables()) == {'drizzle.__drizzle_migrations'}
    assert start['schema'] != head['schema']


def test_server_crash_mid_apply(own_cluster, tmp_path):
    """The server dies during a migration: a clear failure, nothing half-applied, the next run proceeds."""
    from harness.pg import Database
    db = Database(own_cluster, own_cluster.create_database())
    root = tmp_path / 'crash'
    tags = drizzle_gen.generate(str(root / 'migrations'), 3)
    path = root / 'migrations' / (tags[1] + '.sql')
    original = path.read_text()
    path.write_text(original + drizzle_gen.BP + '\nSELECT pg_sleep(20) AS homelab_crash_marker;')
    svc = service(root, db.password_url, name='crash')
    out = {}
    worker = threading.Thread(target=lambda: out.update(result=run(svc, connect_timeout=3)))
    worker.start()
    deadline = time.time() + 60
    while time.time() < deadline and not db.query(
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%homelab_crash_marker%' AND pid <> pg_backend_pid()"):
        time.sleep(0.05)
    own_cluster.kill()
    worker.join(60)
    result = out['result']
    assert result['failed'] is True and result['applied'] == []
    assert tags[1] in result['msg']
    assert 'could not be re-read' in result['msg']  # the server was down when we looked
    assert own_cluster.password not in json.dumps(result)
    own_cluster.start()
    assert drizzle_gen.tracking_rows(db) in (None, [])  # crash recovery rolled the transaction back
    assert not [t for t in db.tables() if t.startswith('public.gen_')]
    path.write_text(original)
    again = run(svc)
    assert again['applied'] == tags and not again.get('failed')
