"""module_utils/service_step.py's journal when a line cannot be written (a full disk, found by the red team): the step
it would record does not go on, so a missing line always means "not done" (recovery.migrate_all_journal_result reads
it so). Real PostgreSQL, real pg_dump, the example stream-bot's drizzle migrations; only the journal's write fails."""

import errno
import json
import os

from harness.ansible import REPO

from ansible_collections.homelab.migrations.plugins.module_utils import service_step
from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults, validate_service
from ansible_collections.homelab.migrations.plugins.plugin_utils.recovery import migrate_all_journal_result

STREAM = os.path.join(REPO, 'examples', 'homelab', 'services', 'stream-bot')


def _run(fresh_db, tmp_path, fail_on=None, short=False, monkeypatch=None):
    journal = str(tmp_path / 'journal.jsonl')
    real_write = os.write

    def write(fd, data):
        if os.readlink('/proc/self/fd/%d' % fd) == journal:
            if fail_on and ('"%s"' % fail_on).encode() in data:
                raise OSError(errno.ENOSPC, 'No space left on device')
            if short and len(data) > 8:
                return real_write(fd, data[:len(data) // 2])  # a full disk's short write: the rest comes next call
        return real_write(fd, data)
    monkeypatch.setattr(service_step.os, 'write', write)
    spec = service_defaults({'name': 'stream-bot', 'tool': 'drizzle', 'path': STREAM,
                             'database_url': fresh_db.password_url})
    log = str(tmp_path / 'audit.jsonl')
    result = service_step.run_step(spec, validate_service(spec), {'target': 'head', 'audit_log': log},
                                   backup={'dest': str(tmp_path / 'backups')}, record={'run_id': 'r1'},
                                   journal=journal)
    with open(journal) as fh:
        facts = [json.loads(line) for line in fh]
    records = []
    if os.path.exists(log):
        with open(log) as fh:
            records = [json.loads(line) for line in fh]
    return result, facts, records


def _migrated(db):
    return db.query("SELECT count(*) FROM pg_namespace WHERE nspname = 'drizzle'")[0][0] == 1


def test_a_lost_apply_line_stops_the_apply_and_keeps_the_backup(fresh_db, tmp_path, monkeypatch):
    result, facts, records = _run(fresh_db, tmp_path, fail_on='apply', monkeypatch=monkeypatch)
    assert result['failed'] and result['untouched'] is True and result['error_code'] == 'bad_config'
    assert result['backup']['path'] and os.path.isfile(result['backup']['path'])
    assert not _migrated(fresh_db) and records == []
    assert [f['step'] for f in facts] == ['start', 'backup']
    # after a kill, the same journal proves only that the apply never started
    rebuilt = migrate_all_journal_result({'failed': True, 'msg': 'killed'}, facts)
    assert rebuilt['untouched'] is True and rebuilt['backup']['path'] == result['backup']['path']


def test_a_lost_record_line_leaves_the_record_to_the_caller(fresh_db, tmp_path, monkeypatch):
    result, facts, records = _run(fresh_db, tmp_path, fail_on='record', monkeypatch=monkeypatch)
    assert not result.get('failed') and result['applied'] and _migrated(fresh_db)
    assert 'records' not in result and 'record_error' not in result  # the run task writes it (plugin_utils.run)
    assert [r.get('source') for r in records] == [None]  # only the apply's own record
    assert [f['step'] for f in facts] == ['start', 'backup', 'apply']


def test_short_writes_are_finished_and_every_line_is_whole(fresh_db, tmp_path, monkeypatch):
    result, facts, records = _run(fresh_db, tmp_path, short=True, monkeypatch=monkeypatch)
    assert not result.get('failed') and _migrated(fresh_db)
    assert [f['step'] for f in facts] == ['start', 'backup', 'apply', 'record', 'recorded']
    assert facts[3]['records'] == result['records'] == [r for r in records if r.get('source') == 'role']
    rebuilt = migrate_all_journal_result({'failed': True, 'msg': 'killed'}, facts)
    assert rebuilt['record_unconfirmed'] is False and rebuilt['applied'] == result['applied']
    assert migrate_all_journal_result({'failed': True}, facts[:4])['record_unconfirmed'] is True
