# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning one service's run from a state read: the code status and apply share.

    result = check_plan(spec, dburl, conn, adapter, state, params)   # status: the apply's check mode, read only

The apply module's options (APPLY_OPTIONS, their defaults), and Planner: expect_from -> the adapter's plan ->
pre-flight findings (refusing on an error allow_findings does not allow) -> the diff preview -> in check mode
the steps as ``applied`` / ``reverted``. apply.py runs the plan on top of Planner; status.py calls
check_plan with its own read. Neither imports the other; both import this file.
Nothing here knows a tool: the adapters do (adapters/base.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.homelab.migrations.plugins.module_utils import connection as connection_mod
from ansible_collections.homelab.migrations.plugins.module_utils import lock as lock_mod
from ansible_collections.homelab.migrations.plugins.module_utils import waits
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import AdapterError
from ansible_collections.homelab.migrations.plugins.module_utils.preflight import findings as preflight_mod
from ansible_collections.homelab.migrations.plugins.module_utils.apply_result import (
    ApplyFailure, closing_fields, describe_unexpected, failed_with, interruption, new_result, shaped)

TRANSACTION_MODES = ('all', 'each')

# apply-module options besides ``service`` (the module's argument spec adds the docs' types)
APPLY_OPTIONS = dict(
    target=dict(type='str'),
    lock_wait=dict(type='int', default=60),
    audit_log=dict(type='path'),
    allow_out_of_order=dict(type='bool', default=False),
    allow_modified=dict(type='bool', default=False),
    transaction=dict(type='str', default='all', choices=list(TRANSACTION_MODES)),
    lock_timeout=dict(type='str', default=waits.DEFAULT_LOCK_TIMEOUT),
    lock_retries=dict(type='int', default=waits.DEFAULT_LOCK_RETRIES),
    lock_retry_delay=dict(type='int', default=waits.DEFAULT_LOCK_RETRY_DELAY),
    statement_timeout=dict(type='str'),
    confirmation=dict(type='str'),
    action=dict(type='str', default='apply'),
    expect_from=dict(type='str'),
    allow_findings=dict(type='list', elements='str', default=[]),
    preflight=dict(type='bool', default=True),
)


def defaults(params=None):
    """APPLY_OPTIONS defaults overlaid with ``params`` (for callers without AnsibleModule)."""
    out = {'connect_timeout': connection_mod.DEFAULT_CONNECT_TIMEOUT}
    for key, opt in APPLY_OPTIONS.items():
        out[key] = opt.get('default')
    for key, value in (params or {}).items():
        if value is not None or key not in out:
            out[key] = value
    return out


def step_name(step):
    """A plan step as the revision id / tag it stands for."""
    if isinstance(step, dict):
        for key in ('revision', 'tag', 'id', 'name'):
            if step.get(key) is not None:
                return str(step[key])
        return str(step)
    for attr in ('revision', 'tag', 'id', 'name'):
        value = getattr(step, attr, None)
        if isinstance(value, str):
            return value
    return str(step)


def _revision_set(text):
    """A revision as a set: Alembic heads joined by commas; '', None and 'base' are nothing applied."""
    return set(r.strip() for r in str(text or '').split(',') if r.strip()) - {'base'}


def _text_revision(value):
    return 'revision: %s\n' % (value if value is not None else '(none: nothing applied)')


class Planner(object):
    """One service's plan from a state read (``before``): what the apply would do, refusals included.

    ``params`` are APPLY_OPTIONS values (defaults filled) plus ``connect_timeout``; ``conn`` is the
    connection the state was read on (the adapter's pre-flight reads the catalogue on it). ``result`` holds
    the DESIGN.md return fields (apply_result.new_result), ``warnings`` unmasked warning texts.
    """

    def __init__(self, spec, dburl, params, check_mode, diff):
        self.spec = spec
        self.dburl = dburl
        self.name = spec['name']
        self.params = defaults(params)
        self.check_mode = bool(check_mode)
        self.want_diff = bool(diff)
        self.target = self.params.get('target') or spec.get('target') or 'head'
        self.conn = None
        self.before = None
        self.plan = None
        self.started = False  # the plan began to run: from here on nothing is assumed, all is re-read
        self.settled = False  # what stayed was worked out from a re-read
        self.warnings = []
        self.interrupted_reason = None  # a signal or the controller's death ended the run
        self.interrupted_detail = None  # what the database showed after an interrupted apply
        self.result = new_result(self.name, spec.get('tool'), self.target)

    def scrub(self, text):
        return self.dburl.scrub(text)

    def options(self):
        """The options the adapter's plan, preflight and apply get (adapters/base.py)."""
        p = self.params
        return {
            'target': self.target,
            'allow_out_of_order': bool(p.get('allow_out_of_order')),
            'allow_modified': bool(p.get('allow_modified')),
            'transaction': p.get('transaction') or 'all',
            'lock_timeout': p.get('lock_timeout'),
            'statement_timeout': p.get('statement_timeout'),
            'connect_timeout': p.get('connect_timeout'),
            'allow_findings': list(p.get('allow_findings') or []),
            'check_mode': self.check_mode,
        }

    def adapter_message(self, exc):
        text = ' '.join(self.scrub(str(exc)).split()) or exc.__class__.__name__
        if self.name not in text:
            text = 'service %r: %s' % (self.name, text)
        return text

    def warn_if_locked(self, holder):
        """Check mode takes no lock: it says who holds it (``holder``, None when nobody does)."""
        if holder is not None:
            self.warnings.append(
                'service %r is locked by %s right now; a real run would wait up to %ss (lock_wait) for it and '
                'then plan again, so what it does may differ from this check'
                % (self.name, lock_mod.describe_holder(holder), self.params.get('lock_wait')))

    def check_expected(self, current):
        """expect_from: the service must be where the caller left it (no other run moved it since)."""
        expected = self.params.get('expect_from')
        if expected is None:
            return
        if _revision_set(expected) != _revision_set(current):
            self.result['conflict'] = True
            raise ApplyFailure('service %r is at %s, not at %s (expect_from): another run changed it since; '
                               'nothing was changed, check what that run did before going back by hand'
                               % (self.name, current or 'base', str(expected).strip() or 'base'), code='conflict')

    def make_plan(self, adapter, state):
        """The steps (revision ids / tags, run order) of the adapter's plan from ``state`` to the target."""
        try:
            plan = adapter.plan(state, self.target, self.options())
        except AdapterError as exc:
            raise ApplyFailure('%s; nothing was changed' % self.adapter_message(exc), code=exc.code,
                               retryable=exc.code == 'unreachable')
        except Exception as exc:
            raise ApplyFailure('%s; nothing was changed'
                               % describe_unexpected(self.name, exc, self.dburl, 'planning target %r' % self.target))
        self.plan = plan
        steps = [step_name(s) for s in plan.steps]
        plan_dict = plan.as_dict()
        plan_dict['steps'] = steps
        self.result['plan'] = plan_dict
        self.result['changed'] = bool(steps)
        if steps:
            self.result['to_revision'] = plan.to_revision
        for note in plan.notes:
            if note:
                self.warnings.append(self.scrub(str(note)))
        return steps

    def preflight(self, adapter, steps):
        """Pre-flight findings of the plan (module_utils/preflight/; a revert checks its down files or
        downgrade()); refuse, before anything is touched, when one is an error that allow_findings does not
        allow (the run would certainly fail as planned).
        Check mode also lints (squawk): its warnings inform, they never refuse."""
        if not steps or self.plan.direction not in ('up', 'down') or self.params.get('preflight') is False:
            return
        try:
            found = adapter.preflight(self.conn, self.before, steps, self.options(), lint=self.check_mode,
                                      direction=self.plan.direction)
        except Exception as exc:  # a pre-flight bug must not stop a run: say so
            self.warnings.append('service %r: the pre-flight checks failed (%s: %s); the run goes ahead unchecked'
                                 % (self.name, type(exc).__name__, ' '.join(self.scrub(str(exc)).split())))
            return
        self.result['findings'] = [dict(f, message=self.scrub(f['message']),
                                        statement=self.scrub(f['statement']) if f.get('statement') else None)
                                   for f in found.get('findings') or []]
        self.result['lint'] = found.get('lint')
        blocked = preflight_mod.blocking(self.result['findings'], self.params.get('allow_findings'))
        if blocked:
            self.result['error_code'] = 'preflight'
            self.result['untouched'] = True
            self.result['changed'] = False
            raise ApplyFailure(preflight_mod.describe_blocking(self.name, blocked), code='preflight')

    def preview(self, adapter, steps):
        """With diff: ``result['diff']`` {before, after, prepared}: the SQL that runs (adapter.preview_sql)."""
        if not self.want_diff:
            return
        prepared = ''
        if steps:
            try:
                prepared = adapter.preview_sql(self.plan)
            except Exception as exc:
                prepared = ('-- the SQL could not be rendered (%s); the plan runs these %s steps (%s):\n%s\n'
                            % (' '.join(self.scrub(str(exc)).split()), len(steps), self.plan.direction,
                               '\n'.join('--   %s' % s for s in steps)))
            if prepared is None:
                prepared = '\n'.join('-- %s %s' % (self.plan.direction, s) for s in steps) + '\n'
        self.result['diff'] = {
            'before': _text_revision(self.result['from_revision']),
            'after': _text_revision(self.result['to_revision']),
            'prepared': self.scrub(prepared),
        }

    def planned_steps(self, adapter):
        """From the state read (``before``) on: expect_from, plan, pre-flight and preview; the steps to run."""
        self.result['from_revision'] = self.before.current_revision
        self.result['to_revision'] = self.before.current_revision
        try:
            self.check_expected(self.before.current_revision)
        except ApplyFailure as moved:
            # another run moved it; when it is already where this run was to take it, nothing is left to do
            # (nothing unconfirmed runs, nothing of the other run is undone); anything else is a conflict
            try:
                steps = self.make_plan(adapter, self.before)
            except ApplyFailure:
                raise moved
            if steps:
                raise moved
            self.result['conflict'] = False
            self.warnings.append('service %r: another run already took it to %s (expect_from was %s); nothing left '
                                 'to do' % (self.name, self.before.current_revision or 'base',
                                            self.params.get('expect_from') or 'base'))
        steps = self.make_plan(adapter, self.before)
        self.preflight(adapter, steps)
        self.preview(adapter, steps)
        return steps

    def checked(self, steps):
        """Check mode's outcome: ``unchanged``, or ``check`` with the steps as applied / reverted."""
        if not steps:
            return 'unchanged'
        if self.plan.direction == 'down':
            self.result['reverted'] = steps
        else:
            self.result['applied'] = steps
        return 'check'


def check_plan(spec, dburl, conn, adapter, state, params=None, diff=False, holder=None, unreadable=None):
    """What ``apply.run_apply(..., check_mode=True)`` would return, from a state already read on ``conn``.

    The status module plans with the connection, the state and the lock holder of its own read (one
    read-only session, no second connection, read or lock lookup): the same plan, refusals, warnings
    and result fields as the apply module's check mode, which it shares this code with. ``state``
    None means it could not be read, and ``unreadable`` says why. ``conn`` is left open; no audit
    record is written. Never raises for an expected failure.
    """
    params = dict(params or {})
    params.pop('audit_log', None)
    run = Planner(spec, dburl, params, True, diff)
    run.conn = conn
    started = time.monotonic()
    outcome, error = 'failed', None
    try:
        if state is None:
            raise ApplyFailure('%s; nothing was changed'
                               % (unreadable or 'service %r: its migration state could not be read' % run.name),
                               code='unreachable')
        run.warn_if_locked(holder)
        run.before = state
        outcome = run.checked(run.planned_steps(adapter))
    except BaseException as exc:  # every failure becomes the result's fields (apply_result.failed_with)
        error = failed_with(run, exc)
    outcome, error = interruption(run, outcome, error, run.interrupted_reason)
    outcome, error = closing_fields(run, outcome, error, started)
    return shaped(run, outcome, error)
