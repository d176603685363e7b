"""homelab_migration_health: bounded over all its attempts, credentials masked (issue 12).

The issue's input: a health endpoint that sends its status line one byte every three seconds kept
ansible.builtin.uri running far past timeout x retries. Real HTTP servers on localhost, the real module.
"""

import base64
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.ansible import run_module

from ansible_collections.homelab.migrations.plugins.module_utils.health import check


class _Server(object):
    def __init__(self, handler):
        self.server = ThreadingHTTPServer(('127.0.0.1', 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.seen = []
        self.server.seen = self.seen

    def __enter__(self):
        self.thread.start()
        return 'http://127.0.0.1:%d/healthz' % self.server.server_port

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class _Drip(BaseHTTPRequestHandler):
    """Sends 'HTTP/1.1 200 OK' one byte every three seconds (never finishing in time)."""

    def do_GET(self):
        for byte in b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok':
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return
            time.sleep(3)

    def log_message(self, *args):
        pass


class _SlowBody(_Drip):
    def do_GET(self):
        self.send_response(200)
        self.send_header('Content-Length', '100')
        self.end_headers()
        for _count in range(100):
            try:
                self.wfile.write(b'x')
                self.wfile.flush()
            except OSError:
                return
            time.sleep(1)


class _Status(BaseHTTPRequestHandler):
    code = 200

    def do_GET(self):
        self.server.seen.append(self.headers.get('Authorization'))
        self.send_response(self.code)
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'ok')

    def log_message(self, *args):
        pass


class _Down(_Status):
    code = 503


@pytest.mark.parametrize('handler', [_Drip, _SlowBody], ids=['status-line-drip', 'body-drip'])
def test_a_dripping_endpoint_cannot_hold_the_check_past_its_deadline(handler):
    with _Server(handler) as url:
        started = time.monotonic()
        result, _proc = run_module('homelab_migration_health', {'url': url, 'timeout': 2, 'retries': 2, 'delay': 1})
        took = time.monotonic() - started
    assert result['healthy'] is False and result['status'] == -1, result
    assert result['attempts'] == 2 and result['deadline'] == 5, result
    assert result['elapsed_seconds'] < 5.5, result
    assert 'timeout' in result['reason'], result
    assert took < 30, took  # ansible start-up included


def test_healthy_unhealthy_and_closed():
    with _Server(_Status) as url:
        assert check(url, timeout=2, retries=1)['healthy'] is True
    with _Server(_Down) as url:
        result = check(url, timeout=2, retries=3, delay=0)
        assert result['healthy'] is False and result['status'] == 503 and result['attempts'] == 3
        assert result['reason'] == 'HTTP 503'
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    result = check('http://127.0.0.1:%d/' % port, timeout=2, retries=2, delay=0)
    assert result['healthy'] is False and result['status'] == -1 and 'Connection' in result['reason']


def test_the_overall_deadline_caps_all_attempts():
    with _Server(_Drip) as url:
        started = time.monotonic()
        result = check(url, timeout=3, retries=10, delay=1, deadline=4)
        took = time.monotonic() - started
    assert result['healthy'] is False and took < 5, (took, result)


def test_credentials_are_sent_as_basic_auth_and_masked_everywhere():
    server = _Server(_Down)
    with server as url:
        secret = 'S3cr%40t-pa55'  # percent-encoded '@'
        authed = url.replace('http://', 'http://watch:%s@' % secret)
        result, proc = run_module('homelab_migration_health', {'url': authed, 'timeout': 2, 'retries': 1})
    assert result['healthy'] is False and result['status'] == 503
    for text in (str(result), proc.stdout, proc.stderr):
        assert 'S3cr' not in text and 'pa55' not in text
    assert 'Basic ' + base64.b64encode(b'watch:S3cr@t-pa55').decode() in server.seen
