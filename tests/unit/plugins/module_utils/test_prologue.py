"""module_utils.prologue: the start homelab_migration_status and _apply share (psycopg2, the spec, each tool's
library), in that order, each failing the module with a message that says nothing was done. The module is a
stand-in whose fail_json raises, as AnsibleModule's exits."""

import pytest

from ansible_collections.homelab.migrations.plugins.module_utils import prologue
from ansible_collections.homelab.migrations.plugins.module_utils.spec import SpecError


class Failed(Exception):
    pass


class Module:
    def __init__(self):
        self.failures = []

    def fail_json(self, **result):
        self.failures.append(result)
        raise Failed(result['msg'])


def test_a_valid_spec_is_returned():
    assert prologue.start(Module(), lambda: {'a': 'url'}, 'nothing was changed') == {'a': 'url'}


def test_a_spec_error_fails_saying_nothing_was_done():
    def bad():
        raise SpecError('service name "A b" is not valid')
    module = Module()
    with pytest.raises(Failed):
        prologue.start(module, bad, 'nothing was read or changed')
    assert module.failures == [{'msg': 'service name "A b" is not valid; nothing was read or changed'}]


def test_missing_psycopg2_is_said_before_the_spec_is_checked(monkeypatch):
    monkeypatch.setattr(prologue, 'HAS_PSYCOPG2', False)
    checked = []
    module = Module()
    with pytest.raises(Failed):
        prologue.start(module, lambda: checked.append(1), 'nothing was changed')
    assert checked == [] and 'psycopg2' in module.failures[0]['msg']


def test_a_tools_missing_library_fails_and_a_present_one_passes(monkeypatch):
    def missing(tools):
        return ('alembic', ImportError('No module named alembic')) if 'alembic' in tools else None
    monkeypatch.setattr(prologue, 'missing_library', missing)
    prologue.require_tools(Module(), ['drizzle'])
    module = Module()
    with pytest.raises(Failed):
        prologue.require_tools(module, ['drizzle', 'alembic'])
    assert 'alembic' in module.failures[0]['msg'] and 'No module named alembic' in module.failures[0]['exception']
