"""homelab_migration_run's status after the run (plugins/plugin_utils/after.py through RoleRun): each moved
service's entry comes from its last apply; a service whose state is not known (restored, or an apply without an
entry) is read again with the status module, those services only; a run that touched nothing returns the status
it was given. Modules are stand-ins (no server)."""

from ansible_collections.homelab.migrations.plugins.plugin_utils.after import StatusAfter, reread_args
from ansible_collections.homelab.migrations.plugins.plugin_utils.run import RoleRun
from harness.one_process import one_process

NAMES = ['a', 'b']


def entry(current, latest, pending=(), **more):
    out = {'status': 'pending' if pending else 'up_to_date', 'tool': 'drizzle', 'current_revision': current,
           'latest_revision': latest, 'applied': 1, 'pending': len(pending), 'pending_migrations': list(pending),
           'problems': [], 'lock': {'held': False, 'holder': None}, 'findings': []}
    out.update(more)
    return out


def plan(frm, to):
    return {'changed': True, 'from_revision': frm, 'to_revision': to,
            'plan': {'direction': 'up', 'from_revision': frm, 'to_revision': to}}


# a's health state before the run: kept after it (no health record of the run replaces it)
PASSED = {'state': 'passed'}
BEFORE = {'success': True, 'overall_status': 'pending', 'total_pending': 2, 'changed': False,
          'services': {'a': entry('1', '2', ['2'], plan=plan('1', '2'), health={'state': 'passed'}),
                       'b': entry('1', '2', ['2'], plan=plan('1', '2'))}}


def args(**more):
    out = {'services': [{'name': 'a', 'database_url': 'postgresql://u:secret@h/a'},
                        {'name': 'b', 'database_url': 'postgresql://u:secret@h/b', 'depends_on': ['a']}],
           'selected': list(NAMES), 'plans': dict((n, plan('1', '2')) for n in NAMES), 'status': BEFORE,
           'run_id': 'r1', 'confirmation': 'migrate_all_confirm', 'action': 'apply', 'rollback_target': None,
           'rollback_scope': 'service', 'audit_log': '',
           'backup': {'dest': '/b', 'format': 'custom', 'lock_wait_timeout': 30, 'keep_days': 0, 'keep_count': 0},
           'apply': {'lock_wait': 60}, 'recovery': {'retries': 0, 'delay': 0, 'restore_clean': 'database'},
           'health': {'timeout': 1, 'retries': 0, 'delay': 0, 'validate_certs': True}}
    out.update(more)
    return out


class Modules:
    """Stand-in modules: ``applies`` {service: [result of each apply call, in order]}."""

    def __init__(self, applies, backup_fails=(), status=None):
        self.applies = dict((k, list(v)) for k, v in applies.items())
        self.backup_fails = backup_fails
        self.status = status
        self.calls = []

    def __call__(self, name, module_args):
        self.calls.append((name, module_args))
        if name == 'homelab_pg_backup':
            service = module_args['service']
            if module_args['state'] == 'present' and service in self.backup_fails:
                return {'failed': True, 'msg': 'pg_dump failed', 'untouched': True}
            return {'path': '/b/%s.dump' % service, 'changed': True}
        if name == 'homelab_migration_apply':
            return self.applies[module_args['service']['name']].pop(0)
        if name == 'homelab_migration_status':
            return self.status(module_args)
        return {'records': module_args.get('records') or []}

    def status_reads(self):
        return [a for n, a in self.calls if n == 'homelab_migration_status']


def run(modules, **more):
    return RoleRun(args(**more), one_process(modules), lambda line: None, sleep=lambda s: None).run()


def test_moved_services_take_their_apply_entry_and_nothing_is_read_again():
    modules = Modules({'a': [{'changed': True, 'to_revision': '2', 'status': entry('2', '2')}],
                       'b': [{'changed': True, 'to_revision': '2', 'status': entry('2', '2')}]})
    done = run(modules)
    assert done.error is None and modules.status_reads() == []
    assert done.status == {'success': True, 'overall_status': 'up_to_date', 'total_pending': 0,
                           'services': {'a': entry('2', '2', health=PASSED), 'b': entry('2', '2')}}


def test_an_apply_without_an_entry_is_read_again_alone():
    fresh = entry('2', '2', lock={'held': False, 'holder': None})
    modules = Modules({'a': [{'changed': True, 'to_revision': '2', 'status': entry('2', '2')}],
                       'b': [{'changed': True, 'to_revision': '2'}]},
                      status=lambda a: {'changed': False, 'services': {'b': fresh}})
    done = run(modules)
    reads = modules.status_reads()
    assert [[s['name'] for s in r['services']] for r in reads] == [['b']]
    assert reads[0]['services'][0]['depends_on'] == []  # its dependency a is not read: not passed
    assert done.status['services'] == {'a': entry('2', '2', health=PASSED), 'b': fresh}
    assert [t['module'] for t in done.timings][-1] == 'homelab_migration_status'


def test_a_restored_service_never_shows_its_stale_entry():
    failed = {'failed': True, 'msg': 'migration 2 failed', 'error_code': 'apply_failed', 'untouched': False,
              'from_revision': '1', 'committed': ['2']}
    back = {'failed': True, 'msg': 'no down file', 'untouched': False}
    modules = Modules({'a': [{'changed': True, 'to_revision': '2', 'status': entry('2', '2')}],
                       'b': [failed, back]},
                      status=lambda a: {'services': {'b': entry('1', '2', ['2'])}})
    done = run(modules)
    assert done.results['b']['outcome'] == 'failed'
    assert any(n == 'homelab_pg_backup' and a['state'] == 'restored' for n, a in modules.calls)
    assert [[s['name'] for s in r['services']] for r in modules.status_reads()] == [['b']]
    assert done.status['services']['b'] == entry('1', '2', ['2'])
    assert done.status['overall_status'] == 'pending' and done.status['total_pending'] == 1


def test_a_service_taken_back_takes_the_entry_of_the_apply_that_took_it_back():
    failed = {'failed': True, 'msg': 'migration 2 failed', 'error_code': 'apply_failed', 'untouched': False,
              'from_revision': '1', 'committed': ['2'], 'fingerprint': {'before': 'f1'}}
    back = {'changed': True, 'to_revision': '1', 'reverted': ['2'], 'status': entry('1', '2', ['2']),
            'fingerprint': {'after': 'f1'}}
    modules = Modules({'a': [failed, back], 'b': []}, status=lambda a: {'services': {'b': entry('1', '2', ['2'])}})
    done = run(modules)
    assert done.results['b']['outcome'] == 'skipped'
    assert done.status['services']['a'] == entry('1', '2', ['2'], health=PASSED)
    # b was skipped (its dependency failed): its read before the run was planned with migrations pending (findings
    # of the plan, with the run's options), so it is read again, alone, as a plain status read
    assert [[s['name'] for s in r['services']] for r in modules.status_reads()] == [['b']]
    assert done.status['services']['b'] == entry('1', '2', ['2'])


def test_a_run_that_touched_nothing_returns_the_status_it_was_given():
    modules = Modules({'a': [], 'b': []}, backup_fails=('a',))
    done = run(modules)
    assert done.results['a']['outcome'] == 'failed' and modules.status_reads() == []
    assert done.status is BEFORE


def test_a_failed_read_again_is_an_error_entry_not_the_stale_one():
    moved = {'changed': True, 'to_revision': '2', 'status': entry('2', '2')}
    modules = Modules({'a': [{'changed': True, 'to_revision': '2'}], 'b': [moved]},
                      status=lambda a: {'failed': True, 'msg': 'psycopg2 is missing'})
    done = run(modules)
    a = done.status['services']['a']
    assert a['status'] == 'error' and a['current_revision'] is None and a['pending_migrations'] == []
    assert 'psycopg2 is missing' in a['problems'][0]['message'] and 'plan' not in a
    assert done.status['overall_status'] == 'error' and done.status['success'] is False


def test_untouched_applies_leave_the_state_as_it_was():
    after = StatusAfter()
    after.note('a', 'homelab_migration_apply', {}, {'failed': True, 'untouched': True, 'conflict': True})
    after.note('a', 'homelab_pg_backup', {'state': 'present'}, {'path': '/x'})
    assert after.known == {} and after.unknown() == []
    after.note('a', 'homelab_pg_backup', {'state': 'restored'}, {'failed': True})
    assert after.unknown() == ['a']
    assert reread_args([{'name': 'a', 'depends_on': ['z']}, {'name': 'z'}], ['a']) == {
        'services': [{'name': 'a', 'depends_on': []}]}


def test_the_health_state_after_the_run_is_the_one_its_last_health_record_left():
    """Red team (r17): a service checked by the run (here: nothing pending, its last check had not passed) is
    published with the state the run's health record left, not the one read before the run."""
    unverified = {'state': 'unverified', 'since': 't0', 'revision': '2'}
    before = dict(BEFORE, services={'a': entry('2', '2', health=unverified), 'b': entry('2', '2')})
    specs = [{'name': 'a', 'database_url': 'postgresql://u:secret@h/a', 'health_check': 'http://h/health'},
             {'name': 'b', 'database_url': 'postgresql://u:secret@h/b', 'depends_on': ['a']}]

    def modules(name, module_args):
        if name == 'homelab_migration_health':
            return {'status': 200}
        return {'records': [dict(r, time='t1') for r in module_args.get('records') or []]}
    plans = {'a': {'changed': False, 'from_revision': '2', 'to_revision': '2'},
             'b': {'changed': False, 'from_revision': '2', 'to_revision': '2'}}
    done = RoleRun(args(status=before, services=specs, plans=plans, audit_log='/log/audit.log'), one_process(modules),
                   lambda line: None, sleep=lambda s: None).run()
    assert done.error is None, done.error
    assert done.status['services']['a']['health'] == {'state': 'passed', 'since': 't1', 'revision': '2'}
    assert 'health' not in done.status['services']['b']
