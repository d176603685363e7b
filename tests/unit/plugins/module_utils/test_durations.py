"""module_utils/durations.py: the one parser of PostgreSQL durations (lock_timeout, statement_timeout)."""

import pytest

from ansible_collections.homelab.migrations.plugins.module_utils import durations


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
