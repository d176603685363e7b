"""module_utils/durations.py: the one parser of PostgreSQL durations (lock_timeout, statement_timeout), and
module_utils/audit.py's check that the audit log can be written (no server needed)."""

import os

import pytest

from ansible_collections.homelab.migrations.plugins.module_utils import audit, durations


@pytest.mark.parametrize('text,expected', [
    ('5s', ('5', 's')), (' 250 ms ', ('250', 'ms')), ('300', ('300', None)), ('1.5min', ('1.5', 'min')),
    ('0', ('0', None)), ('7d', ('7', 'd')), ('10us', ('10', 'us')),
])
def test_split(text, expected):
    assert durations.split(text) == expected


@pytest.mark.parametrize('text', ['', '-1s', '5 seconds', 'abc', '1s; DROP TABLE x', '.5s', '5S'])
def test_split_refuses(text):
    assert durations.split(text) is None


@pytest.mark.parametrize('value,expected', [(' 5 s ', '5s'), (5, '5'), ('2min', '2min'), ('x', None), (True, None)])
def test_compact(value, expected):
    assert durations.compact(value) == expected


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
