"""The README's nginx and Caddy snippets, taken verbatim from README.md, serve a published dashboard.

Each server runs in the foreground on a free loopback port with the snippet's `server` block / site (only
the listen address and the root are replaced); the API paths must come back as JSON (they have no file
extension), the page at /monitoring/ and /monitoring. Skipped with the reason when nginx or caddy is not
installed (Debian: nginx-light, caddy).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from harness.ansible import REPO

from ansible_collections.homelab.migrations.plugins.module_utils import publish

STATUS = {'success': True, 'overall_status': 'up_to_date', 'total_pending': 0, 'services': {
    'dashboard': {'status': 'up_to_date', 'tool': 'alembic', 'current_revision': '006', 'latest_revision': '006',
                  'applied': 6, 'pending': 0, 'pending_migrations': [], 'problems': [],
                  'lock': {'held': False, 'holder': None}}}}


def readme_block(language):
    with open(os.path.join(REPO, 'README.md')) as fh:
        blocks = re.findall(r'^```%s\n(.*?)^```$' % language, fh.read(), re.M | re.S)
    assert len(blocks) == 1, 'README.md should hold one ```%s block' % language
    return blocks[0]


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture
def site(tmp_path):
    root = tmp_path / 'srv' / 'migrations'
    publish.publish(str(root), STATUS, refresh=30)
    return str(root)


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.headers, answer.read(), answer.geturl()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read(), url


def _wait(port, proc, log):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError('the server exited: %s' % log())
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError('the server did not listen within 30 s: %s' % log())


def _check(base, root):
    status, headers, body, _url = _get(base + '/api/migrations/status')
    assert status == 200 and headers['Content-Type'].split(';')[0] == 'application/json', headers
    with open(os.path.join(root, 'api', 'migrations', 'status'), 'rb') as fh:
        assert body == fh.read()
    assert json.loads(body.decode('utf-8'))['overall_status'] == 'up_to_date'
    assert 'no-store' in (headers['Cache-Control'] or '')
    status, headers, body, _url = _get(base + '/api/migrations/runs')
    assert status == 200 and headers['Content-Type'].split(';')[0] == 'application/json', headers
    for path in ('/monitoring/', '/monitoring'):
        status, headers, body, url = _get(base + path)
        assert status == 200 and headers['Content-Type'].startswith('text/html'), (path, status, headers)
        assert b'<title>homelab migrations</title>' in body and url.endswith('/monitoring/'), url


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(15)


def test_readme_nginx_snippet_serves_the_api_as_json(tmp_path, site):
    nginx = shutil.which('nginx') or ('/usr/sbin/nginx' if os.path.exists('/usr/sbin/nginx') else None)
    if not nginx:
        pytest.skip('nginx is not installed (apt-get install nginx-light)')
    port = free_port()
    server = readme_block('nginx').replace('listen 80;', 'listen 127.0.0.1:%d;' % port)
    server = server.replace('root /srv/migrations;', 'root %s;' % site)
    assert 'listen 127.0.0.1:%d;' % port in server and site in server
    run = tmp_path / 'nginx'
    run.mkdir()
    conf = run / 'nginx.conf'
    temps = ''.join('%s_temp_path %s;\n' % (kind, run / kind) for kind in
                    ('client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'))
    conf.write_text('daemon off;\nworker_processes 1;\npid %s;\nerror_log %s;\n%s'
                    'events { worker_connections 64; }\nhttp {\ninclude /etc/nginx/mime.types;\n'
                    'default_type application/octet-stream;\naccess_log %s;\n%s%s}\n'
                    % (run / 'nginx.pid', run / 'error.log', 'user root;\n' if os.getuid() == 0 else '',
                       run / 'access.log', temps, server))
    proc = subprocess.Popen([nginx, '-p', str(run), '-c', str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        _wait(port, proc, lambda: (run / 'error.log').read_text() if (run / 'error.log').exists() else '')
        _check('http://127.0.0.1:%d' % port, site)
    finally:
        _stop(proc)


def test_readme_caddy_snippet_serves_the_api_as_json(tmp_path, site):
    caddy = shutil.which('caddy')
    if not caddy:
        pytest.skip('caddy is not installed (apt-get install caddy)')
    port = free_port()
    block = readme_block('caddy').replace('migrations.lan {', 'http://127.0.0.1:%d {' % port, 1)
    block = block.replace('root * /srv/migrations', 'root * %s' % site)
    assert 'http://127.0.0.1:%d {' % port in block and site in block
    caddyfile = tmp_path / 'Caddyfile'
    caddyfile.write_text('{\n\tadmin off\n}\n' + block)
    env = dict(os.environ, HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / 'data'),
               XDG_CONFIG_HOME=str(tmp_path / 'config'))
    log = tmp_path / 'caddy.log'
    with open(str(log), 'w') as out:
        proc = subprocess.Popen([caddy, 'run', '--config', str(caddyfile), '--adapter', 'caddyfile'], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait(port, proc, log.read_text)
        _check('http://127.0.0.1:%d' % port, site)
    finally:
        _stop(proc)
