# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side helpers of the migrate_all role.

They keep the role's decisions in plain Python (testable without a play) and never return a
database URL: everything they hand back is names, revisions, counts and messages.

    services | homelab.migrations.migrate_all_order                  names in depends_on order
    order | homelab.migrations.migrate_all_selected(run, skip)       names the --tags/--skip-tags select
    status | homelab.migrations.migrate_all_status_table(order, sel) readable status table (lines)
    status | homelab.migrations.migrate_all_plans(selected)          the status task's plans, in order
    'auto' | homelab.migrations.migrate_all_interactive(vars)        a person can answer (no AWX/runner/CI, a TTY)
    vars | homelab.migrations.migrate_all_automation                 which machine runs the play, and why
    name | homelab.migrations.migrate_all_decide(...)                run / skip / fail / unchanged, and why
    result | homelab.migrations.migrate_all_failure(pending, task)   one message naming the failed migration
    results | homelab.migrations.migrate_all_summary(order)          one readable line per service
    failed | homelab.migrations.migrate_all_refusal(...)             the audit record of a refused run
    text | homelab.migrations.migrate_all_mask(secrets)              every password masked (module_utils.secrets)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.errors import AnsibleFilterError

from ansible_collections.homelab.migrations.plugins.module_utils import secrets
from ansible_collections.homelab.migrations.plugins.module_utils.automation import (
    automation_context,
    controller_is_interactive,
)
from ansible_collections.homelab.migrations.plugins.module_utils.spec import (
    SpecError,
    dependency_order,
    service_defaults,
    validate_services,
)

NONE = '(none)'


def _services(services):
    if not isinstance(services, (list, tuple)) or not services:
        raise AnsibleFilterError('migrate_all_services must be a non-empty list of service specs '
                                 '(name, tool, path, database_url, ...); see the role\'s argument_specs')
    specs = []
    for index, spec in enumerate(services):
        if not isinstance(spec, dict):
            raise AnsibleFilterError('migrate_all_services[%d] must be a dict (a service spec), got %s'
                                     % (index, type(spec).__name__))
        try:
            specs.append(service_defaults(spec))
        except SpecError as exc:
            raise AnsibleFilterError(str(exc))
    return specs


def migrate_all_order(services):
    """Service names ordered by depends_on (list order breaks ties). Validates every spec first."""
    specs = _services(services)
    try:
        validate_services(specs)
        return [spec['name'] for spec in dependency_order(specs)]
    except SpecError as exc:
        raise AnsibleFilterError('migrate_all_services: %s' % exc)


def migrate_all_selected(order, run_tags=None, skip_tags=None):
    """The names a run works on: all of them, or those named by --tags, minus --skip-tags."""
    run_tags = set(run_tags or ['all'])
    skip_tags = set(skip_tags or [])
    if 'all' in run_tags:
        chosen = list(order)
    else:
        chosen = [name for name in order if name in run_tags]
    return [name for name in chosen if name not in skip_tags]


def _cell(value):
    if value is None or value == '':
        return NONE
    return str(value)


def migrate_all_status_table(status, order, selected=None):
    """The status module's result as aligned lines, one row per service plus its pending list."""
    services = (status or {}).get('services') or {}
    selected = list(order) if selected is None else list(selected)
    header = ('SERVICE', 'TOOL', 'STATUS', 'CURRENT', 'LATEST', 'APPLIED', 'PENDING')
    rows = []
    for name in order:
        info = services.get(name) or {}
        label = name if name in selected else name + ' (not selected)'
        rows.append((label, _cell(info.get('tool')), _cell(info.get('status', 'error')),
                     _cell(info.get('current_revision')), _cell(info.get('latest_revision')),
                     _cell(info.get('applied')), _cell(info.get('pending'))))
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]

    def fmt(row):
        return '  '.join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()

    lines = [fmt(header)]
    for name, row in zip(order, rows):
        lines.append(fmt(row))
        info = services.get(name) or {}
        for mig in info.get('pending_migrations') or []:
            lines.append('    pending  %s' % mig)
        for prob in info.get('problems') or []:
            kind = 'warning' if prob.get('severity') == 'warning' else 'problem'  # a warning is no error
            lines.append('    %-8s [%s] %s' % (kind, prob.get('code'), prob.get('message')))
        for item in info.get('findings') or []:
            text = '%s: %s' % (item.get('migration'), item.get('message'))
            lines.append('    %-8s [%s] %s' % (item.get('severity') or 'info', item.get('code'), text))
            if item.get('statement'):
                lines.append('             > %s' % ' '.join(str(item['statement']).split()))
        lint = info.get('lint') or {}
        if info.get('pending') and lint.get('linter') and not lint.get('ran') and lint.get('reason'):
            lines.append('    lint     skipped: %s' % lint['reason'])
        health = info.get('health') or {}
        if health.get('state') == 'unverified':
            lines.append('    health   unverified since %s (at %s): its last health check did not pass or was cut '
                         'short; a run checks it again even with nothing pending'
                         % (health.get('since'), _cell(health.get('revision'))))
        lock = info.get('lock') or {}
        if lock.get('held'):
            holder = lock.get('holder') or {}
            lines.append('    locked   by pid %s (%s) since %s'
                         % (holder.get('pid'), holder.get('application_name'), holder.get('since')))
    lines.append('overall: %s, %s pending migration(s)'
                 % ((status or {}).get('overall_status', 'error'), (status or {}).get('total_pending', 0)))
    return lines


def migrate_all_with_health(status, health):
    """The status module's result with each service's persisted health state (``health``: {state, since,
    revision}, from homelab_migration_audit's ``read_health``) in its entry; services without one get none."""
    status = dict(status or {})
    services = dict(status.get('services') or {})
    for name, state in (health or {}).items():
        if name in services and isinstance(state, dict):
            services[name] = dict(services[name], health=state)
    status['services'] = services
    return status


def migrate_all_interactive(mode=True, variables=None):
    """``mode`` false never prompts; true/'auto' prompts only where a person can answer.

    Nobody can answer under AWX/AAP, ansible-runner, Semaphore or CI (``variables``: the play's variables
    that say so, e.g. ``{'awx_job_id': ..., 'semaphore_vars': ...}``; the controller's environment is read
    too), nor when ansible-playbook's stdin/stdout are not a terminal.
    """
    if isinstance(mode, str):
        mode = mode.strip().lower() not in ('false', 'no', 'off', '0', 'never', '')
    if not mode:
        return False
    if automation_context(variables)['runner']:
        return False
    return controller_is_interactive()


def migrate_all_automation(variables=None):
    """``{'runner': awx|ansible-runner|semaphore|ci|None, 'reason': ...}`` (module_utils.automation)."""
    return automation_context(variables)


def _result(results, name):
    return (results or {}).get(name) or {}


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
        return {'action': 'unchanged', 'reason': 'already at %s' % _cell(at)}
    failed = [n for n, r in (results or {}).items() if r.get('outcome') == 'failed']
    if scope == 'run' and failed:
        return {'action': 'skip', 'reason': 'not attempted: %s failed and migrate_all_rollback_scope is run'
                % ', '.join(sorted(failed))}
    notes = []
    for dep in spec.get('depends_on') or []:
        outcome = _result(results, dep).get('outcome')
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


def _steps(plan, key):
    steps = plan.get(key)
    if isinstance(steps, list) and steps:
        return [str(s) for s in steps]
    inner = plan.get('plan') or {}
    direction = inner.get('direction')
    if (key == 'applied' and direction == 'up') or (key == 'reverted' and direction == 'down'):
        return [str(s) for s in inner.get('steps') or []]
    return []


def migrate_all_plan_lines(plans, names):
    """What a run would do, one line per service, from the apply module's check-mode results."""
    lines = []
    for name, plan in zip(names or [], plans or []):
        plan = plan or {}
        if plan.get('failed'):
            lines.append('%s: cannot be planned: %s' % (name, plan.get('msg', 'unknown error')))
            continue
        if plan.get('skipped'):
            continue
        before, after = _cell(plan.get('from_revision')), _cell(plan.get('to_revision'))
        if not plan.get('changed'):
            lines.append('%s: nothing to do (at %s)' % (name, before))
            continue
        applied, reverted = _steps(plan, 'applied'), _steps(plan, 'reverted')
        parts = []
        if reverted:
            parts.append('revert %d: %s' % (len(reverted), ', '.join(reverted)))
        if applied:
            parts.append('apply %d: %s' % (len(applied), ', '.join(applied)))
        lines.append('%s: %s -> %s, %s' % (name, before, after, '; '.join(parts) or 'changes pending'))
    return lines


def migrate_all_plans(status, names):
    """The plans of ``names`` from the status module's result (its ``plan`` option), in that order.

    Each is what homelab_migration_apply in check mode returns; a service without one (the status
    task did not plan it) gets a failed plan that says so, so nothing runs on a guess.
    """
    services = (status or {}).get('services') or {}
    plans = []
    for name in names or []:
        plan = (services.get(name) or {}).get('plan')
        if not isinstance(plan, dict):
            plan = {'failed': True, 'changed': False,
                    'msg': 'service %r: the status read made no plan for it; nothing was changed' % name}
        plans.append(plan)
    return plans


def migrate_all_changed(plans, names):
    """Names whose check-mode plan would change something."""
    return [name for name, plan in zip(names or [], plans or []) if (plan or {}).get('changed')]


def migrate_all_target(spec, action='apply', rollback_target=None):
    """Where a run takes a service: its target (head) for apply; -1 or migrate_all_rollback_target for rollback."""
    if action == 'rollback':
        return str(rollback_target).strip() if rollback_target not in (None, '') else '-1'
    target = (spec or {}).get('target')
    return str(target) if target not in (None, '') else 'head'


def migrate_all_failure_message(results, order, audit_log=None):
    """The play's closing failure: every failed service, its error and recovery, and who was skipped."""
    failed, others = [], []
    for name in order:
        res = _result(results, name)
        if res.get('outcome') == 'failed':
            text = '%s failed: %s' % (name, res.get('error') or res.get('reason') or 'unknown error')
            if res.get('recovery'):
                text += ' [%s]' % res['recovery']
            failed.append(text)
        elif res.get('outcome') in ('skipped', 'rolled_back'):
            others.append('%s %s: %s' % (name, res['outcome'].replace('_', ' '), res.get('reason') or ''))
    msg = 'Migration failed. ' + ' | '.join(failed)
    if others:
        msg += ' | ' + ' | '.join(others)
    if audit_log:
        msg += ' | audit log: %s' % audit_log
    return msg


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
    before_text = before if before not in (None, '') else 'base'
    path = backup.get('path')
    to = before
    restored = False
    verified = migrate_all_back_verified(back, apply)
    back_failed = bool(back.get('failed'))
    if not attempted:
        recovery = 'nothing was changed'
        if apply.get('error_code') == 'conflict':
            # another run moved it after the plan: it is where the apply found it under its lock
            to = apply.get('from_revision')
    elif not undo_needed:
        # the apply re-read position and schema fingerprint after the failure: both as before
        recovery = ('rolled back to %s (nothing to revert: verified unchanged, position and schema as before the '
                    'run)' % before_text)
    elif back and not back_failed and verified:
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


_URL = re.compile(r"\b([a-z][a-z0-9+.-]*)://(?=[^\s,;()'\"<>])[^\s'\"<>]+", re.I)


def migrate_all_mask(value, secrets_=None):
    """``value`` (a string, or a list/dict of them) with every password masked (module_utils.secrets.mask):
    the userinfo of any ``scheme://user:password@`` (a health check URL with credentials), any ``password=``,
    and every spelling of the secrets given (strings, URLs)."""
    if isinstance(secrets_, str):
        secrets_ = [secrets_]
    return secrets.mask_data(value, secrets_) if isinstance(value, (dict, list, tuple)) else secrets.mask(
        value if isinstance(value, str) else str(value), secrets_)


def _no_database_url(text):
    """``text`` with every URL but http(s) ones (health checks) cut to its scheme: no database URL in a record."""
    text = secrets.mask(text)
    return _URL.sub(lambda m: m.group(0) if m.group(1).lower() in ('http', 'https') else m.group(1) + '://...',
                    text)


def migrate_all_refusal_message(failed):
    """The message of the failed task that refused a run (``ansible_failed_result``), as one string."""
    failed = failed if isinstance(failed, dict) else {}
    msg = failed.get('msg') or failed.get('message') or 'the run was refused (unknown error)'
    if isinstance(msg, (list, tuple)):
        msg = '; '.join(str(m) for m in msg)
    return str(msg).strip()


def _names(value):
    if not isinstance(value, (list, tuple)):
        return None
    return [str(v) for v in value if isinstance(v, str)]


def migrate_all_refusal(failed, action='apply', run_id=None, order=None, selected=None, pending=None, task=None):
    """The role's audit record of a run refused before any service was worked on.

    ``failed`` is the result of the task that refused it (``ansible_failed_result``); ``order`` the
    known service names, ``selected`` those the run was to work on, ``pending`` those with changes
    pending (each None when the run stopped before it was known). No service was touched, so the
    record names none (``service`` is null) and says ``changed: false``; its error is the play's
    failure message without any URL but health-check ones (the audit module masks passwords too).
    """
    return {
        'service': None,
        'action': action if isinstance(action, str) and action else 'apply',
        'from': None,
        'to': None,
        'outcome': 'refused',
        'error': _no_database_url(migrate_all_refusal_message(failed)),
        'reason': ('refused by the task: %s' % task) if task else None,
        'recovery': 'nothing was changed',
        'changed': False,
        'services': _names(order),
        'selected': _names(selected),
        'pending': _names(pending),
        'applied': [],
        'reverted': [],
        'backup': None,
        'target': None,
        'run_id': run_id,
        'source': 'role',
    }


def _size(value):
    """Bytes as a short human figure (1.2 MiB), or '' when unknown."""
    try:
        size = float(value)
    except (TypeError, ValueError):
        return ''
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if size < 1024 or unit == 'GiB':
            return ('%d %s' % (size, unit)) if unit == 'B' else ('%.1f %s' % (size, unit))
        size /= 1024.0
    return ''


def _seconds(value):
    try:
        return '%.1f s' % float(value)
    except (TypeError, ValueError):
        return ''


def migrate_all_summary(results, order):
    """One readable line per service: before -> after, applied count, backup path, outcome."""
    lines = []
    for name in order:
        res = _result(results, name)
        if not res:
            continue
        outcome = res.get('outcome', 'unknown')
        backup = res.get('backup') or ('skipped (%s)' % res['backup_skipped'] if res.get('backup_skipped') else 'none')
        if res.get('backup') and (res.get('backup_size_bytes') is not None or res.get('backup_seconds') is not None):
            backup += ' (%s)' % ', '.join(part for part in (_size(res.get('backup_size_bytes')),
                                                            _seconds(res.get('backup_seconds'))) if part)
        line = '%s: %s -> %s, applied %d' % (name, _cell(res.get('from')), _cell(res.get('to')),
                                             len(res.get('applied') or []))
        if res.get('reverted'):
            line += ', reverted %d' % len(res['reverted'])
        line += ', backup %s, %s' % (backup, outcome.upper() if outcome == 'failed' else outcome.replace('_', ' '))
        detail = res.get('error') or (res.get('reason') if outcome != 'unchanged' else '')
        if detail:
            line += ': ' + str(detail)
        if res.get('recovery'):
            line += ' [%s]' % res['recovery']
        lines.append(line)
    return lines


class FilterModule(object):
    def filters(self):
        return {
            'migrate_all_order': migrate_all_order,
            'migrate_all_selected': migrate_all_selected,
            'migrate_all_status_table': migrate_all_status_table,
            'migrate_all_plans': migrate_all_plans,
            'migrate_all_interactive': migrate_all_interactive,
            'migrate_all_automation': migrate_all_automation,
            'migrate_all_decide': migrate_all_decide,
            'migrate_all_failure': migrate_all_failure,
            'migrate_all_summary': migrate_all_summary,
            'migrate_all_run_rollback': migrate_all_run_rollback,
            'migrate_all_record': migrate_all_record,
            'migrate_all_refusal': migrate_all_refusal,
            'migrate_all_refusal_message': migrate_all_refusal_message,
            'migrate_all_outcome': migrate_all_outcome,
            'migrate_all_recovery': migrate_all_recovery,
            'migrate_all_undo_needed': migrate_all_undo_needed,
            'migrate_all_untouched': migrate_all_untouched,
            'migrate_all_back_target': migrate_all_back_target,
            'migrate_all_back_pin': migrate_all_back_pin,
            'migrate_all_back_verified': migrate_all_back_verified,
            'migrate_all_pinned': migrate_all_pinned,
            'migrate_all_with_health': migrate_all_with_health,
            'migrate_all_changed': migrate_all_changed,
            'migrate_all_target': migrate_all_target,
            'migrate_all_failure_message': migrate_all_failure_message,
            'migrate_all_plan_lines': migrate_all_plan_lines,
            'migrate_all_mask': migrate_all_mask,
        }
