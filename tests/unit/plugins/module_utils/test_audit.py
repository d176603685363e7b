"""audit.py: the check that the audit log can be written, and that it refuses foreign directories and symlinks."""

import json
import os

import pytest

from ansible_collections.homelab.migrations.plugins.module_utils import audit
from ansible_collections.homelab.migrations.plugins.module_utils.backup import entry
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError


def test_check_writable(tmp_path):
    audit.check_writable(None)
    audit.check_writable(str(tmp_path / 'new' / 'audit.jsonl'))
    with pytest.raises(audit.AuditLogError) as err:
        audit.check_writable(str(tmp_path))
    assert 'is a directory, not a regular file' in str(err.value) and err.value.unsafe
    log = tmp_path / 'audit.jsonl'
    log.write_text('')
    log.chmod(0o400)
    if not os.access(str(log), os.W_OK):  # root may write anyway
        with pytest.raises(audit.AuditLogError) as err:
            audit.check_writable(str(log), done='nothing was changed')
        assert str(err.value).endswith('(nothing was changed)') and not err.value.unsafe
    link = tmp_path / 'link.jsonl'
    link.symlink_to(tmp_path / 'real.jsonl')
    with pytest.raises(audit.AuditLogError) as err:
        audit.check_writable(str(link))
    assert err.value.unsafe and 'symlink' in str(err.value)


def test_audit_log_refuses_foreign_directories_and_symlinks(tmp_path):
    record = audit.make_record('svc', 'apply')
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(str(shared), 0o777)
    with pytest.raises(OSError) as err:
        audit.append_record(str(shared / 'audit.jsonl'), record)
    assert 'writable by others' in str(err.value) and 'chmod go-w' in str(err.value)
    assert os.listdir(str(shared)) == []
    mine = tmp_path / 'mine'
    mine.mkdir(mode=0o700)
    target = tmp_path / 'elsewhere.jsonl'
    (mine / 'audit.jsonl').symlink_to(target)
    with pytest.raises(OSError) as err:
        audit.append_record(str(mine / 'audit.jsonl'), record)
    assert 'symlink' in str(err.value) and not target.exists()
    audit.append_record(str(mine / 'real.jsonl'), record)
    assert json.loads(open(str(mine / 'real.jsonl')).read())['service'] == 'svc'
    # the modules refuse before doing anything
    with pytest.raises(BackupError) as err:
        entry.check_audit_log(str(shared / 'audit.jsonl'))
    assert 'nothing was done' in str(err.value)
