"""backup/entry.py without a server: the skip rules for Neon hosts and pruning (keep_count, keep_days, check mode).
Against a real PostgreSQL: tests/integration/plugins/module_utils/backup/test_entry.py."""

import os
import time

import pytest

from harness.backup_files import DAY, make_backup_file as _make_backup_file

from ansible_collections.homelab.migrations.plugins.module_utils.backup import entry
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError


# ----------------------------------------------------------------------------------------- skip rules
NEON_URL = 'postgresql://neondb_owner:SecretNeon123@ep-cool-cat-123456.eu-central-1.aws.neon.tech/neondb?sslmode=require'


def test_auto_skips_neon(tmp_path):
    res = entry.run(dict(database_url=NEON_URL, dest=str(tmp_path / 'b'), service='stream-bot'))
    assert res['skipped'] is True and res['changed'] is False and res['path'] is None
    assert 'neon' in res['reason'].lower() and 'backup: always' in res['reason']
    assert 'SecretNeon123' not in repr(res)
    assert not (tmp_path / 'b').exists()


def test_always_dumps_neon_hosts_too(tmp_path):
    # no network here: not skipping means trying to connect, which fails clearly and masked
    with pytest.raises(BackupError) as err:
        entry.run(dict(database_url=NEON_URL, dest=str(tmp_path / 'b'), service='stream-bot', backup='always',
                       connect_timeout=3))
    assert 'cannot connect' in str(err.value) and 'SecretNeon123' not in str(err.value)
    assert not (tmp_path / 'b').exists()


# -------------------------------------------------------------------------------------------- pruning


@pytest.fixture
def backup_dir(tmp_path):
    """Ten 'dashboard' backups 0..9 days old (newest = d0), plus things that are not ours to delete."""
    dest = str(tmp_path / 'backups')
    os.makedirs(dest)
    now = time.time()
    ours = {}
    for age in range(10):
        stamp = time.strftime('%Y%m%d_%H%M%S', time.localtime(now - age * DAY))
        kind = 'dir' if age == 4 else 'file'
        ext = {0: 'dump', 3: 'sql', 4: 'dir'}.get(age, 'dump')
        ours[age] = _make_backup_file(dest, 'dashboard_%s.%s' % (stamp, ext), now - age * DAY - 60, kind=kind)
    old = now - 100 * DAY
    foreign = [
        _make_backup_file(dest, 'stream-bot_20200101_000000.dump', old),         # another service
        _make_backup_file(dest, 'dashboard-v2_20200101_000000.dump', old),       # a service with our prefix
        _make_backup_file(dest, 'dashboard_20200101_000000.sql', old, sidecar=False),  # the old shell script's
        _make_backup_file(dest, 'dashboard_2020-01-01.dump', old),               # not our pattern
        _make_backup_file(dest, 'dashboard_20200101_000000.dump.bak', old),
        _make_backup_file(dest, 'dashboard_20200101_000001.dir', old, kind='dir'),  # without toc.dat, below
        _make_backup_file(dest, 'dashboard_20200101_000003.dump', old, kind='dir'),  # a directory named .dump
        _make_backup_file(dest, 'notes.txt', old),
    ]
    link = os.path.join(dest, 'dashboard_20200101_000004.dump')  # a symlink to somebody's file
    os.symlink(foreign[-1], link)
    with open(link + '.sha256', 'w') as fh:
        fh.write('%s  %s\n' % ('0' * 64, os.path.basename(link)))
    foreign.append(link)
    os.unlink(os.path.join(foreign[5], 'toc.dat'))
    # a sidecar that names another file does not make a file ours
    wrong = _make_backup_file(dest, 'dashboard_20200101_000002.dump', old)
    with open(wrong + '.sha256', 'w') as fh:
        fh.write('%s  %s\n' % ('0' * 64, 'something_else.dump'))
    foreign.append(wrong)
    return dest, ours, foreign, now


def _prune(dest, check=False, **kw):
    return entry.run(dict(state='pruned', dest=dest, service='dashboard', **kw), check_mode=check)


def _assert_foreign_intact(foreign):
    for path in foreign:
        assert os.path.exists(path), path


def test_prune_keep_count(backup_dir):
    dest, ours, foreign, _now = backup_dir
    res = _prune(dest, keep_count=3)
    assert sorted(res['pruned']) == sorted(ours[a] for a in range(3, 10))
    assert res['changed'] is True
    for age in range(10):
        assert os.path.exists(ours[age]) == (age < 3)
        assert os.path.exists(ours[age] + '.sha256') == (age < 3)
    _assert_foreign_intact(foreign)
    again = _prune(dest, keep_count=3)
    assert again['changed'] is False and again['pruned'] == []


def test_prune_keep_days(backup_dir):
    dest, ours, foreign, _now = backup_dir
    res = _prune(dest, keep_days=5)
    # ages 0..4 days (minus a minute) are younger than 5 days
    assert sorted(res['pruned']) == sorted(ours[a] for a in range(5, 10))
    _assert_foreign_intact(foreign)


def test_prune_keep_days_and_count_keep_the_union(backup_dir):
    dest, ours, foreign, _now = backup_dir
    res = _prune(dest, keep_days=2, keep_count=4)
    assert sorted(res['pruned']) == sorted(ours[a] for a in range(4, 10))
    res = _prune(dest, keep_days=2, keep_count=1)
    assert sorted(res['pruned']) == sorted(ours[a] for a in range(2, 4))
    assert os.path.exists(ours[0]) and os.path.exists(ours[1])
    _assert_foreign_intact(foreign)


def test_prune_never_removes_the_newest(backup_dir):
    dest, ours, foreign, _now = backup_dir
    res = _prune(dest, keep_days=0, keep_count=0)
    assert sorted(res['pruned']) == sorted(ours[a] for a in range(1, 10))
    assert os.path.exists(ours[0]) and os.path.exists(ours[0] + '.sha256')
    _assert_foreign_intact(foreign)
    # also when every backup is ancient
    for path in (ours[0], ours[0] + '.sha256'):
        os.utime(path, (1, 1))
    assert _prune(dest, keep_days=1)['pruned'] == []


def test_prune_check_mode_lists_without_deleting(backup_dir):
    dest, ours, foreign, _now = backup_dir
    listing = sorted(os.listdir(dest))
    res = _prune(dest, check=True, keep_count=2)
    assert res['changed'] is True and sorted(res['pruned']) == sorted(ours[a] for a in range(2, 10))
    assert sorted(os.listdir(dest)) == listing


def test_prune_needs_a_rule(tmp_path):
    with pytest.raises(BackupError):
        _prune(str(tmp_path))
