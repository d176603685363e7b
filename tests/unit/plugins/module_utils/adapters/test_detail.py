"""The tool-specific part of a ServiceState / Plan is a typed object of the tool's own package
(adapters/<tool>/detail.py): every field declared in __slots__ and explained in the class docstring, and
only the adapters read it (plan.py, apply*.py, status.py use the common fields and Adapter methods)."""

import os
import re

import pytest

from harness.ansible import REPO

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.detail import (
    AlembicPlanDetail, AlembicStateDetail)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import (
    Plan, PlanDetail, ServiceState, StateDetail)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle.detail import (
    DrizzlePlanDetail, DrizzleStateDetail)

PLUGINS = os.path.join(REPO, 'plugins')
DETAILS = [(AlembicStateDetail, StateDetail), (AlembicPlanDetail, PlanDetail),
           (DrizzleStateDetail, StateDetail), (DrizzlePlanDetail, PlanDetail)]


@pytest.mark.parametrize('cls, base', DETAILS, ids=[pair[0].__name__ for pair in DETAILS])
def test_each_field_is_declared_and_documented(cls, base):
    assert issubclass(cls, base)
    made = cls()
    assert not hasattr(made, '__dict__'), 'a misspelt field must fail, not add an attribute'
    for name in cls.__slots__:
        getattr(made, name)  # every field has a value, None or empty when not given
        assert re.search(r'^\s+(\w+, )*%s\b' % name, cls.__doc__, re.M), '%s.%s is not documented' % (cls, name)
    with pytest.raises(AttributeError):
        made.no_such_field = 1


def test_states_and_plans_default_to_the_empty_common_detail():
    assert ServiceState('x').detail.__class__ is StateDetail
    assert Plan(None, [], None, None, 'head').detail.__class__ is PlanDetail


def test_only_adapters_read_the_detail():
    readers = []
    for folder, _subdirs, names in os.walk(PLUGINS):
        if os.path.join('module_utils', 'adapters') in folder:
            continue
        for name in names:
            if name.endswith('.py'):
                with open(os.path.join(folder, name)) as handle:
                    if re.search(r'\.detail\b', handle.read()):
                        readers.append(name)
    assert readers == []
