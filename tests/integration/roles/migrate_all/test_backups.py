"""The summary gives each backup's size and duration, and the default retention keeps a service's five newest
backups (the run's own among them) - through the real ansible-playbook on the example homelab."""

import hashlib
import os
import re

import pytest

from integration.roles.migrate_all.test_role import homelab  # noqa: F401  # pylint: disable=unused-import

from harness.role_logic import role_logic as f

pytestmark = pytest.mark.peer


def test_summary_line_gives_backup_size_and_duration():
    lines = f.migrate_all_summary({'dashboard': {'outcome': 'success', 'from': None, 'to': '006', 'applied': ['001'],
                                                 'backup': '/b/dashboard_20260101_000000.dump',
                                                 'backup_size_bytes': 1536, 'backup_seconds': 0.25}}, ['dashboard'])
    assert lines == ['dashboard: (none) -> 006, applied 1, backup /b/dashboard_20260101_000000.dump (1.5 KiB, 0.2 s), '
                     'success'] or lines == ['dashboard: (none) -> 006, applied 1, backup '
                                             '/b/dashboard_20260101_000000.dump (1.5 KiB, 0.3 s), success']
    outcome = f.migrate_all_outcome({'action': 'run'}, None, {'path': '/b/x.dump', 'size_bytes': 10,
                                                              'duration_seconds': 1.0}, {'applied': ['001']}, True)
    assert outcome['backup_size_bytes'] == 10 and outcome['backup_seconds'] == 1.0


def test_default_retention_keeps_five_backups_per_service_and_the_summary_shows_their_size(homelab):  # noqa: F811
    os.makedirs(homelab.backup_dir, mode=0o700)
    old = ['dashboard_2020010%d_000000.dump' % day for day in range(1, 7)]
    other = 'stream-bot_20200101_000000.dump'
    for day, name in enumerate(old + [other]):
        path = os.path.join(homelab.backup_dir, name)
        with open(path, 'wb') as fh:
            fh.write(b'PGDMP old backup')
        with open(path + '.sha256', 'w') as fh:    # as the module writes them: only such backups are its own
            fh.write('%s  %s\n' % (hashlib.sha256(b'PGDMP old backup').hexdigest(), name))
        for made in (path, path + '.sha256'):
            os.chmod(made, 0o600)
            os.utime(made, (1577836800 + day * 86400, 1577836800 + day * 86400))
    proc = homelab.play(tags='dashboard')
    assert proc.returncode == 0, proc.output[-3000:]
    kept = homelab.backups('dashboard')
    assert len(kept) == 5, kept
    assert old[-4:] == sorted(kept)[:4]             # the 4 newest old ones and the run's own
    assert other in homelab.backups('stream-bot')   # another service's backups are not touched
    new = sorted(kept)[-1]
    size = os.path.getsize(os.path.join(homelab.backup_dir, new))
    summary = re.search(r'dashboard: \(none\) -> 006, applied 6, backup (\S+) \(([\d.]+ \w+), ([\d.]+) s\), success',
                        proc.output)
    assert summary, proc.output[-3000:]
    assert os.path.basename(summary.group(1)) == new
    assert summary.group(2) == ('%d B' % size if size < 1024 else '%.1f KiB' % (size / 1024.0))
