"""Red team (r17): a backup a running migration of the same service may still need is not pruned.

homelab_pg_backup ``state: present`` prunes the service's older backups right after its new one is written. Two
runs of one service overlap (a cron job and a person, or two hosts sharing a backup directory): run B took its
backup and is migrating (it holds the service's lock); run A's backup step then pruned with keep_count 1 and deleted
B's backup, the one B restores when its migration fails and going back does not work (the role's backup step
comes before its lock, and the prune used to run after the apply, which waits for B's lock). While another session
holds the service's migration lock, the prune leaves the older backups and says why."""

import os
import threading

import pytest

from harness.ansible import run_module
from harness.drizzle_gen import users_then
from harness.faults import wait_for

from ansible_collections.homelab.migrations.plugins.module_utils.lock import lock_holder

pytestmark = pytest.mark.peer


def test_a_backup_of_a_run_in_progress_is_not_pruned(fresh_db, tmp_path):
    root = str(tmp_path / 'svc')
    users_then(root, '0001_slow', 'SELECT pg_sleep(8);')
    spec = {'name': 'bot', 'tool': 'drizzle', 'path': root, 'database_url': fresh_db.password_url}
    dest = str(tmp_path / 'backups')
    backup = {'database_url': fresh_db.password_url, 'dest': dest, 'service': 'bot', 'state': 'present'}
    b_backup, proc = run_module('homelab_pg_backup', backup)
    assert not b_backup.get('failed'), b_backup.get('msg') or proc.stdout[-3000:]
    applied = {}
    run_b = threading.Thread(target=lambda: applied.update(
        result=run_module('homelab_migration_apply', {'service': spec, 'target': 'head'})[0]))
    run_b.start()
    conn = fresh_db.conn()
    try:
        assert wait_for(lambda: lock_holder(conn, 'bot') is not None, 60), 'run B never took the lock'
        a_backup, proc = run_module('homelab_pg_backup', dict(backup, keep_count=1))
        held = lock_holder(conn, 'bot') is not None
    finally:
        run_b.join(120)
        conn.close()
    assert held, 'run B ended before run A pruned: the test proves nothing'
    assert not a_backup.get('failed'), a_backup.get('msg') or proc.stdout[-3000:]
    assert os.path.exists(b_backup['path']), 'run B\'s backup was pruned while B was migrating'
    assert a_backup['pruned'] == []
    assert [w for w in a_backup.get('warnings') or [] if 'lock' in w], a_backup
    assert not applied['result'].get('failed')
    # once B is done, the next backup prunes as asked
    c_backup, proc = run_module('homelab_pg_backup', dict(backup, keep_count=1))
    assert sorted(c_backup['pruned']) == sorted([b_backup['path'], a_backup['path']])
