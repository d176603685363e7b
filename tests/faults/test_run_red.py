"""Red-team cancels of the one-task run: Ctrl-C (SIGINT to the process group) and SIGTERM (AWX, Semaphore) while
the run task's apply waits for its lock, or as the worker starts it (see test_run_cancel)."""

import pytest

from faults.test_run_cancel import test_a_killed_controller_ends_the_run_task_and_nothing_runs_after_it as _cancel

pytestmark = pytest.mark.peer


@pytest.mark.parametrize('when', ['waiting', 'starting'])
@pytest.mark.parametrize('signame', ['SIGINT', 'SIGTERM'])
def test_a_cancelled_run_task_stops_and_nothing_runs_after_it(lab, signame, when):
    _cancel(lab, signame, when)
