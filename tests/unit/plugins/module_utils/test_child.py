"""module_utils.child: the process-group / PR_SET_PDEATHSIG runner that alembic and the PostgreSQL client
tools run under. Real processes only."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from harness.ansible import COLLECTIONS
from harness.procs import alive
from ansible_collections.homelab.migrations.plugins.module_utils import child
from ansible_collections.homelab.migrations.plugins.module_utils.child import run_child

# writes its pid to argv[1] (atomically), then sleeps
SLEEPER = ('import os, sys, time\n'
           'tmp = sys.argv[1] + ".tmp"\n'
           'open(tmp, "w").write(str(os.getpid()))\n'
           'os.rename(tmp, sys.argv[1])\n'
           'time.sleep(60)\n')
# a shell whose background grandchild writes its pid to $1, then waits for it
GRANDPARENT = 'sleep 60 & echo $! > "$1"; wait'


def _wait_gone(pid, seconds=5):
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def _wait_pidfile(path, proc=None, seconds=20):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc is None or proc.poll() is None, 'the parent exited early: %r' % (proc.communicate(),)
        assert time.monotonic() < deadline, 'the child never started'
        time.sleep(0.05)
    return int(path.read_text())


def _reap(pid):
    """SIGKILL a process this test started, if it is still there (a failed test leaves nothing behind)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def test_child_dies_with_its_sigkilled_parent(tmp_path):
    """The parent (standing in for the module) is SIGKILLed mid-run: PR_SET_PDEATHSIG kills the child."""
    pidfile = tmp_path / 'child.pid'
    parent_code = textwrap.dedent('''
        import sys
        sys.path.insert(0, %r)
        from ansible_collections.homelab.migrations.plugins.module_utils import child
        child.run_child([sys.executable, '-c', %r, %r])
        print('run_child returned')
    ''' % (COLLECTIONS, SLEEPER, str(pidfile)))
    parent = subprocess.Popen([sys.executable, '-c', parent_code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pid = None
    try:
        pid = _wait_pidfile(pidfile, parent)
        assert alive(pid)
        assert os.getpgid(pid) == pid  # it leads a group of its own, not the parent's
        parent.send_signal(signal.SIGKILL)
        parent.communicate()
        assert parent.returncode == -signal.SIGKILL
        assert _wait_gone(pid), 'the child survived its SIGKILLed parent'
    finally:
        parent.kill()
        parent.wait()
        if pid is not None:
            _reap(pid)


def test_preexec_exits_when_the_parent_is_already_gone():
    """A child whose parent is not the one it was forked for (it died before prctl) never execs."""
    proc = subprocess.Popen(['true'], preexec_fn=child.preexec(os.getppid(), child.libc_prctl()))
    assert proc.wait(timeout=30) == child.ORPHAN_EXIT
    proc = subprocess.Popen(['true'], preexec_fn=child.preexec(os.getpid(), child.libc_prctl()))
    assert proc.wait(timeout=30) == 0


def test_timeout_kills_the_whole_group(tmp_path):
    pidfile = tmp_path / 'grandchild.pid'
    start = time.monotonic()
    rc, out, err, timed_out = child.run_child(['sh', '-c', GRANDPARENT, 'sh', str(pidfile)], str(tmp_path),
                                              timeout=2)
    grandchild = int(pidfile.read_text())
    try:
        assert (rc, timed_out) == (-signal.SIGKILL, True)
        assert time.monotonic() - start < 20  # not the grandchild's 60 s: its group was killed, the pipes closed
        assert _wait_gone(grandchild), 'the grandchild outlived the timeout'
    finally:
        _reap(grandchild)


def test_an_exception_while_waiting_kills_the_whole_group(tmp_path):
    """Anything raised while run_child waits (here from a signal handler, as SIGTERM does in backup) kills the
    group before it propagates."""
    pidfile = tmp_path / 'grandchild.pid'

    class Alarm(Exception):
        pass

    def handler(signum, frame):
        if pidfile.exists() and pidfile.read_text().strip():
            raise Alarm()
        signal.setitimer(signal.ITIMER_REAL, 0.2)  # a slow machine: the grandchild is not there yet
    previous = signal.signal(signal.SIGALRM, handler)
    grandchild = None
    try:
        signal.setitimer(signal.ITIMER_REAL, 2.0)
        start = time.monotonic()
        with pytest.raises(Alarm):
            child.run_child(['sh', '-c', GRANDPARENT, 'sh', str(pidfile)], str(tmp_path), timeout=120)
        assert time.monotonic() - start < 20
        grandchild = int(pidfile.read_text())
        assert _wait_gone(grandchild), 'the grandchild outlived the error'
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if grandchild is not None:
            _reap(grandchild)


def test_output_is_decoded_with_replace_and_the_exit_status_kept(tmp_path):
    code = ("import sys; sys.stdout.buffer.write(b'caf\\xc3\\xa9 \\xff\\xfe'); "
            "sys.stderr.buffer.write(b'bad \\xc3( end'); sys.exit(3)")
    rc, out, err, timed_out = child.run_child([sys.executable, '-c', code], str(tmp_path), timeout=60)
    assert (rc, out, err, timed_out) == (3, 'caf\u00e9 \ufffd\ufffd', 'bad \ufffd( end', False)


def test_stdout_not_piped_reads_as_empty(tmp_path):
    rc, out, err, timed_out = child.run_child(['sh', '-c', 'echo to-null; echo to-err >&2'], str(tmp_path),
                                              stdout=subprocess.DEVNULL)
    assert (rc, out, err, timed_out) == (0, '', 'to-err\n', False)


def test_group_env_cwd_and_umask(tmp_path):
    env = dict(os.environ, HOMELAB_CHILD_PROBE='p-r-o-b-e')
    code = ('import os; old = os.umask(0); '
            'print(os.getpgid(0) == os.getpid(), os.getpgid(0) != %d, oct(old), os.getcwd(), '
            'os.environ["HOMELAB_CHILD_PROBE"])' % os.getpgid(0))
    rc, out, err, timed_out = child.run_child([sys.executable, '-c', code], str(tmp_path), env, umask=0o027)
    assert (rc, timed_out, err) == (0, False, '')
    assert out.split() == ['True', 'True', '0o27', str(tmp_path), 'p-r-o-b-e']
    # no umask asked for: the child keeps ours
    ours = os.umask(0o022)
    try:
        rc, out, err, timed_out = child.run_child([sys.executable, '-c', 'import os; print(oct(os.umask(0)))'])
    finally:
        os.umask(ours)
    assert (rc, out.strip()) == (0, '0o22')


def test_a_program_that_cannot_start_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        child.run_child([str(tmp_path / 'no-such-program')], str(tmp_path))
    with pytest.raises(FileNotFoundError):
        child.run_child(['homelab-no-such-program-on-path'], str(tmp_path))
    script = tmp_path / 'not-executable'
    script.write_text('#!/bin/sh\nexit 0\n')
    script.chmod(0o644)
    with pytest.raises(PermissionError):
        child.run_child([str(script)], str(tmp_path))


# ------------------------------------------------------------------------------ child process


def test_run_child_timeout_kills_the_whole_group(tmp_path):
    pidfile = tmp_path / 'grandchild.pid'
    script = 'sleep 60 & echo $! > %s; wait' % pidfile
    start = time.monotonic()
    rc, out, err, timed_out = run_child(['sh', '-c', script], str(tmp_path), dict(os.environ), timeout=1.5)
    assert timed_out and rc == -signal.SIGKILL
    assert time.monotonic() - start < 10
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)


def test_run_child_gets_its_own_process_group_and_env(tmp_path):
    env = dict(os.environ, HOMELAB_SECRET_PROBE='s3cr3t')
    code = 'import os; print(os.getpgid(0) == os.getpid(), os.environ["HOMELAB_SECRET_PROBE"])'
    rc, out, err, timed_out = run_child([sys.executable, '-c', code], str(tmp_path), env)
    assert (rc, out.split(), timed_out) == (0, ['True', 's3cr3t'], False)


def test_child_dies_with_its_parent(tmp_path):
    """The parent (standing in for the module) is SIGKILLed: PR_SET_PDEATHSIG takes the child down."""
    pidfile = tmp_path / 'child.pid'
    collections = [p for p in sys.path if p.endswith(os.path.join('.build', 'collections'))][0]
    parent_code = textwrap.dedent('''
        import os, sys
        sys.path.insert(0, %r)
        from ansible_collections.homelab.migrations.plugins.module_utils.child import run_child
        run_child([sys.executable, '-c', %r], %r, dict(os.environ))
    ''' % (collections, 'import os, time; open(%r, "w").write(str(os.getpid())); time.sleep(60)' % str(pidfile),
           str(tmp_path)))
    parent = subprocess.Popen([sys.executable, '-c', parent_code])
    deadline = time.monotonic() + 20
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, 'the child never started'
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), 'the child outlived its killed parent'
