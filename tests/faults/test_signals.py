"""A cancelled job cancels: signals to ansible-playbook end the module's work within seconds.

ansible-core 2.19 starts each worker in its own session, so a signal to ansible-playbook (or its process group)
does not reach the module. The issue's inputs: Ctrl-C (SIGINT), a dropped ssh session (SIGHUP), AWX/Semaphore's
cancel (SIGTERM to ansible-playbook's pid) and a forced stop (SIGKILL), each sent while the apply module is in
a long migration statement, waiting for a table lock, or running the service's alembic. After each: bounded
time, no process of the run left, no session of the collection left, the migration lock free, nothing of
the migration committed (never after the job ended), and an audit record that says `interrupted`.

The other cells of the issue's proof: SIGTERM/SIGKILL to the ansible-runner CLI during a lock wait and during
a pg_dump, SIGTERM to ansible-playbook during a pg_dump, and the four signals to ansible-playbook while the
role's health check retries (the service stays `unverified` and the next run checks it again).
"""

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import pytest

from harness.ansible import REPO, VENV_BIN, ansible_env
from harness.drizzle_gen import users_then
from harness.faults import MARKER_VAR, kill_marked, marked_processes, wait_for

from ansible_collections.homelab.migrations.plugins.module_utils.audit import health_states, read_records
from ansible_collections.homelab.migrations.plugins.module_utils.lock import lock_holder

SERVICES = os.path.join(REPO, 'examples', 'homelab', 'services')
ALEMBIC = os.path.join(VENV_BIN, 'alembic')
BOUND = 20  # seconds from the signal until everything of the run is gone


def _drizzle(root, second):
    users_then(root, '0001_slow', second)


SLOW_SQL = ('ALTER TABLE "users" ADD COLUMN "nick" text;\n--> statement-breakpoint\n'
            'SELECT pg_sleep(120);')
LOCK_SQL = 'ALTER TABLE "users" ADD COLUMN "nick" text;'


def _setup(situation, tmp_path, db):
    root = str(tmp_path / 'svc')
    if situation == 'alembic':
        shutil.copytree(os.path.join(SERVICES, 'dashboard'), root, ignore=shutil.ignore_patterns('__pycache__'))
        path = os.path.join(root, 'alembic', 'versions', '002_add_email_verified.py')
        with open(path) as fh:
            text = fh.read()
        text = text.replace('def upgrade():\n', 'def upgrade():\n    op.execute("SELECT pg_sleep(120)")\n', 1)
        assert 'pg_sleep(120)' in text
        with open(path, 'w') as fh:
            fh.write(text)
        spec = {'name': 'bot', 'tool': 'alembic', 'path': root, 'database_url': db.password_url,
                'alembic_command': [ALEMBIC]}
        first, target = '001', '002'
    else:
        _drizzle(root, SLOW_SQL if situation == 'statement' else LOCK_SQL)
        spec = {'name': 'bot', 'tool': 'drizzle', 'path': root, 'database_url': db.password_url}
        first, target = '0000_users', '0001_slow'
    return spec, first, target


def _play(tmp_path, spec, target, audit_log, extra=None):
    varsfile = str(tmp_path / 'vars.json')
    fd = os.open(varsfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    args = dict({'service': spec, 'target': target, 'audit_log': audit_log, 'lock_timeout': '120s'}, **(extra or {}))
    with os.fdopen(fd, 'w') as fh:
        json.dump({'homelab_test_args': args}, fh)
    playbook = str(tmp_path / 'play.yml')
    with open(playbook, 'w') as fh:
        fh.write('- hosts: localhost\n  gather_facts: false\n  tasks:\n'
                 '    - homelab.migrations.homelab_migration_apply: "{{ homelab_test_args }}"\n')
    return [os.path.join(VENV_BIN, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', '-e', '@' + varsfile,
            playbook]


def _sessions(db):
    return db.query("SELECT pid, application_name, state FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name LIKE 'homelab.migrations:bot%%' AND pid <> pg_backend_pid()")


def _busy(db, situation):
    if situation == 'lock_wait':
        sql = "wait_event_type = 'Lock'"
    else:
        sql = "query LIKE '%%pg_sleep(120)%%' AND state = 'active'"
    return db.query("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> "
                    "pg_backend_pid() AND " + sql)[0][0]


def _signal_and_wait(proc, db, marker, signum):
    """Send ``signum`` to ``proc`` (a pid of its own, as AWX/Semaphore/a terminal do), then wait (bounded) until
    no session of the service and no process of the run (``marker``) is left. Returns (gone, seconds, left)."""
    sent = time.monotonic()
    os.kill(proc.pid, signum)
    try:
        proc.wait(timeout=BOUND)
    except subprocess.TimeoutExpired:
        pass
    gone = wait_for(lambda: not _sessions(db) and not marked_processes(marker), BOUND)
    return gone, time.monotonic() - sent, (_sessions(db), marked_processes(marker))


def _reap(proc, marker):
    """Kill what the run left (its marked processes, then ansible-playbook's/ansible-runner's session)."""
    kill_marked(marker)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize('situation', ['statement', 'lock_wait', 'alembic'])
@pytest.mark.parametrize('signame', ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGKILL'])
def test_signal_to_ansible_playbook_cancels_the_migration(fresh_db, tmp_path, situation, signame):
    spec, first, target = _setup(situation, tmp_path, fresh_db)
    audit_log = str(tmp_path / 'audit.log')
    env = ansible_env({MARKER_VAR: uuid.uuid4().hex})
    out = subprocess.run(_play(tmp_path, spec, first, audit_log), env=env, capture_output=True, text=True,
                         timeout=300, check=False, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout[-3000:]
    before = fresh_db.snapshot()
    app = None
    if situation == 'lock_wait':
        app = psycopg2.connect(fresh_db.password_url, application_name='the-app')
        app.cursor().execute('SELECT count(*) FROM users')
    log = open(str(tmp_path / 'play.out'), 'w+')
    proc = subprocess.Popen(_play(tmp_path, spec, target, audit_log), env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_for(lambda: _busy(fresh_db, situation), 120), 'the migration never got busy'
        time.sleep(1)
        gone, took, left = _signal_and_wait(proc, fresh_db, env[MARKER_VAR], getattr(signal, signame))
    finally:
        _reap(proc, env[MARKER_VAR])
        if app is not None:
            app.rollback()
            app.close()
        log.seek(0)
        output = log.read()
        log.close()
    assert gone, 'still there %.0f s after %s: sessions %s, processes %s\n%s' % (took, signame, left[0], left[1],
                                                                                 output[-3000:])
    assert took < BOUND, took
    conn = fresh_db.conn()
    try:
        assert lock_holder(conn, 'bot') is None
    finally:
        conn.close()
    assert fresh_db.snapshot() == before, 'something of the cancelled migration was committed'
    time.sleep(2)  # nothing commits later either
    assert fresh_db.snapshot() == before
    last = read_records(audit_log)[-1]
    assert last['outcome'] == 'interrupted', last
    assert 'interrupted' in last['error'], last
    assert ('by %s' % signame in last['error']) or ('controller is gone' in last['error']) \
        or ('SIGTERM' in last['error']), last['error']


@pytest.mark.parametrize('signame', ['SIGTERM', 'SIGKILL'])
def test_signal_to_ansible_runner_cancels_the_migration(fresh_db, tmp_path, signame):
    """AWX's executor: the `ansible-runner run` CLI runs the play; the signal goes to ansible-runner's pid."""
    runner_bin = os.path.join(VENV_BIN, 'ansible-runner')
    if not os.path.exists(runner_bin):
        pytest.skip('ansible-runner is not installed (requirements.txt)')
    spec, first, target = _setup('statement', tmp_path, fresh_db)
    audit_log = str(tmp_path / 'audit.log')
    env = ansible_env({MARKER_VAR: uuid.uuid4().hex})
    out = subprocess.run(_play(tmp_path, spec, first, audit_log), env=env, capture_output=True, text=True,
                         timeout=300, check=False, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout[-3000:]
    before = fresh_db.snapshot()
    private = tmp_path / 'runner'
    (private / 'project').mkdir(parents=True)
    (private / 'inventory').mkdir()
    (private / 'env').mkdir()
    (private / 'project' / 'play.yml').write_text(
        '- hosts: localhost\n  gather_facts: false\n  tasks:\n'
        '    - homelab.migrations.homelab_migration_apply: "{{ homelab_test_args }}"\n')
    (private / 'inventory' / 'hosts').write_text('localhost ansible_connection=local ansible_python_interpreter=%s\n'
                                                 % os.path.join(VENV_BIN, 'python'))
    extravars = private / 'env' / 'extravars'
    fd = os.open(str(extravars), os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, 'w') as fh:
        json.dump({'homelab_test_args': {'service': spec, 'target': target, 'audit_log': audit_log,
                                         'lock_timeout': '120s'}}, fh)
    log = open(str(tmp_path / 'runner.out'), 'w+')
    proc = subprocess.Popen([runner_bin, 'run', str(private), '-p', 'play.yml'], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_for(lambda: _busy(fresh_db, 'statement'), 120), 'the migration never got busy'
        time.sleep(1)
        gone, took, left = _signal_and_wait(proc, fresh_db, env[MARKER_VAR], getattr(signal, signame))
    finally:
        _reap(proc, env[MARKER_VAR])
        log.seek(0)
        output = log.read()
        log.close()
    assert gone, 'still there %.0f s after %s to ansible-runner: %s\n%s' % (took, signame, left, output[-3000:])
    conn = fresh_db.conn()
    try:
        assert lock_holder(conn, 'bot') is None
    finally:
        conn.close()
    assert fresh_db.snapshot() == before
    last = read_records(audit_log)[-1]
    assert last['outcome'] == 'interrupted', last


@pytest.mark.parametrize('signame', ['SIGINT', 'SIGHUP', 'SIGKILL'])
def test_signal_to_ansible_playbook_stops_a_pg_dump(fresh_db, tmp_path, signame):
    """A backup whose pg_dump waits (a table lock held by the application): the job is cancelled, pg_dump goes
    with it, no partial backup stays, the audit record says interrupted."""
    fresh_db.execute('CREATE TABLE users (id int PRIMARY KEY)')
    dest = str(tmp_path / 'backups')
    audit_log = str(tmp_path / 'audit.log')
    env = ansible_env({MARKER_VAR: uuid.uuid4().hex})
    varsfile = str(tmp_path / 'vars.json')
    fd = os.open(varsfile, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, 'w') as fh:
        json.dump({'homelab_test_args': {'database_url': fresh_db.password_url, 'dest': dest, 'service': 'bot',
                                         'audit_log': audit_log, 'lock_wait_timeout': 120}}, fh)
    playbook = str(tmp_path / 'play.yml')
    with open(playbook, 'w') as fh:
        fh.write('- hosts: localhost\n  gather_facts: false\n  tasks:\n'
                 '    - homelab.migrations.homelab_pg_backup: "{{ homelab_test_args }}"\n')
    locker = psycopg2.connect(fresh_db.password_url, application_name='the-locker')
    locker.cursor().execute('LOCK TABLE users IN ACCESS EXCLUSIVE MODE')
    proc = subprocess.Popen([os.path.join(VENV_BIN, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', '-e',
                             '@' + varsfile, playbook], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_for(lambda: _busy(fresh_db, 'lock_wait'), 120), 'pg_dump never waited'
        time.sleep(1)
        gone, _took, left = _signal_and_wait(proc, fresh_db, env[MARKER_VAR], getattr(signal, signame))
    finally:
        _reap(proc, env[MARKER_VAR])
        locker.rollback()
        locker.close()
    assert gone, left
    assert not os.path.isdir(dest) or os.listdir(dest) == [], os.listdir(dest)
    last = read_records(audit_log)[-1]
    assert last['outcome'] == 'interrupted', last


# ------------------------------------------------------------------------- the other cells of the proof
def _cancel(proc, signame, marker, gone_too):
    """Send ``signame`` to ``proc``'s own pid; wait (bounded) until the run and ``gone_too()`` are gone.

    Returns (gone, seconds from the signal, what was left). Kills whatever is left afterwards."""
    sent = time.monotonic()
    try:
        os.kill(proc.pid, getattr(signal, signame))
        try:
            proc.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            pass
        gone = wait_for(lambda: gone_too() and not marked_processes(marker), BOUND)
        took = time.monotonic() - sent
        left = marked_processes(marker)
    finally:
        _reap(proc, marker)
    return gone, took, left


def _runner(tmp_path, task, args, env):
    """Start `ansible-runner run` (AWX's executor) on a one-task play; the args as extra vars in env/extravars."""
    runner_bin = os.path.join(VENV_BIN, 'ansible-runner')
    if not os.path.exists(runner_bin):
        pytest.skip('ansible-runner is not installed (requirements.txt)')
    private = tmp_path / 'runner'
    (private / 'project').mkdir(parents=True)
    (private / 'inventory').mkdir()
    (private / 'env').mkdir()
    (private / 'project' / 'play.yml').write_text(
        '- hosts: localhost\n  gather_facts: false\n  tasks:\n'
        '    - homelab.migrations.%s: "{{ homelab_test_args }}"\n' % task)
    (private / 'inventory' / 'hosts').write_text('localhost ansible_connection=local ansible_python_interpreter=%s\n'
                                                 % os.path.join(VENV_BIN, 'python'))
    fd = os.open(str(private / 'env' / 'extravars'), os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, 'w') as fh:
        json.dump({'homelab_test_args': args}, fh)
    return subprocess.Popen([runner_bin, 'run', str(private), '-p', 'play.yml'], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)


@pytest.mark.parametrize('signame', ['SIGTERM', 'SIGKILL'])
def test_signal_to_ansible_runner_cancels_a_lock_wait(fresh_db, tmp_path, signame):
    """The application holds `users` idle in transaction; the migration waits for its lock under ansible-runner;
    AWX cancels (SIGTERM) or force-stops (SIGKILL) ansible-runner: the wait ends, nothing commits, lock free."""
    spec, first, target = _setup('lock_wait', tmp_path, fresh_db)
    audit_log = str(tmp_path / 'audit.log')
    env = ansible_env({MARKER_VAR: uuid.uuid4().hex})
    out = subprocess.run(_play(tmp_path, spec, first, audit_log), env=env, capture_output=True, text=True,
                         timeout=300, check=False, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout[-3000:]
    before = fresh_db.snapshot()
    app = psycopg2.connect(fresh_db.password_url, application_name='the-app')
    try:
        app.cursor().execute('SELECT count(*) FROM users')
        args = {'service': spec, 'target': target, 'audit_log': audit_log, 'lock_timeout': '120s'}
        proc = _runner(tmp_path, 'homelab_migration_apply', args, env)
        try:
            assert wait_for(lambda: _busy(fresh_db, 'lock_wait'), 120), 'the migration never waited for the lock'
            time.sleep(1)
        finally:
            gone, took, left = _cancel(proc, signame, env[MARKER_VAR], lambda: not _sessions(fresh_db))
        # the application is still in its transaction: the migration let go of the lock queue by itself
        assert _busy(fresh_db, 'lock_wait') == 0
    finally:
        app.rollback()
        app.close()
    assert gone, 'still there %.0f s after %s to ansible-runner: %s %s' % (took, signame, _sessions(fresh_db), left)
    assert took < BOUND, took
    conn = fresh_db.conn()
    try:
        assert lock_holder(conn, 'bot') is None
    finally:
        conn.close()
    assert fresh_db.snapshot() == before
    time.sleep(2)  # nothing commits later either
    assert fresh_db.snapshot() == before
    last = read_records(audit_log)[-1]
    assert last['outcome'] == 'interrupted', last


def _backup_args(fresh_db, tmp_path):
    fresh_db.execute('CREATE TABLE users (id int PRIMARY KEY)')
    fresh_db.execute('INSERT INTO users VALUES (1), (2)')
    return {'database_url': fresh_db.password_url, 'dest': str(tmp_path / 'backups'), 'service': 'bot',
            'audit_log': str(tmp_path / 'audit.log'), 'lock_wait_timeout': 120}


def _pg_dump_waits(db):
    return _busy(db, 'lock_wait')


def _no_dump_left(db):
    """No session of the run left: only the locker (and this query) are on the database."""
    return not db.query("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> "
                        "pg_backend_pid() AND backend_type = 'client backend' "
                        "AND application_name <> 'the-locker'")[0][0]


def _assert_backup_cancelled(db, args, before, gone, took, left, signame):
    assert gone, 'still there %.0f s after %s: %s %s' % (took, signame, _sessions(db), left)
    assert took < BOUND, took
    dest = args['dest']
    assert not os.path.isdir(dest) or os.listdir(dest) == [], os.listdir(dest)  # no partial backup published
    assert db.snapshot() == before
    last = read_records(args['audit_log'])[-1]
    assert last['outcome'] == 'interrupted', last


@pytest.mark.parametrize('signame', ['SIGTERM', 'SIGKILL'])
def test_signal_to_ansible_runner_stops_a_pg_dump(fresh_db, tmp_path, signame):
    """A backup under ansible-runner whose pg_dump waits for a table lock: AWX's cancel ends it, bounded."""
    args = _backup_args(fresh_db, tmp_path)
    before = fresh_db.snapshot()
    env = ansible_env({MARKER_VAR: uuid.uuid4().hex})
    locker = psycopg2.connect(fresh_db.password_url, application_name='the-locker')
    try:
        locker.cursor().execute('LOCK TABLE users IN ACCESS EXCLUSIVE MODE')
        proc = _runner(tmp_path, 'homelab_pg_backup', args, env)
        try:
            assert wait_for(lambda: _pg_dump_waits(fresh_db), 120), 'pg_dump never waited'
            time.sleep(1)
        finally:
            gone, took, left = _cancel(proc, signame, env[MARKER_VAR], lambda: _no_dump_left(fresh_db))
    finally:
        locker.rollback()
        locker.close()
    _assert_backup_cancelled(fresh_db, args, before, gone, took, left, signame)


def test_sigterm_to_ansible_playbook_stops_a_pg_dump(fresh_db, tmp_path):
    """AWX/Semaphore's cancel (SIGTERM to ansible-playbook's pid) while pg_dump waits for a table lock."""
    args = _backup_args(fresh_db, tmp_path)
    before = fresh_db.snapshot()
    env = ansible_env({MARKER_VAR: uuid.uuid4().hex})
    varsfile = str(tmp_path / 'vars.json')
    fd = os.open(varsfile, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, 'w') as fh:
        json.dump({'homelab_test_args': args}, fh)
    playbook = str(tmp_path / 'play.yml')
    with open(playbook, 'w') as fh:
        fh.write('- hosts: localhost\n  gather_facts: false\n  tasks:\n'
                 '    - homelab.migrations.homelab_pg_backup: "{{ homelab_test_args }}"\n')
    locker = psycopg2.connect(fresh_db.password_url, application_name='the-locker')
    try:
        locker.cursor().execute('LOCK TABLE users IN ACCESS EXCLUSIVE MODE')
        proc = subprocess.Popen([os.path.join(VENV_BIN, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', '-e',
                                 '@' + varsfile, playbook], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            assert wait_for(lambda: _pg_dump_waits(fresh_db), 120), 'pg_dump never waited'
            time.sleep(1)
        finally:
            gone, took, left = _cancel(proc, 'SIGTERM', env[MARKER_VAR], lambda: _no_dump_left(fresh_db))
    finally:
        locker.rollback()
        locker.close()
    _assert_backup_cancelled(fresh_db, args, before, gone, took, left, 'SIGTERM')


class _Unhealthy(BaseHTTPRequestHandler):
    """A service that answers HTTP 503 until it is fixed: the health check keeps retrying."""
    hits = 0

    def do_GET(self):  # noqa: N802
        type(self).hits += 1
        self.send_response(503)
        self.end_headers()
        self.wfile.write(b'starting')

    def log_message(self, *args):
        pass


class _Trickle(_Unhealthy):
    """A service that sends its status line one byte every second (the issue's slow endpoint)."""

    def do_GET(self):  # noqa: N802
        _Unhealthy.hits += 1
        try:
            for char in b'HTTP/1.1 200 OK\r\n\r\n':
                self.wfile.write(bytes([char]))
                self.wfile.flush()
                time.sleep(1)
        except OSError:
            pass


@pytest.mark.parametrize('signame,handler', [('SIGINT', _Unhealthy), ('SIGTERM', _Unhealthy), ('SIGHUP', _Unhealthy),
                                             ('SIGKILL', _Unhealthy), ('SIGTERM', _Trickle), ('SIGKILL', _Trickle)],
                         ids=['SIGINT-503', 'SIGTERM-503', 'SIGHUP-503', 'SIGKILL-503', 'SIGTERM-slow', 'SIGKILL-slow'])
def test_signal_to_ansible_playbook_during_the_health_check_leaves_the_service_unverified(lab, signame, handler):
    """The role's health check (homelab_migration_health) retries a failing endpoint; a signal to ansible-playbook's
    own pid ends the run in bounded time with no process left; the service stays `unverified` (never recorded
    as passed) and the next run checks its health again although nothing is pending."""
    server = ThreadingHTTPServer(('127.0.0.1', 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = 'http://127.0.0.1:%d/health' % server.server_port
        services = [lab.spec('dashboard', health_check=url, depends_on=[])]
        run = lab.spawn(migrate_all_services=services, migrate_all_health_check_retries=100,
                        migrate_all_health_check_delay=1, migrate_all_health_check_timeout=2)
        hits = [0]

        def retrying():
            if not any(r.get('health') == 'unverified' for r in lab.audit()):
                hits[0] = _Unhealthy.hits
                return False
            return _Unhealthy.hits >= hits[0] + 2  # the module asked at least twice since the record
        try:
            assert wait_for(retrying, 240), 'the health check never retried'
        finally:
            gone, took, left = _cancel(run.proc, signame, lab.marker, lambda: not lab.sessions())
        run.wait()
        asked = _Unhealthy.hits
        time.sleep(2)
        assert _Unhealthy.hits == asked, 'the health check kept asking after the run was cancelled'
        assert gone, 'still there %.0f s after %s: %s %s' % (took, signame, lab.sessions(), left)
        assert took < BOUND, took
        assert run.returncode != 0
        checks = [r for r in lab.audit() if r.get('action') == 'health_check']
        assert checks and all(r.get('health') == 'unverified' and r.get('outcome') != 'success' for r in checks), \
            checks
        assert health_states(lab.audit_log)['dashboard']['state'] == 'unverified'
        assert lab.alembic_heads_table(), 'the migrations were not applied before the health check'
        # nothing is pending, yet the next run checks the health again (and fails while it does not pass)
        again = lab.play(migrate_all_services=services, migrate_all_health_check_retries=1,
                         migrate_all_health_check_delay=0)
        assert again.returncode != 0 and 'did not answer 2xx' in again.stdout, again.stdout[-3000:]
        assert _Unhealthy.hits > asked
        assert health_states(lab.audit_log)['dashboard']['state'] == 'unverified'
    finally:
        server.shutdown()
