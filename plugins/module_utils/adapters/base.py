# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one small interface every migration tool adapter implements.

An adapter knows one tool (alembic, drizzle, ...). It is built from a validated service spec and
its DbUrl and works on a psycopg2 connection the caller owns (autocommit on; the caller holds the
service lock around plan + apply). Adding a tool means one sub-package adapters/<tool>/ with an
adapter module (a subclass of Adapter) and an options module, and one line in registry.TOOLS
(docs/adding-a-tool.md).

    state = adapter.read_state(conn)            # read only, never writes
    plan = adapter.plan(state, target)          # read only; raises PlanError on an impossible target
    result = adapter.apply(conn, plan, options) # carries the plan out (not called in check mode)
    found = adapter.preflight(conn, state, steps, options)  # read only: what will certainly fail
    after = adapter.reread_state(conn, state)   # read only: the database again, the parsed files reused

What a tool's own read and write sides need beyond the common fields travels in ``state.detail`` and
``plan.detail``: an object of the tool's own StateDetail / PlanDetail subclass, declared in its package
(adapters/<tool>/detail.py). Only that tool's adapter reads it; the shared code (plan, apply, status)
reads the common fields and calls Adapter methods.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

PROBLEM_CODES = ('unreachable', 'bad_config', 'multiple_heads', 'unknown_revision', 'modified',
                 'missing_file', 'out_of_order', 'unknown_migration', 'locked')


class AdapterError(Exception):
    """A failure an adapter reports to the user; the message is masked and says what to do next."""

    def __init__(self, message, code='bad_config', details=None):
        super(AdapterError, self).__init__(message)
        self.code = code
        self.details = details or {}


class PlanError(AdapterError):
    """The target cannot be reached (unknown revision, ambiguous heads, missing down file...)."""


class ApplyError(AdapterError):
    """Applying failed. ``details`` may carry applied/reverted lists of what really happened."""


def problem(code, message, severity=None):
    """A {code, message} problem; ``severity='warning'`` marks one that does not make the service an error
    (something the run works around, said so the user can fix it)."""
    if code not in PROBLEM_CODES:
        raise ValueError('unknown problem code %r' % code)
    if severity not in (None, 'warning'):
        raise ValueError('unknown problem severity %r' % severity)
    out = {'code': code, 'message': message}
    if severity:
        out['severity'] = severity
    return out


def is_warning(item):
    """True for a problem that is only a warning (see problem())."""
    return isinstance(item, dict) and item.get('severity') == 'warning'


class StateDetail(object):
    """The tool-specific part of a ServiceState (``state.detail``); each tool subclasses it in its own package
    (adapters/<tool>/detail.py) and names every field there. Read only by that tool's adapter, never by the
    shared code and never returned to the user as it is. No field is common to every tool: this base is the
    empty detail of a state an adapter did not build (a test's or a stub adapter's)."""
    __slots__ = ()


class PlanDetail(object):
    """The tool-specific part of a Plan (``plan.detail``): what the tool's preview_sql / apply / may_commit_itself
    need; each tool subclasses it in its own package (adapters/<tool>/detail.py) and names every field there.
    Read only by that tool's adapter. No field is common to every tool: this base is the empty detail of a
    plan an adapter did not build."""
    __slots__ = ()


class ServiceState(object):
    """What is applied and what is pending for one service (read side result).

    current     list of current revision ids (alembic heads in the version table; drizzle: the
                tag of the newest applied journal entry, or [] when nothing is applied)
    heads       list of the newest revision ids in the files (alembic heads; drizzle: last tag)
    applied     list of applied revision ids/tags, oldest first
    pending     list of revision ids/tags a plain upgrade to head(s) would run, in run order
    problems    list of {code, message}
    history     list of all revision ids/tags in the files, oldest first (for -N and targets)
    detail      the tool's StateDetail (what its plan / preflight / apply need; not returned to the user)
    """

    def __init__(self, tool, current=None, heads=None, applied=None, pending=None, problems=None,
                 history=None, detail=None):
        self.tool = tool
        self.current = list(current or [])
        self.heads = list(heads or [])
        self.applied = list(applied or [])
        self.pending = list(pending or [])
        self.problems = list(problems or [])
        self.history = list(history or [])
        self.detail = detail if detail is not None else StateDetail()

    @property
    def current_revision(self):
        if not self.current:
            return None
        return self.current[0] if len(self.current) == 1 else ','.join(self.current)

    @property
    def latest_revision(self):
        if not self.heads:
            return None
        return self.heads[0] if len(self.heads) == 1 else ','.join(self.heads)


class Plan(object):
    """What apply will do: direction 'up', 'down' or None (nothing to do); ``detail`` is the tool's PlanDetail
    (what its preview_sql / apply need; not returned to the user)."""

    def __init__(self, direction, steps, from_revision, to_revision, target, sql=None, notes=None, detail=None):
        self.direction = direction
        self.steps = list(steps or [])
        self.from_revision = from_revision
        self.to_revision = to_revision
        self.target = target
        self.sql = sql  # text shown in diff.prepared (may be filled lazily by the adapter)
        self.notes = list(notes or [])
        self.detail = detail if detail is not None else PlanDetail()

    @property
    def changed(self):
        return bool(self.steps)

    def as_dict(self):
        return {'direction': self.direction, 'steps': list(self.steps), 'from_revision': self.from_revision,
                'to_revision': self.to_revision, 'target': self.target, 'notes': list(self.notes)}


class ApplyResult(object):
    def __init__(self, applied=None, reverted=None, from_revision=None, to_revision=None, queries=None):
        self.applied = list(applied or [])
        self.reverted = list(reverted or [])
        self.from_revision = from_revision
        self.to_revision = to_revision
        self.queries = list(queries or [])


class Adapter(object):
    tool = None
    _reuse = None  # the state reread_state was given, while its read_state runs

    def __init__(self, spec, dburl):
        self.spec = spec
        self.dburl = dburl
        self.name = spec['name']

    def read_state(self, conn):  # pragma: no cover - interface
        raise NotImplementedError

    def reread_state(self, conn, state):
        """read_state(conn) again after a run; ``state`` is a ServiceState this adapter read in this process. During
        the call ``reusable_detail`` hands read_state that state's detail, so a tool's read_state may reuse the
        history it parsed (the files) and read only the database (the apply's check of what stayed)."""
        self._reuse = state
        try:
            return self.read_state(conn)
        finally:
            self._reuse = None

    def reusable_detail(self, detail_class):
        """In read_state: the detail of the state given to reread_state when it is a ``detail_class``, else None."""
        detail = self._reuse.detail if self._reuse is not None else None
        return detail if isinstance(detail, detail_class) else None

    def plan(self, state, target, options=None):  # pragma: no cover - interface
        raise NotImplementedError

    def preview_sql(self, plan):  # pragma: no cover - interface
        """Text for diff.prepared: the SQL that runs (or the revision list with a note)."""
        raise NotImplementedError

    def apply(self, conn, plan, options=None):  # pragma: no cover - interface
        raise NotImplementedError

    def preflight(self, conn, state, steps, options=None, lint=True, direction='up'):
        """Pre-flight findings for running ``steps`` (run order; ``direction`` up or down) with ``options``:
        {findings, lint}
        (see module_utils/preflight/). A tool without checks has nothing to say."""
        return {'findings': [], 'lint': {'linter': None, 'ran': False, 'reason': 'no linter for this tool'}}

    def tracking_tables(self):
        """(schema, table) of the tool's own tracking table(s): the position, left out of the schema fingerprint."""
        return []

    def may_commit_itself(self, plan):
        """Steps of ``plan`` whose code may commit part of its work outside the tool's transaction.

        After a failure, "nothing changed" cannot be proved for them from the catalogue alone (data they
        committed is not in the schema fingerprint). A tool whose apply watches the transaction itself
        (drizzle) returns [] and reports such a step in its ApplyError instead.
        """
        return []
