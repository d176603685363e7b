"""plugin_utils/text.py, without a play: the summary and the audit record, the refusal record, the status table
and plan lines (warnings and pre-flight findings under their service)."""

import json

import pytest

from harness.role_logic import role_logic as f
from harness.role_logic import STATUS, plan, status
from ansible_collections.homelab.migrations.plugins.plugin_utils.text import migrate_all_status_table


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


def test_status_table_shows_findings_under_the_service():
    lines = migrate_all_status_table(STATUS, ['dash', 'bot'])
    text = '\n'.join(lines)
    bot = lines.index(next(line for line in lines if line.startswith('bot')))
    assert lines[bot + 2] == '    error    [not_in_transaction] 0002_b: PostgreSQL refuses it'
    assert lines[bot + 3] == '             > CREATE INDEX CONCURRENTLY "i" ON "users" ("c")'
    assert '    warning  [changing-column-type] 0002_b: rewrites (table users: 2.3 GB)' in lines
    assert '    lint     skipped: alembic SQL needs env.py' in text
