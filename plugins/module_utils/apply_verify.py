# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What stayed after an apply: the schema fingerprint, the re-read, and the facts the role decides on.

VerificationMixin is part of apply.py's run (a plan.Planner): before the plan runs the fingerprint is taken
(``fp_before``); afterwards the state and fingerprint are re-read, after a failure on a NEW connection
(the run's own may be broken), and ``untouched`` / ``unrecorded_changes`` / ``schema_changes`` are worked
out from what was re-read, never assumed (DESIGN.md "Result fields the role relies on").
It uses the run's ``conn``, ``dburl``, ``name``, ``params``, ``before``, ``plan``, ``result``, ``warnings``,
and sets ``reread_conn`` (cancelled with the run's), ``self_committed``, ``maybe_committed``, ``settled``.
It also builds the ``status`` return field: the service's homelab_migration_status entry for the last state
read under the lock (status_entry.py, the code the status module builds its entries with).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils import connection as connection_mod
from ansible_collections.homelab.migrations.plugins.module_utils import fingerprint as fingerprint_mod
from ansible_collections.homelab.migrations.plugins.module_utils.status_entry import add_findings, state_entry

# the re-read after a failure (what stayed?) never waits long for a lock or runs long: it says "unknown" instead
REREAD_LOCK_TIMEOUT = '5s'
REREAD_STATEMENT_TIMEOUT = '60s'


class VerificationMixin(object):
    """The fingerprint / re-read / settle steps of an apply run (mixed into apply.py's run)."""

    fp_before = None  # fingerprint.take() before the plan ran, None when the catalogue could not be read
    reread_conn = None  # the connection of a re-read after a failure (cancel_query cancels it too)
    status_state = None  # the state read under the lock on ``conn`` while nothing of the plan has run yet
    after_status = None  # the status entry of the state re-read after the plan ran
    guard = None  # the run's interrupt.Guard (apply.run_apply)

    def cancelled(self):
        """True once a signal or the controller's death cancelled the run."""
        return bool(self.interrupted_reason or (self.guard is not None and self.guard.reason))

    def status_entry(self, adapter, state, conn):
        """homelab_migration_status's entry of this service for ``state`` (status_entry.py): its lock as this run
        leaves it (released), its findings read on ``conn`` as the status module's defaults find them (not with
        this run's transaction / timeouts), none when the ``preflight`` option is off, and none once the run was
        cancelled (the pre-flight runs squawk, up to a minute: a cancelled run ends now, its lock released)."""
        entry = state_entry(self.spec, self.dburl, state)
        if self.params.get('preflight') is not False and not self.cancelled():
            add_findings(entry, adapter, conn, state, None, self.dburl)
        return entry

    def attach_status(self, adapter):
        """``result['status']`` (not in check mode): the entry of the state re-read after the plan ran, else of the
        state read under the lock when the plan never started; absent when neither is known (or attached already)."""
        if self.check_mode or 'status' in self.result:
            return
        entry = self.after_status
        if entry is None and self.status_state is not None and adapter is not None:
            try:
                entry = self.status_entry(adapter, self.status_state, self.conn)
            except Exception:
                entry = None
        if entry is not None:
            self.result['status'] = entry

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
        self.after_status = None
        if conn is not None and not conn.closed:
            try:
                conn.rollback()
                conn.autocommit = True
            except Exception:
                pass
        if not fresh and conn is not None and not conn.closed:
            try:
                return self._read_after(adapter, conn)
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
            return self._read_after(adapter, other)
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

    def _read_after(self, adapter, conn):
        """(state, fingerprint) on ``conn``, and the status entry of that state (``after_status``)."""
        state = adapter.reread_state(conn, self.before)  # the files parsed for the plan, the database read again
        fp = self.take_fingerprint(adapter, conn)
        self.after_status = self.status_entry(adapter, state, conn)
        return state, fp

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
