"""A stand-in transport for RoleRun unit tests written against separate backup, apply and audit modules.

The run task now starts one apply per service with ``backup`` and ``record`` (module_utils.service_step); this
composes the stand-ins the way that module does: the backup (``homelab_pg_backup``, ``state: present``) -> when it
did not fail, the apply -> when the apply did not fail, the role's record through the audit stand-in. The record is
built by the same module_utils.run_record functions the module uses.
"""

from ansible_collections.homelab.migrations.plugins.module_utils.run_record import (
    migrate_all_outcome, migrate_all_record)
from ansible_collections.homelab.migrations.plugins.module_utils.service_step import backup_params

APPLY, BACKUP, AUDIT = 'homelab_migration_apply', 'homelab_pg_backup', 'homelab_migration_audit'


def one_process(run_module):
    """``run_module(name, args)`` (separate stand-in modules) as the run task's transport."""
    def call(name, args):
        if name != APPLY or not (args.get('backup') or args.get('record')):
            return run_module(name, args)
        args = dict(args)
        backup, record = args.pop('backup', None), args.pop('record', None)
        taken = None
        if backup:
            params = backup_params(args['service'], backup, None)
            params.pop('connect_timeout')
            taken = run_module(BACKUP, params)
            if taken.get('failed'):
                return {'failed': True, 'msg': taken.get('msg'), 'untouched': True, 'error_code': 'backup_failed',
                        'backup': taken, 'applied': [], 'reverted': []}
        result = dict(run_module(APPLY, args))
        if taken is not None:
            result['backup'] = taken
        if record and not result.get('failed'):
            outcome = migrate_all_outcome({'action': 'run', 'reason': record.get('reason') or ''}, None, taken or {},
                                          result, True)
            role_record = migrate_all_record(outcome, args['service']['name'], args.get('action') or 'apply',
                                             record.get('target'), record['run_id'])
            given = dict((k, args[k]) for k in ('audit_log', 'confirmation') if args.get(k))
            written = run_module(AUDIT, dict(given, records=[role_record]))
            if written.get('failed'):
                result['record_error'] = written.get('msg')
            else:
                result['records'] = written.get('records') or []
        return result
    return call
