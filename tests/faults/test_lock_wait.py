"""A migration that needs a table lock an application holds: bounded, the blocker named, nothing changed.

The issue's input: an application session is `idle in transaction` after reading `users`; a migration
`ALTER TABLE users ADD COLUMN ...` used to wait for its lock forever (no lock_timeout by default) while the
application's own reads queued behind it. Now migration statements run with lock_timeout (default 5s), are
retried a bounded number of times with a growing pause when nothing of the attempt stayed, and the failure
names the blocking session (pid, application_name, state, since). Both tools: drizzle (statements on the
module's own session) and Alembic (the service's own alembic, a child process).
"""

import os
import sys
import threading
import time

import psycopg2
import pytest

from harness.ansible import REPO, run_module
from harness.drizzle_gen import users_then

SERVICES = os.path.join(REPO, 'examples', 'homelab', 'services')
ALEMBIC = os.path.join(os.path.dirname(sys.executable), 'alembic')


def _drizzle_service(root, url):
    users_then(root, '0001_nick', 'ALTER TABLE "users" ADD COLUMN "nick" text;')
    return {'name': 'bot', 'tool': 'drizzle', 'path': root, 'database_url': url}


def _alembic_service(url):
    return {'name': 'dashboard', 'tool': 'alembic', 'path': os.path.join(SERVICES, 'dashboard'),
            'database_url': url, 'alembic_command': [ALEMBIC]}


class _App(object):
    """An application session that read `users` and stays idle in transaction."""

    def __init__(self, db):
        self.conn = psycopg2.connect(db.server.dsn(db.name) if hasattr(db.server, 'dsn') else db.password_url,
                                     application_name='the-app')
        self.cur = self.conn.cursor()
        self.cur.execute('SELECT count(*) FROM users')
        self.pid = self.conn.get_backend_pid()

    def close(self):
        self.conn.rollback()
        self.conn.close()


def _reads_while(db, stop, latencies):
    """Another application session reading `users` over and over while the migration runs."""
    conn = psycopg2.connect(db.password_url, application_name='the-app-reader')
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = '60s'")
            while not stop.is_set():
                started = time.monotonic()
                cur.execute('SELECT count(*) FROM users')
                latencies.append(time.monotonic() - started)
                time.sleep(0.1)
    finally:
        conn.close()


@pytest.mark.parametrize('tool', ['drizzle', 'alembic'])
def test_lock_wait_is_bounded_names_the_blocker_and_changes_nothing(fresh_db, tmp_path, tool):
    if tool == 'drizzle':
        spec = _drizzle_service(str(tmp_path / 'bot'), fresh_db.password_url)
        first, columns_sql = '0000_users', "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users'"
    else:
        spec = _alembic_service(fresh_db.password_url)
        first, columns_sql = '001', "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users'"
    result, proc = run_module('homelab_migration_apply', {'service': spec, 'target': first})
    assert not result.get('failed'), result.get('msg') or proc.stdout[-3000:]
    columns = fresh_db.query(columns_sql)[0][0]
    before = fresh_db.snapshot()
    app = _App(fresh_db)
    stop, latencies = threading.Event(), []
    reader = threading.Thread(target=_reads_while, args=(fresh_db, stop, latencies), daemon=True)
    try:
        reader.start()
        started = time.monotonic()
        result, proc = run_module('homelab_migration_apply', {
            'service': spec, 'lock_timeout': '1s', 'lock_retries': 2, 'lock_retry_delay': 1}, timeout=120)
        took = time.monotonic() - started
    finally:
        stop.set()
        reader.join(90)
        app.close()
    assert result.get('failed'), result
    # 3 attempts of at most 1 s lock wait + 1 s and 2 s pauses, plus starting the tool: bounded well below a minute
    assert took < 45, took
    assert result['error_code'] == 'lock_timeout', result
    msg = result['msg']
    assert 'pid %d' % app.pid in msg and "'the-app'" in msg and 'idle in transaction' in msg, msg
    assert 'gave up after 3 attempt(s)' in msg and 'pg_terminate_backend' in msg, msg
    assert [b['pid'] for b in result['blockers']] == [app.pid], result['blockers']
    assert result['blockers'][0]['state'] == 'idle in transaction' and result['blockers'][0]['since']
    assert fresh_db.snapshot() == before
    assert fresh_db.query(columns_sql)[0][0] == columns
    # the application's reads never queued behind the migration for longer than its lock_timeout
    assert latencies and max(latencies) < 3, max(latencies or [0])
    retried = [w for w in result.get('warnings', []) if 'trying again' in w]
    assert len(retried) == 2, result.get('warnings')


def test_default_lock_timeout_applies_without_any_option(fresh_db, tmp_path):
    """No lock_timeout given: the default (5s) still bounds the wait; retries 0 keeps the test short."""
    spec = _drizzle_service(str(tmp_path / 'bot'), fresh_db.password_url)
    result, _proc = run_module('homelab_migration_apply', {'service': spec, 'target': '0000_users'})
    assert not result.get('failed'), result
    app = _App(fresh_db)
    try:
        started = time.monotonic()
        result, _proc = run_module('homelab_migration_apply', {'service': spec, 'lock_retries': 0}, timeout=120)
        took = time.monotonic() - started
    finally:
        app.close()
    assert result.get('failed') and result['error_code'] == 'lock_timeout', result
    assert 4 < took < 40, took
    assert 'lock_timeout 5s' in result['msg'] and 'pid %d' % app.pid in result['msg']


def test_lock_freed_during_the_pauses_lets_the_retry_succeed(fresh_db, tmp_path):
    spec = _drizzle_service(str(tmp_path / 'bot'), fresh_db.password_url)
    result, _proc = run_module('homelab_migration_apply', {'service': spec, 'target': '0000_users'})
    assert not result.get('failed'), result
    app = _App(fresh_db)

    def release_after_first_wait():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if fresh_db.query("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                              "AND application_name LIKE 'homelab.migrations:bot%%'")[0][0]:
                break
            time.sleep(0.1)
        time.sleep(1.5)  # past the first attempt's lock_timeout: it has failed and pauses now
        app.close()
    releaser = threading.Thread(target=release_after_first_wait, daemon=True)
    releaser.start()
    try:
        result, _proc = run_module('homelab_migration_apply', {
            'service': spec, 'lock_timeout': '1s', 'lock_retries': 3, 'lock_retry_delay': 2}, timeout=120)
    finally:
        releaser.join(90)
    assert not result.get('failed'), result
    assert result['applied'] == ['0001_nick']
    assert any('trying again' in w for w in result.get('warnings', [])), result.get('warnings')


class _Locker(object):
    """An application session holding ACCESS EXCLUSIVE on `users` (as a long ALTER TABLE or LOCK TABLE does)."""

    def __init__(self, db):
        self.conn = psycopg2.connect(db.password_url, application_name='the-locker')
        self.conn.cursor().execute('LOCK TABLE users IN ACCESS EXCLUSIVE MODE')

    def close(self):
        self.conn.rollback()
        self.conn.close()


def test_pg_dump_waits_at_most_lock_wait_timeout(fresh_db, tmp_path):
    fresh_db.execute('CREATE TABLE users (id int PRIMARY KEY)')
    dest = str(tmp_path / 'backups')
    locker = _Locker(fresh_db)
    try:
        started = time.monotonic()
        result, _proc = run_module('homelab_pg_backup', {'database_url': fresh_db.password_url, 'dest': dest,
                                                         'service': 'bot', 'lock_wait_timeout': 2}, timeout=120)
        took = time.monotonic() - started
    finally:
        locker.close()
    assert result.get('failed'), result
    assert took < 30, took
    assert 'lock_wait_timeout' in result['msg'], result['msg']
    assert not [f for f in os.listdir(dest) if not f.startswith('.')] if os.path.isdir(dest) else True


def test_restore_waits_at_most_lock_wait_timeout(fresh_db, tmp_path):
    fresh_db.execute('CREATE TABLE users (id int PRIMARY KEY)')
    fresh_db.execute('INSERT INTO users VALUES (1), (2)')
    dest = str(tmp_path / 'backups')
    result, _proc = run_module('homelab_pg_backup', {'database_url': fresh_db.password_url, 'dest': dest,
                                                     'service': 'bot'})
    assert not result.get('failed'), result
    fresh_db.execute('INSERT INTO users VALUES (3)')
    before = fresh_db.snapshot()
    locker = _Locker(fresh_db)
    try:
        started = time.monotonic()
        restored, _proc = run_module('homelab_pg_backup', {'database_url': fresh_db.password_url, 'state': 'restored',
                                                           'path': result['path'], 'lock_wait_timeout': 2},
                                     timeout=120)
        took = time.monotonic() - started
    finally:
        locker.close()
    assert restored.get('failed'), restored
    assert took < 30, took
    assert 'lock_wait_timeout (2s)' in restored['msg'] and "'the-locker'" in restored['msg'], restored['msg']
    assert fresh_db.snapshot() == before
