"""The controller mark a homelab_migration_run worker gives the modules it starts (module_utils.interrupt)."""

import os

from ansible_collections.homelab.migrations.plugins.module_utils import interrupt


def test_the_mark_names_a_live_process_of_this_machine_and_is_ignored_elsewhere():
    mark = interrupt.controller_mark(os.getpid())
    watched = interrupt.controller_from_env({interrupt.CONTROLLER_ENV: mark})
    assert [pid for pid, _start, _name in watched] == [os.getpid()]
    assert interrupt.gone(watched) is None
    # another machine (another boot id), a malformed or missing mark: nothing to watch
    other = mark.rsplit(':', 1)[0] + ':not-this-boot'
    assert interrupt.controller_from_env({interrupt.CONTROLLER_ENV: other}) == []
    assert interrupt.controller_from_env({interrupt.CONTROLLER_ENV: 'x:y:' + interrupt.boot_id()}) == []
    assert interrupt.controller_from_env({}) == []


def test_a_mark_of_a_process_that_ended_is_gone():
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0)
    mark = interrupt.controller_mark(pid)
    os.waitpid(pid, 0)
    watched = interrupt.controller_from_env({interrupt.CONTROLLER_ENV: mark})
    assert watched and interrupt.gone(watched) == (pid, 'ansible-playbook')


def test_a_guard_entered_after_its_controller_ended_stops_at_once(monkeypatch):
    """The watcher's first look is immediate and checkpoint() looks synchronously (before a COMMIT): a module whose
    ansible-playbook died stops within a fraction of a second, never after a poll interval of work."""
    import time

    import pytest
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0)
    mark = interrupt.controller_mark(pid)
    os.waitpid(pid, 0)
    interrupt.checkpoint()  # outside a guard: nothing to look at, nothing raised
    monkeypatch.setenv(interrupt.CONTROLLER_ENV, mark)
    started = time.monotonic()
    with pytest.raises(interrupt.Interrupted) as raised:
        with interrupt.Guard(poll=30):
            interrupt.checkpoint()
            time.sleep(5)
    assert time.monotonic() - started < 1 and raised.value.reason
    assert interrupt._ACTIVE == []
