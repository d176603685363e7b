"""homelab_migration_apply's ``backup`` and ``record`` (module_utils/service_step.py) through real ansible-playbook,
real PostgreSQL, real pg_dump and the example stream-bot's drizzle migrations: the backup before the apply, the
role's record after it, and a failed backup that migrates nothing and records nothing."""

import json
import os
import subprocess

from harness.ansible import REPO, run_module

STREAM = os.path.join(REPO, 'examples', 'homelab', 'services', 'stream-bot')


def _service(db):
    return {'name': 'stream-bot', 'tool': 'drizzle', 'path': STREAM, 'database_url': db.password_url}


def _records(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_the_backup_comes_first_and_the_role_record_last_in_one_run(fresh_db, tmp_path):
    log = str(tmp_path / 'audit.jsonl')
    dest = str(tmp_path / 'backups')
    result, _proc = run_module('homelab_migration_apply', {
        'service': _service(fresh_db), 'audit_log': log, 'confirmation': 'extra-var migrate_all_confirm',
        'backup': {'dest': dest, 'keep_count': 2}, 'record': {'run_id': 'run-1', 'target': 'head'}})
    assert not result.get('failed'), result.get('msg')
    backup = result['backup']
    # the backup was taken before the migrations ran: it holds no table of theirs
    assert backup['path'] and os.path.isfile(backup['path']) and os.path.dirname(backup['path']) == dest
    assert backup['size_bytes'] == os.path.getsize(backup['path']) and backup['skipped'] is False
    listing = subprocess.run([fresh_db.server.tool('pg_restore'), '--list', backup['path']], check=True,
                             capture_output=True, text=True).stdout
    assert 'TABLE' not in listing and '__drizzle_migrations' not in listing, listing
    assert result['applied'] and result['untouched'] is False
    assert fresh_db.query('SELECT count(*) FROM drizzle.__drizzle_migrations')[0][0] == len(result['applied'])
    written = _records(log)
    assert [r.get('source') for r in written] == [None, 'role'], written  # the apply's own record, then the role's
    role = written[1]
    assert role == result['records'][0]
    assert (role['service'], role['action'], role['outcome'], role['run_id'], role['target']) == (
        'stream-bot', 'apply', 'success', 'run-1', 'head')
    assert role['applied'] == result['applied'] and role['backup'] == backup['path']
    assert role['confirmation'] == 'extra-var migrate_all_confirm' and role['user'] and role['host']
    assert fresh_db.password not in json.dumps(result) + json.dumps(written)


def test_a_failed_backup_migrates_nothing_and_records_no_outcome(fresh_db, tmp_path):
    log = str(tmp_path / 'audit.jsonl')
    blocked = tmp_path / 'not-a-directory'
    blocked.write_text('a file where the backup directory should be')
    result, _proc = run_module('homelab_migration_apply', {
        'service': _service(fresh_db), 'audit_log': log,
        'backup': {'dest': str(blocked)}, 'record': {'run_id': 'run-2', 'target': 'head'}})
    assert result.get('failed') and result['error_code'] == 'backup_failed' and result['untouched'] is True
    assert result['backup']['failed'] is True and result['backup']['msg']
    assert result['applied'] == [] and 'records' not in result
    assert fresh_db.query("SELECT count(*) FROM pg_namespace WHERE nspname = 'drizzle'")[0][0] == 0
    assert not os.path.exists(log) or [r for r in _records(log) if r.get('source') == 'role'] == []


def test_check_mode_takes_no_backup_and_writes_no_record(fresh_db, tmp_path):
    log = str(tmp_path / 'audit.jsonl')
    dest = tmp_path / 'backups'
    result, _proc = run_module('homelab_migration_apply', {
        'service': _service(fresh_db), 'audit_log': log,
        'backup': {'dest': str(dest)}, 'record': {'run_id': 'run-3'}}, check=True)
    assert not result.get('failed') and result['changed'] and 'backup' not in result and 'records' not in result
    assert not dest.exists()
    assert [r.get('source') for r in _records(log)] == [None]
