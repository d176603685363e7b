"""Red team (issue 12): waits that were unbounded or cancels that did not cancel, each found with real parts.

- After a failed migration the module re-reads the state on a NEW connection to say what stayed; that
  connection had no lock_timeout, so an application session holding (or queued for) an ACCESS EXCLUSIVE lock
  on the tracking table (drizzle.__drizzle_migrations / alembic_version) made the module wait forever, and
  a SIGINT/SIGTERM could not stop it: the watcher cancelled the run's own connection, not the re-read's.
"""

import json
import os
import threading
import time

import psycopg2
import pytest

from harness.ansible import run_module
from harness.drizzle_gen import users_then


def _drizzle_service(root, url, failing_sql):
    users_then(root, '0001_slow_then_fails', failing_sql)
    return {'name': 'bot', 'tool': 'drizzle', 'path': root, 'database_url': url}


def _lock_when_sleeping(url, table, hold, ready, done):
    """An application session: once the migration sleeps, it asks for ACCESS EXCLUSIVE on ``table`` and holds it."""
    conn = psycopg2.connect(url, application_name='the-app-locker')
    try:
        with conn.cursor() as cur:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%pg_sleep(3)%%' "
                            "AND state = 'active' AND pid <> pg_backend_pid()")
                if cur.fetchone()[0]:
                    break
                conn.rollback()
                time.sleep(0.1)
            conn.rollback()
            cur.execute("SET lock_timeout = '60s'")
            cur.execute('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE' % table)
            ready.set()
            done.wait(hold)
        conn.rollback()
    finally:
        conn.close()


def test_failed_migration_reread_is_bounded_when_the_tracking_table_is_locked(fresh_db, tmp_path):
    sql = ('ALTER TABLE "users" ADD COLUMN "nick" text;\n--> statement-breakpoint\n'
           'SELECT pg_sleep(3);\n--> statement-breakpoint\nSELECT 1/0;')
    spec = _drizzle_service(str(tmp_path / 'bot'), fresh_db.password_url, sql)
    result, proc = run_module('homelab_migration_apply', {'service': spec, 'target': '0000_users'}, timeout=120)
    assert not result.get('failed'), result.get('msg') or proc.stdout[-3000:]
    ready, done = threading.Event(), threading.Event()
    locker = threading.Thread(target=_lock_when_sleeping, daemon=True,
                              args=(fresh_db.password_url, 'drizzle.__drizzle_migrations', 90, ready, done))
    locker.start()
    try:
        started = time.monotonic()
        result, proc = run_module('homelab_migration_apply', {'service': spec, 'lock_timeout': '1s'}, timeout=150)
        took = time.monotonic() - started
    finally:
        done.set()
        locker.join(30)
    assert ready.is_set(), 'the application session never got its lock'
    assert result.get('failed'), result
    # 3 s of migration, then a bounded re-read (a few seconds), not the 90 s the application holds its lock
    assert took < 40, took
    assert result['error_code'] == 'apply_failed', result
    # nothing of the failed migration stayed, and the result does not claim it knows more than it read
    cols = fresh_db.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' "
                          "AND column_name = 'nick'")[0][0]
    assert cols == 0
    assert result['applied'] == [] and result['committed'] == []
    # the re-read ran into its bound: the result says what it could not know, never "nothing stayed"
    assert 'could not be re-read' in result['msg'] and 'unknown' in result['msg'], result['msg']
    assert result['untouched'] is False and result['unrecorded_changes'] is True, result


_CANCEL_AFTER_COMMIT = r'''
import json, os, signal, sys
sys.path.insert(0, sys.argv[4])
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.registry import get_adapter
from ansible_collections.homelab.migrations.plugins.module_utils.apply import run_apply
from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults, validate_service

root, url, audit_log, _path, when = sys.argv[1:6]
spec = service_defaults(dict(name='bot', tool='drizzle', path=root, database_url=url))
dburl = validate_service(spec)


def factory(s, u):
    adapter = get_adapter(s, u)
    real_apply, real_read = adapter.apply, adapter.read_state
    done = []

    def apply(conn, plan, options=None):
        out = real_apply(conn, plan, options)
        done.append(True)
        if when == 'after-commit':
            os.kill(os.getpid(), signal.SIGTERM)  # the job is cancelled: the tool has just committed
        return out

    def read_state(conn):
        if done and when == 'during-reread':
            done[:] = []
            os.kill(os.getpid(), signal.SIGTERM)  # the job is cancelled while the module re-reads what stayed
        return real_read(conn)
    adapter.apply, adapter.read_state = apply, read_state
    return adapter


print(json.dumps(run_apply(spec, dburl, {'audit_log': audit_log}, get_adapter=factory), default=str))
'''


@pytest.mark.parametrize('when', ['after-commit', 'during-reread'])
def test_cancel_after_the_commit_reports_what_stayed(fresh_db, tmp_path, when):
    """A cancel that lands after the tool committed: the result and audit say what stayed, never "rolled back"."""
    import subprocess
    import sys

    from harness.ansible import COLLECTIONS
    from ansible_collections.homelab.migrations.plugins.module_utils.audit import read_records

    spec = _drizzle_service(str(tmp_path / 'bot'), fresh_db.password_url, 'ALTER TABLE "users" ADD COLUMN "nick" text;')
    result, proc = run_module('homelab_migration_apply', {'service': spec, 'target': '0000_users'}, timeout=120)
    assert not result.get('failed'), result.get('msg') or proc.stdout[-3000:]
    audit_log = str(tmp_path / 'audit.jsonl')
    proc = subprocess.run([sys.executable, '-c', _CANCEL_AFTER_COMMIT, spec['path'], fresh_db.password_url, audit_log,
                           COLLECTIONS, when], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # the migration committed before the cancel: it stayed
    assert fresh_db.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' "
                          "AND column_name = 'nick'")[0][0] == 1
    assert result['outcome'] == 'interrupted' and result['error_code'] == 'interrupted', result
    assert result['applied'] == ['0001_slow_then_fails'] and result['committed'] == ['0001_slow_then_fails'], result
    assert result['to_revision'] == '0001_slow_then_fails', result
    assert 'stopped before any migration ran' not in result['msg'], result['msg']
    assert 'statement was cancelled and rolled back' not in result['msg'], result['msg']
    assert 'committed before the cancel stayed' in result['msg'], result['msg']
    assert '0001_slow_then_fails' in result['msg'], result['msg']
    assert result['unrecorded_changes'] is False, result
    record = read_records(audit_log)[-1]
    assert record['outcome'] == 'interrupted' and record['applied'] == ['0001_slow_then_fails'], record
    assert record['committed'] == ['0001_slow_then_fails'], record


_BLACKHOLE_DNS = r'''
set -e
mount --bind "$1" /etc/resolv.conf
ip link set lo up
shift
"$@"
'''

_SILENT_DNS_SERVER = r'''
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('127.0.0.1', 53))
deadline = time.monotonic() + float(sys.argv[1])
s.settimeout(1)
while time.monotonic() < deadline:  # reads every question, never answers
    try:
        s.recv(4096)
    except OSError:
        pass
'''


def test_health_check_is_bounded_when_dns_never_answers(tmp_path):
    """A health URL whose host name the DNS server never answers: the check ends by its deadline, not the
    resolver's timeout x attempts (minutes). Runs the real module in a private mount and network namespace
    whose resolv.conf points at a local DNS server that reads every question and never answers."""
    import shutil
    import subprocess

    from harness.ansible import VENV_BIN, ansible_env

    if os.geteuid() != 0 or not shutil.which('unshare') or not shutil.which('ip'):
        pytest.skip('needs root, unshare(1) and ip(8) to give the test its own resolv.conf and network')
    probe = subprocess.run(['unshare', '-mn', 'true'], capture_output=True, timeout=10, check=False)
    if probe.returncode != 0:
        pytest.skip('unshare -mn is not allowed here: %s' % probe.stderr.decode(errors='replace'))
    resolv = tmp_path / 'resolv.conf'
    resolv.write_text('nameserver 127.0.0.1\noptions timeout:30 attempts:5\n')
    script = tmp_path / 'dns.py'
    script.write_text(_SILENT_DNS_SERVER)
    play = tmp_path / 'play.yml'
    out = tmp_path / 'result.json'
    play.write_text(
        '- hosts: localhost\n  gather_facts: false\n  tasks:\n'
        '    - name: health\n'
        '      homelab.migrations.homelab_migration_health:\n'
        '        url: http://health.homelab.test:8080/healthz\n'
        '        timeout: 2\n        retries: 2\n        delay: 1\n'
        '      register: r\n      ignore_errors: true\n'
        '    - name: save\n      ansible.builtin.copy:\n        content: "{{ r | to_json }}"\n        dest: %s\n' % out)
    inner = ('%s %s 100 & dns=$!; sleep 0.5; %s -i localhost, -c local %s; rc=$?; kill $dns; exit $rc'
             % (os.path.join(VENV_BIN, 'python'), script, os.path.join(VENV_BIN, 'ansible-playbook'), play))
    started = time.monotonic()
    proc = subprocess.run(['unshare', '-mn', 'sh', '-c', _BLACKHOLE_DNS, 'dns', str(resolv), 'sh', '-c', inner],
                          capture_output=True, text=True, timeout=150, env=ansible_env(None),
                          stdin=subprocess.DEVNULL, cwd=str(tmp_path), start_new_session=True, check=False)
    took = time.monotonic() - started
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result['healthy'] is False and result['status'] == -1, result
    assert result['deadline'] == 5 and result['elapsed_seconds'] <= 6, result
    assert 'not resolved within' in result['msg'] and 'health.homelab.test' in result['msg'], result['msg']
    # the whole play (ansible's start-up included), far below what the resolver alone would take (5 x 30 s)
    assert took < 60, took


def test_may_commit_itself_never_waits_on_a_revision_file_swapped_for_a_fifo(fresh_db, tmp_path):
    """After a failed alembic run the module reads the planned revision files again (does one commit itself?).
    A revision file that became a FIFO (or a symlink to /dev/zero) meanwhile made that read wait forever (open()
    of a FIFO waits for a writer) or run out of memory: it is read as a regular file, or counted as "may"."""
    import shutil
    import sys

    from harness.ansible import REPO
    from ansible_collections.homelab.migrations.plugins.module_utils.adapters.registry import get_adapter
    from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults, validate_service

    root = str(tmp_path / 'dashboard')
    shutil.copytree(os.path.join(REPO, 'examples', 'homelab', 'services', 'dashboard'), root,
                    ignore=shutil.ignore_patterns('__pycache__'))
    spec = service_defaults(dict(name='dashboard', tool='alembic', path=root, database_url=fresh_db.password_url,
                                 alembic_command=[os.path.join(os.path.dirname(sys.executable), 'alembic')]))
    dburl = validate_service(spec)
    adapter = get_adapter(spec, dburl)
    conn = psycopg2.connect(fresh_db.password_url)
    try:
        state = adapter.read_state(conn)
        plan = adapter.plan(state, 'heads')
    finally:
        conn.close()
    assert plan.steps, plan
    files = state.detail.graph.files
    victims = [files[rev] for rev in plan.steps]
    os.unlink(victims[0])
    os.mkfifo(victims[0])
    if len(victims) > 1:
        os.unlink(victims[1])
        os.symlink('/dev/zero', victims[1])
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault('out', adapter.may_commit_itself(plan)), daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():  # unblock the stuck open() so the thread ends
        fd = os.open(victims[0], os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    assert not worker.is_alive() and 'out' in box, 'may_commit_itself waited on a FIFO revision file'
    # cannot tell what those files hold: they count as "may commit itself" (never as "certainly not")
    assert plan.steps[0] in box['out'], box
    if len(victims) > 1:
        assert plan.steps[1] in box['out'], box


def test_audit_log_that_is_a_fifo_is_refused_before_anything_runs(fresh_db, tmp_path):
    """audit_log pointing at a FIFO passed every check, the migrations ran and committed, then the module waited
    forever to open the FIFO for writing; the clean-up ignores further signals, so no cancel could stop it."""
    private = tmp_path / 'logs'
    private.mkdir(mode=0o700)
    fifo = str(private / 'audit.jsonl')
    os.mkfifo(fifo, 0o600)
    spec = _drizzle_service(str(tmp_path / 'bot'), fresh_db.password_url, 'ALTER TABLE "users" ADD COLUMN "nick" text;')
    started = time.monotonic()
    try:
        result, proc = run_module('homelab_migration_apply', {'service': spec, 'audit_log': fifo}, timeout=60)
    finally:
        took = time.monotonic() - started
        # release a writer stuck in open() (before the fix), so no module is left behind
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        time.sleep(1)
        os.close(fd)
    assert took < 40, took
    assert result.get('failed'), result
    assert 'FIFO' in result['msg'] and 'audit_log' in result['msg'], result['msg']
    # refused before touching anything
    assert fresh_db.query("SELECT count(*) FROM information_schema.tables WHERE table_name = 'users'")[0][0] == 0


def test_prometheus_textfile_previous_read_never_waits_or_runs_out_of_memory(tmp_path):
    """The textfile's previous content is read to carry the last run's metrics over; a FIFO there made that read
    wait forever, a symlink to /dev/zero read until memory ran out. Both are replaced by a fresh regular file."""
    from ansible_collections.homelab.migrations.plugins.module_utils import report

    status = {'success': True, 'overall_status': 'up_to_date', 'services': {}}
    folder = tmp_path / 'textfile'
    folder.mkdir(mode=0o755)
    fifo = str(folder / 'fifo.prom')
    os.mkfifo(fifo, 0o600)
    zero = folder / 'zero.prom'
    zero.symlink_to('/dev/zero')
    for path in (fifo, str(zero)):
        box = {}

        def write(p, b):
            try:
                b['text'] = report.write_prometheus_textfile(p, status)
            except OSError as exc:  # refused (a symlink there), promptly: fine
                b['text'] = exc
        worker = threading.Thread(target=write, args=(path, box), daemon=True)
        worker.start()
        worker.join(20)
        if worker.is_alive() and path == fifo:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # release the stuck open()
            os.close(fd)
        assert not worker.is_alive() and 'text' in box, 'the previous textfile %s was read without a bound' % path
        if path == fifo:
            assert os.path.isfile(path), 'the FIFO was not replaced by the textfile'
        else:
            assert 'symlink' in str(box['text']), box


def test_restore_from_a_fifo_is_refused_without_waiting(fresh_db, tmp_path):
    """homelab_pg_backup state=restored opened the backup with a blocking open() and checked that it is a regular
    file only afterwards: a FIFO at the backup's path (a backup file swapped for one) made it wait forever."""
    private = tmp_path / 'backups'
    private.mkdir(mode=0o700)
    fifo = str(private / 'bot-20260101T000000Z.dump')
    os.mkfifo(fifo, 0o600)
    started = time.monotonic()
    try:
        result, proc = run_module('homelab_pg_backup', dict(database_url=fresh_db.password_url, state='restored',
                                                            path=fifo), timeout=60)
    finally:
        took = time.monotonic() - started
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK) if took >= 59 else None  # release a stuck open()
        if fd is not None:
            os.close(fd)
    assert took < 40, took
    assert result.get('failed'), result
    assert 'not a regular file' in result['msg'] or 'FIFO' in result['msg'], result['msg']


def test_restore_with_a_fifo_checksum_file_is_refused_without_waiting(fresh_db, tmp_path):
    """The backup's .sha256 checksum file as a FIFO: opening it waited for a writer forever."""
    private = tmp_path / 'backups'
    private.mkdir(mode=0o700)
    path = str(private / 'bot-20260101T000000Z.sql')
    with open(path, 'w') as fh:
        fh.write('SELECT 1;\n')
    os.mkfifo(path + '.sha256', 0o600)
    started = time.monotonic()
    try:
        result, proc = run_module('homelab_pg_backup', dict(database_url=fresh_db.password_url, state='restored',
                                                            path=path), timeout=60)
    finally:
        took = time.monotonic() - started
        if took >= 59:  # release a stuck open()
            os.close(os.open(path + '.sha256', os.O_WRONLY | os.O_NONBLOCK))
    assert took < 40, took
    assert result.get('failed'), result
    assert '.sha256' in result['msg'], result['msg']
