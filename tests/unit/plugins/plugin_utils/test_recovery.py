"""plugin_utils/recovery.py, the migrate_all role's decisions without a play: what to do with a service, the
failure message, outcomes and recovery, undo, going back, pinning the apply, the run-scope rollback."""

from harness.role_logic import role_logic as f
from harness.role_logic import HOMELAB, plan, status, svc


def test_decide():
    st = status(**{'dashboard': {'status': 'pending', 'pending': 2}, 'stream-bot': {'status': 'pending', 'pending': 2},
                   'discord-bot': {'status': 'pending', 'pending': 2}})
    decide = f.migrate_all_decide
    assert decide('dashboard', HOMELAB, st, plan(), {}) == {'action': 'run', 'reason': ''}
    assert decide('dashboard', HOMELAB, st, plan(False), {})['action'] == 'unchanged'
    failed = {'dashboard': {'outcome': 'failed'}}
    got = decide('stream-bot', HOMELAB, st, plan(), failed)
    assert got['action'] == 'skip' and 'depends on dashboard, which failed' in got['reason']
    got = decide('discord-bot', HOMELAB, st, plan(), {'dashboard': {'outcome': 'success'},
                                                      'stream-bot': {'outcome': 'skipped'}})
    assert got['action'] == 'skip' and 'stream-bot, which was skipped' in got['reason']
    # nothing to do is never "skipped", whatever happened to the dependencies
    assert decide('stream-bot', HOMELAB, st, plan(False), failed)['action'] == 'unchanged'
    # run scope: after a failure nothing else is attempted
    got = decide('discord-bot', [svc('discord-bot')], st, plan(), {'x': {'outcome': 'failed'}}, 'run')
    assert got['action'] == 'skip' and 'migrate_all_rollback_scope is run' in got['reason']
    assert decide('discord-bot', [svc('discord-bot')], st, plan(), {'x': {'outcome': 'failed'}})['action'] == 'run'
    # --tags: a dependency outside the run is checked, not migrated
    broken = dict(st, services=dict(st['services'], dashboard={'status': 'error', 'problems': [
        {'code': 'unreachable', 'message': 'connection refused'}]}))
    got = decide('stream-bot', HOMELAB, broken, plan(), {}, 'service', ['stream-bot'])
    assert got['action'] == 'skip' and 'connection refused' in got['reason']
    got = decide('stream-bot', HOMELAB, st, plan(), {}, 'service', ['stream-bot'])
    assert got['action'] == 'run' and 'dashboard, which has 2 pending' in got['reason']
    # a plan that failed, a status error
    got = decide('dashboard', HOMELAB, st, {'failed': True, 'msg': 'boom'}, {})
    assert got == {'action': 'fail', 'reason': 'cannot plan: boom'}
    locked = dict(st, services=dict(st['services'], dashboard={'status': 'error', 'problems': [
        {'code': 'locked', 'message': 'held by pid 7'}]}))
    assert decide('dashboard', HOMELAB, locked, plan(), {})['action'] == 'run', 'a held lock is waited for'


def test_failure_message_names_the_migration_from_the_field_only():
    msg = f.migrate_all_failure({'msg': 'relation "x" does not exist', 'applied': ['0002'],
                                 'failed_migration': '0003'}, None, 'Move to the target revision stream-bot')
    assert msg.startswith('migration 0003 failed: relation "x" does not exist')
    assert msg.endswith('(task: Move to the target revision stream-bot)')
    # the wording of a message decides nothing: no step is read out of alembic's log, none guessed from pending
    alembic = ("alembic upgrade 006 failed (exit 1). alembic said:\n"
               "INFO  [alembic.runtime.migration] Running upgrade 004 -> 005, verify legacy emails")
    assert f.migrate_all_failure({'msg': alembic, 'applied': ['004']}, ['004', '005', '006']) == alembic
    assert f.migrate_all_failure({'msg': alembic, 'failed_migration': '005'}).startswith('migration 005 failed: ')
    assert f.migrate_all_failure({'msg': 'boom', 'applied': []}, ['0003', '0004']) == 'boom'
    msg = f.migrate_all_failure({'msg': "migration 0003 (0003.sql) failed at ...", 'failed_migration': '0003'})
    assert msg == "migration 0003 (0003.sql) failed at ..."
    assert f.migrate_all_failure({'msg': 'HTTP 503'}, None) == 'HTTP 503'


def test_outcome_and_recovery_results():
    skipped = {'changed': False, 'skipped': True, 'skip_reason': 'Conditional result was False'}
    out = f.migrate_all_outcome({'action': 'run', 'reason': ''}, '0001', {'path': '/b/x.dump', 'changed': True},
                                {'changed': True, 'from_revision': '0001', 'to_revision': '0003',
                                 'applied': ['0002', '0003'], 'reverted': []}, True)
    assert out['outcome'] == 'success' and out['backup'] == '/b/x.dump' and out['to'] == '0003'
    out = f.migrate_all_outcome({'action': 'skip', 'reason': 'not attempted'}, '0001', skipped, skipped, False)
    assert out['outcome'] == 'skipped' and out['backup'] is None and out['from'] == out['to'] == '0001'
    neon = {'changed': False, 'skipped': True, 'reason': 'Neon host: no pg_dump', 'path': None}
    out = f.migrate_all_outcome({'action': 'run'}, None, neon, {'applied': ['a'], 'to_revision': 'a'}, True)
    assert out['backup_skipped'] == 'Neon host: no pg_dump'

    apply = {'failed': True, 'untouched': False, 'committed': ['0002', '0003'], 'applied': ['0002', '0003'],
             'fingerprint': {'before': 'f0', 'after': 'f3'}, 'unrecorded_changes': False, 'error_code': 'apply_failed'}
    back_ok = {'changed': True, 'reverted': ['0003', '0002'], 'to_revision': '0001',
               'fingerprint': {'before': 'f3', 'after': 'f0'}}
    rec = f.migrate_all_recovery('boom', '0001', True, {'path': '/b/x.dump'}, apply, back_ok, skipped)
    assert rec['recovery'] == 'rolled back to 0001 (reverted 0003, 0002; schema verified as before the run)'
    assert rec['to'] == '0001' and rec['committed'] == [] and rec['restored'] is False
    back_bad = {'failed': True, 'msg': 'no down file for 0002'}
    rec = f.migrate_all_recovery('boom', '0001', True, {'path': '/b/x.dump'}, apply, back_bad, {'changed': True})
    assert 'restored the backup /b/x.dump' in rec['recovery'] and rec['to'] == '0001' and rec['restored'] is True
    rec = f.migrate_all_recovery('boom', '0001', True, {'path': '/b/x.dump'}, apply, back_bad,
                                 {'failed': True, 'msg': 'disk full'})
    assert rec['recovery'].startswith('NOT RECOVERED') and 'disk full' in rec['recovery'] and rec['to'] is None
    assert rec['committed'] == ['0002', '0003']
    # went back, but the schema differs from the fingerprint before the apply: restored, and it says why
    back_off = dict(back_ok, fingerprint={'before': 'f3', 'after': 'fX'})
    assert not f.migrate_all_back_verified(back_off, apply)
    rec = f.migrate_all_recovery('boom', '0001', True, {'path': '/b/x.dump'}, apply, back_off, {'changed': True})
    assert rec['recovery'].startswith('restored the backup /b/x.dump: after going back to 0001 the schema')
    # a migration that committed by itself: going back by migrations cannot be verified
    stray = dict(apply, unrecorded_changes=True, schema_changes=['added table public.a'])
    assert not f.migrate_all_back_verified(back_ok, stray)
    rec = f.migrate_all_recovery('boom', '0001', True, {'path': '/b/x.dump'}, stray, back_ok, {'changed': True})
    assert 'added table public.a' in rec['recovery'] and rec['restored'] is True
    rec = f.migrate_all_recovery('backup failed', '0001', False, {}, {}, skipped, skipped)
    assert rec['recovery'] == 'nothing was changed' and rec['to'] == '0001'
    # another run moved it meanwhile (or holds its lock): neither going back nor restoring, and it says so
    back_conflict = {'failed': True, 'conflict': True, 'msg': "service 's' is at 0004, not at 0003 (expect_from)"}
    rec = f.migrate_all_recovery('boom', '0001', True, {'path': '/b/x.dump'}, {}, back_conflict, skipped)
    assert rec['recovery'].startswith('NOT RECOVERED: another run') and '/b/x.dump' in rec['recovery']
    assert 'is at 0004' in rec['recovery'] and rec['to'] is None


def test_undo_is_needed_only_when_the_apply_did_not_prove_the_database_untouched():
    skipped = {'changed': False, 'skipped': True, 'skip_reason': 'Conditional result was False'}
    assert f.migrate_all_undo_needed(skipped, False) is False
    # a later step (health check) failed after a successful apply
    assert f.migrate_all_undo_needed({'changed': True, 'applied': ['2'], 'from_revision': '1', 'to_revision': '2'},
                                     True) is True
    # proved untouched (re-read position and fingerprint): nothing to undo, whatever the message says
    assert f.migrate_all_undo_needed({'failed': True, 'untouched': True, 'msg': 'x'}, True) is False
    # the same position but not proved untouched (a migration committed by itself): undo
    assert f.migrate_all_undo_needed({'failed': True, 'applied': [], 'reverted': [], 'from_revision': '1',
                                      'to_revision': '1', 'untouched': False,
                                      'msg': 'nothing was changed'}, True) is True
    assert f.migrate_all_undo_needed({'failed': True, 'msg': 'MODULE FAILURE'}, True) is True
    rec = f.migrate_all_recovery('boom', '0002', True, {'path': '/b/x'}, {}, skipped, skipped, False)
    assert rec['recovery'].startswith('rolled back to 0002 (nothing to revert') and rec['to'] == '0002'
    assert rec['reverted'] == [] and rec['untouched'] is True


def test_going_back_uses_the_revision_read_under_the_lock_and_pins_it():
    # run A read 0001 in the status, waited for B's lock, and found 0002 (B's work) under its lock
    apply = {'failed': True, 'from_revision': '0002', 'to_revision': '0003', 'untouched': False}
    assert f.migrate_all_back_target(apply, '0001') == '0002'
    assert f.migrate_all_back_pin(apply) == '0003'
    assert f.migrate_all_back_target({}, '0001') == '0001'
    assert f.migrate_all_back_target({'from_revision': None, 'failed': True}, '0001') == 'base'
    # failed before reading anything (lock held by another run): no reading to go back to
    assert f.migrate_all_back_target({'from_revision': None, 'failed': True, 'untouched': True}, '0001') == '0001'
    # the state after the failure could not be re-read: no pin is invented
    assert f.migrate_all_back_pin({'failed': True, 'to_revision': None, 'retryable': True}) == ''


def test_the_apply_is_pinned_to_the_confirmed_plan():
    down = {'changed': True, 'from_revision': '0002', 'to_revision': '0001',
            'plan': {'direction': 'down', 'from_revision': '0002', 'to_revision': '0001', 'steps': ['0002']}}
    assert f.migrate_all_pinned(down, '-1') == {'target': '0001', 'expect_from': '0002'}
    to_base = {'changed': True, 'plan': {'direction': 'down', 'from_revision': '0000', 'to_revision': None}}
    assert f.migrate_all_pinned(to_base, '-1') == {'target': 'base', 'expect_from': '0000'}
    up = {'changed': True, 'plan': {'direction': 'up', 'from_revision': None, 'to_revision': '0004'}}
    assert f.migrate_all_pinned(up, 'head') == {'target': '0004', 'expect_from': 'base'}
    heads = {'changed': True, 'plan': {'direction': 'up', 'from_revision': 'a', 'to_revision': 'b,c'}}
    assert f.migrate_all_pinned(heads, 'heads') == {'target': 'heads', 'expect_from': 'a'}
    assert f.migrate_all_pinned({'changed': False}, 'head') == {'target': 'head', 'expect_from': None}
    assert f.migrate_all_pinned(None, 'head') == {'target': 'head', 'expect_from': None}


def test_run_scope_rollback_outcomes():
    skipped = {'changed': False, 'skipped': True, 'skip_reason': 'Conditional result was False'}
    done = {'name': 'dashboard', 'before': '004', 'after': '006', 'backup': '/b/d.dump'}
    previous = {'outcome': 'success', 'from': '004', 'to': '006', 'applied': ['005', '006']}
    ok = f.migrate_all_run_rollback(previous, done, {'changed': True, 'reverted': ['006', '005'], 'to_revision': '004'},
                                    skipped, 'stream-bot failed')
    assert ok['outcome'] == 'rolled_back' and ok['to'] == '004' and ok['reason'] == 'stream-bot failed'
    bad = {'failed': True, 'msg': 'no down file'}
    restored = f.migrate_all_run_rollback(previous, done, bad, {'changed': True})
    assert restored['outcome'] == 'restored' and '/b/d.dump' in restored['recovery']
    lost = f.migrate_all_run_rollback(previous, done, bad, {'failed': True, 'msg': 'disk full'})
    assert lost['outcome'] == 'failed' and 'disk full' in lost['error'] and lost['to'] is None
    conflict = {'failed': True, 'conflict': True, 'msg': "service 'dashboard' is at 007, not at 006 (expect_from)"}
    other = f.migrate_all_run_rollback(previous, done, conflict, skipped)
    assert other['outcome'] == 'failed' and other['to'] is None
    assert 'another run' in other['error'] and 'is at 007' in other['error'] and '/b/d.dump' in other['error']
    assert other['recovery'].startswith('NOT RECOVERED')
