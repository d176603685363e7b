"""The backup destination is full: a 64 KiB tmpfs mounted on migrate_all_backup_dir, a dashboard dump bigger.

The run must stop before any migration (dashboard's backup fails; the bots depend on it and are skipped),
change nothing in any database, leave no partial file in the destination, and say clearly that the
destination is out of space, where.
"""

import os
import subprocess

import pytest

from harness.faults import FaultLab, outcomes
from harness.ansible import run_report

pytestmark = pytest.mark.peer


@pytest.fixture
def small_backup_dir(pg, tmp_path):
    lab = FaultLab(pg, tmp_path)
    os.makedirs(lab.backup_dir, 0o700)
    out = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', lab.backup_dir],
                         check=False, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        lab.drop()
        pytest.skip('cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): %s' % out.stderr.strip())
    try:
        yield lab
    finally:
        subprocess.run(['umount', '-l', lab.backup_dir], check=False, capture_output=True, timeout=30)
        lab.drop()


@pytest.mark.parametrize('fmt', ['custom', 'directory'])
def test_full_backup_destination_stops_the_run_before_any_migration(small_backup_dir, drizzle_peer, refs, fmt):
    lab = small_backup_dir
    lab.move('dashboard', '002')
    lab.move('stream-bot', '0002_add_currency_system')
    lab.seed_stream_bot()
    # ~400 KB of incompressible rows: no dump of it fits in 64 KiB
    lab.dbs['dashboard'].execute(
        "INSERT INTO users (username, email) SELECT md5(random()::text) || md5(random()::text), "
        "md5(random()::text) || md5(random()::text) || '@example.org' FROM generate_series(1, 3000)")
    before = lab.snapshot()

    proc = lab.play(migrate_all_backup_format=fmt)
    assert proc.returncode != 0, proc.output[-5000:]
    fatal = run_report(proc.stdout)
    assert 'dashboard failed' in fatal, fatal[-3000:]
    assert 'No space left on device' in fatal or 'out of space' in fatal.lower(), fatal[-3000:]
    assert lab.backup_dir in fatal, 'the message says which destination is full:\n' + fatal[-3000:]

    # nothing changed anywhere, nothing left in the destination
    assert lab.snapshot() == before
    assert os.listdir(lab.backup_dir) == [], os.listdir(lab.backup_dir)
    assert os.statvfs(lab.backup_dir).f_bfree == os.statvfs(lab.backup_dir).f_blocks
    # the apply module never ran; the role recorded every service
    applies = [r for r in lab.audit() if r.get('source') != 'role']
    assert applies == [], applies
    role = lab.role_records()
    assert outcomes(role) == {'dashboard': 'failed', 'stream-bot': 'skipped', 'discord-bot': 'skipped'}, role
    rec = role[0]
    assert not rec['applied'] and not rec['reverted'] and rec['backup'] is None, rec
    assert 'No space left on device' in rec['error'], rec
    assert 'NOT RECOVERED' not in (rec['recovery'] or ''), rec
    lab.verify(drizzle_peer, refs,
               expect={'dashboard': '002', 'stream-bot': '0002_add_currency_system', 'discord-bot': None})
