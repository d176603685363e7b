# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""homelab_migration_apply's O(backup) and O(record): one service's backup, apply and the migrate_all role's record
of it in one module process (the role's run task used to start three: homelab_pg_backup, the apply and
homelab_migration_audit, each paying Python's and Ansible's start-up).

Order and meaning are those of the three steps run one after the other: the backup (module_utils.backup.entry,
``state: present``, with its pruning) -> the apply (module_utils.apply.run_apply), only when the backup did not
fail -> the role's record (module_utils.run_record, completed and appended as homelab_migration_audit does), only
when the apply did not fail: a failed step leaves the recovery (go back, restore) and the record of its outcome to
the run task, which decides from the fields returned here (``backup``, ``error_code``, ``untouched``, ...).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import traceback

from ansible_collections.homelab.migrations.plugins.module_utils import interrupt, safe_path
from ansible_collections.homelab.migrations.plugins.module_utils.apply import run_apply
from ansible_collections.homelab.migrations.plugins.module_utils.apply_result import ApplyFailure, new_result
from ansible_collections.homelab.migrations.plugins.module_utils.apply_session import check_audit_log, check_duration
from ansible_collections.homelab.migrations.plugins.module_utils.audit import append_record, build_records
from ansible_collections.homelab.migrations.plugins.module_utils.plan import APPLY_OPTIONS
from ansible_collections.homelab.migrations.plugins.module_utils.prologue import require_tools, start
from ansible_collections.homelab.migrations.plugins.module_utils.backup.params import ARGUMENT_SPEC as BACKUP_SPEC
from ansible_collections.homelab.migrations.plugins.module_utils.run_record import (
    migrate_all_outcome, migrate_all_record)
from ansible_collections.homelab.migrations.plugins.module_utils.secrets import exact_strings, mask, module_result
from ansible_collections.homelab.migrations.plugins.module_utils.spec import (
    CONNECTION_OPTIONS, module_argument_spec, validate_service)

# O(backup)'s suboptions: homelab_pg_backup's own options of those names (module_utils.backup.params), dest required
BACKUP_OPTIONS = dict((key, dict(BACKUP_SPEC[key]))
                      for key in ('dest', 'format', 'backup', 'lock_wait_timeout', 'keep_days', 'keep_count'))
BACKUP_OPTIONS['dest']['required'] = True
# O(record)'s suboptions: what the role knows of the service's run before it starts
RECORD_OPTIONS = dict(
    run_id=dict(type='str', required=True),
    target=dict(type='str'),
    reason=dict(type='str', default=''),
)


def backup_params(spec, options, connect_timeout):
    """homelab_pg_backup's arguments for O(backup): ``state: present`` of the service's database."""
    params = {'database_url': spec['database_url'], 'state': 'present', 'service': spec['name'],
              'connect_timeout': connect_timeout}
    params.update((key, value) for key, value in (options or {}).items() if value is not None)
    return params


def take_backup(spec, options, connect_timeout):
    """The backup's result as homelab_pg_backup returns it (``failed`` and ``msg`` when it failed)."""
    from ansible_collections.homelab.migrations.plugins.module_utils.backup import entry
    from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError
    try:
        return entry.run(backup_params(spec, options, connect_timeout))
    except BackupError as exc:
        return dict(exc.result, failed=True, msg=str(exc))


def not_run(spec, params, backup, code, msg):
    """The apply's result when it did not start (its backup failed, or the job was cancelled): nothing touched."""
    result = new_result(spec['name'], spec['tool'], params.get('target') or spec.get('target') or 'head')
    result.update(failed=True, msg=msg, error_code=code, outcome='failed', backup=backup)
    return result


def note(journal, fact):
    """Append ``fact`` (a dict) as one JSON line to ``journal``, the caller's private file (0600, no symlink):
    what this run did so far, for a caller whose module run ends without a result (killed). OSError when the
    file cannot be written."""
    if not journal:
        return
    data = (json.dumps(fact, sort_keys=True, default=str) + '\n').encode('utf-8')
    fd = safe_path.open_nofollow(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600, 'journal')
    try:
        while data:  # a short write (a full disk) is finished or ends in OSError, never left cut silently
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def refusal(params):
    """Why the run cannot start: the apply's own checks of its options, made before the backup so that nothing is
    dumped or pruned for a run that will refuse. (error_code, message), or None."""
    try:
        check_audit_log(params.get('audit_log'))
        for name in ('lock_timeout', 'statement_timeout'):
            check_duration(name, params.get(name))
    except ApplyFailure as exc:
        return exc.code or 'bad_config', str(exc)
    return None


def opened(journal):
    """``journal`` when its ``start`` line could be written, else None (a become user that cannot write the caller's
    temporary directory, say): the run goes on; after a crash the caller then knows only what it knew before."""
    try:
        note(journal, {'step': 'start'})
    except OSError:
        return None
    return journal


def write_record(spec, params, result, record, journal=None):
    """The role's record of a service whose backup and apply succeeded: built as the run task builds it, written
    to O(audit_log) (when given) as homelab_migration_audit writes it. Sets ``records``, or ``record_error``."""
    outcome = migrate_all_outcome({'action': 'run', 'reason': record.get('reason') or ''}, None,
                                  result.get('backup') or {}, result, True)
    role_record = migrate_all_record(outcome, spec['name'], params.get('action') or 'apply', record.get('target'),
                                     record['run_id'])
    try:
        records = build_records([role_record], params.get('confirmation'))
    except ValueError as exc:
        result['record_error'] = 'could not build the audit record: %s' % exc
        return
    try:
        # before the audit log: a caller that finds this line after a kill knows the apply succeeded and looks for
        # the record in the log; without it (the journal cannot be written) the caller writes the record itself
        note(journal, {'step': 'record', 'records': records})
    except OSError:
        return
    try:
        for built in records if params.get('audit_log') else []:
            append_record(params['audit_log'], built)
    except Exception as exc:  # pylint: disable=broad-except  # the run task stops on it, as on a failed audit step
        result['record_error'] = 'could not write the audit record to %s: %s; check that the directory exists or ' \
            'can be created and is writable by the user the play runs as' % (params.get('audit_log'), exc)
        return
    result['records'] = records
    try:
        note(journal, {'step': 'recorded'})
    except OSError:
        pass  # the caller looks for the record in the audit log after a kill


def run_step(spec, dburl, params, check_mode=False, diff=False, backup=None, record=None, journal=None):
    """run_apply with O(backup) before it and O(record) after it (each only when given; neither in check mode).

    Returns run_apply's result, plus ``backup`` (the backup's result) when one was asked for, and ``records`` (the
    role's record as written) or ``record_error`` when a record was. When the backup fails or the job is cancelled
    before the apply starts, the apply does not run: ``failed``, ``untouched``, ``error_code`` V(backup_failed) or
    V(interrupted). ``journal`` (a path, optional): each step's outcome is appended there as it happens (``start``,
    ``backup`` with its result, ``apply`` as it starts, ``record`` with the records written; see :func:`note`).
    """
    if check_mode or not (backup or record):
        return run_apply(spec, dburl, params, check_mode=check_mode, diff=diff)
    refused = refusal(params)
    if refused:
        return not_run(spec, params, None, refused[0], refused[1])
    journal = opened(journal) if journal else None
    taken, started = None, False
    with interrupt.Guard() as guard:  # a signal between the backup's and the apply's own guards cancels too
        try:
            if backup:
                taken = take_backup(spec, backup, params.get('connect_timeout'))
                if taken.get('failed'):
                    _unjournaled(journal, taken, started=False)
                    return not_run(spec, params, taken, taken.get('error_code') or 'backup_failed',
                                   'the backup before the migration failed, nothing was migrated: %s' % taken['msg'])
            # the controller may have died while the backup ran: look now, not at the watcher's next poll
            if guard.reason or guard.controller_gone():
                return not_run(spec, params, taken, interrupt.ERROR_CODE, guard.reason)
            unjournaled = _unjournaled(journal, taken)
            if unjournaled:
                return not_run(spec, params, taken, 'bad_config', unjournaled)
            started = True
            result = run_apply(spec, dburl, params, check_mode=check_mode, diff=diff)
            guard.raised = True  # the apply ended: a later signal must not cut its record short
        except interrupt.Interrupted as exc:
            cancelled = not_run(spec, params, taken, interrupt.ERROR_CODE, str(exc))
            # the apply's own guard was not up yet, or no longer: what it did is not known here (never "untouched")
            cancelled['untouched'] = not started
            return cancelled
    if taken is not None:
        result['backup'] = taken
        result['changed'] = bool(result.get('changed') or taken.get('changed'))  # a new backup, pruned ones
    if record and not result.get('failed') and result.get('error_code') != interrupt.ERROR_CODE:
        write_record(spec, params, result, record, journal)
    return result


def _unjournaled(journal, taken, started=True):
    """Note the backup (when one was taken) and, with ``started``, the apply's start in the journal; the message why
    that failed (the apply must not start: after a kill the caller would take a missing line for a step that never
    ran), or None."""
    try:
        if taken is not None:
            note(journal, {'step': 'backup', 'backup': taken})
        if started:
            note(journal, {'step': 'apply'})
    except OSError as exc:
        return ('cannot write the journal %s (%s); the backup was taken, nothing was migrated' % (journal, exc))
    return None


def argument_spec():
    """homelab_migration_apply's argument spec: the service spec, APPLY_OPTIONS, the connection options, O(backup)
    and O(record)."""
    return module_argument_spec('service', dict(APPLY_OPTIONS, backup=dict(type='dict', options=BACKUP_OPTIONS),
                                                record=dict(type='dict', options=RECORD_OPTIONS),
                                                journal=dict(type='path')))


def module_main(module):
    """homelab_migration_apply's run on its AnsibleModule: checks (prologue), :func:`run_step`, the masked result."""
    service = module.params['service']
    dburl = start(module, lambda: validate_service(service), 'nothing was changed')
    # Ansible masks the whole URL (no_log); the password alone (in a driver message, say) too, in every spelling,
    # but not inside the exact fields (a revision, the backup's path) a weak password may be part of
    secrets_ = [dburl]
    require_tools(module, [service['tool']])

    params = dict((key, module.params[key]) for key in list(APPLY_OPTIONS) + list(CONNECTION_OPTIONS))
    try:
        result = run_step(service, dburl, params, check_mode=module.check_mode, diff=module._diff,
                          backup=module.params['backup'], record=module.params['record'],
                          journal=module.params['journal'])
    except Exception as exc:  # run_apply answers every expected failure itself; this is a last resort
        module.fail_json(**module_result(module, dict(
            msg='the apply failed unexpectedly: %s: %s' % (exc.__class__.__name__, dburl.scrub(str(exc))),
            exception=traceback.format_exc()), secrets_))
    for warning in result.pop('warnings', []) + (result.get('backup') or {}).pop('warnings', []):
        module.warn(mask(warning, secrets_, exact_strings(result)))
    if result.pop('failed', False):
        module.fail_json(**module_result(module, result, secrets_))
    module.exit_json(**module_result(module, result, secrets_))
