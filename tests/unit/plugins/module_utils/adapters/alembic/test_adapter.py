"""adapters/alembic/adapter.py without a database: plan() refuses option-like targets and an alembic command that
cannot be run."""

import os
import sys

import pytest

from harness.alembic_files import graph_of, script as _script, template

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.adapter import AlembicAdapter
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.detail import AlembicStateDetail
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import PlanError


ALEMBIC = os.path.join(os.path.dirname(sys.executable), 'alembic')


def test_plan_refuses_option_like_targets(tmp_path):
    root, graph = graph_of(tmp_path, {'a.py': template('a')})
    from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import ServiceState
    from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl
    adapter = AlembicAdapter({'name': 'svc', 'tool': 'alembic', 'path': root, 'alembic_command': [ALEMBIC]},
                             DbUrl('postgresql://u@h/db'))
    state = ServiceState('alembic', current=[], heads=['a'], applied=[], pending=['a'], history=['a'],
                         detail=AlembicStateDetail(graph=graph, rows=[]))
    for target in ('--sql', '-x', '-1x'):
        with pytest.raises(PlanError) as err:
            adapter.plan(state, target)
        assert 'not valid' in str(err.value)
    with pytest.raises(PlanError) as err:
        adapter.plan(state, 'nosuchrev')
    assert "No such revision or branch 'nosuchrev'" in str(err.value)
    with pytest.raises(PlanError) as err:
        adapter.plan(state, '-1')
    assert 'nothing is applied' in str(err.value)
    plan = adapter.plan(state, 'head')
    assert (plan.direction, plan.steps, plan.to_revision) == ('up', ['a'], 'a')


# ------------------------------------------------------------------ can the alembic command be run?


def _one_revision_state(tmp_path, command=None):
    from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import ServiceState
    from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl
    root, graph = graph_of(tmp_path, {'a.py': template('a')})
    spec = {'name': 'svc', 'tool': 'alembic', 'path': root}
    if command:
        spec['alembic_command'] = command
    adapter = AlembicAdapter(spec, DbUrl('postgresql://u@h/db'))
    return root, adapter, ServiceState('alembic', current=[], heads=['a'], applied=[], pending=['a'],
                                       history=['a'], detail=AlembicStateDetail(graph=graph, rows=[]))


def test_plan_refuses_a_command_that_cannot_run(tmp_path, monkeypatch):
    root, adapter, state = _one_revision_state(tmp_path, ['/nonexistent/bin/alembic', '-x', 'y'])
    with pytest.raises(PlanError) as err:
        adapter.plan(state, 'head')
    assert err.value.code == 'bad_config'
    assert str(err.value) == (
        "cannot upgrade service 'svc': alembic_command /nonexistent/bin/alembic -x y cannot be run: "
        "/nonexistent/bin/alembic does not exist; set alembic_command to the service's own alembic (e.g. "
        "['%s/.venv/bin/alembic']), or leave it out to use %s/.venv/bin/alembic (or, without it, alembic from PATH)"
        % (root, root))
    # nothing to run (already there): nothing needs alembic
    state.applied, state.current, state.detail.rows = ['a'], ['a'], ['a']
    assert adapter.plan(state, 'head').steps == []
    # the default: <path>/.venv/bin/alembic, else `alembic` from PATH
    root, adapter, state = _one_revision_state(tmp_path / 'default')
    monkeypatch.setenv('PATH', str(tmp_path / 'empty'))
    assert adapter.command() == ['alembic']
    with pytest.raises(PlanError) as err:
        adapter.plan(state, 'head')
    assert str(err.value) == (
        "cannot upgrade service 'svc': alembic_command is not set, %s/.venv/bin/alembic does not exist (or is not "
        "executable) and alembic is not on PATH (%s/empty); set alembic_command to the service's alembic, or "
        "create the service's virtualenv %s/.venv with alembic installed in it" % (root, tmp_path, root))
    monkeypatch.setenv('PATH', os.path.dirname(ALEMBIC))
    assert adapter.plan(state, 'head').steps == ['a']
    # a virtualenv whose python is gone (moved or rebuilt)
    os.makedirs(os.path.join(root, '.venv', 'bin'))
    _script(tmp_path / 'default' / '.venv' / 'bin' / 'alembic', '#!%s/moved/bin/python' % root)
    assert adapter.command() == [os.path.join(root, '.venv', 'bin', 'alembic')]
    with pytest.raises(PlanError) as err:
        adapter.plan(state, 'head')
    assert ('alembic_command is not set, so %s/.venv/bin/alembic would run, but %s/.venv/bin/alembic is a script '
            'whose #! interpreter %s/moved/bin/python does not exist' % (root, root, root)) in str(err.value)
    assert 'recreate the virtualenv %s/.venv' % root in str(err.value)
