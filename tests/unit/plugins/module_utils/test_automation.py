"""module_utils.automation: which machine runs the play (AWX/AAP, ansible-runner, Semaphore, CI), from the
variables and environment each really sets (ansible-runner's own RunnerConfig is asked what it sets)."""

import os

import pytest

from ansible_collections.homelab.migrations.plugins.module_utils.automation import automation_context

BARE = {'PATH': '/usr/bin', 'HOME': '/root', 'TERM': 'xterm'}


@pytest.mark.parametrize('variables,environ,runner', [
    ({}, BARE, None),
    ({'awx_job_id': 42}, BARE, 'awx'),
    ({'tower_job_id': '7'}, BARE, 'awx'),
    ({'awx_job_id': ''}, BARE, None),
    ({'semaphore_vars': {'task_details': {'id': 3, 'username': 'ana'}}}, BARE, 'semaphore'),
    ({}, dict(BARE, AWX_ISOLATED_DATA_DIR='/runner/artifacts/1'), 'ansible-runner'),
    ({}, dict(BARE, RUNNER_OMIT_EVENTS='False'), 'ansible-runner'),
    ({}, dict(BARE, ANSIBLE_STDOUT_CALLBACK='awx_display'), 'ansible-runner'),
    ({}, dict(BARE, JOB_ID='12', AWX_ISOLATED_DATA_DIR='/runner/artifacts/12'), 'awx'),
    ({}, dict(BARE, CI='true'), 'ci'),
    ({}, dict(BARE, CI='1'), 'ci'),
    ({}, dict(BARE, CI='woodpecker'), 'ci'),
    ({}, dict(BARE, CI='false'), None),
    ({}, dict(BARE, CI=''), None),
    ({}, dict(BARE, ANSIBLE_STDOUT_CALLBACK='default'), None),
])
def test_automation_context(variables, environ, runner):
    context = automation_context(variables, environ)
    assert context['runner'] == runner
    assert (context['reason'] is None) == (runner is None)


def test_what_ansible_runner_really_sets_is_recognised(tmp_path):
    """Build ansible-runner's own configuration for a playbook run and feed its environment to the check."""
    runner_config = pytest.importorskip('ansible_runner.config.runner')
    (tmp_path / 'project').mkdir()
    (tmp_path / 'project' / 'play.yml').write_text('- hosts: localhost\n  gather_facts: false\n  tasks: []\n')
    clean = dict((k, v) for k, v in os.environ.items()
                 if k not in ('CI', 'JOB_ID', 'AWX_ISOLATED_DATA_DIR', 'ANSIBLE_STDOUT_CALLBACK')
                 and not k.startswith('RUNNER_'))
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(clean)
    try:
        config = runner_config.RunnerConfig(private_data_dir=str(tmp_path), playbook='play.yml')
        config.prepare()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert automation_context({}, clean)['runner'] is None
    assert automation_context({}, config.env)['runner'] == 'ansible-runner', sorted(config.env)
