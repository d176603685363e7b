"""Red team r17 (red2): homelab_migration_apply's ``journal`` called as the role's run task calls it (real
ansible-playbook, real PostgreSQL, the example stream-bot)."""

import json
import os

from harness.ansible import REPO, run_module

STREAM = os.path.join(REPO, 'examples', 'homelab', 'services', 'stream-bot')


def _service(db):
    return {'name': 'stream-bot', 'tool': 'drizzle', 'path': STREAM, 'database_url': db.password_url}


def test_a_journal_that_cannot_be_written_does_not_stop_the_run(fresh_db, tmp_path):
    """A become user that cannot write the task's temporary directory: the journal's path is not writable (here a
    directory): the module backs up, migrates and records as without a journal."""
    journal = tmp_path / 'journal'
    journal.mkdir()
    audit = str(tmp_path / 'audit.log')
    result, _proc = run_module('homelab_migration_apply', {
        'service': _service(fresh_db), 'audit_log': audit, 'journal': str(journal),
        'backup': {'dest': str(tmp_path / 'backups')}, 'record': {'run_id': 'run-x', 'target': 'head'}})
    assert not result.get('failed'), result.get('msg')
    assert result['applied'] and result['records'], result
    assert os.listdir(str(journal)) == []


def test_the_journal_holds_no_password_when_the_backup_fails(fresh_db, tmp_path):
    """The backup fails (its destination is a file): the journal's ``backup`` line holds the backup's result as the
    module had it before masking; the password must not be in it, nor in the module's result."""
    blocker = tmp_path / 'backups'
    blocker.write_text('not a directory')
    journal = str(tmp_path / 'journal.jsonl')
    result, _proc = run_module('homelab_migration_apply', {
        'service': dict(_service(fresh_db), database_url=fresh_db.password_url), 'journal': journal,
        'backup': {'dest': str(blocker), 'backup': 'always'}, 'record': {'run_id': 'run-x', 'target': 'head'}})
    assert result.get('failed'), result
    with open(journal) as fh:
        text = fh.read()
    assert '"backup"' in text, text
    assert fresh_db.password not in text, text
    assert fresh_db.password not in json.dumps(result)
