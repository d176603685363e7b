"""The role never waits for a keyboard nobody sits at, and the prompt it shows a person is bounded.

Each case runs the real `playbooks/migrate.yml` without migrate_all_confirm the way its runner does:
under the real ansible-runner (AWX/AAP's executor: ansible-playbook in a pseudo-terminal), in a
pseudo-terminal with the `semaphore_vars` extra var (as Semaphore runs it), on a terminal with `CI` set,
and on a terminal where nobody answers. Each must end quickly, refused, with nothing touched and a
refused audit record that says why.
"""

import json
import os
import select
import sys
import time

import pytest

from harness.ansible import REPO, ansible_env
from integration.roles.migrate_all.test_role import INVENTORY, PLAYBOOK, Homelab, refused

pytestmark = pytest.mark.peer

BOUND = 120  # seconds: a refused run takes a few; a hang is caught well before the test's own timeout


@pytest.fixture
def lab(pg, tmp_path):
    homelab = Homelab(pg, tmp_path)
    yield homelab
    homelab.drop()


def _vars_file(path, variables):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, 'w') as fh:
        json.dump(variables, fh)
    return path


def _on_a_pty(argv, env, timeout=BOUND, type_at_prompt=None):
    """Run argv with stdin/stdout/stderr on a pseudo-terminal (as Semaphore and ansible-runner do).

    Returns (exit code or None when it had to be killed, output, seconds, prompted)."""
    import pty
    started = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.chdir(REPO)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    out, code, typed = b'', None, False
    try:
        while time.monotonic() - started < timeout:
            ready, _w, _x = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if type_at_prompt is not None and not typed and b'no answer counts as no' in out:
                time.sleep(1)
                os.write(fd, type_at_prompt)
                typed = True
    finally:
        reaped = 0
        grace = time.monotonic() + 15  # output closed: give it a moment to exit
        while time.monotonic() < grace:
            reaped, status = os.waitpid(pid, os.WNOHANG)
            if reaped or time.monotonic() - started >= timeout:
                break
            time.sleep(0.2)
        if reaped:
            code = os.waitstatus_to_exitcode(status)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode('utf-8', 'replace')
    return code, text, time.monotonic() - started, 'no answer counts as no' in text


def _argv(varsfile):
    return [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), PLAYBOOK, '-i', INVENTORY,
            '-e', '@' + varsfile, '--tags', 'discord-bot']


def _assert_refused_untouched(lab, before, why):
    assert lab.snapshot() == before
    record = refused(lab, lab.audit())
    assert record['confirmation'] == 'none', record
    assert why in record['error'], record['error']
    return record


def test_ansible_runner_never_prompts(lab, tmp_path):
    """AWX/AAP's executor: ansible_runner.run gives ansible-playbook a pty; the role must not take it for a person."""
    ansible_runner = pytest.importorskip('ansible_runner')
    before = lab.snapshot()
    private = tmp_path / 'runner'
    private.mkdir()
    env = ansible_env(lab.env())
    for name in ('CI', 'JOB_ID'):
        env.pop(name, None)
    started = time.monotonic()
    result = ansible_runner.run(private_data_dir=str(private), playbook=PLAYBOOK, inventory=INVENTORY,
                                extravars=lab.extra_vars(confirm=False), envvars=env, tags='discord-bot',
                                quiet=True, timeout=BOUND, settings={'suppress_ansible_output': True})
    took = time.monotonic() - started
    out = result.stdout.read()
    assert took < BOUND - 5, 'ansible-runner ran into its own timeout: the role waited (%.0f s)' % took
    assert result.status == 'failed' and result.rc != 0, (result.status, result.rc, out[-3000:])
    assert 'no answer counts as no' not in out, 'the role showed the prompt under ansible-runner'
    assert 'nobody to ask: ansible-runner' in out, out[-3000:]
    _assert_refused_untouched(lab, before, 'nobody to ask: ansible-runner')


def test_awx_job_under_ansible_runner_is_named_as_awx(lab, tmp_path):
    ansible_runner = pytest.importorskip('ansible_runner')
    before = lab.snapshot()
    private = tmp_path / 'runner'
    private.mkdir()
    env = ansible_env(lab.env())
    env.pop('CI', None)
    result = ansible_runner.run(private_data_dir=str(private), playbook=PLAYBOOK, inventory=INVENTORY,
                                extravars=lab.extra_vars(confirm=False, awx_job_id=4711, tower_job_id=4711),
                                envvars=env, tags='discord-bot', quiet=True, timeout=BOUND)
    out = result.stdout.read()
    assert result.status == 'failed', (result.status, out[-3000:])
    _assert_refused_untouched(lab, before, 'nobody to ask: AWX')


def test_semaphore_pty_never_prompts(lab, tmp_path):
    """Semaphore runs ansible-playbook in a pseudo-terminal and passes its semaphore_vars extra var."""
    before = lab.snapshot()
    semaphore_vars = {'task_details': {'id': 17, 'type': '', 'username': 'ana', 'url': 'http://semaphore/task/17'}}
    varsfile = _vars_file(str(tmp_path / 'vars.json'), lab.extra_vars(confirm=False, semaphore_vars=semaphore_vars))
    env = ansible_env(lab.env())
    env.pop('CI', None)
    code, out, took, prompted = _on_a_pty(_argv(varsfile), env)
    assert code is not None, 'still waiting after %d s:\n%s' % (BOUND, out[-3000:])
    assert code != 0 and not prompted, out[-3000:]
    assert 'nobody to ask: Semaphore task (extra var semaphore_vars)' in out
    _assert_refused_untouched(lab, before, 'Semaphore')


def test_ci_on_a_terminal_never_prompts(lab, tmp_path):
    before = lab.snapshot()
    varsfile = _vars_file(str(tmp_path / 'vars.json'), lab.extra_vars(confirm=False))
    code, out, _took, prompted = _on_a_pty(_argv(varsfile), ansible_env(dict(lab.env(), CI='true')))
    assert code is not None and code != 0 and not prompted, out[-3000:]
    _assert_refused_untouched(lab, before, 'nobody to ask: a CI job')


def test_prompt_times_out_and_counts_as_no(lab, tmp_path):
    """A person's terminal, nobody answers: the prompt gives up after migrate_all_prompt_timeout seconds."""
    before = lab.snapshot()
    varsfile = _vars_file(str(tmp_path / 'vars.json'), lab.extra_vars(confirm=False, migrate_all_prompt_timeout=3))
    env = ansible_env(lab.env())
    env.pop('CI', None)
    code, out, _took, prompted = _on_a_pty(_argv(varsfile), env)
    assert prompted, out[-3000:]
    assert code is not None and code != 0, out[-3000:]
    assert 'no answer within 3 s, which counts as no' in out
    _assert_refused_untouched(lab, before, 'no answer within 3 s')


def test_typed_yes_without_enter_is_not_a_yes(lab, tmp_path):
    """'yes' typed but never sent (no Enter) before the time runs out: still no."""
    before = lab.snapshot()
    varsfile = _vars_file(str(tmp_path / 'vars.json'), lab.extra_vars(confirm=False, migrate_all_prompt_timeout=4))
    env = ansible_env(lab.env())
    env.pop('CI', None)
    code, out, _took, prompted = _on_a_pty(_argv(varsfile), env, type_at_prompt=b'yes')
    assert prompted and code is not None and code != 0, out[-3000:]
    _assert_refused_untouched(lab, before, 'no answer within 4 s')
