# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the migrate_all role shows and records: the status table, plan lines, summary, audit records.

Names, revisions, counts, sizes and outcomes only: never a database URL or a password (every text goes
through module_utils.secrets).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.homelab.migrations.plugins.module_utils import secrets
from ansible_collections.homelab.migrations.plugins.plugin_utils.selection import cell, result_of


def migrate_all_status_table(status, order, selected=None, verbosity=1):
    """The status module's result as aligned lines, one row per service plus its pending list.

    Below ``verbosity`` 1 (ansible-playbook without ``-v``) each service's findings of severity info are one
    line that counts them, and why the linter was skipped is left out; warnings and errors are always shown.
    """
    services = (status or {}).get('services') or {}
    selected = list(order) if selected is None else list(selected)
    header = ('SERVICE', 'TOOL', 'STATUS', 'CURRENT', 'LATEST', 'APPLIED', 'PENDING')
    rows = []
    for name in order:
        info = services.get(name) or {}
        label = name if name in selected else name + ' (not selected)'
        rows.append((label, cell(info.get('tool')), cell(info.get('status', 'error')),
                     cell(info.get('current_revision')), cell(info.get('latest_revision')),
                     cell(info.get('applied')), cell(info.get('pending'))))
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]

    def fmt(row):
        return '  '.join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip()

    lines = [fmt(header)]
    for name, row in zip(order, rows):
        lines.append(fmt(row))
        info = services.get(name) or {}
        for mig in info.get('pending_migrations') or []:
            lines.append('    pending  %s' % mig)
        for prob in info.get('problems') or []:
            kind = 'warning' if prob.get('severity') == 'warning' else 'problem'  # a warning is no error
            lines.append('    %-8s [%s] %s' % (kind, prob.get('code'), prob.get('message')))
        lines.extend(_finding_lines(info.get('findings') or [], verbosity))
        lint = info.get('lint') or {}
        if (verbosity or 0) >= 1 and info.get('pending') and lint.get('linter') and not lint.get('ran') \
                and lint.get('reason'):
            lines.append('    lint     skipped: %s' % lint['reason'])
        health = info.get('health') or {}
        if health.get('state') == 'unverified':
            lines.append('    health   unverified since %s (at %s): its last health check did not pass or was cut '
                         'short; a run checks it again even with nothing pending'
                         % (health.get('since'), cell(health.get('revision'))))
        lock = info.get('lock') or {}
        if lock.get('held'):
            holder = lock.get('holder') or {}
            lines.append('    locked   by pid %s (%s) since %s'
                         % (holder.get('pid'), holder.get('application_name'), holder.get('since')))
    lines.append('overall: %s, %s pending migration(s)'
                 % ((status or {}).get('overall_status', 'error'), (status or {}).get('total_pending', 0)))
    return lines


def _finding_lines(findings, verbosity):
    """A service's findings as table lines; below verbosity 1 those of severity info are counted in one line."""
    lines, quiet = [], 0
    for item in findings:
        severity = item.get('severity') or 'info'
        if severity == 'info' and (verbosity or 0) < 1:
            quiet += 1
            continue
        lines.append('    %-8s [%s] %s: %s' % (severity, item.get('code'), item.get('migration'), item.get('message')))
        if item.get('statement'):
            lines.append('             > %s' % ' '.join(str(item['statement']).split()))
    if quiet:
        lines.append('    info     %d finding(s) of severity info (-v shows them)' % quiet)
    return lines


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
        before, after = cell(plan.get('from_revision')), cell(plan.get('to_revision'))
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


def migrate_all_failure_message(results, order, audit_log=None, brief=False):
    """The play's closing failure: every failed service, its error and recovery, and who was skipped.

    ``brief`` names the services and their outcome only (the role's summary just above gives each error and
    recovery: ansible-core 2.19 prints a failed task's message twice, so the errors are not in it).
    """
    if brief:
        named = ['%s %s' % (name, result_of(results, name)['outcome'].replace('_', ' ')) for name in order
                 if result_of(results, name).get('outcome') in ('failed', 'skipped', 'rolled_back', 'restored')]
        msg = 'Migration failed: %s; the summary above gives each error and recovery' % ', '.join(named)
        return msg + (' | audit log: %s' % audit_log if audit_log else '')
    failed, others = [], []
    for name in order:
        res = result_of(results, name)
        if res.get('outcome') == 'failed':
            text = '%s failed: %s' % (name, res.get('error') or res.get('reason') or 'unknown error')
            if res.get('recovery'):
                text += ' [%s]' % res['recovery']
            failed.append(text)
        elif res.get('outcome') in ('skipped', 'rolled_back', 'restored'):
            others.append('%s %s: %s' % (name, res['outcome'].replace('_', ' '), res.get('reason') or ''))
    msg = 'Migration failed. ' + ' | '.join(failed)
    if others:
        msg += ' | ' + ' | '.join(others)
    if audit_log:
        msg += ' | audit log: %s' % audit_log
    return msg


def migrate_all_mask(value, secrets_=None):
    """``value`` (a string, or a list/dict of them) with every password masked (module_utils.secrets.mask):
    the userinfo of any ``scheme://user:password@`` (a health check URL with credentials), any ``password=``,
    and every spelling of the secrets given (strings, URLs)."""
    if isinstance(secrets_, str):
        secrets_ = [secrets_]
    return secrets.mask_data(value, secrets_) if isinstance(value, (dict, list, tuple)) else secrets.mask(
        value if isinstance(value, str) else str(value), secrets_)


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
        'error': secrets.cut_urls(migrate_all_refusal_message(failed)),
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
    """One readable line per service: before -> after, applied count, backup path, outcome (with the error and
    recovery of a failed service: the role says them here, once)."""
    lines = []
    for name in order:
        res = result_of(results, name)
        if not res:
            continue
        outcome = res.get('outcome', 'unknown')
        backup = res.get('backup') or ('skipped (%s)' % res['backup_skipped'] if res.get('backup_skipped') else 'none')
        if res.get('backup') and (res.get('backup_size_bytes') is not None or res.get('backup_seconds') is not None):
            backup += ' (%s)' % ', '.join(part for part in (_size(res.get('backup_size_bytes')),
                                                            _seconds(res.get('backup_seconds'))) if part)
        line = '%s: %s -> %s, applied %d' % (name, cell(res.get('from')), cell(res.get('to')),
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
