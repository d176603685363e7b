# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-service migration lock: a session-level PostgreSQL advisory lock.

Key: the two-int form ``pg_advisory_lock(NAMESPACE, crc32(service))`` so ``pg_locks`` shows it as
``locktype = 'advisory', classid = NAMESPACE, objid = crc32, objsubid = 2`` in the service's
database. The status module reports the holder; the apply module takes it before planning and
holds it until the end. A session lock dies with its connection, so a killed run never leaves it held.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
import zlib

NAMESPACE = 0x686C6D67  # 'hlmg', fits a positive int4


class LockTimeout(Exception):
    """The lock was not free within lock_wait seconds; the message names the holder."""

    def __init__(self, message, holder=None):
        super(LockTimeout, self).__init__(message)
        self.holder = holder


def _int4(value):
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value >= 0x80000000 else value


def lock_key(service):
    """(classid, objid) as signed int4 values for pg_advisory_lock(int4, int4)."""
    return NAMESPACE, _int4(zlib.crc32(service.encode('utf-8')))


_HOLDER_SQL = """
SELECT a.pid, a.application_name, host(a.client_addr), a.backend_start
  FROM pg_catalog.pg_locks l
  JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted
   AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
   AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 2
 LIMIT 1
"""


def lock_holder(conn, service):
    """Who holds ``service``'s lock in this connection's database, or None."""
    classid, objid = lock_key(service)
    # pg_locks shows classid/objid as unsigned oid values
    with conn.cursor() as cur:
        cur.execute(_HOLDER_SQL, (classid & 0xFFFFFFFF, objid & 0xFFFFFFFF))
        row = cur.fetchone()
    if not row:
        return None
    return {
        'pid': row[0],
        'application_name': row[1] or '',
        'client_addr': row[2] or 'local',
        'since': row[3].isoformat() if row[3] is not None else None,
    }


def lock_status(conn, service):
    holder = lock_holder(conn, service)
    return {'held': holder is not None, 'holder': holder}


def describe_holder(holder):
    if not holder:
        return 'another session'
    return 'pid %s (%s) from %s since %s' % (
        holder.get('pid'), holder.get('application_name') or 'no application_name',
        holder.get('client_addr'), holder.get('since'))


def acquire(conn, service, wait_seconds=60, poll=0.1):
    """Take the lock on ``conn`` (autocommit connection), waiting up to ``wait_seconds``.

    Returns the seconds spent waiting. Raises LockTimeout naming the holder.
    """
    classid, objid = lock_key(service)
    start = time.monotonic()
    deadline = start + max(0, float(wait_seconds))
    while True:
        with conn.cursor() as cur:
            cur.execute('SELECT pg_catalog.pg_try_advisory_lock(%s, %s)', (classid, objid))
            if cur.fetchone()[0]:
                return round(time.monotonic() - start, 3)
        if time.monotonic() >= deadline:
            holder = lock_holder(conn, service)
            raise LockTimeout(
                'service %r is locked by %s; waited %ss (lock_wait). Wait for that run to finish, or if it '
                'is stale end it with SELECT pg_terminate_backend(%s)'
                % (service, describe_holder(holder), wait_seconds, holder.get('pid') if holder else '<pid>'),
                holder=holder)
        time.sleep(poll)


def release(conn, service):
    classid, objid = lock_key(service)
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT pg_catalog.pg_advisory_unlock(%s, %s)', (classid, objid))
            return bool(cur.fetchone()[0])
    except Exception:
        return False
