"""homelab_pg_backup state=present with keep_days/keep_count prunes the service's OLDER backups after the new one is
written and verified, in the same module run, and returns them in ``pruned``: the new backup is never pruned, a
failed or skipped backup prunes nothing, check mode deletes nothing and says what it would prune. That the role's
run passes its keep values to the backup step: tests/unit/plugins/plugin_utils/test_run_backup.py."""

import json
import os
import time

import pytest

from ansible_collections.homelab.migrations.plugins.module_utils.backup import entry, store
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError

DAY = 86400.0


def _old_backup(dest, name, age_days):
    """A backup of the module's shape (a name of its pattern with its .sha256 file), ``age_days`` old."""
    path = os.path.join(dest, name)
    with open(path, 'wb') as fh:
        fh.write(b'PGDMP an old backup')
    with open(path + '.sha256', 'w') as fh:
        fh.write('%s  %s\n' % ('0' * 64, name))
    mtime = time.time() - age_days * DAY
    for made in (path, path + '.sha256'):
        os.chmod(made, 0o600)
        os.utime(made, (mtime, mtime))
    return path


@pytest.fixture
def dest(tmp_path):
    """A backup directory with three old 'dashboard' backups (3.5, 2.5 and 1.5 days old) and one of another service."""
    path = str(tmp_path / 'backups')
    os.makedirs(path, 0o700)
    olds = [_old_backup(path, 'dashboard_2020010%d_000000.dump' % day, 4.5 - day) for day in (1, 2, 3)]
    other = _old_backup(path, 'stream-bot_20200101_000000.dump', 30)
    return path, olds, other


def _args(db, dest, **kw):
    return dict(dict(database_url=db.password_url, state='present', dest=dest, service='dashboard'), **kw)


def _names(dest):
    return sorted(os.listdir(dest))


def test_present_with_keep_count_prunes_the_older_ones_and_keeps_the_new_one(fresh_db, dest, tmp_path):
    path, olds, other = dest
    fresh_db.execute('CREATE TABLE t (x int)')
    audit = str(tmp_path / 'audit.jsonl')
    res = entry.run(_args(fresh_db, path, keep_count=2, audit_log=audit))
    assert res['changed'] is True and res['sha256'] and os.path.exists(res['path'])
    assert sorted(res['pruned']) == sorted(olds[:2])    # the new one and the newest old one stay
    for gone in olds[:2]:
        assert not os.path.lexists(gone) and not os.path.lexists(gone + '.sha256')
    assert os.path.exists(olds[2]) and os.path.exists(other)
    assert [e['path'] for e in store.list_backups(path, 'dashboard')] == [res['path'], olds[2]]
    assert res['diff']['after'] == ''.join(os.path.basename(p) + '\n' for p in (res['path'], olds[2]))
    record = json.loads(open(audit).read().splitlines()[-1])
    assert record['action'] == 'backup' and record['outcome'] == 'success'
    assert sorted(record['pruned']) == sorted(olds[:2])


def test_the_new_backup_counts_as_the_newest_whatever_the_old_ones_mtimes_say(fresh_db, dest):
    path, olds, _other = dest
    future = time.time() + 2 * DAY   # an old backup copied in with a later mtime (clock skew, a restore of files)
    for made in (olds[0], olds[0] + '.sha256'):
        os.utime(made, (future, future))
    res = entry.run(_args(fresh_db, path, keep_count=1))
    assert os.path.exists(res['path'])
    assert sorted(res['pruned']) == sorted(olds)
    assert [e['path'] for e in store.list_backups(path, 'dashboard')] == [res['path']]


def test_keep_days_prunes_older_ones_only(fresh_db, dest):
    path, olds, _other = dest
    res = entry.run(_args(fresh_db, path, keep_days=3))   # 3.5 days old goes; 2.5 and 1.5 stay
    assert res['pruned'] == [olds[0]]
    assert os.path.exists(olds[1]) and os.path.exists(olds[2]) and os.path.exists(res['path'])


def test_a_failed_backup_prunes_nothing(fresh_db, dest):
    path, olds, _other = dest
    listing = _names(path)
    fresh_db.execute('CREATE TABLE t (x int)')
    holder = fresh_db.conn()   # the application holds an ACCESS EXCLUSIVE lock: pg_dump gives up after 1 s
    holder.autocommit = False
    try:
        with holder.cursor() as cur:
            cur.execute('LOCK TABLE t IN ACCESS EXCLUSIVE MODE')
        with pytest.raises(BackupError) as err:
            entry.run(_args(fresh_db, path, keep_count=1, lock_wait_timeout=1))
    finally:
        holder.rollback()
        holder.close()
    assert err.value.result.get('pruned') in (None, [])
    assert _names(path) == listing and all(os.path.exists(p) for p in olds)
    # a database that is not there: no backup, nothing pruned
    with pytest.raises(BackupError):
        entry.run(_args(fresh_db, path, keep_count=1,
                        database_url=fresh_db.password_url.rsplit('/', 1)[0] + '/no_such_db'))
    assert _names(path) == listing


def test_a_skipped_backup_prunes_nothing(fresh_db, dest):
    path, _olds, _other = dest
    listing = _names(path)
    res = entry.run(_args(fresh_db, path, keep_count=1, backup='never'))
    assert res['skipped'] is True and res['pruned'] == [] and res['changed'] is False
    assert _names(path) == listing


def test_check_mode_says_what_it_would_prune_and_deletes_nothing(fresh_db, dest):
    path, olds, _other = dest
    listing = _names(path)
    res = entry.run(_args(fresh_db, path, keep_count=2), check_mode=True)
    assert res['changed'] is True and res['sha256'] is None
    assert sorted(res['pruned']) == sorted(olds[:2])
    assert _names(path) == listing
    would = res['diff']['after'].splitlines()
    assert would == [os.path.basename(res['path']), os.path.basename(olds[2])]


def test_a_prune_that_fails_names_the_new_verified_backup(fresh_db, dest, monkeypatch):
    path, olds, _other = dest
    real_remove = store.remove

    def remove(target):
        if target == olds[0]:
            raise PermissionError(13, 'Permission denied', target)
        return real_remove(target)

    monkeypatch.setattr(store, 'remove', remove)
    with pytest.raises(BackupError) as err:
        entry.run(_args(fresh_db, path, keep_count=1))
    new = err.value.result['path']
    assert new and os.path.exists(new) and new not in olds
    assert 'written and verified' in str(err.value) and err.value.result['untouched'] is True
    assert err.value.result['sha256'] and err.value.result['pruned'] == [olds[2], olds[1]]  # newest first
    assert os.path.exists(olds[0])


def test_state_pruned_keeps_working(dest):
    path, olds, other = dest
    res = entry.run(dict(state='pruned', dest=path, service='dashboard', keep_count=1))
    assert sorted(res['pruned']) == sorted(olds[:2]) and os.path.exists(olds[2]) and os.path.exists(other)
