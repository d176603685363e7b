# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply orchestration: move one service's database to a target, up or down, under its lock.

    result = run_apply(spec, dburl, params, check_mode=False, diff=False)

connect (application_name homelab.migrations:<service>) -> take the service's advisory lock
(lock_wait) -> read_state -> plan (the adapter refuses over problems the options do not allow:
modified, out_of_order, a broken journal, a missing down file...) -> (check mode:
stop here and report) -> apply -> re-read the state and report what really happened -> release the
lock -> append one audit record. ``result`` holds the DESIGN.md return fields; on failure
``result['failed']`` is True and ``result['msg']`` says what failed and what to do next.
Nothing here knows a tool: the adapters do (adapters/base.py); a new tool needs no change here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import time

from ansible_collections.homelab.migrations.plugins.module_utils import audit as audit_mod
from ansible_collections.homelab.migrations.plugins.module_utils import connection as connection_mod
from ansible_collections.homelab.migrations.plugins.module_utils import interrupt
from ansible_collections.homelab.migrations.plugins.module_utils import fingerprint as fingerprint_mod
from ansible_collections.homelab.migrations.plugins.module_utils import lock as lock_mod
from ansible_collections.homelab.migrations.plugins.module_utils.preflight import findings as preflight_mod
from ansible_collections.homelab.migrations.plugins.module_utils import waits
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import AdapterError
from ansible_collections.homelab.migrations.plugins.module_utils.connection import ConnectError
from ansible_collections.homelab.migrations.plugins.module_utils.status import describe_unexpected

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

_DURATION_RE = re.compile(r'^\s*\d+(\.\d+)?\s*(us|ms|s|min|h|d)?\s*$')
# a killed module must not leave its backend running a long statement with the lock held (PostgreSQL 14+)
CLIENT_CHECK_INTERVAL_MS = '1000'
# the re-read after a failure (what stayed?) never waits long for a lock or runs long: it says "unknown" instead
REREAD_LOCK_TIMEOUT = '5s'
REREAD_STATEMENT_TIMEOUT = '60s'


class ApplyFailure(Exception):
    """A failure with a complete, masked message (what failed and what to do next).

    ``code`` becomes the result's ``error_code``; ``retryable`` says the connection was lost or the server
    is (re)starting, so the same call may succeed later.
    """

    def __init__(self, message, code='apply_failed', retryable=False):
        super(ApplyFailure, self).__init__(message)
        self.code = code
        self.retryable = retryable


def _connection_gone(exc, conn=None):
    """True when ``exc`` means the session is gone (server down or restarting, backend killed, network)."""
    try:
        if conn is not None and conn.closed:
            return True
    except Exception:
        pass
    code = getattr(exc, 'pgcode', None) or ''
    if code.startswith(('08', '57P')):
        return True
    try:
        import psycopg2
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and not code


def defaults(params=None):
    """APPLY_OPTIONS defaults overlaid with ``params`` (for callers without AnsibleModule)."""
    out = {'connect_timeout': connection_mod.DEFAULT_CONNECT_TIMEOUT}
    for key, opt in APPLY_OPTIONS.items():
        out[key] = opt.get('default')
    for key, value in (params or {}).items():
        if value is not None or key not in out:
            out[key] = value
    return out


def check_duration(name, value):
    """lock_timeout / statement_timeout: a PostgreSQL duration (V(5s), V(500ms), V(2min), V(0))."""
    if value is None:
        return None
    value = str(value).strip()
    if not _DURATION_RE.match(value):
        raise ApplyFailure('%s %r is not a PostgreSQL duration; use a number with an optional unit '
                           '(us, ms, s, min, h, d), for example 5s or 500ms' % (name, value), code='bad_config')
    return value.replace(' ', '')


def check_audit_log(path):
    """Fail before touching anything when the audit log cannot be written."""
    if not path:
        return
    path = os.path.abspath(path)
    try:
        audit_mod.check_log_path(path)
    except OSError as exc:
        raise ApplyFailure('%s (nothing was done)' % (exc.strerror or exc))
    if os.path.isdir(path):
        raise ApplyFailure('audit_log %s is a directory; give the path of a file (for example %s)'
                           % (path, os.path.join(path, 'migrations.jsonl')), code='bad_config')
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise ApplyFailure('audit_log %s is not writable by this user; fix its permissions or choose another '
                               'path (nothing was changed)' % path, code='bad_config')
        return
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not parent or not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ApplyFailure('audit_log %s cannot be created: %s is not a writable directory; fix the permissions or '
                           'choose another path (nothing was changed)' % (path, parent or '/'), code='bad_config')


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


def observed_changes(before, after):
    """(applied, reverted) between two ServiceStates: applied oldest first, reverted newest first."""
    before_set = set(before.applied)
    after_set = set(after.applied)
    applied = [rev for rev in after.applied if rev not in before_set]
    reverted = [rev for rev in reversed(before.applied) if rev not in after_set]
    return applied, reverted


def _reconcile(reported, observed):
    """Prefer the adapter's order when it agrees with the database; the database wins otherwise."""
    reported = [str(r) for r in (reported or [])]
    if observed is None:
        return reported, True
    if sorted(reported) == sorted(observed):
        return reported, True
    return list(observed), False


def _session_settings(conn, read_only, lock_timeout, statement_timeout):
    with conn.cursor() as cur:
        if read_only:
            cur.execute('SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY')
        if conn.server_version >= 140000:
            try:
                cur.execute('SELECT pg_catalog.set_config(%s, %s, false)',
                            ('client_connection_check_interval', CLIENT_CHECK_INTERVAL_MS))
            except Exception:  # not supported on this platform: harmless
                conn.rollback()
        for name, value in (('lock_timeout', lock_timeout), ('statement_timeout', statement_timeout)):
            if value is None:
                continue
            try:
                cur.execute('SELECT pg_catalog.set_config(%s, %s, false)', (name, value))
            except Exception as exc:
                raise ApplyFailure('%s %r was refused by the server: %s; use a PostgreSQL duration such as 5s'
                                   % (name, value, ' '.join(str(exc).split())), code='bad_config')


class _ChildSessionOptions(object):
    """While an adapter runs: PGOPTIONS makes libpq sessions of child tools (alembic) check their client too.

    A killed run kills its migrator (the adapter's job); this makes the migrator's backend notice within
    a second even in the middle of a long statement, roll back and let go of its locks, instead of running
    on for minutes. Only for PostgreSQL 14+ (older servers refuse the unknown setting); restored afterwards.
    """

    def __init__(self, conn):
        self.conn = conn
        self.saved = None
        self.active = False

    def __enter__(self):
        try:
            supported = self.conn.server_version >= 140000
        except Exception:
            supported = False
        if supported:
            self.saved = os.environ.get('PGOPTIONS')
            option = '-c client_connection_check_interval=%s' % CLIENT_CHECK_INTERVAL_MS
            os.environ['PGOPTIONS'] = (self.saved + ' ' + option) if self.saved else option
            self.active = True
        return self

    def __exit__(self, *exc):
        if self.active:
            if self.saved is None:
                os.environ.pop('PGOPTIONS', None)
            else:
                os.environ['PGOPTIONS'] = self.saved
        return False


def _revision_set(text):
    """A revision as a set: Alembic heads joined by commas; '', None and 'base' are nothing applied."""
    return set(r.strip() for r in str(text or '').split(',') if r.strip()) - {'base'}


def _text_revision(value):
    return 'revision: %s\n' % (value if value is not None else '(none: nothing applied)')


class _Run(object):
    """One apply run; holds what happened so far so a failure can still be reported truthfully."""

    def __init__(self, spec, dburl, params, check_mode, diff, get_adapter):
        self.spec = spec
        self.dburl = dburl
        self.name = spec['name']
        self.params = defaults(params)
        self.check_mode = bool(check_mode)
        self.want_diff = bool(diff)
        self.get_adapter = get_adapter
        self.target = self.params.get('target') or spec.get('target') or 'head'
        self.conn = None
        self.borrowed = False  # a connection of the caller (check_plan): never closed here
        self.locked = False
        self.before = None
        self.plan = None
        self.started = False  # the plan began to run: from here on nothing is assumed, all is re-read
        self.settled = False  # what stayed was worked out from a re-read
        self.fp_before = None
        self.self_committed = []
        self.maybe_committed = []
        self.warnings = []
        self.error_code = None  # the adapter's code of the last failed attempt (lock_timeout, apply_failed...)
        self.reread_conn = None  # the connection of a re-read after a failure (cancel_query cancels it too)
        self.interrupted_detail = None  # what the database showed after an interrupted apply
        self.result = {
            'changed': False,
            'service': self.name,
            'tool': spec.get('tool'),
            'target': self.target,
            'from_revision': None,
            'to_revision': None,
            'applied': [],
            'reverted': [],
            'lock_wait_seconds': 0.0,
            'duration_seconds': 0.0,
            'plan': {},
            'queries': [],
            'findings': [],
            # the fields the role decides on (DESIGN.md "Result fields the role relies on")
            'error_code': None,
            'untouched': True,
            'retryable': False,
            'committed': [],
            'failed_migration': None,
            'conflict': False,
            'unrecorded_changes': False,
            'schema_changes': [],
            'fingerprint': {'before': None, 'after': None},
        }

    # ------------------------------------------------------------------ helpers
    def cancel_query(self):
        """Cancel the statement running on the run's connection (from another thread; interrupt.Guard)."""
        for conn in (self.conn, self.reread_conn):
            if conn is not None and not conn.closed:
                try:
                    conn.cancel()
                except Exception:
                    pass

    def scrub(self, text):
        return self.dburl.scrub(text)

    def options(self):
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

    # ---------------------------------------------------------------- the steps
    def connect(self):
        try:
            self.conn = connection_mod.connect(self.dburl, service=self.name,
                                               connect_timeout=self.params.get('connect_timeout') or 10)
        except ConnectError as exc:
            raise ApplyFailure('service %r: %s; nothing was changed' % (self.name, exc), code='unreachable',
                               retryable=True)

    def warn_if_locked(self, holder):
        """Check mode takes no lock: it says who holds it (``holder``, None when nobody does)."""
        if holder is not None:
            self.warnings.append(
                'service %r is locked by %s right now; a real run would wait up to %ss (lock_wait) for it and '
                'then plan again, so what it does may differ from this check'
                % (self.name, lock_mod.describe_holder(holder), self.params.get('lock_wait')))

    def lock(self):
        if self.check_mode:
            self.warn_if_locked(lock_mod.lock_holder(self.conn, self.name))
            return
        try:
            self.result['lock_wait_seconds'] = lock_mod.acquire(self.conn, self.name,
                                                                wait_seconds=self.params.get('lock_wait') or 0)
        except lock_mod.LockTimeout as exc:
            self.result['conflict'] = True
            raise ApplyFailure('%s; nothing was changed' % self.scrub(str(exc)), code='lock_timeout')
        self.locked = True

    def read(self, adapter):
        try:
            return adapter.read_state(self.conn)
        except AdapterError as exc:
            raise ApplyFailure('%s; nothing was changed' % self.adapter_message(exc), code=exc.code,
                               retryable=exc.code == 'unreachable')
        except Exception as exc:
            raise ApplyFailure('%s; nothing was changed' % describe_unexpected(self.name, exc, self.dburl),
                               retryable=_connection_gone(exc, self.conn))

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
        try:
            plan = adapter.plan(self.conn, state, self.target, self.options())
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
        """Pre-flight findings of the plan (module_utils/preflight.py; a revert checks its down files or
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

    def take_fingerprint(self, adapter, conn):
        """The schema fingerprint on ``conn``, or None (with a warning) when the catalogue cannot be read."""
        try:
            return fingerprint_mod.take(conn, exclude=adapter.tracking_tables())
        except Exception as exc:
            self.warnings.append('service %r: the schema fingerprint could not be read: %s'
                                 % (self.name, ' '.join(self.scrub(str(exc)).split())))
            try:
                conn.rollback()
            except Exception:
                pass
            return None

    def reread(self, adapter, fresh=False):
        """(state, fingerprint) after the apply: after a failure on a NEW connection (the run's own one may be
        broken or in an odd transaction state); else on the run's connection. (None, None) when unreadable.

        The run's connection, and with it the service lock, stays open meanwhile.
        """
        conn = self.conn
        if conn is not None and not conn.closed:
            try:
                conn.rollback()
                conn.autocommit = True
            except Exception:
                pass
        if not fresh and conn is not None and not conn.closed:
            try:
                return adapter.read_state(conn), self.take_fingerprint(adapter, conn)
            except Exception:
                pass
        other = None
        try:
            other = connection_mod.connect(self.dburl, service=self.name,
                                           connect_timeout=self.params.get('connect_timeout') or 10)
            # a read that must not wait: an application session holding (or queued for) an ACCESS EXCLUSIVE lock
            # on the tracking table or a catalogued table made this read wait for as long as it held it, and a
            # cancel could not reach it (cancel_query cancels this connection too now)
            self.reread_conn = other
            with other.cursor() as cur:
                cur.execute('SELECT pg_catalog.set_config(%s, %s, false), pg_catalog.set_config(%s, %s, false)',
                            ('lock_timeout', REREAD_LOCK_TIMEOUT, 'statement_timeout', REREAD_STATEMENT_TIMEOUT))
            return adapter.read_state(other), self.take_fingerprint(adapter, other)
        except Exception as exc:
            self.warnings.append('could not re-read the state of service %r after the run: %s'
                                 % (self.name, ' '.join(self.scrub(str(exc)).split())))
            return None, None
        finally:
            self.reread_conn = None
            if other is not None:
                try:
                    other.close()
                except Exception:
                    pass

    def carry_out(self, adapter, steps):
        self.fp_before = self.take_fingerprint(adapter, self.conn)
        self.result['fingerprint']['before'] = self.fp_before.digest if self.fp_before is not None else None
        reported = None
        error = None
        code = None
        details = {}
        interrupted = None
        self.started = True
        try:
            with _ChildSessionOptions(self.conn):
                reported = adapter.apply(self.conn, self.plan, self.options())
        except interrupt.Interrupted as exc:
            # the query was cancelled / the child killed and rolled back: read what really stayed, then stop
            interrupted = exc
            error = 'service %r: %s' % (self.name, exc.reason)
            code = interrupt.ERROR_CODE
        except AdapterError as exc:
            error = self.adapter_message(exc)
            details = exc.details or {}
            code = exc.code or 'apply_failed'
        except Exception as exc:
            error = describe_unexpected(self.name, exc, self.dburl, 'applying the plan')
            code = getattr(exc, 'error_code', None) or 'apply_failed'
            details = {'lost': _connection_gone(exc, self.conn)}
        except BaseException as exc:  # KeyboardInterrupt, SystemExit, a signal turned into an exception
            error = 'service %r: the run was interrupted (%s) while applying the plan' % (
                self.name, exc.__class__.__name__)
            code = getattr(exc, 'error_code', None) or 'interrupted'
        failed = error is not None
        self.error_code = code
        try:
            after, fp_after = self.reread(adapter, fresh=failed)
        except interrupt.Interrupted as exc:
            # cancelled while re-reading after the tool finished: what it committed stayed, so read it again (on a
            # new connection; later signals no longer interrupt) rather than report "nothing ran"
            interrupted = interrupted or exc
            after, fp_after = self.reread(adapter, fresh=True)
        self.after = after
        observed = (None, None) if after is None else observed_changes(self.before, after)
        rep_applied = reported.applied if reported is not None else details.get('applied', [])
        rep_reverted = reported.reverted if reported is not None else details.get('reverted', [])
        applied, ok1 = _reconcile(rep_applied, observed[0])
        reverted, ok2 = _reconcile(rep_reverted, observed[1])
        if not (ok1 and ok2) and error is None:
            self.warnings.append('the tool reported applied %s / reverted %s, the database shows applied %s / '
                                 'reverted %s; the result reports what the database shows'
                                 % (rep_applied, rep_reverted, applied, reverted))
        self.result['applied'] = applied
        self.result['reverted'] = reverted
        self.result['committed'] = list(applied) + list(reverted)
        self.result['changed'] = bool(applied or reverted)
        if reported is not None and reported.queries:
            self.result['queries'] = [self.scrub(q) for q in reported.queries]
        elif details.get('queries'):
            self.result['queries'] = [self.scrub(q) for q in details['queries']]
        if after is not None:
            self.result['to_revision'] = after.current_revision
        elif reported is not None and reported.to_revision is not None:
            self.result['to_revision'] = reported.to_revision
        else:
            self.result['to_revision'] = None
        self.settle(adapter, after, fp_after, failed, details)
        if failed:
            self.result['error_code'] = code
            self.result['failed_migration'] = details.get('failed')
        if interrupted is not None:
            self.interrupted_detail = self.what_happened(after)
            raise interrupted
        if failed:
            raise ApplyFailure('%s (%s)' % (error.rstrip('. '), self.what_happened(after)), code=code,
                               retryable=bool(details.get('lost')) or after is None or code == 'unreachable')
        if after is not None and self.plan.to_revision is not None \
                and after.current_revision != self.plan.to_revision:
            self.warnings.append('service %r: the plan was to reach %s but the database is at %s after the run'
                                 % (self.name, self.plan.to_revision, after.current_revision))

    def settle(self, adapter, after, fp_after, failed, details):
        """untouched / unrecorded_changes / schema_changes from what was re-read (facts only)."""
        before = self.before
        self.result['fingerprint']['after'] = fp_after.digest if fp_after is not None else None
        same_position = after is not None and list(after.applied) == list(before.applied) \
            and after.current_revision == before.current_revision
        same_schema = self.fp_before is not None and fp_after is not None and self.fp_before == fp_after
        ended = list(details.get('transaction_ended') or [])
        maybe = []
        if failed:
            try:
                maybe = list(adapter.may_commit_itself(self.plan) or [])
            except Exception:
                maybe = list(self.plan.steps)
        self.self_committed = ended
        self.maybe_committed = maybe
        self.result['schema_changes'] = [self.scrub(x) for x in fingerprint_mod.differences(self.fp_before, fp_after)]
        # a sequence set back by a failed migration stayed so (setval() is not transactional)
        set_back = fingerprint_mod.sequences_set_back(self.fp_before, fp_after) if failed else []
        self.result['schema_changes'] += [self.scrub(x) for x in set_back]
        self.result['untouched'] = bool(same_position and same_schema and not ended and not maybe and not set_back)
        # something stayed that no recorded migration accounts for: going back by migrations cannot undo it
        schema_moved = same_position and not same_schema and fp_after is not None and self.fp_before is not None
        self.result['unrecorded_changes'] = bool(ended or maybe or schema_moved or set_back)
        if failed and after is None:
            self.result['unrecorded_changes'] = True
        self.settled = True

    def what_happened(self, after):
        """What the database shows after a failed apply (re-read on a new connection), to append to the message."""
        applied, reverted = self.result['applied'], self.result['reverted']
        if after is None:
            return ('the state after the failure could not be re-read, so what stayed is unknown; run '
                    'homelab_migration_status for %r and compare with the backup before trying again' % self.name)
        where = after.current_revision or 'base (nothing applied)'
        parts = ['re-read on a new connection after the failure, the database is at %s' % where]
        if self.result['untouched']:
            parts.append('its schemas are as before the run: nothing of this run stayed')
            return '; '.join(parts)
        if applied:
            parts.append('applied by this run: %s' % ', '.join(applied))
        if reverted:
            parts.append('reverted by this run: %s' % ', '.join(reverted))
        if self.self_committed:
            parts.append('%s ended its transaction itself, so what it ran before that stayed although it is not '
                         'recorded' % ', '.join(self.self_committed))
        if self.maybe_committed:
            parts.append('%s may commit outside the tool\'s transaction (autocommit_block() or COMMIT), so what it '
                         'ran may have stayed although it is not recorded' % ', '.join(self.maybe_committed))
        changes = self.result['schema_changes']
        if changes:
            parts.append('the schemas differ from before the run: %s' % '; '.join(changes))
        elif self.fp_before is None or self.result['fingerprint']['after'] is None:
            parts.append('the schemas could not be compared with before the run')
        if self.result['unrecorded_changes']:
            parts.append('going back by migrations cannot undo what is not recorded: restore the backup taken '
                         'before the run')
        elif not applied and not reverted:
            parts.append('no migration of this run is recorded')
        elif self.result['from_revision'] != after.current_revision:
            parts.append('to go back to where the run started use target=%s' % (self.result['from_revision'] or 'base'))
        return '; '.join(parts)

    # -------------------------------------------------------------------- run
    def run(self):
        get_adapter = self.get_adapter
        if get_adapter is None:
            from ansible_collections.homelab.migrations.plugins.module_utils.adapters.registry import get_adapter
        check_audit_log(self.params.get('audit_log'))
        lock_timeout = check_duration('lock_timeout', self.params.get('lock_timeout'))
        statement_timeout = check_duration('statement_timeout', self.params.get('statement_timeout'))
        self.params['lock_timeout'] = lock_timeout
        self.params['statement_timeout'] = statement_timeout
        try:
            adapter = get_adapter(self.spec, self.dburl)
        except Exception as exc:
            raise ApplyFailure('service %r: %s' % (self.name, self.scrub(str(exc))), code='bad_config')
        self.connect()
        try:
            _session_settings(self.conn, self.check_mode, lock_timeout, statement_timeout)
        except ApplyFailure:
            raise
        except Exception as exc:
            raise ApplyFailure('service %r: cannot prepare the session: %s; nothing was changed'
                               % (self.name, ' '.join(self.scrub(str(exc)).split())),
                               retryable=_connection_gone(exc, self.conn))
        self.lock()
        self.before = self.read(adapter)
        return self.decide(adapter)

    def decide(self, adapter):
        """From the state read (self.before) on: plan, preview, stop in check mode or carry the plan out."""
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
        if not steps:
            if not self.check_mode and not self.borrowed:
                # the role compares it with the fingerprint of the apply it goes back from
                fp = self.take_fingerprint(adapter, self.conn)
                digest = fp.digest if fp is not None else None
                self.result['fingerprint'] = {'before': digest, 'after': digest}
            return 'unchanged'
        if self.check_mode:
            if self.plan.direction == 'down':
                self.result['reverted'] = steps
            else:
                self.result['applied'] = steps
            return 'check'
        self.carry_out_bounded(adapter, steps)
        return 'success'

    def _blocker_watch(self):
        def connect():
            return connection_mod.connect(self.dburl, service=self.name + ':watch', connect_timeout=5)

        def pids():
            return [self.conn.get_backend_pid()] if self.conn is not None and not self.conn.closed else []
        return waits.BlockerWatch(connect, pids, waits.child_prefix(self.name))

    def carry_out_bounded(self, adapter, steps):
        """carry_out, again after a pause when a statement ran into lock_timeout and nothing of it stayed.

        At most lock_retries more attempts, pausing lock_retry_delay, then twice that... (each at most
        waits.MAX_RETRY_DELAY). Before each retry the state is read and planned again. The message of a
        final lock timeout names the sessions that blocked the migration (pg_blocking_pids).
        """
        delays = waits.retry_delays(self.params.get('lock_retries'), self.params.get('lock_retry_delay'))
        blockers = {}
        attempts = 0
        while True:
            attempts += 1
            self.error_code = None
            self.after = None
            with self._blocker_watch() as watch:
                try:
                    self.carry_out(adapter, steps)
                    return
                except ApplyFailure as exc:
                    failure = exc
            for b in watch.found():
                blockers[b['pid']] = b
            # proved from the re-read position and schema fingerprint (carry_out), not assumed
            untouched = bool(self.result.get('untouched'))
            if self.error_code != 'lock_timeout':
                raise failure
            self.result['error_code'] = 'lock_timeout'
            self.result['blockers'] = list(blockers.values())
            if not untouched or not delays:
                raise ApplyFailure(self.lock_timeout_message(failure, attempts, list(blockers.values())),
                                   code='lock_timeout')
            pause = delays.pop(0)
            self.warnings.append('service %r: a migration statement ran into lock_timeout %s (attempt %d)%s; '
                                 'nothing stayed, trying again in %ss'
                                 % (self.name, self.params.get('lock_timeout'), attempts,
                                    ', blocked by ' + waits.describe_blockers(watch.found()) if watch.found() else '',
                                    pause))
            time.sleep(pause)
            self.before = self.read(adapter)
            self.result['from_revision'] = self.before.current_revision
            self.check_expected(self.before.current_revision)
            steps = self.make_plan(adapter, self.before)
            if not steps:
                return

    def lock_timeout_message(self, failure, attempts, blockers):
        who = waits.describe_blockers(blockers)
        text = ('service %r: gave up after %d attempt(s): a migration statement waited longer than lock_timeout %s '
                'for a table lock each time%s. %s'
                % (self.name, attempts, self.params.get('lock_timeout'),
                   ', blocked by ' + who if who else ' (the blocking session was not seen)',
                   (waits.blocker_advice(blockers) + '. ') if blockers else ''))
        return text + str(failure)

    def close(self):
        if self.conn is None or self.borrowed:
            return
        try:
            if self.locked and not self.conn.closed:
                try:
                    self.conn.rollback()
                except Exception:
                    pass
                lock_mod.release(self.conn, self.name)
        finally:
            try:
                self.conn.close()
            except Exception:
                pass
            self.locked = False

    def audit(self, outcome, error):
        path = self.params.get('audit_log')
        if not path:
            return
        r = self.result
        try:
            record = audit_mod.make_record(
                self.name, self.params.get('action') or 'apply', r['from_revision'], r['to_revision'],
                outcome=outcome, error=error, confirmation=self.params.get('confirmation'), scrub=self.scrub,
                applied=list(r['applied']), reverted=list(r['reverted']), duration_seconds=r['duration_seconds'],
                lock_wait_seconds=r['lock_wait_seconds'], target=self.target, tool=r['tool'],
                check_mode=self.check_mode, error_code=r['error_code'], untouched=r['untouched'],
                committed=list(r['committed']), failed_migration=r['failed_migration'],
                unrecorded_changes=r['unrecorded_changes'], schema_changes=list(r['schema_changes']))
            audit_mod.append_record(path, record)
        except Exception as exc:
            self.warnings.append('the audit record could not be written to %s: %s' % (path, exc))


def run_apply(spec, dburl, params=None, check_mode=False, diff=False, get_adapter=None):
    """Run one apply; never raises for an expected failure. Returns the result dict.

    ``spec`` is a validated service spec with defaults filled, ``dburl`` its DbUrl, ``params`` the
    other module options (APPLY_OPTIONS plus connect_timeout).
    """
    run = _Run(spec, dburl, params, check_mode, diff, get_adapter)
    return _finish(run, run.run)


def check_plan(spec, dburl, conn, adapter, state, params=None, diff=False, holder=None, unreadable=None):
    """What ``run_apply(..., check_mode=True)`` would return, from a state already read on ``conn``.

    The status module plans with the connection, the state and the lock holder of its own read (one
    read-only session, no second connection, read or lock lookup): the same plan, refusals, warnings
    and result fields as the apply module's check mode, which it shares this code with. ``state``
    None means it could not be read, and ``unreadable`` says why. ``conn`` is left open; no audit
    record is written. Never raises for an expected failure.
    """
    params = dict(params or {})
    params.pop('audit_log', None)
    run = _Run(spec, dburl, params, True, diff, None)
    run.conn = conn
    run.borrowed = True

    def plan():
        if state is None:
            raise ApplyFailure('%s; nothing was changed'
                               % (unreadable or 'service %r: its migration state could not be read' % run.name),
                               code='unreachable')
        run.warn_if_locked(holder)
        run.before = state
        return run.decide(adapter)
    return _finish(run, plan)


def _finish(run, step):
    """Run ``step`` (the whole run or its planning part), close, audit and shape the result.

    A run of its own (not check_plan's borrowed connection) runs under interrupt.Guard: SIGINT, SIGHUP,
    SIGTERM or the controller's death cancel the running statement (or kill the tool), roll back, release
    the lock, and the result and audit record say ``interrupted`` (``error_code: interrupted``).
    """
    started = time.monotonic()
    dburl = run.dburl
    outcome, error = 'failed', None
    guard = interrupt.Guard(cancel=run.cancel_query) if not run.borrowed else None
    with guard if guard is not None else _NoGuard():
        try:
            outcome = step()
        except ApplyFailure as exc:
            error = dburl.scrub(str(exc))
            run.result['error_code'] = exc.code
            run.result['retryable'] = bool(exc.retryable)
        except interrupt.Interrupted as exc:
            error = None
            run.interrupted_reason = exc.reason
        except Exception as exc:  # a bug: still release, audit and answer without a traceback
            error = describe_unexpected(run.name, exc, dburl, 'running the apply')
            run.result['error_code'] = getattr(exc, 'error_code', None) or 'apply_failed'
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: interrupted all the same
            error = None
            run.interrupted_reason = 'interrupted (%s)' % exc.__class__.__name__
        finally:
            if guard is not None:
                guard.raised = True  # later signals must not break the clean-up below
            reason = getattr(run, 'interrupted_reason', None) or (guard.reason if guard is not None else None)
            if reason is not None:
                # a signal arrived or the controller went away: whatever the step said, the job was cancelled
                outcome = 'interrupted'
                run.result['error_code'] = interrupt.ERROR_CODE
                committed = run.result['applied'] or run.result['reverted']
                if committed:
                    detail = run.interrupted_detail or 'applied %s, reverted %s' % (
                        run.result['applied'], run.result['reverted'])
                    what = ('what this run had committed before the cancel stayed, anything still running was '
                            'cancelled, and the lock released')
                elif run.started and not run.settled:
                    detail = run.interrupted_detail or 'what stayed could not be re-read'
                    what = 'the running statement was cancelled and the lock released'
                else:
                    detail = run.interrupted_detail or 'stopped before any migration ran'
                    what = 'the running statement was cancelled and rolled back and the lock released'
                error = dburl.scrub('service %r: %s; %s (%s)' % (run.name, reason, what, detail))
            run.close()
            run.result['duration_seconds'] = round(time.monotonic() - started, 3)
            if outcome == 'failed' and error is None:
                error = 'service %r: the run was interrupted' % run.name
                run.result['error_code'] = run.result['error_code'] or 'interrupted'
            if outcome in ('failed', 'interrupted') and run.started and not run.settled:
                run.result['untouched'] = False  # the plan began and nothing was re-read: nothing is proved
                run.result['unrecorded_changes'] = True
            run.audit(outcome, error)
    result = run.result
    result['outcome'] = outcome
    if error is not None:
        result['failed'] = True
        result['msg'] = error
    result['warnings'] = [dburl.scrub(w) for w in run.warnings]
    return result


class _NoGuard(object):
    reason = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
