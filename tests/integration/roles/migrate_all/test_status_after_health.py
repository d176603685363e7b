"""Red team (r17): the health state the role publishes after a run (status report, dashboard) is the one the run
left (the dashboard's api/migrations/status), as a fresh ``homelab_migration_status`` read with the same
``audit_log`` says, not the one read before it.

A service left ``unverified`` by an earlier run, with nothing pending, is checked again by the next run; when the
check passes that run records ``passed``, and the status published after it must say ``passed`` (it said
``unverified``: no service was backed up, so the run returned the status read before it, health and all). A
service migrated and verified by the run must not lose its health state either.
Through the real ansible-playbook against real PostgreSQL."""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from harness.ansible import run_module
from integration.roles.migrate_all.test_role import BOTS, homelab  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.peer


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def _published(dashboard_dir):
    with open(os.path.join(dashboard_dir, 'api', 'migrations', 'status')) as fh:
        report = json.load(fh)
    report.pop('generated_at', None)
    return report


def _fresh(lab, specs):
    """A fresh status read with the role's audit log, published the way the role publishes it."""
    status, proc = run_module('homelab_migration_status', {'services': specs, 'audit_log': lab.audit_log})
    assert not status.get('failed'), status.get('msg') or proc.stdout[-3000:]
    path = str(lab.tmp / 'fresh')
    result, proc = run_module('homelab_migration_audit', {'status': status, 'dashboard_dir': path})
    assert not result.get('failed'), result.get('msg') or proc.stdout[-3000:]
    return _published(path)


@pytest.fixture
def health_url():
    server = HTTPServer(('127.0.0.1', 0), _Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield 'http://127.0.0.1:%d/health' % server.server_port
    finally:
        server.shutdown()


def test_a_check_that_passes_with_nothing_pending_is_published_as_passed(homelab, health_url):  # noqa: F811
    head = BOTS['discord-bot'][-1]
    homelab.move('discord-bot', head)
    os.makedirs(os.path.dirname(homelab.audit_log), mode=0o700, exist_ok=True)
    with open(homelab.audit_log, 'a') as fh:  # an earlier run's check did not pass
        fh.write(json.dumps({'service': 'discord-bot', 'action': 'health_check', 'health': 'unverified', 'to': head,
                             'time': '2026-01-02T03:04:05.000+00:00', 'outcome': 'unverified'}) + '\n')
    specs = [homelab.spec('discord-bot', health_check=health_url)]
    proc = homelab.play(migrate_all_services=specs, migrate_all_dashboard_dir=str(homelab.tmp / 'www' / 'dash'))
    assert proc.returncode == 0, proc.output[-5000:]
    assert [r['health'] for r in homelab.audit() if r.get('action') == 'health_check'][-1] == 'passed'
    published = _published(str(homelab.tmp / 'www' / 'dash'))
    assert published['services']['discord-bot']['health']['state'] == 'passed', published['services']
    assert published == _fresh(homelab, specs)


def test_a_service_migrated_and_verified_keeps_its_health_state(homelab, health_url):  # noqa: F811
    specs = [homelab.spec('stream-bot'), homelab.spec('discord-bot', health_check=health_url)]
    proc = homelab.play(migrate_all_services=specs, migrate_all_dashboard_dir=str(homelab.tmp / 'www' / 'dash'))
    assert proc.returncode == 0, proc.output[-5000:]
    published = _published(str(homelab.tmp / 'www' / 'dash'))
    assert published['services']['discord-bot'].get('health', {}).get('state') == 'passed', published['services']
    assert published == _fresh(homelab, specs)
