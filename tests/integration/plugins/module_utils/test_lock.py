"""lock.py, the key the status module reports and the apply module takes, on a real server."""

import threading
import time

import psycopg2
import pytest

from ansible_collections.homelab.migrations.plugins.module_utils import lock
from ansible_collections.homelab.migrations.plugins.module_utils.connection import connect


@pytest.mark.parametrize('name', ['dashboard', 'a', 'stream-bot'])  # crc32 below and above 2**31
def test_holder_is_found_for_signed_and_unsigned_keys(fresh_db, name):
    holder = connect(fresh_db.password_url, service=name)
    observer = connect(fresh_db.url)
    try:
        assert lock.acquire(holder, name, wait_seconds=0) < 1
        info = lock.lock_holder(observer, name)
        assert info['pid'] == holder.get_backend_pid()
        assert info['application_name'] == 'homelab.migrations:%s' % name
        assert lock.lock_status(observer, name)['held'] is True
        assert lock.lock_holder(observer, name + 'x') is None
        assert lock.release(holder, name) is True
        assert lock.lock_status(observer, name) == {'held': False, 'holder': None}
    finally:
        holder.close()
        observer.close()


def test_acquire_times_out_naming_the_holder(fresh_db):
    holder = connect(fresh_db.url, service='svc')
    waiter = connect(fresh_db.url, service='svc')
    try:
        lock.acquire(holder, 'svc')
        started = time.monotonic()
        with pytest.raises(lock.LockTimeout) as err:
            lock.acquire(waiter, 'svc', wait_seconds=0.5)
        assert 0.5 <= time.monotonic() - started < 3
        assert 'pid %d (homelab.migrations:svc)' % holder.get_backend_pid() in str(err.value)
        assert err.value.holder['pid'] == holder.get_backend_pid()
    finally:
        holder.close()
        waiter.close()


def test_waiter_gets_the_lock_when_the_holder_dies(fresh_db):
    holder = connect(fresh_db.url, service='svc')
    waiter = connect(fresh_db.url, service='svc')
    lock.acquire(holder, 'svc')
    timer = threading.Timer(0.5, holder.close)  # a session lock dies with its connection
    timer.start()
    try:
        waited = lock.acquire(waiter, 'svc', wait_seconds=10)
        assert 0.3 < waited < 5
    finally:
        timer.cancel()
        waiter.close()


def test_same_name_in_another_database_is_another_lock(fresh_db, make_db):
    other = make_db()
    a = connect(fresh_db.url)
    b = connect(other.url)
    try:
        lock.acquire(a, 'svc', wait_seconds=0)
        lock.acquire(b, 'svc', wait_seconds=0)  # would time out if the key were server-wide per database
        assert lock.lock_holder(b, 'svc')['pid'] == b.get_backend_pid()
    finally:
        a.close()
        b.close()


def test_release_on_a_dead_connection_is_harmless(fresh_db):
    conn = psycopg2.connect(fresh_db.url)
    conn.close()
    assert lock.release(conn, 'svc') is False
    assert lock.describe_holder(None) == 'another session'
