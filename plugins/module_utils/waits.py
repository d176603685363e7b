# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounded lock waits for migration statements, and who a migration waited for.

A migration statement that needs a table lock (``ALTER TABLE users ...``) waits behind any session that
holds a conflicting lock - for instance an application session left ``idle in transaction`` after reading
``users`` - and while it waits, every later reader of that table queues behind it: an outage. So migration
sessions get a ``lock_timeout`` by default (DEFAULT_LOCK_TIMEOUT); a statement that runs into it is retried
a few times with a growing pause (``lock_retries`` / ``lock_retry_delay``, bounded in total), only when the
database shows that nothing of the attempt stayed. While a migration runs, ``BlockerWatch`` looks (on its own
read-only connection) for the sessions that block the migration's sessions (``pg_blocking_pids``), so the
final message names them: pid, application_name, state and since when.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time

DEFAULT_LOCK_TIMEOUT = '5s'
DEFAULT_LOCK_RETRIES = 3
DEFAULT_LOCK_RETRY_DELAY = 2
MAX_RETRY_DELAY = 30
LOCK_NOT_AVAILABLE = '55P03'
# psycopg2 / psycopg 3 exception class for SQLSTATE 55P03, as a child tool (alembic) prints it
LOCK_NOT_AVAILABLE_CLASS = 'LockNotAvailable'
WATCH_INTERVAL = 0.25

_BLOCKERS_SQL = """
SELECT w.pid, b.pid, b.application_name, b.state, b.state_change, b.xact_start, host(b.client_addr),
       b.wait_event_type
  FROM pg_catalog.pg_stat_activity w
 CROSS JOIN LATERAL unnest(pg_catalog.pg_blocking_pids(w.pid)) AS blocking(pid)
  JOIN pg_catalog.pg_stat_activity b ON b.pid = blocking.pid
 WHERE w.datname = current_database() AND w.pid <> pg_catalog.pg_backend_pid()
   AND (w.pid = ANY(%s) OR w.application_name LIKE %s)
"""


def child_application_name(service):
    """application_name of a migration's child-tool sessions (alembic): homelab.migrations:<service>:child."""
    return ('homelab.migrations:%s:child' % service)[:63]


def child_prefix(service):
    return 'homelab.migrations:%s:' % service


def retry_delays(retries, delay):
    """The pauses before each retry: delay, 2*delay, 4*delay... each at most MAX_RETRY_DELAY."""
    out = []
    for attempt in range(max(0, int(retries or 0))):
        out.append(min(MAX_RETRY_DELAY, float(delay or 0) * (2 ** attempt)))
    return out


def is_lock_timeout(exc):
    """True when SQLSTATE 55P03 (lock_not_available) is the exception or in its cause chain."""
    seen = 0
    while exc is not None and seen < 10:
        if getattr(exc, 'pgcode', None) == LOCK_NOT_AVAILABLE:
            return True
        diag = getattr(exc, 'diag', None)
        if diag is not None and getattr(diag, 'sqlstate', None) == LOCK_NOT_AVAILABLE:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _iso(value):
    return value.isoformat() if value is not None and hasattr(value, 'isoformat') else value


def describe_blockers(blockers):
    """'pid 4242 (app, idle in transaction since 2026-...)' for each blocker, or None."""
    if not blockers:
        return None
    parts = []
    for b in blockers:
        parts.append('pid %s (application_name %s, %s since %s%s)' % (
            b['pid'], repr(b['application_name']) if b.get('application_name') else 'not set',
            b.get('state') or 'state unknown', b.get('since') or 'unknown',
            ', transaction open since %s' % b['xact_start'] if b.get('xact_start') else ''))
    return ', '.join(parts)


def blocker_advice(blockers):
    pids = ', '.join(str(b['pid']) for b in blockers or [])
    if not pids:
        return ''
    return ('end that transaction in the application, or if it is stale: SELECT pg_terminate_backend(pid) for '
            '%s; then run again' % pids)


class BlockerWatch(object):
    """While a migration runs, remember who blocks its sessions (its own pid and/or its application_name).

    ``connect`` returns a new autocommit connection (or raises); ``pids`` a callable giving the backend
    pids of the migration's own sessions; ``app_prefix`` the application_name prefix of its child sessions.
    The watch never waits on a lock itself (its lock_timeout and statement_timeout are tiny) and never
    fails the run: a watch that cannot connect just knows nothing.
    """

    def __init__(self, connect, pids=None, app_prefix=None, interval=WATCH_INTERVAL, cancel_after=None):
        self.connect = connect
        self.pids = pids or (lambda: [])
        self.like = (app_prefix.replace('\\', '\\\\').replace('%', '\\%').replace('_', '\\_') + '%') \
            if app_prefix else '\x00'
        self.interval = interval
        self.blockers = {}
        self.seen_blocked = False
        # cancel_after (s): a watched session waiting on a lock longer than that is cancelled (for tools that
        # reset lock_timeout themselves: a pg_dump archive starts with SET lock_timeout = 0)
        self.cancel_after = cancel_after
        self.cancelled = []
        self._waiting_since = {}
        self._stop = threading.Event()
        self._thread = None
        self._conn = None
        self._exited = False

    def __enter__(self):
        # the watch connects in its own thread: the watched work does not wait for a connection set-up
        self._thread = threading.Thread(target=self._loop, name='homelab-blocker-watch')
        self._thread.daemon = True
        self._thread.start()
        return self

    def _open(self):
        """The watch's connection, set up never to wait (None when it cannot connect)."""
        conn = None
        try:
            conn = self.connect()
            with conn.cursor() as cur:
                cur.execute("SELECT pg_catalog.set_config('lock_timeout', '1s', false), "
                            "pg_catalog.set_config('statement_timeout', '5s', false)")
            return conn
        except Exception:
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
            return None

    def _loop(self):
        self._conn = self._open()
        if self._conn is None:
            return
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:
                break
            self._stop.wait(self.interval)
        if self._exited:  # __exit__ stopped waiting for this thread: the connection is this thread's to close
            self._close()

    def poll(self):
        try:
            pids = [int(p) for p in self.pids() if p]
        except Exception:
            pids = []
        with self._conn.cursor() as cur:
            cur.execute(_BLOCKERS_SQL, (pids, self.like))
            rows = cur.fetchall()
        now = time.monotonic()
        waiting = set(row[0] for row in rows)
        for pid in list(self._waiting_since):
            if pid not in waiting:
                del self._waiting_since[pid]
        for pid in waiting:
            since = self._waiting_since.setdefault(pid, now)
            if self.cancel_after is not None and now - since >= self.cancel_after and pid not in self.cancelled:
                with self._conn.cursor() as cur:
                    cur.execute('SELECT pg_catalog.pg_cancel_backend(%s)', (pid,))
                self.cancelled.append(pid)
        for row in rows:
            self.seen_blocked = True
            self.blockers[row[1]] = {
                'pid': row[1], 'application_name': row[2] or '', 'state': row[3], 'since': _iso(row[4]),
                'xact_start': _iso(row[5]), 'client_addr': row[6] or 'local', 'blocked_pid': row[0],
            }

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._exited = True
        self._close()
        return False

    def _close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def found(self):
        return list(self.blockers.values())
