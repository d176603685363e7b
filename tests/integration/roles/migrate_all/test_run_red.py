"""Red-team checks of the one-task run (homelab_migration_run): secrets of a health check at -vvvv, the run-scope
rollback after a failure in the third service. Through the real ansible-playbook on real PostgreSQL."""

import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from integration.roles.migrate_all.test_role import BOTS, homelab, outcomes  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.peer


class _Down(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(503)
        self.end_headers()
        self.wfile.write(b'down')

    def log_message(self, *args):
        pass


def _server():
    server = HTTPServer(('127.0.0.1', 0), _Down)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _texts(lab):
    out = []
    for path in (lab.audit_log, lab.status_report, lab.fact_file, lab.textfile):
        if os.path.exists(path):
            with open(path) as fh:
                out.append(fh.read())
    return '\n'.join(out)


def test_health_check_credentials_stay_out_of_everything_at_vvvv(homelab):  # noqa: F811
    password, token = 'Hpw' + uuid.uuid4().hex[:12], 'Tok' + uuid.uuid4().hex[:12]
    server = _server()
    try:
        url = 'http://probe:%s@127.0.0.1:%d/health?token=%s' % (password, server.server_port, token)
        services = [homelab.spec('stream-bot'), homelab.spec('discord-bot', health_check=url)]
        proc = homelab.play(migrate_all_services=services, migrate_all_health_check_retries=1,
                            migrate_all_health_check_delay=0, verbosity=4)
    finally:
        server.shutdown()
    assert proc.returncode != 0
    found = [where for where, text in (('output', proc.output), ('files', _texts(homelab)))
             if password in text or token in text]
    assert not found, found
    rec = [r for r in homelab.role_records() if r['service'] == 'discord-bot'][0]
    assert rec['outcome'] == 'failed' and 'HTTP 503' in rec['error'], rec


def test_rollback_scope_run_after_the_third_service_failed_takes_both_back(homelab):  # noqa: F811
    homelab.move('dashboard', '003')
    homelab.move('stream-bot', BOTS['stream-bot'][2])
    homelab.move('discord-bot', BOTS['discord-bot'][0])
    before = homelab.snapshot()
    server = _server()
    try:
        url = 'http://127.0.0.1:%d/health' % server.server_port
        services = [homelab.spec('dashboard'), homelab.spec('stream-bot'),
                    homelab.spec('discord-bot', health_check=url)]
        proc = homelab.play(migrate_all_services=services, migrate_all_rollback_scope='run',
                            migrate_all_health_check_retries=1, migrate_all_health_check_delay=0)
    finally:
        server.shutdown()
    assert proc.returncode != 0, proc.output[-3000:]
    final = outcomes(homelab.role_records())
    assert final == {'dashboard': 'rolled_back', 'stream-bot': 'rolled_back', 'discord-bot': 'failed'}, final
    assert homelab.snapshot() == before
    undo = [r['service'] for r in homelab.role_records() if r.get('scope') == 'run']
    assert undo == ['stream-bot', 'dashboard'], undo
    assert outcomes(homelab.fact()) == final
    with open(homelab.status_report) as fh:
        json.load(fh)


def test_a_real_run_with_diff_shows_the_sql_it_sends(homelab):  # noqa: F811
    """`--diff` on a real run shows what each apply ran (the apply module's diff), as the apply task did."""
    plain = homelab.play(tags='discord-bot')
    assert plain.returncode == 0, plain.output[-3000:]
    assert 'CREATE TABLE' not in plain.stdout
    homelab.move('discord-bot', BOTS['discord-bot'][0])
    proc = homelab.play(diff=True, tags='discord-bot')
    assert proc.returncode == 0, proc.output[-3000:]
    out = proc.stdout
    assert 'ticket_categories' in out and 'stream_notifications' in out and 'CREATE TABLE' in out, out[-4000:]


def test_the_warnings_of_the_modules_reach_the_output(homelab):  # noqa: F811
    """A statement of stream-bot's apply runs into lock_timeout once (an application holds its table for a moment):
    the apply retries and succeeds, and says so in a warning, which the run task shows as the apply task did."""
    import psycopg2
    homelab.move('stream-bot', BOTS['stream-bot'][2])
    db = homelab.dbs['stream-bot']
    app = psycopg2.connect(db.password_url, application_name='the-app')
    with app.cursor() as cur:
        cur.execute('SELECT count(*) FROM platform_connections')
    watcher = psycopg2.connect(db.password_url)
    watcher.autocommit = True
    done = threading.Event()

    def release():
        try:
            while not done.is_set():
                with watcher.cursor() as cur:
                    cur.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                                "'platform_connections'::regclass")
                    if cur.fetchone()[0]:
                        break
                time.sleep(0.1)
            time.sleep(1.5)  # the first attempt gives up (lock_timeout 1s); the retry gets the lock
        finally:
            app.rollback()

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        proc = homelab.play(tags='stream-bot', migrate_all_lock_timeout='1s', migrate_all_lock_retries=3,
                            migrate_all_lock_retry_delay=1)
    finally:
        done.set()
        thread.join(30)
        app.close()
        watcher.close()
    assert proc.returncode == 0, proc.output[-3000:]
    assert homelab.drizzle_applied('stream-bot') == BOTS['stream-bot']
    warned = [line for line in proc.output.splitlines() if 'WARNING' in line and 'lock_timeout' in line]
    assert warned, proc.output[-4000:]


class _SwapAuditLog(BaseHTTPRequestHandler):
    """A health check that answers 200, after putting a directory where the audit log is (unwritable from now)."""
    log = None

    def do_GET(self):  # noqa: N802
        if not os.path.isdir(_SwapAuditLog.log):
            os.rename(_SwapAuditLog.log, _SwapAuditLog.log + '.old')
            os.mkdir(_SwapAuditLog.log)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_an_audit_log_lost_mid_run_fails_the_task_with_its_error_once(homelab):  # noqa: F811
    """The run task fails when an audit record cannot be written; the callback prints a failed task's whole result:
    the error and each service's outcome, not every record, result and timing (each with the error again)."""
    _SwapAuditLog.log = homelab.audit_log
    server = HTTPServer(('127.0.0.1', 0), _SwapAuditLog)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = 'http://127.0.0.1:%d/health' % server.server_port
        services = [homelab.spec('dashboard'), homelab.spec('stream-bot', health_check=url),
                    homelab.spec('discord-bot')]
        before = homelab.snapshot(['stream-bot', 'discord-bot'])
        proc = homelab.play(migrate_all_services=services, migrate_all_health_check_retries=1,
                            migrate_all_health_check_delay=0)
    finally:
        server.shutdown()
    assert proc.returncode != 0
    # as with a task per step: the record of the passed check could not be written, so the service went back
    assert homelab.snapshot(['stream-bot', 'discord-bot']) == before
    fatal = [line for line in proc.stdout.splitlines() if line.startswith('fatal: ')]
    assert len(fatal) == 1 and '"outcomes": {"dashboard": "success", "stream-bot": "failed"}' in fatal[0], fatal
    assert '"timings"' not in proc.stdout and '"records"' not in proc.stdout, fatal
    assert fatal[0].count('is a directory, not a regular file') == 1, fatal


def test_a_failed_run_scope_rollback_at_vvvv_shows_no_password(homelab):  # noqa: F811
    """-vvvv prints every module's command line and the run task's result: going back, restoring the backup (the
    go-back of stream-bot cannot undo a migration without its down file) and the run-scope rollback of the dashboard
    print no database password (play() checks the output for it)."""
    homelab.move('dashboard', '003')
    homelab.break_stream_bot(without_down=BOTS['stream-bot'][-1])
    before = homelab.snapshot()
    proc = homelab.play(migrate_all_rollback_scope='run', verbosity=4)
    assert proc.returncode != 0
    assert homelab.snapshot() == before
    assert homelab.canary not in _texts(homelab)
