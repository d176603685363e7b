# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Child processes that do not outlive the module.

Every program the collection starts (the service's ``alembic``, pg_dump, pg_restore, psql) runs in a
process group of its own, so that what it starts in turn (pg_dump ``--jobs`` workers, a shell's
children) can be killed with it; gets SIGKILL when the module dies (Linux ``PR_SET_PDEATHSIG``, set
with libc's ``prctl`` through ctypes); and has its whole group killed on a timeout or an error
(including an exception a signal handler raises while we wait for it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# exit status of a child whose parent died between the fork and prctl (nobody is left to read it)
ORPHAN_EXIT = 111


def pid_alive(pid):
    """Whether process ``pid`` exists (signal 0; one of another user's counts): what a killed run left behind
    (a passfile directory, a backup's temporary file) names its pid, and is removed only when that is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def libc_prctl():
    """libc's ``prctl`` (Linux), or None where there is none."""
    if not sys.platform.startswith('linux'):
        return None
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):  # pragma: no cover - non-glibc oddities
        return None


def preexec(parent_pid, prctl, umask=None):
    """A ``preexec_fn``: the child leads a new process group, gets SIGKILL when ``parent_pid`` dies
    (when ``prctl`` is given), and takes ``umask`` (when given).

    ``prctl`` is looked up before the fork: the forked child should not import or dlopen anything.
    A parent that died before prctl took effect is noticed (the child was re-parented) and the child
    exits at once with :data:`ORPHAN_EXIT`.
    """
    def setup():
        if umask is not None:
            os.umask(umask)
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(ORPHAN_EXIT)
    return setup


def start(argv, cwd=None, env=None, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
          umask=None, pass_fds=()):
    """``subprocess.Popen`` of ``argv`` set up by :func:`preexec`; raises OSError when it cannot be started.
    ``pass_fds``: open files the child keeps (as /dev/fd/N), all others are closed."""
    return subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr, close_fds=True,
                            pass_fds=tuple(pass_fds or ()), preexec_fn=preexec(os.getpid(), libc_prctl(), umask))


def kill_group(proc):
    """SIGKILL the process group ``proc`` leads; ``proc`` alone when there is no such group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        try:
            proc.kill()
        except OSError:
            pass


def text(data):
    """Output of a child as text: UTF-8 with undecodable bytes replaced; '' for a stream that was not piped."""
    if data is None:
        return ''
    if isinstance(data, bytes):
        return data.decode('utf-8', 'replace')
    return data


def finish(proc, timeout=None):
    """Wait for ``proc`` (from :func:`start`) and read its pipes; its group is killed when ``timeout``
    seconds pass or when anything is raised meanwhile (which is then re-raised).

    Returns (returncode, stdout, stderr, timed_out), the output through :func:`text`.
    """
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc)
        out, err = proc.communicate()
    except BaseException:
        kill_group(proc)
        proc.wait()
        raise
    return proc.returncode, text(out), text(err), timed_out


def run_child(argv, cwd=None, env=None, timeout=None, stdout=subprocess.PIPE, umask=None):
    """Run ``argv`` with no stdin in its own process group; it gets SIGKILL when we die (Linux) or on
    timeout/errors, with its group.

    Returns (returncode, stdout, stderr, timed_out) with text decoded as UTF-8 (replace); stdout is ''
    when it is not piped. Raises OSError when argv[0] cannot be started.
    """
    return finish(start(argv, cwd=cwd, env=env, stdout=stdout, umask=umask), timeout)
