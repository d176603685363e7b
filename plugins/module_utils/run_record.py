# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migrate_all role's outcome of one service and its audit record (``source: role``).

Pure functions of the steps' results (dicts as the modules return them, ``{}`` for a step that did not run). Two
callers build the same record from the same inputs: the run action (plugin_utils.run, after any step or recovery)
and the apply module when the role hands it O(record) (module_utils.service_step: the record of a service whose
backup and apply both succeeded, written in the same module process).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def _when_skipped(value):
    if not isinstance(value, dict) or not value.get('skipped'):
        return False
    return 'skip_reason' in value or 'false_condition' in value


def _registered(value):
    """A registered result, or {} for a task that was skipped by its condition or never ran."""
    if not isinstance(value, dict) or _when_skipped(value):
        return {}
    return value


def migrate_all_outcome(decision, before=None, backup=None, apply=None, attempted=False):
    """The result of one service whose block ended without an error."""
    decision = decision or {}
    backup, apply = _registered(backup), _registered(apply)
    action = decision.get('action')
    outcome = {'run': 'success', 'fail': 'failed', 'skip': 'skipped'}.get(action, action or 'unknown')
    if action == 'run' and not (apply.get('applied') or apply.get('reverted')):
        outcome = 'unchanged'
    return {
        'outcome': outcome,
        'attempted': bool(attempted),
        'from': apply.get('from_revision', before) if apply else before,
        'to': apply.get('to_revision', before) if apply else before,
        'applied': list(apply.get('applied') or []),
        'reverted': list(apply.get('reverted') or []),
        'backup': backup.get('path'),
        'backup_skipped': backup.get('reason') if backup.get('skipped') else None,
        'backup_size_bytes': backup.get('size_bytes') if backup.get('path') else None,
        'backup_seconds': backup.get('duration_seconds') if backup.get('path') else None,
        'reason': decision.get('reason') or '' if action != 'fail' else '',
        'error': decision.get('reason') if action == 'fail' else None,
        'recovery': None,
    }


def migrate_all_record(result, name, action='apply', target=None, run_id=None, **extra):
    """The role's audit record of one service (the module adds time, host, user and confirmation)."""
    result = result or {'outcome': 'failed', 'error': 'the role stopped before recording an outcome'}
    record = {
        'service': name,
        'action': action,
        'from': result.get('from'),
        'to': result.get('to'),
        'outcome': result.get('outcome') or 'failed',
        'error': result.get('error'),
        'reason': result.get('reason') or None,
        'recovery': result.get('recovery'),
        'applied': list(result.get('applied') or []),
        'reverted': list(result.get('reverted') or []),
        'backup': result.get('backup'),
        'target': target,
        'run_id': run_id,
        'source': 'role',
    }
    if result.get('backup_skipped'):
        record['backup_skipped'] = result['backup_skipped']
    for key in ('committed', 'untouched', 'restored', 'error_code', 'failed_migration'):
        if key in result:
            record[key] = result[key]
    record.update(extra)
    return record
