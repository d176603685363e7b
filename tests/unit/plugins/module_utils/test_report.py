"""report.py: the status report and the Prometheus textfile (shape, atomic writes, findings, the last run kept),
and report paths that refuse foreign directories and symlinks."""

import json
import os
import threading

import pytest

from harness.role_logic import STATUS, status

from ansible_collections.homelab.migrations.plugins.module_utils import report


def test_report_is_the_status_shape_and_written_atomically(tmp_path):
    st = status(**{'stream-bot': {'status': 'pending', 'tool': 'drizzle', 'current_revision': None,
                                  'latest_revision': '0001', 'applied': 0, 'pending': 1,
                                  'pending_migrations': ['0001'], 'problems': [
                                      {'code': 'unreachable', 'message': 'postgresql://u:pw@h/db refused'}],
                                  'lock': {'held': False, 'holder': None}, 'extra': 'dropped'}})
    path = str(tmp_path / 'www' / 'status.json')
    report.write_status_report(path, st, generated_at='2025-01-01T00:00:00+00:00')
    with open(path) as fh:
        data = json.load(fh)
    assert set(data) == {'success', 'overall_status', 'total_pending', 'services', 'generated_at'}
    assert set(data['services']['stream-bot']) == set(report.STATUS_KEYS)
    assert 'pw@' not in json.dumps(data) and 'u:********@h' in json.dumps(data)
    assert os.listdir(str(tmp_path / 'www')) == ['status.json'], 'no temp file left behind'

    # a reader never sees a partial file while writers replace it
    seen, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            with open(path) as fh:
                seen.append(json.load(fh)['total_pending'])
    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(200):
            report.write_status_report(path, dict(st, total_pending=i))
    finally:
        stop.set()
        t.join()
    assert seen and all(isinstance(v, int) for v in seen)


def test_textfile_keeps_the_last_run_across_status_only_writes(tmp_path):
    path = str(tmp_path / 'm.prom')
    st = status(**{'a-b': {'status': 'pending', 'tool': 'drizzle', 'pending': 2, 'applied': 1}})
    text = report.write_prometheus_textfile(path, st, run={'action': 'apply', 'outcome': 'failed', 'time': 100.0,
                                                           'services': {'a-b': 'failed'}}, now=50)
    assert 'homelab_migration_pending{service="a-b",tool="drizzle"} 2' in text
    assert 'homelab_migration_last_run_success{action="apply"} 0' in text
    assert 'homelab_migration_last_run_service_outcome{outcome="failed",service="a-b"} 1' in text
    again = report.write_prometheus_textfile(path, status(**{'a-b': {'status': 'up_to_date', 'tool': 'drizzle',
                                                                     'pending': 0, 'applied': 3}}), now=60)
    assert 'homelab_migration_pending{service="a-b",tool="drizzle"} 0' in again
    assert 'homelab_migration_last_run_timestamp_seconds{action="apply"} 100.0' in again
    assert again.count('# TYPE homelab_migration_last_run_success gauge') == 1
    for line in again.splitlines():
        assert line.startswith('#') or ' ' in line


def test_status_report_and_prometheus_carry_findings():
    rep = report.status_report(STATUS, generated_at='t')
    assert rep['services']['bot']['findings'] == STATUS['services']['bot']['findings']
    assert rep['services']['dash']['findings'] == []
    text = report.prometheus_text(STATUS, now=1.0)
    assert 'homelab_migration_findings{service="bot",severity="error"} 1' in text
    assert 'homelab_migration_findings{service="bot",severity="warning"} 1' in text
    assert 'homelab_migration_findings{service="bot",severity="info"} 0' in text
    assert 'homelab_migration_findings{service="dash",severity="error"} 0' in text
    assert text.count('# TYPE homelab_migration_findings gauge') == 1


def test_report_paths_refuse_foreign_directories_and_symlinks(tmp_path):
    status = {'success': True, 'overall_status': 'up_to_date', 'services': {}}
    group = tmp_path / 'group'
    group.mkdir()
    os.chmod(str(group), 0o775)
    with pytest.raises(OSError) as err:
        report.write_status_report(str(group / 'status.json'), status)
    assert 'writable by its group' in str(err.value)
    mine = tmp_path / 'mine'
    mine.mkdir(mode=0o755)
    (mine / 'status.json').symlink_to(tmp_path / 'victim')
    with pytest.raises(OSError) as err:
        report.write_status_report(str(mine / 'status.json'), status)
    assert 'symlink' in str(err.value) and not (tmp_path / 'victim').exists()
    report.write_prometheus_textfile(str(mine / 'm.prom'), status)
    assert os.path.isfile(str(mine / 'm.prom'))
