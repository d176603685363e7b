# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migrate_all role's decisions about one service: run it or not, where it goes, and after a failure
whether and how it is taken back (to its pre-run revision, else from the run's backup).

Every decision reads the modules' structured result fields (untouched, retryable, conflict, fingerprint,
unrecorded_changes, failed_migration), never the wording of a message. Results of steps that did not run
are ``{}`` (or a result skipped by its condition, which counts as ``{}``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.homelab.migrations.plugins.module_utils.run_record import _registered, _when_skipped
from ansible_collections.homelab.migrations.plugins.plugin_utils.selection import cell, result_of


def migrate_all_decide(name, services, status, plan, results, scope='service', selected=None):
    """What to do with one service: {'action': run|unchanged|skip|fail, 'reason': str}.

    services  the spec list; status the status module result; plan the apply module's check-mode
    result for this service (None when it was not planned); results the outcomes so far
    ({name: {'outcome': ...}}); scope the rollback scope.
    """
    by_name = dict((spec.get('name'), spec) for spec in services or [])
    spec = by_name.get(name) or {}
    if plan is None:
        return {'action': 'fail', 'reason': 'no plan was made for this service'}
    if plan.get('failed'):
        return {'action': 'fail', 'reason': 'cannot plan: %s' % plan.get('msg', 'unknown error')}
    if not plan.get('changed'):
        at = plan.get('to_revision') or plan.get('from_revision')
        return {'action': 'unchanged', 'reason': 'already at %s' % cell(at)}
    failed = [n for n, r in (results or {}).items() if r.get('outcome') == 'failed']
    if scope == 'run' and failed:
        return {'action': 'skip', 'reason': 'not attempted: %s failed and migrate_all_rollback_scope is run'
                % ', '.join(sorted(failed))}
    notes = []
    for dep in spec.get('depends_on') or []:
        outcome = result_of(results, dep).get('outcome')
        if outcome in ('failed', 'skipped'):
            return {'action': 'skip', 'reason': 'not attempted: it depends on %s, which %s' % (
                dep, 'failed' if outcome == 'failed' else 'was skipped')}
        if selected is not None and dep not in selected:
            dep_status = ((status or {}).get('services') or {}).get(dep) or {}
            if dep_status.get('status') == 'error':
                return {'action': 'skip', 'reason': 'not attempted: it depends on %s, whose status is error (%s)'
                        % (dep, '; '.join(p.get('message', '') for p in dep_status.get('problems') or []))}
            if dep_status.get('pending'):
                notes.append('note: it depends on %s, which has %s pending migration(s) and is not in this run'
                             % (dep, dep_status.get('pending')))
    info = ((status or {}).get('services') or {}).get(name) or {}
    codes = [p.get('code') for p in info.get('problems') or []]
    if info.get('status') == 'error' and [c for c in codes if c != 'locked']:
        return {'action': 'fail', 'reason': 'status error: %s' % '; '.join(
            '[%s] %s' % (p.get('code'), p.get('message')) for p in info.get('problems') or [])}
    return {'action': 'run', 'reason': '; '.join(notes)}


def migrate_all_failure(result, pending=None, task=None):
    """One message for a failed step that names the failed migration (the result's ``failed_migration``).

    Only the structured field names it: the adapters set it from what they ran (drizzle: the migration
    whose statement failed; alembic: the revision it logged last). Nothing is read out of the message's
    wording and nothing is guessed from ``pending``. ``pending`` is kept for callers of the old signature.
    """
    result = result or {}
    msg = result.get('msg') or result.get('message') or 'unknown error'
    if isinstance(msg, (list, tuple)):
        msg = '; '.join(str(m) for m in msg)
    msg = str(msg).strip()
    migration = result.get('failed_migration')
    if migration and not re.search(r'\bmigration %s\b' % re.escape(str(migration)), msg):
        msg = 'migration %s failed: %s' % (migration, msg)
    if task:
        msg = '%s (task: %s)' % (msg, task)
    return msg


def _ran(value):
    return isinstance(value, dict) and bool(value) and not _when_skipped(value)


def migrate_all_untouched(apply):
    """True when the apply failed and its result proves the database is as before it (``untouched``).

    homelab_migration_apply sets ``untouched`` from facts: it failed before running anything (connect, lock,
    read, plan, expect_from), or it re-read the position on a new connection and the schema fingerprint after
    the failure and both are as before. Going back, or restoring the backup, would then only undo whatever
    another run did meanwhile.
    """
    apply = _registered(apply)
    return bool(apply.get('failed')) and apply.get('untouched') is True


def migrate_all_undo_needed(apply, attempted=False):
    """Whether a failed service must be taken back: the apply ran and did not prove the database untouched."""
    if not attempted:
        return False
    return not migrate_all_untouched(apply)


def migrate_all_back_target(apply, before=None):
    """Where going back goes: the revision the apply read UNDER its lock (its ``from_revision``).

    Never the status read from before the lock: another run may have moved the service meanwhile, and going
    back to the older read would revert that run's work. ``before`` only when the apply did not run.
    """
    apply = _registered(apply)
    # a failed apply that proved it changed nothing may not have read anything (lock, connect): nothing to go
    # back from, and its from_revision is no reading
    value = apply.get('from_revision') if 'from_revision' in apply and not migrate_all_untouched(apply) else before
    return value if value not in (None, '') else 'base'


def migrate_all_back_pin(apply):
    """``expect_from`` of the go-back: where the apply left the service ('' when that is not known: omit)."""
    apply = _registered(apply)
    if not apply or 'to_revision' not in apply:
        return ''
    if apply.get('failed') and apply.get('to_revision') is None and apply.get('retryable'):
        return ''  # the state after the failure could not be re-read
    return apply.get('to_revision') or 'base'


def migrate_all_back_verified(back, apply):
    """True when going back provably undid the run: it succeeded, the schema fingerprint it re-read equals the
    one the apply took before changing anything, and the apply left nothing that no migration records."""
    back, apply = _registered(back), _registered(apply)
    if not back or back.get('failed') or apply.get('unrecorded_changes'):
        return False
    before = (apply.get('fingerprint') or {}).get('before')
    after = (back.get('fingerprint') or {}).get('after')
    return bool(before) and before == after


def migrate_all_pinned(plan, target):
    """The apply's target and expect_from, fixed when the plan was made (and confirmed).

    ``-N`` (and ``head``/``heads``) become the absolute revision the plan reaches, and ``expect_from`` the
    revision the plan starts from: a service that moved after the confirmation is refused (conflict), and
    migrations that appeared after it are not run unseen. Returns {'target': str, 'expect_from': str|None}.
    """
    if not isinstance(plan, dict) or not plan.get('changed') or plan.get('failed'):
        return {'target': target, 'expect_from': None}
    inner = plan.get('plan') or {}
    to = inner.get('to_revision', plan.get('to_revision'))
    direction = inner.get('direction')
    pinned = target
    if to not in (None, '') and ',' not in str(to):
        pinned = str(to)
    elif to in (None, '') and direction == 'down':
        pinned = 'base'
    start = inner.get('from_revision', plan.get('from_revision'))
    return {'target': pinned, 'expect_from': start if start not in (None, '') else 'base'}


def migrate_all_recovery(error, before=None, attempted=False, backup=None, apply=None, back=None, restore=None,
                         undo_needed=True):
    """The result of a service whose block failed: how it was recovered (back to ``before``, or the backup).

    Decided on the results' fields only (untouched, conflict, fingerprint, unrecorded_changes, failed), never
    on their messages. ``before`` is where going back went (the failed apply's own ``from_revision``).
    """
    backup = _registered(backup)
    apply = _registered(apply)
    back = _registered(back)
    restore = _registered(restore)
    path = backup.get('path')
    verified = migrate_all_back_verified(back, apply)
    back_failed = bool(back.get('failed'))
    recovery, to, restored = _recovered(before, attempted, undo_needed, path, apply, back, restore, verified)
    committed = list(apply.get('committed') or apply.get('applied') or [])
    return {
        'outcome': 'failed',
        'attempted': bool(attempted),
        'from': before,
        'to': to,
        'applied': list(apply.get('applied') or []),
        'reverted': list(back.get('reverted') or []) if back and not back_failed else [],
        'backup': path,
        'backup_size_bytes': backup.get('size_bytes') if path else None,
        'backup_seconds': backup.get('duration_seconds') if path else None,
        'reason': '',
        'error': error,
        'recovery': recovery,
        # what really stayed: nothing when verified or restored, else what the failed apply left
        'committed': [] if (not undo_needed or verified or restored) else committed,
        'untouched': bool(not attempted or not undo_needed),
        'restored': restored,
        'error_code': apply.get('error_code') if apply.get('failed') else None,
        'failed_migration': apply.get('failed_migration'),
    }


def _recovered(before, attempted, undo_needed, path, apply, back, restore, verified):
    """(recovery text, where the service is (None: unknown), restored) of a failed service, from the fields."""
    before_text = before if before not in (None, '') else 'base'
    to = before
    restored = False
    if not attempted:
        recovery = 'nothing was changed'
        if apply.get('error_code') == 'conflict':
            # another run moved it after the plan: it is where the apply found it under its lock
            to = apply.get('from_revision')
    elif not undo_needed:
        # the apply re-read position and schema fingerprint after the failure: both as before
        recovery = ('rolled back to %s (nothing to revert: verified unchanged, position and schema as before the '
                    'run)' % before_text)
    elif back and not back.get('failed') and verified:
        reverted = list(back.get('reverted') or [])
        recovery = 'rolled back to %s (%s; schema verified as before the run)' % (
            before_text, 'reverted ' + ', '.join(reverted) if reverted else 'nothing to revert')
    elif restore and not restore.get('failed'):
        restored = True
        recovery = 'restored the backup %s: %s' % (path, _why_restore(before_text, apply, back))
    elif back and back.get('conflict'):
        to = None
        recovery = ('NOT RECOVERED: another run is or was at work on it, so it was neither taken back to %s nor '
                    'restored from %s (%s); check what that run did, then go back or restore by hand'
                    % (before_text, path or 'a backup', back.get('msg', 'unknown error')))
    else:
        to = None
        why = 'restoring %s failed (%s)' % (path, restore.get('msg', 'unknown error')) if restore \
            else ('there is no backup' if not path else 'the backup %s was not restored' % path)
        recovery = 'NOT RECOVERED: %s and %s; restore by hand' % (_why_restore(before_text, apply, back), why)
    return recovery, to, restored


def _why_restore(before_text, apply, back):
    """Why going back by migrations was not enough (from the results' fields)."""
    if back.get('failed'):
        return 'going back to %s failed (%s)' % (before_text, back.get('msg', 'unknown error'))
    if apply.get('unrecorded_changes'):
        return ('the failed apply left changes that no migration records (%s), which going back by migrations '
                'cannot undo' % ('; '.join(apply.get('schema_changes') or []) or 'a migration ended its transaction '
                                 'itself or committed outside it'))
    if not back:
        return 'going back to %s did not run' % before_text
    return ('after going back to %s the schema still differed from before the run (or could not be compared)'
            % before_text)


def migrate_all_run_rollback(previous, done, undo=None, restore=None, because=''):
    """The result of a service rolled back because another one failed (migrate_all_rollback_scope=run)."""
    result = dict(previous or {})
    done = done or {}
    before = done.get('before')
    before_text = before if before not in (None, '') else 'base'
    undo = _registered(undo)
    result['reason'] = because
    verified = migrate_all_back_verified(undo, done.get('apply') or {})
    if _ran(restore) and not restore.get('failed'):
        why = ('going back to %s failed (%s)' % (before_text, undo.get('msg', 'unknown error')) if undo.get('failed')
               else 'going back to %s left the schema different from before the run' % before_text)
        result.update(outcome='restored', to=before, restored=True,
                      recovery='%s; restored the backup %s' % (why, done.get('backup')))
    elif undo and not undo.get('failed'):
        reverted = list(undo.get('reverted') or [])
        result.update(outcome='rolled_back', to=undo.get('to_revision', before), reverted=reverted,
                      recovery='rolled back to %s (reverted %s%s)' % (
                          before_text, ', '.join(reverted) or 'nothing',
                          '; schema verified as before the run' if verified else
                          '; the schema was NOT verified as before the run and there is no backup to restore'))
    elif undo.get('conflict') and not _ran(restore):
        why = undo.get('msg', 'unknown error')
        error = ('run-scope rollback: another run is or was at work on it, so it was neither taken back to %s nor '
                 'restored from %s (%s)' % (before_text, done.get('backup') or 'a backup', why))
        result.update(outcome='failed', to=None, error=error,
                      recovery='NOT RECOVERED: check what the other run did, then go back or restore by hand')
    else:
        why = ('restoring %s failed (%s)' % (done.get('backup'), (restore or {}).get('msg', 'unknown error'))
               if done.get('backup') else 'there is no backup')
        result.update(outcome='failed', to=None,
                      error='run-scope rollback: going back to %s failed (%s) and %s'
                      % (before_text, undo.get('msg', 'unknown error'), why),
                      recovery='NOT RECOVERED: restore by hand')
    return result


def migrate_all_journal_result(crashed, facts):
    """The apply's result after its module run ended without one (``crashed``: killed, say), rebuilt from the facts
    its journal holds (module_utils.service_step: ``start``, ``backup``, ``apply``, ``record`` lines; None when the
    journal could not be read). Only what a line proves is used; without a ``start`` line ``crashed`` is returned:

    - no ``apply`` line: the apply never started. Without a good backup the backup step failed (``backup`` is the
      crash, failed); else the apply failed ``untouched`` with that backup.
    - an ``apply`` line: the backup (when one was taken) is known, so a restore can use it; with a ``record`` line
      the apply succeeded and its record was built: the result is rebuilt from that record, with
      ``record_unconfirmed`` true when no ``recorded`` line says it reached the audit log.
    """
    steps = dict((f.get('step'), f) for f in facts or [] if isinstance(f, dict))
    if 'start' not in steps:
        return crashed
    result = dict(crashed)
    backup = (steps.get('backup') or {}).get('backup')
    good = isinstance(backup, dict) and not backup.get('failed') and bool(backup)
    if 'apply' not in steps:
        if good:
            result.update(backup=backup, untouched=True, error_code='apply_failed')
        else:
            result['backup'] = dict(crashed, failed=True)
        return result
    if good:
        result['backup'] = backup
    records = (steps.get('record') or {}).get('records')
    if not records or not isinstance(records[0], dict):
        return result
    record = records[0]
    # ``record`` is noted before the audit log is written, ``recorded`` after: without the second the caller looks
    return {'record_unconfirmed': 'recorded' not in steps,
            'changed': True, 'from_revision': record.get('from'), 'to_revision': record.get('to'),
            'applied': list(record.get('applied') or []), 'reverted': list(record.get('reverted') or []),
            'untouched': False, 'backup': backup if good else {}, 'records': records,
            'warnings': ['the apply module ended without its result after it had migrated the service and written '
                         'its record (%s)' % crashed.get('msg', 'no message')]}
