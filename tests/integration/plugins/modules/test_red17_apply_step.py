"""Red team r17: homelab_migration_apply's ``backup`` and ``record`` called directly by a user (real ansible-playbook,
real PostgreSQL, real pg_dump, the example stream-bot)."""

import json
import os

from harness.ansible import REPO, run_module

STREAM = os.path.join(REPO, 'examples', 'homelab', 'services', 'stream-bot')


def _service(db):
    return {'name': 'stream-bot', 'tool': 'drizzle', 'path': STREAM, 'database_url': db.password_url}


def _files(dest):
    return sorted(n for n in os.listdir(dest) if not n.endswith('.sha256') and not n.startswith('.'))


def test_an_unwritable_audit_log_fails_before_the_backup_prunes_anything(fresh_db, tmp_path):
    """audit_log's documented contract: "The task fails before touching anything when the file cannot be written".
    With ``backup`` (keep_count 1) the module first dumps the database and deletes the older backup, then refuses."""
    dest = tmp_path / 'backups'
    older, _proc = run_module('homelab_pg_backup', {'database_url': fresh_db.password_url, 'dest': str(dest),
                                                    'service': 'stream-bot', 'state': 'present'})
    assert not older.get('failed'), older.get('msg')
    kept = _files(str(dest))
    assert len(kept) == 1
    audit_dir = tmp_path / 'audit.log'
    audit_dir.mkdir()  # the audit log's path is a directory: it cannot be written
    result, _proc = run_module('homelab_migration_apply', {
        'service': _service(fresh_db), 'audit_log': str(audit_dir),
        'backup': {'dest': str(dest), 'keep_count': 1}, 'record': {'run_id': 'run-x', 'target': 'head'}})
    assert result.get('failed'), result
    assert result.get('untouched') is True and result.get('applied') == []
    assert fresh_db.query("SELECT count(*) FROM pg_namespace WHERE nspname = 'drizzle'")[0][0] == 0
    # "before touching anything": the user's older backup is still there, and no dump was taken for nothing
    assert _files(str(dest)) == kept, (kept, _files(str(dest)), (result.get('backup') or {}).get('pruned'))
    assert fresh_db.password not in json.dumps(result)


def test_a_second_run_that_writes_a_backup_and_prunes_one_does_not_say_unchanged(fresh_db, tmp_path):
    """"A second run with the same target changes nothing" (the module's description) and Ansible's ``changed``:
    with ``backup`` a second run at head still dumps the database, publishes a new file and (keep_count 1) deletes
    the previous backup, yet reports ``changed: false``."""
    dest = str(tmp_path / 'backups')
    args = {'service': _service(fresh_db), 'backup': {'dest': dest, 'keep_count': 1}}
    first, _proc = run_module('homelab_migration_apply', args)
    assert not first.get('failed') and first['changed'], first.get('msg')
    after_first = _files(dest)
    second, _proc = run_module('homelab_migration_apply', args)
    assert not second.get('failed'), second.get('msg')
    after_second = _files(dest)
    assert second['applied'] == [] and second['outcome'] == 'unchanged'
    # either nothing was written or deleted, or the task says it changed something
    assert after_second == after_first or second['changed'], (after_first, after_second, second['changed'],
                                                              second['backup'].get('pruned'))
