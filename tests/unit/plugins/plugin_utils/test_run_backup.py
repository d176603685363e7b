"""plugin_utils/run.py: the role's run passes its keep values to the backup step (homelab_pg_backup state=present
prunes the older backups itself: tests/integration/plugins/module_utils/backup/test_entry_prune.py) and runs no
separate prune module."""

import pytest

from ansible_collections.homelab.migrations.plugins.plugin_utils.run import BACKUP, RoleRun
from harness.one_process import one_process


def _role_run(keep_days, keep_count, backup_result):
    calls = []

    def run_module(name, args):
        calls.append((name, dict(args)))
        if name == BACKUP:
            return dict(backup_result)
        return {'changed': True, 'applied': ['001'], 'to_revision': '001', 'from_revision': None}

    args = {'services': [{'name': 'dashboard', 'database_url': 'postgresql://u@h/d'}], 'audit_log': None,
            'run_id': 'r1', 'confirmation': None, 'action': 'upgrade', 'status': {},
            'backup': {'dest': '/b', 'format': 'custom', 'lock_wait_timeout': 30, 'keep_days': keep_days,
                       'keep_count': keep_count},
            'apply': {'lock_wait': 30}}
    run = RoleRun(args, one_process(run_module), lambda line: None)
    run._service = 'dashboard'
    run._work('dashboard', args['services'][0], None, 'head', None, {'action': 'run'},
              {'backup': {}, 'apply': {}, 'attempted': False})
    return calls


@pytest.mark.parametrize('keep_days, keep_count, passed', [
    (0, 5, {'keep_count': 5}), (14, 3, {'keep_days': 14, 'keep_count': 3}), (0, 0, {})])
def test_the_role_passes_its_keep_values_to_the_backup_step_and_runs_no_prune(keep_days, keep_count, passed):
    calls = _role_run(keep_days, keep_count, {'changed': True, 'path': '/b/dashboard_20260101_000000.dump',
                                              'pruned': []})
    backups = [args for name, args in calls if name == BACKUP]
    assert len(backups) == 1 and backups[0]['state'] == 'present'
    assert dict((k, backups[0][k]) for k in ('keep_days', 'keep_count') if k in backups[0]) == passed
    assert all(args.get('state') != 'pruned' for _name, args in calls)
