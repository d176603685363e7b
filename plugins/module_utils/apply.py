# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply orchestration: move one service's database to a target, up or down, under its lock.

    result = run_apply(spec, dburl, params, check_mode=False, diff=False)

connect (application_name homelab.migrations:<service>) -> take the service's advisory lock
(lock_wait) -> read_state -> plan (plan.py; the adapter refuses over problems the options do not allow:
modified, out_of_order, a broken journal, a missing down file...) -> (check mode:
stop here and report) -> apply -> re-read the state (the database only: adapter.reread_state reuses the
parsed history) and report what really happened (apply_verify.py) ->
release the lock -> append one audit record. ``result`` holds the DESIGN.md return fields (apply_result.py) and,
outside check mode, ``status``: homelab_migration_status's entry of the service as the run leaves it (apply_verify.py);
on failure ``result['failed']`` is True and ``result['msg']`` says what failed and what to do next.
Nothing here knows a tool: the adapters do (adapters/base.py); a new tool needs no change here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.homelab.migrations.plugins.module_utils import connection as connection_mod
from ansible_collections.homelab.migrations.plugins.module_utils import interrupt
from ansible_collections.homelab.migrations.plugins.module_utils import lock as lock_mod
from ansible_collections.homelab.migrations.plugins.module_utils import waits
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import AdapterError
from ansible_collections.homelab.migrations.plugins.module_utils.apply_result import (
    ApplyFailure, closing_fields, describe_unexpected, failed_with, interruption, record_changes, shaped, write_audit)
from ansible_collections.homelab.migrations.plugins.module_utils.apply_session import (
    check_audit_log, child_session_options, check_duration, session_settings)
from ansible_collections.homelab.migrations.plugins.module_utils.apply_verify import VerificationMixin
from ansible_collections.homelab.migrations.plugins.module_utils.connection import ConnectError
from ansible_collections.homelab.migrations.plugins.module_utils.plan import Planner


class _Run(Planner, VerificationMixin):
    """One apply run; holds what happened so far so a failure can still be reported truthfully."""

    def __init__(self, spec, dburl, params, check_mode, diff, get_adapter):
        super(_Run, self).__init__(spec, dburl, params, check_mode, diff)
        self.get_adapter = get_adapter
        self.adapter = None
        self.locked = False
        self.after = None
        self.self_committed = []
        self.maybe_committed = []
        self.error_code = None  # the adapter's code of the last failed attempt (lock_timeout, apply_failed...)

    def cancel_query(self):
        """Cancel the statement running on the run's connection (from another thread; interrupt.Guard)."""
        for conn in (self.conn, self.reread_conn):
            if conn is not None and not conn.closed:
                try:
                    conn.cancel()
                except Exception:
                    pass

    # ---------------------------------------------------------------- the steps
    def connect(self):
        try:
            self.conn = connection_mod.connect(self.dburl, service=self.name,
                                               connect_timeout=self.params.get('connect_timeout') or 10)
        except ConnectError as exc:
            raise ApplyFailure('service %r: %s; nothing was changed' % (self.name, exc), code='unreachable',
                               retryable=True)

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

    def read(self, adapter, known=None):
        """The state on the run's connection; with ``known`` (read before in this run) its parsed files are reused."""
        self.after_status = self.status_state = None
        try:
            self.status_state = adapter.reread_state(self.conn, known) if known is not None \
                else adapter.read_state(self.conn)
            return self.status_state
        except AdapterError as exc:
            raise ApplyFailure('%s; nothing was changed' % self.adapter_message(exc), code=exc.code,
                               retryable=exc.code == 'unreachable')
        except Exception as exc:
            raise ApplyFailure('%s; nothing was changed' % describe_unexpected(self.name, exc, self.dburl),
                               retryable=connection_mod.is_connection_lost(exc, self.conn))

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
            adapter = self.adapter = get_adapter(self.spec, self.dburl)
        except Exception as exc:
            raise ApplyFailure('service %r: %s' % (self.name, self.scrub(str(exc))), code='bad_config')
        self.connect()
        try:
            session_settings(self.conn, self.check_mode, lock_timeout, statement_timeout)
        except ApplyFailure:
            raise
        except Exception as exc:
            raise ApplyFailure('service %r: cannot prepare the session: %s; nothing was changed'
                               % (self.name, ' '.join(self.scrub(str(exc)).split())),
                               retryable=connection_mod.is_connection_lost(exc, self.conn))
        self.lock()
        self.before = self.read(adapter)
        return self.decide(adapter)

    def decide(self, adapter):
        """From the state read under the lock (self.before) on: plan, stop in check mode or carry the plan out."""
        steps = self.planned_steps(adapter)
        if not steps and not self.check_mode:
            # the role compares it with the fingerprint of the apply it goes back from
            fp = self.take_fingerprint(adapter, self.conn)
            digest = fp.digest if fp is not None else None
            self.result['fingerprint'] = {'before': digest, 'after': digest}
            return 'unchanged'
        if self.check_mode:
            return self.checked(steps)
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
            self.before = self.read(adapter, known=self.before)
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

    def attempt(self, adapter):
        """Run the plan once: (reported ApplyResult or None, error text, error code, details, Interrupted or None)."""
        reported = error = code = interrupted = None
        details = {}
        try:
            reported = adapter.apply(self.conn, self.plan, child_session_options(self.conn, self.options()))
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
            details = {'lost': connection_mod.is_connection_lost(exc, self.conn)}
        except BaseException as exc:  # KeyboardInterrupt, SystemExit, a signal turned into an exception
            error = 'service %r: the run was interrupted (%s) while applying the plan' % (
                self.name, exc.__class__.__name__)
            code = getattr(exc, 'error_code', None) or 'interrupted'
        return reported, error, code, details, interrupted

    def carry_out(self, adapter, steps):
        """Fingerprint, run the plan, re-read what stayed and report it; ApplyFailure when the plan failed."""
        self.fp_before = self.take_fingerprint(adapter, self.conn)
        self.result['fingerprint']['before'] = self.fp_before.digest if self.fp_before is not None else None
        self.started = True
        self.status_state = None  # from here on only a re-read says where the service is
        reported, error, code, details, interrupted = self.attempt(adapter)
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
        record_changes(self, reported, details, after, failed)
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

    def close(self):
        if self.conn is None:
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


def run_apply(spec, dburl, params=None, check_mode=False, diff=False, get_adapter=None):
    """Run one apply; never raises for an expected failure. Returns the result dict.

    ``spec`` is a validated service spec with defaults filled, ``dburl`` its DbUrl, ``params`` the
    other module options (plan.APPLY_OPTIONS plus connect_timeout).

    The run is guarded (interrupt.Guard): SIGINT, SIGHUP, SIGTERM or the controller's death cancel the running
    statement (or kill the tool), roll back, release the lock, and the result and audit record say
    ``interrupted`` (``error_code: interrupted``).
    """
    run = _Run(spec, dburl, params, check_mode, diff, get_adapter)
    started = time.monotonic()
    outcome, error = 'failed', None
    with interrupt.Guard(cancel=run.cancel_query) as guard:
        run.guard = guard
        try:
            outcome = run.run()
            run.attach_status(run.adapter)  # still guarded: a cancel stops its pre-flight (squawk) too
        except BaseException as exc:  # every failure becomes the result's fields (apply_result.failed_with)
            error = failed_with(run, exc)
        finally:
            guard.raised = True  # later signals must not break the clean-up below
            outcome, error = interruption(run, outcome, error, run.interrupted_reason or guard.reason)
            run.attach_status(run.adapter)
            run.close()
            outcome, error = closing_fields(run, outcome, error, started)
            write_audit(run, outcome, error)
    return shaped(run, outcome, error)
