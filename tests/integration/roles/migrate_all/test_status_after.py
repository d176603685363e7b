"""The status the role publishes after a real run is what a fresh status read says (the run task builds it from
the applies' entries and reads again only the services whose state it cannot know, a restored one say), and the
status module's ``audit_log`` gives each service the health state homelab_migration_audit's ``read_health``
reads. Through the real ansible-playbook against real PostgreSQL."""

import json

import pytest

from harness.ansible import run_module
from integration.roles.migrate_all.test_role import BOTS, ORDER, homelab  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.peer


def _specs(lab):
    return [lab.spec('dashboard'), lab.spec('stream-bot', depends_on=['dashboard']),
            lab.spec('discord-bot', depends_on=['dashboard', 'stream-bot'])]


def _published(path):
    with open(path) as fh:
        report = json.load(fh)
    report.pop('generated_at', None)
    return report


def _fresh(lab, specs):
    """A fresh status read of ``specs``, published the way the role publishes (the same report file shape)."""
    status, proc = run_module('homelab_migration_status', {'services': specs})
    assert not status.get('failed'), status.get('msg') or proc.stdout[-3000:]
    path = str(lab.tmp / 'fresh' / 'migrations.json')
    result, proc = run_module('homelab_migration_audit', {'status': status, 'status_report': path})
    assert not result.get('failed'), result.get('msg') or proc.stdout[-3000:]
    return _published(path)


def test_the_status_published_after_a_run_is_a_fresh_read(homelab):  # noqa: F811
    specs = _specs(homelab)
    proc = homelab.play(migrate_all_services=specs)
    assert proc.returncode == 0, proc.output[-5000:]
    published = _published(homelab.status_report)
    assert published['overall_status'] == 'up_to_date' and sorted(published['services']) == sorted(ORDER)
    assert published == _fresh(homelab, specs)


def test_a_restored_service_is_published_as_read_after_the_restore(homelab):  # noqa: F811
    homelab.move('stream-bot', '0002_add_currency_system')
    homelab.seed_stream_bot()
    homelab.break_stream_bot(without_down='0003_add_platform_user_unique_constraint')
    specs = _specs(homelab)
    proc = homelab.play(migrate_all_services=specs, migrate_all_transaction='each')
    assert proc.returncode != 0
    outcome = dict((r['service'], r['outcome']) for r in homelab.role_records())
    assert outcome == {'dashboard': 'success', 'stream-bot': 'failed', 'discord-bot': 'skipped'}, outcome
    assert 'restored the backup' in homelab.role_records()[1]['recovery']
    published = _published(homelab.status_report)
    assert published['services']['stream-bot']['current_revision'] == '0002_add_currency_system'
    fresh = _fresh(homelab, specs)
    assert json.dumps(published, indent=1, sort_keys=True) == json.dumps(fresh, indent=1, sort_keys=True)


def test_the_status_module_reads_the_health_state_as_read_health_does(homelab, tmp_path):  # noqa: F811
    log = tmp_path / 'health' / 'audit.log'
    log.parent.mkdir()
    lines = [
        {'service': 'stream-bot', 'action': 'health_check', 'health': 'unverified', 'to': BOTS['stream-bot'][-1],
         'time': '2026-01-02T03:04:05.000+00:00', 'outcome': 'unverified'},
        {'service': 'discord-bot', 'action': 'health_check', 'health': 'unverified', 'to': '0001',
         'time': '2026-01-02T03:04:06.000+00:00', 'outcome': 'unverified'},
        {'service': 'discord-bot', 'action': 'health_check', 'health': 'passed', 'to': '0002',
         'time': '2026-01-02T03:04:07.000+00:00', 'outcome': 'success'},
        {'service': 'dashboard', 'action': 'apply', 'outcome': 'success'},
    ]
    log.write_text(''.join(json.dumps(line) + '\n' for line in lines) + 'not json\n')
    status, proc = run_module('homelab_migration_status', {'services': _specs(homelab), 'audit_log': str(log)},
                              check=True)
    assert not status.get('failed'), status.get('msg') or proc.stdout[-3000:]
    audit, proc = run_module('homelab_migration_audit', {'audit_log': str(log), 'read_health': True}, check=True)
    assert not audit.get('failed'), audit.get('msg') or proc.stdout[-3000:]
    health = dict((name, entry['health']) for name, entry in status['services'].items() if 'health' in entry)
    assert health == audit['health'] and sorted(health) == ['discord-bot', 'stream-bot']
    assert health['discord-bot'] == {'state': 'passed', 'since': '2026-01-02T03:04:07.000+00:00', 'revision': '0002'}
    # no log yet: no health state, no failure
    status, proc = run_module('homelab_migration_status', {'services': _specs(homelab),
                                                           'audit_log': str(tmp_path / 'none' / 'audit.log')})
    assert not status.get('failed') and not [e for e in status['services'].values() if 'health' in e]
