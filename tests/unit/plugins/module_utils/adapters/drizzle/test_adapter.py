"""adapters/drizzle/adapter.py without a database: the duration options. Against a real PostgreSQL:
tests/integration/plugins/module_utils/adapters/drizzle/test_adapter.py."""


import pytest


from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle import adapter as dz
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import PlanError


# ------------------------------------------------------------------------------------ durations
@pytest.mark.parametrize('value,expected', [
    (None, None), ('', None), (0, '0ms'), (1500, '1500ms'), ('5s', '5s'), (' 250 ms ', '250ms'),
    ('2min', '2min'), ('1.5s', '1.5s'), ('300', '300ms'),
])
def test_parse_duration(value, expected):
    assert dz.parse_duration(value, 'lock_timeout') == expected


@pytest.mark.parametrize('value', ['5 seconds', '-1s', 'abc', True, -5, '1s; DROP TABLE x'])
def test_parse_duration_rejects(value):
    with pytest.raises(PlanError) as info:
        dz.parse_duration(value, 'statement_timeout')
    assert info.value.code == 'bad_config'
    assert 'statement_timeout' in str(info.value)
