"""homelab_migration_run's pause between two attempts (going back, restoring) ends as soon as the controller is
gone (plugins/plugin_utils/run.py): a worker left behind by a killed ansible-playbook does not wait out the pause."""

import time

import pytest

from ansible_collections.homelab.migrations.plugins.plugin_utils.run import Cancelled, RoleRun


def _run(gone_after):
    calls = {'checks': 0, 'slept': 0.0}

    def controller_gone():
        calls['checks'] += 1
        return 'ansible-playbook (pid 1234) ended' if calls['checks'] > gone_after else None

    def sleep(seconds):
        calls['slept'] += seconds
        time.sleep(seconds)

    args = {'services': [], 'recovery': {'retries': 3, 'delay': 30}}
    return RoleRun(args, None, lambda line: None, sleep=sleep, controller_gone=controller_gone), calls


def test_the_pause_ends_when_the_controller_is_gone():
    run, calls = _run(gone_after=2)
    with pytest.raises(Cancelled):
        run._pause(30)
    assert calls['slept'] < 1, calls


def test_the_pause_lasts_its_time_while_the_controller_lives():
    run, calls = _run(gone_after=10 ** 6)
    run._pause(0.5, step=0.1)
    assert calls['checks'] >= 5 and 0.45 <= calls['slept'] <= 0.6, calls
