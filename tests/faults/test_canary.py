"""A canary password in every database URL must leak nowhere.

The example inventory builds every service's URL from homelab_demo_pg_user/password; the password role's
password (tests/harness/pg.py) is a canary full of URL-hostile characters, `Cnry<12 hex>@:/%?`. Its unique
prefix survives any quoting, so looking for the prefix finds the password however it was encoded.

Four runs at -vvvv cover the paths that handle URLs: check mode; a run where stream-bot's new migration
fails and its down file is missing, so going back fails and the backup is restored (pg_dump, pg_restore);
a successful run; a rollback by tag. While they run, a thread polls every process's argv (/proc/*/cmdline).
Afterwards: not in any run's stdout/stderr, the audit log, the status report, the metrics file, the fact, the
backup directory's file names, its .sha256 files, nor any file the runs wrote under the lab's directory.
"""

import base64
import contextlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import quote

import pytest

from harness.faults import BOTS, HOMELAB, outcomes, pids, proc_cmdline
from harness.ansible import run_playbook
from integration.roles.migrate_all.test_role import BROKEN, INVENTORY, PLAYBOOK

pytestmark = pytest.mark.peer


class ArgvWatch(threading.Thread):
    """Polls /proc/*/cmdline of every process for ``needle`` until stopped."""

    def __init__(self, needle, interval=0.01):
        super(ArgvWatch, self).__init__(daemon=True)
        self.needle = needle
        self.interval = interval
        self.hits = {}
        self.scans = 0
        self.seen = set()
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            for pid in pids():
                cmd = proc_cmdline(pid)
                for word in cmd.split(' ')[:2]:  # the program, or the script of an interpreter
                    self.seen.add(os.path.basename(word))
                if self.needle in cmd:
                    self.hits[pid] = cmd
            self.scans += 1
            time.sleep(self.interval)

    def stop(self):
        self.halt.set()
        self.join(10)


def _files_under(root):
    for base, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != 'services']  # the copy of the example's own files
        for name in files:
            yield os.path.join(base, name)


def _unbreak_stream_bot(lab):
    """Undo Homelab.break_stream_bot: the example's journal and down files back, the broken migration gone."""
    src = os.path.join(HOMELAB, 'services', 'stream-bot', 'migrations')
    dst = os.path.join(lab.services_dir, 'stream-bot', 'migrations')
    for name in ('meta/_journal.json', '0003_add_platform_user_unique_constraint.down.sql'):
        shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
    for name in (BROKEN + '.sql', BROKEN + '.down.sql'):
        os.unlink(os.path.join(dst, name))


def test_canary_password_appears_nowhere(lab):
    password = lab.pg.password
    canary = password[:16]
    assert canary.startswith('Cnry') and len(set('@:/%?') & set(password)) == 5
    lab.move('stream-bot', '0002_add_currency_system')
    lab.seed_stream_bot()
    lab.break_stream_bot(without_down='0003_add_platform_user_unique_constraint')

    watch = ArgvWatch(canary)
    watch.start()
    runs = []
    try:
        runs.append(('check', lab.play(check=True, confirm=False, verbosity=4)))
        runs.append(('restore', lab.play(verbosity=4, migrate_all_transaction='each')))
        _unbreak_stream_bot(lab)
        runs.append(('apply', lab.play(verbosity=4)))
        runs.append(('rollback', lab.play(verbosity=4, tags='discord-bot', migrate_all_action='rollback')))
    finally:
        watch.stop()

    # the runs did what they were meant to (so the URL-handling paths really ran)
    codes = dict((name, proc.returncode) for name, proc in runs)
    assert codes == {'check': 0, 'restore': 2, 'apply': 0, 'rollback': 0}, [p.output[-3000:] for _name, p in runs]
    restore = [r for r in lab.role_records() if r['service'] == 'stream-bot'][0]
    assert 'restored the backup' in restore['recovery'], restore
    assert outcomes(lab.role_records()[-1:]) == {'discord-bot': 'success'}
    assert lab.drizzle_applied('discord-bot') == BOTS['discord-bot'][:2]
    # the watcher saw the tools the runs started
    assert watch.scans > 100 and {'ansible-playbook', 'pg_dump', 'pg_restore'} <= watch.seen, watch.seen

    assert watch.hits == {}, 'the password was on a command line: %s' % watch.hits
    for name, proc in runs:
        assert canary not in proc.stdout and canary not in proc.stderr, (name, 'in the -vvvv output')
    for path in (lab.audit_log, lab.status_report, lab.textfile, lab.fact_file):
        with open(path, 'rb') as fh:
            assert canary.encode() not in fh.read(), path
    names = os.listdir(lab.backup_dir)
    assert names and not any(canary in n for n in names), names
    sums = [n for n in names if n.endswith('.sha256')]
    assert len(sums) >= 3
    for path in _files_under(str(lab.tmp)):
        with open(path, 'rb') as fh:
            assert canary.encode() not in fh.read(), 'in %s' % path


class _Unhealthy(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(503)
        self.end_headers()
        self.wfile.write(b'down for maintenance')

    def log_message(self, *args):
        pass


def _tmp_files(since):
    """Files under the temp directory that appeared after ``since`` (a set of top-level names)."""
    top = tempfile.gettempdir()
    for name in os.listdir(top):
        if name in since:
            continue
        path = os.path.join(top, name)
        if os.path.isfile(path) and not os.path.islink(path):
            yield path
        elif os.path.isdir(path) and not os.path.islink(path):
            for base, _dirs, files in os.walk(path):
                for inner in files:
                    yield os.path.join(base, inner)


def test_hostile_password_and_health_check_credentials_leak_nowhere(lab):
    """Issue 13 proof: a password with spaces, quotes, a backslash, % and URL-hostile characters, and a health
    check URL with credentials that answers 503 (input 2), at -vvvv: in no output, log, report, metrics, backup,
    argv, nor any file left under /tmp (input 4: a passfile left behind)."""
    hostile = lab.pg.password[:16] + " q'\"\\%%zz@:/?#&=;x"
    assert lab.pg.password[:16].startswith('Cnry')
    health_pw = 'Hlth%s p@ss:w/o#rd%%' % uuid.uuid4().hex[:12]
    canaries = (hostile[:16], health_pw[:16])
    saved = lab.pg.password
    with lab.pg.connect() as conn:
        conn.cursor().execute('ALTER ROLE homelab PASSWORD %s', (hostile,))
    lab.pg.password = hostile
    before_tmp = set(os.listdir(tempfile.gettempdir()))
    watches = [ArgvWatch(c) for c in canaries]
    try:
        lab.move('stream-bot', '0002_add_currency_system')
        lab.seed_stream_bot()
        for watch in watches:
            watch.start()
        with _serving_unhealthy() as url:
            url = url.replace('http://', 'http://monitor:%s@' % quote(health_pw, safe=''))
            services = [lab.spec('dashboard'), lab.spec('stream-bot', depends_on=['dashboard'], health_check=url),
                        lab.spec('discord-bot', depends_on=['dashboard', 'stream-bot'])]
            runs = [('check', lab.play(check=True, diff=True, confirm=False, verbosity=4,
                                       migrate_all_services=services)),
                    ('health', lab.play(verbosity=4, migrate_all_services=services, migrate_all_health_check_delay=0,
                                        migrate_all_health_check_retries=1))]
    finally:
        for watch in watches:
            watch.stop()
        with lab.pg.connect() as conn:
            conn.cursor().execute('ALTER ROLE homelab PASSWORD %s', (saved,))
        lab.pg.password = saved
    codes = dict((name, proc.returncode) for name, proc in runs)
    assert codes == {'check': 0, 'health': 2}, [p.output[-3000:] for _name, p in runs]
    health = runs[1][1].output
    assert 'health check http://monitor:********@127.0.0.1' in health and 'HTTP 503' in health, health[-3000:]
    assert 'pg_dump' in watches[0].seen or watches[0].scans > 10
    for watch in watches:
        assert watch.hits == {}, 'a password on a command line: %s' % watch.hits
    basic = base64.b64encode(('monitor:%s' % health_pw).encode()).decode()
    for name, proc in runs:
        for leak in canaries + (basic,):
            assert leak not in proc.stdout and leak not in proc.stderr, (name, leak, 'in the -vvvv output')
    for path in [lab.audit_log, lab.status_report, lab.textfile, lab.fact_file] + list(_files_under(str(lab.tmp))):
        with open(path, 'rb') as fh:
            data = fh.read()
        for leak in canaries:
            assert leak.encode() not in data, (leak, path)
    for path in _tmp_files(before_tmp):
        try:
            with open(path, 'rb') as fh:
                data = fh.read(16 << 20)
        except OSError:
            continue
        for leak in canaries:
            assert leak.encode() not in data, ('left under /tmp', path)
    assert os.listdir(lab.backup_dir)


@contextlib.contextmanager
def _serving_unhealthy():
    server = HTTPServer(('127.0.0.1', 0), _Unhealthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield 'http://127.0.0.1:%d/healthz' % server.server_port
    finally:
        server.shutdown()
        server.server_close()


def test_a_weak_password_inside_names_and_paths_breaks_nothing(lab):
    """Red team (issue 13): a weak password that is part of a service name, the backup path or a revision ('bot'
    in stream-bot's backup file name) was masked there too (the modules put it in no_log_values): the result's
    backup path read .../stream-********_<time>.dump, so the restore after a failed migration could not find
    the backup, and every '-********' told the reader the password. Exact fields now stay exact; free text is
    still masked."""
    saved = lab.pg.password
    lab.move('stream-bot', '0002_add_currency_system')
    lab.seed_stream_bot()
    lab.break_stream_bot(without_down='0003_add_platform_user_unique_constraint')
    with lab.pg.connect() as conn:
        conn.cursor().execute("ALTER ROLE homelab PASSWORD 'bot'")
    lab.pg.password = 'bot'
    try:  # not lab.play: its own leak check looks for the password, and 'bot' is in every service name
        proc = run_playbook(PLAYBOOK, inventory=INVENTORY, env=lab.env(), timeout=600,
                            extra_vars=lab.extra_vars(True, migrate_all_transaction='each'))
        proc.output = proc.stdout + proc.stderr
    finally:
        with lab.pg.connect() as conn:
            conn.cursor().execute('ALTER ROLE homelab PASSWORD %s', (saved,))
        lab.pg.password = saved
    assert proc.returncode == 2, proc.output[-3000:]
    assert '-********' not in proc.output, proc.output[-3000:]
    records = [r for r in lab.role_records() if r['service'] == 'stream-bot']
    assert records and 'restored the backup' in records[0]['recovery'], records
    assert lab.drizzle_applied('stream-bot') == BOTS['stream-bot'][:3]  # back at 0002, where it started
    for rec in lab.role_records():
        backup_path = rec.get('backup') if isinstance(rec.get('backup'), str) else (rec.get('backup') or {}).get('path')
        if backup_path:
            assert os.path.exists(backup_path), rec
