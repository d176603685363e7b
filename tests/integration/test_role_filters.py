"""The migrate_all role's controller-side decisions (plugins/plugin_utils: selection, recovery, text) and the
report writer (plugins/module_utils/report.py), without a play: ordering, selection by tags, what to do with a service,
the failure message, the summary, the TTY test, atomic report and textfile writes."""

import json
import os
import pty
import subprocess
import sys
import threading

import pytest

from ansible.errors import AnsibleFilterError

from harness.role_logic import role_logic as f
from ansible_collections.homelab.migrations.plugins.module_utils import report
from harness.ansible import as_a_person


def svc(name, *deps, **more):
    spec = {'name': name, 'tool': 'drizzle', 'path': '/srv/' + name,
            'database_url': 'postgresql://u:s3cret@db:5432/' + name.replace('-', '_'), 'depends_on': list(deps)}
    spec.update(more)
    return spec


HOMELAB = [svc('discord-bot', 'dashboard', 'stream-bot'), svc('stream-bot', 'dashboard'),
           svc('dashboard', tool='alembic')]


def status(**services):
    total = sum(s.get('pending', 0) for s in services.values())
    return {'success': True, 'overall_status': 'pending' if total else 'up_to_date', 'total_pending': total,
            'services': services}


def test_order_follows_depends_on_and_list_order_breaks_ties():
    assert f.migrate_all_order(HOMELAB) == ['dashboard', 'stream-bot', 'discord-bot']
    assert f.migrate_all_order([svc('b'), svc('a'), svc('c', 'a')]) == ['b', 'a', 'c']


def test_order_refuses_cycles_unknown_names_and_bad_specs_with_a_clear_message():
    with pytest.raises(AnsibleFilterError, match=r'cycle: a -> b -> a'):
        f.migrate_all_order([svc('a', 'b'), svc('b', 'a')])
    with pytest.raises(AnsibleFilterError, match=r"'a' depends on 'grafana', which is not in the service list"):
        f.migrate_all_order([svc('a', 'grafana')])
    with pytest.raises(AnsibleFilterError, match=r'used twice'):
        f.migrate_all_order([svc('a'), svc('a')])
    with pytest.raises(AnsibleFilterError, match=r'unknown key\(s\) colour'):
        f.migrate_all_order([svc('a', colour='red')])
    with pytest.raises(AnsibleFilterError, match=r'non-empty list'):
        f.migrate_all_order([])
    with pytest.raises(AnsibleFilterError) as err:
        f.migrate_all_order([svc('a', database_url='mysql://u:s3cret@db/x')])
    assert 's3cret' not in str(err.value)


def test_selection_by_tags():
    order = ['dashboard', 'stream-bot', 'discord-bot']
    assert f.migrate_all_selected(order, ['all'], []) == order
    assert f.migrate_all_selected(order, ['stream-bot'], []) == ['stream-bot']
    assert f.migrate_all_selected(order, ['discord-bot', 'dashboard'], []) == ['dashboard', 'discord-bot']
    assert f.migrate_all_selected(order, ['all'], ['dashboard']) == ['stream-bot', 'discord-bot']
    assert f.migrate_all_selected(order, ['stream_bot'], []) == []


def plan(changed=True, **more):
    result = {'changed': changed, 'from_revision': '0001', 'to_revision': '0003' if changed else '0001',
              'applied': ['0002', '0003'] if changed else [], 'reverted': []}
    result.update(more)
    return result


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


def test_summary_and_record():
    results = {
        'dashboard': {'outcome': 'success', 'from': None, 'to': '006', 'applied': list('123456'),
                      'backup': '/b/dashboard.dump'},
        'stream-bot': {'outcome': 'failed', 'from': '0002', 'to': '0002', 'applied': [], 'backup': '/b/s.dump',
                       'error': 'migration 0005 failed: x', 'recovery': 'rolled back to 0002'},
        'discord-bot': {'outcome': 'skipped', 'from': None, 'to': None, 'reason': 'depends on stream-bot'},
    }
    lines = f.migrate_all_summary(results, ['dashboard', 'stream-bot', 'discord-bot'])
    assert lines == [
        'dashboard: (none) -> 006, applied 6, backup /b/dashboard.dump, success',
        'stream-bot: 0002 -> 0002, applied 0, backup /b/s.dump, FAILED: migration 0005 failed: x [rolled back to 0002]',
        'discord-bot: (none) -> (none), applied 0, backup none, skipped: depends on stream-bot',
    ]
    msg = f.migrate_all_failure_message(results, ['dashboard', 'stream-bot', 'discord-bot'], '/var/log/a.log')
    assert 'stream-bot failed: migration 0005 failed: x' in msg and 'discord-bot skipped' in msg
    rec = f.migrate_all_record(results['stream-bot'], 'stream-bot', 'apply', 'head', 'run-1')
    assert rec['outcome'] == 'failed' and rec['source'] == 'role' and rec['run_id'] == 'run-1'
    assert f.migrate_all_record({}, 'x')['outcome'] == 'failed'


def test_refusal_record_says_refused_why_and_nothing_changed_without_a_database_url():
    failed = {'failed': True, 'msg': "service 'a': database_url mysql://root:pw@db/x has scheme 'mysql'; use "
                                     "postgresql://, postgres:// or postgresql+psycopg2:// (health_check "
                                     "http://127.0.0.1:8080/health)"}
    rec = f.migrate_all_refusal(failed, 'rollback', 'run-1', ['a', 'b'], ['b'], None, 'Order the services')
    assert rec['outcome'] == 'refused' and rec['source'] == 'role' and rec['service'] is None
    assert rec['action'] == 'rollback' and rec['run_id'] == 'run-1' and rec['changed'] is False
    assert rec['services'] == ['a', 'b'] and rec['selected'] == ['b'] and rec['pending'] is None
    assert rec['recovery'] == 'nothing was changed' and rec['reason'] == 'refused by the task: Order the services'
    assert 'mysql://...' in rec['error'] and 'root' not in rec['error'] and 'pw@' not in rec['error']
    assert 'use postgresql://, postgres:// or postgresql+psycopg2://' in rec['error']
    assert 'http://127.0.0.1:8080/health' in rec['error'], 'a health check URL is not a database URL'
    # the run stopped before anything was known: still one record, the fields that are not known are null
    bare = f.migrate_all_refusal({'msg': ['one', 'two']}, None)
    assert bare['action'] == 'apply' and bare['error'] == 'one; two' and bare['services'] is None
    assert f.migrate_all_refusal_message(None) == 'the run was refused (unknown error)'
    assert f.migrate_all_refusal_message({'msg': ' x  '}) == 'x'


def test_audit_module_takes_a_refused_run_without_a_service_and_nothing_else_without_one():
    from ansible_collections.homelab.migrations.plugins.modules.homelab_migration_audit import build_records
    rec = f.migrate_all_refusal({'msg': 'not confirmed; postgresql://u:s3cret@db/x'}, 'apply', 'run-1', ['a'], ['a'])
    built = build_records([rec], 'none')[0]
    assert built['service'] is None and built['outcome'] == 'refused' and built['confirmation'] == 'none'
    assert built['selected'] == ['a'] and built['changed'] is False and 's3cret' not in json.dumps(built)
    assert built['time'] and built['host'] and built['user']
    with pytest.raises(ValueError, match='records\\[0\\] has no service'):
        build_records([{'action': 'apply', 'outcome': 'failed'}], None)


def test_status_table_and_plan_lines():
    st = status(dashboard={'status': 'pending', 'tool': 'alembic', 'current_revision': '003',
                           'latest_revision': '006', 'applied': 3, 'pending': 3,
                           'pending_migrations': ['004', '005', '006'], 'problems': [], 'lock': {'held': False}},
                **{'stream-bot': {'status': 'error', 'tool': 'drizzle', 'problems': [
                    {'code': 'modified', 'message': '0001 changed since it was applied'}],
                    'lock': {'held': True, 'holder': {'pid': 42, 'application_name': 'x', 'since': 't'}}}})
    lines = f.migrate_all_status_table(st, ['dashboard', 'stream-bot'], ['dashboard'])
    assert lines[0].split() == ['SERVICE', 'TOOL', 'STATUS', 'CURRENT', 'LATEST', 'APPLIED', 'PENDING']
    assert lines[1].split() == ['dashboard', 'alembic', 'pending', '003', '006', '3', '3']
    assert lines[2:5] == ['    pending  004', '    pending  005', '    pending  006']
    assert lines[5].startswith('stream-bot (not selected)')
    assert '[modified] 0001 changed' in lines[6] and 'pid 42' in lines[7]
    assert lines[-1] == 'overall: pending, 3 pending migration(s)'
    plans = [plan(), plan(False), {'failed': True, 'msg': 'nope'}, plan(reverted=['0004'], applied=[])]
    out = f.migrate_all_plan_lines(plans, ['a', 'b', 'c', 'd'])
    assert out == ['a: 0001 -> 0003, apply 2: 0002, 0003', 'b: nothing to do (at 0001)',
                   'c: cannot be planned: nope', 'd: 0001 -> 0003, revert 1: 0004']
    assert f.migrate_all_changed(plans, ['a', 'b', 'c', 'd']) == ['a', 'd']
    assert f.migrate_all_target({'target': None}) == 'head'
    assert f.migrate_all_target({'target': '0003'}) == '0003'
    assert f.migrate_all_target({'target': '0003'}, 'rollback', '') == '-1'
    assert f.migrate_all_target({}, 'rollback', 'base') == 'base'


def test_status_table_shows_a_warning_as_a_warning():
    st = status(dashboard={'status': 'pending', 'tool': 'alembic', 'current_revision': None, 'latest_revision': 'e2,c2',
                           'applied': 0, 'pending': 2, 'pending_migrations': ['e1', 'e2'], 'lock': {'held': False},
                           'problems': [{'code': 'bad_config', 'severity': 'warning',
                                         'message': 'e1.py line 12: revision e1 sets branch_labels to ...'}]})
    lines = f.migrate_all_status_table(st, ['dashboard'])
    assert lines[4] == '    warning  [bad_config] e1.py line 12: revision e1 sets branch_labels to ...'
    assert f.migrate_all_decide('dashboard', [{'name': 'dashboard'}], st, {'changed': True}, {})['action'] == 'run'


_TTY_PROBE = r'''
import os, sys
sys.path[:0] = %r
from ansible_collections.homelab.migrations.plugins.plugin_utils.selection import migrate_all_interactive
here = migrate_all_interactive(True)
off = migrate_all_interactive('false')
pid = os.fork()
if pid == 0:
    # an ansible worker: its own session, stdio on /dev/null; its parent holds the terminal
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    with open(%r, 'w') as fh:
        fh.write('%%s %%s %%s' %% (here, off, migrate_all_interactive(True)))
    os._exit(0)
os.waitpid(pid, 0)
'''


@pytest.mark.parametrize('stdin_tty,stdout_tty,expected', [
    (True, True, 'True False True'),
    (False, True, 'False False False'),
    (True, False, 'False False False'),
])
def test_interactive_means_stdin_and_stdout_are_terminals_also_seen_from_a_worker(tmp_path, stdin_tty, stdout_tty,
                                                                                  expected):
    out = str(tmp_path / 'probe.txt')
    code = _TTY_PROBE % (sys.path, out)
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, '-c', code], stdin=slave if stdin_tty else subprocess.DEVNULL,
                              stdout=slave if stdout_tty else subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                              check=False, env=as_a_person(os.environ))
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 0, proc.stderr
    with open(out) as fh:
        assert fh.read() == expected


def test_report_is_the_status_shape_and_written_atomically(tmp_path):
    st = status(**{'stream-bot': {'status': 'pending', 'tool': 'drizzle', 'current_revision': None,
                                  'latest_revision': '0001', 'applied': 0, 'pending': 1,
                                  'pending_migrations': ['0001'], 'problems': [
                                      {'code': 'unreachable', 'message': 'postgresql://u:pw@h/db refused'}],
                                  'lock': {'held': False, 'holder': None}, 'extra': 'dropped'}})
    path = str(tmp_path / 'www' / 'status.json')
    report.write_status_report(path, st, generated_at='2025-01-01T00:00:00+00:00')
    with open(path) as fh:
        data = json.load(fh)
    assert set(data) == {'success', 'overall_status', 'total_pending', 'services', 'generated_at'}
    assert set(data['services']['stream-bot']) == set(report.STATUS_KEYS)
    assert 'pw@' not in json.dumps(data) and 'u:********@h' in json.dumps(data)
    assert os.listdir(str(tmp_path / 'www')) == ['status.json'], 'no temp file left behind'

    # a reader never sees a partial file while writers replace it
    seen, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            with open(path) as fh:
                seen.append(json.load(fh)['total_pending'])
    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(200):
            report.write_status_report(path, dict(st, total_pending=i))
    finally:
        stop.set()
        t.join()
    assert seen and all(isinstance(v, int) for v in seen)


def test_textfile_keeps_the_last_run_across_status_only_writes(tmp_path):
    path = str(tmp_path / 'm.prom')
    st = status(**{'a-b': {'status': 'pending', 'tool': 'drizzle', 'pending': 2, 'applied': 1}})
    text = report.write_prometheus_textfile(path, st, run={'action': 'apply', 'outcome': 'failed', 'time': 100.0,
                                                           'services': {'a-b': 'failed'}}, now=50)
    assert 'homelab_migration_pending{service="a-b",tool="drizzle"} 2' in text
    assert 'homelab_migration_last_run_success{action="apply"} 0' in text
    assert 'homelab_migration_last_run_service_outcome{outcome="failed",service="a-b"} 1' in text
    again = report.write_prometheus_textfile(path, status(**{'a-b': {'status': 'up_to_date', 'tool': 'drizzle',
                                                                     'pending': 0, 'applied': 3}}), now=60)
    assert 'homelab_migration_pending{service="a-b",tool="drizzle"} 0' in again
    assert 'homelab_migration_last_run_timestamp_seconds{action="apply"} 100.0' in again
    assert again.count('# TYPE homelab_migration_last_run_success gauge') == 1
    for line in again.splitlines():
        assert line.startswith('#') or ' ' in line


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
