"""A failing health check after apply: the service is rolled back and the play fails clearly.

stream-bot (at 0002, with rows) gets a health_check URL that answers HTTP 500 (a local http.server on a
free port), or points at a closed port. After its migrations are applied the check fails; the role must take
stream-bot back to 0002 with its rows as they were, skip discord-bot (it depends on stream-bot), keep the
dashboard migrated, and fail the play with a message naming the health check and why.
"""

import contextlib
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from harness.faults import BOTS, outcomes
from harness.ansible import run_report

pytestmark = pytest.mark.peer
PRE_RUN = '0002_add_currency_system'


class _Broken(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self):  # noqa: N802
        type(self).hits += 1
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b'stream-bot: database schema mismatch')

    def log_message(self, *args):
        pass


def _closed_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]  # closed again when the socket is


@contextlib.contextmanager
def _serving(handler):
    """A local health-check endpoint answered by ``handler``; yields its URL."""
    server = HTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield 'http://127.0.0.1:%d/healthz' % server.server_port
    finally:
        server.shutdown()
        server.server_close()


def _stream_bot_at_pre_run(lab):
    lab.move('stream-bot', PRE_RUN)
    lab.seed_stream_bot()


def _play(lab, url, **more):
    """A confirmed run of the homelab whose stream-bot has the health check ``url``."""
    services = [lab.spec('dashboard'), lab.spec('stream-bot', depends_on=['dashboard'], health_check=url),
                lab.spec('discord-bot', depends_on=['dashboard', 'stream-bot'])]
    return lab.play(migrate_all_services=services, migrate_all_health_check_delay=0, **more)


@pytest.mark.parametrize('kind', ['http500', 'closed_port'])
def test_failing_health_check_rolls_the_service_back(lab, drizzle_peer, refs, kind):
    _Broken.hits = 0
    endpoint = (_serving(_Broken) if kind == 'http500'
                else contextlib.nullcontext('http://127.0.0.1:%d/healthz' % _closed_port()))
    _stream_bot_at_pre_run(lab)
    before = lab.snapshot(['stream-bot', 'discord-bot'])
    with endpoint as url:
        proc = _play(lab, url, migrate_all_health_check_retries=2, migrate_all_health_check_timeout=5)
    assert proc.returncode != 0, proc.output[-5000:]
    fatal = run_report(proc.stdout)
    assert 'stream-bot failed' in fatal and 'health check %s' % url in fatal, fatal[-3000:]
    if kind == 'http500':
        assert 'HTTP 500' in fatal, fatal[-3000:]
        assert _Broken.hits >= 2, 'the check is retried (retries=2), got %d request(s)' % _Broken.hits
    else:
        assert 'refused' in fatal.lower() or 'no answer' in fatal.lower(), fatal[-3000:]

    # stream-bot back where it was, schema and rows; discord-bot untouched; dashboard migrated
    assert lab.snapshot(['stream-bot', 'discord-bot']) == before
    role = lab.role_records()
    assert outcomes(role) == {'dashboard': 'success', 'stream-bot': 'failed', 'discord-bot': 'skipped'}, role
    rec = [r for r in role if r['service'] == 'stream-bot'][-1]
    assert rec['applied'] == BOTS['stream-bot'][3:], rec
    assert rec['reverted'] == BOTS['stream-bot'][:2:-1], rec
    assert rec['recovery'].startswith('rolled back to ' + PRE_RUN), rec
    assert rec['to'] == PRE_RUN and rec['backup'], rec
    lab.verify(drizzle_peer, refs, expect={'dashboard': '006', 'stream-bot': PRE_RUN, 'discord-bot': None})


class _MovedMeanwhile(BaseHTTPRequestHandler):
    """A failing health check during which another run takes stream-bot back one migration."""
    lab = None
    hits = 0

    def do_GET(self):  # noqa: N802
        cls = type(self)
        cls.hits += 1
        if cls.hits == 1:
            cls.lab.move('stream-bot', '-1')  # the other run (through the apply module, as a run would)
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_going_back_never_undoes_what_another_run_did_meanwhile(lab, drizzle_peer, refs):
    """The lock is released between the apply and the health check. When another run moves the service in
    that window, the failed run must neither go back over it nor restore its backup over it: it stops and
    says so, and the database stays where the other run left it."""
    _MovedMeanwhile.lab, _MovedMeanwhile.hits = lab, 0
    _stream_bot_at_pre_run(lab)
    with _serving(_MovedMeanwhile) as url:
        proc = _play(lab, url, migrate_all_health_check_retries=1, migrate_all_health_check_timeout=60)
    assert proc.returncode != 0, proc.output[-5000:]
    other = BOTS['stream-bot'][-2]  # where the other run left it
    fatal = run_report(proc.stdout)
    assert 'stream-bot failed' in fatal and 'NOT RECOVERED: another run' in fatal, fatal[-3000:]
    assert 'is at %s, not at %s (expect_from)' % (other, BOTS['stream-bot'][-1]) in fatal, fatal[-3000:]
    role = lab.role_records()
    rec = [r for r in role if r['service'] == 'stream-bot'][-1]
    assert rec['outcome'] == 'failed' and rec['reverted'] == [] and rec['backup'], rec
    # no restore happened: the other run's state stands, and the backup is still there for a human
    assert os.path.exists(rec['backup']), rec
    lab.verify(drizzle_peer, refs, expect={'dashboard': '006', 'stream-bot': other, 'discord-bot': None})
