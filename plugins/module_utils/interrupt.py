# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A cancelled job cancels: signals and a vanished controller become an exception in the module.

ansible-core 2.19 starts each worker in its own session, so Ctrl-C (SIGINT), a dropped ssh session (SIGHUP)
or a SIGTERM/SIGKILL sent to ansible-playbook's process group never reaches the module, which used to run on
alone, keep its locks and commit after the job ended. While ``Guard`` is active:

- SIGINT, SIGHUP and SIGTERM raise :class:`Interrupted` in the main thread (``error_code: interrupted``);
- a watcher thread learns of the signal at once (``signal.set_wakeup_fd``) and calls ``cancel`` (the
  running query's ``connection.cancel()``): a thread blocked in a query cannot run a Python signal handler
  until the query returns, and the cancel makes it return now, so the handler's exception follows;
- the same thread watches the module's ancestors (the processes between it and the controller: shell,
  worker, ansible-playbook or sshd): when one of them is gone the controller is gone, and the module
  cancels its query and interrupts itself (SIGTERM to itself), within about a second.

:class:`Interrupted` is a BaseException so that no ``except Exception`` on the way swallows it: the
caller's outermost handler rolls back, releases the lock and writes the audit record (outcome
``interrupted``). Later signals during that clean-up are ignored (the first one already said stop).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import select
import signal
import threading

SIGNALS = ('SIGINT', 'SIGHUP', 'SIGTERM')
POLL_SECONDS = 0.5
ERROR_CODE = 'interrupted'


class Interrupted(BaseException):
    """The job was cancelled (a signal) or its controller is gone; ``reason`` says which."""

    error_code = ERROR_CODE

    def __init__(self, reason, signum=None):
        super(Interrupted, self).__init__(reason)
        self.reason = reason
        self.signum = signum


def signal_name(signum):
    try:
        return signal.Signals(signum).name
    except (ValueError, AttributeError):
        return 'signal %s' % signum


def _start_time(pid):
    """Field 22 of /proc/<pid>/stat (start time in clock ticks): tells a pid from a reused one."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as fh:
            data = fh.read()
    except (IOError, OSError):
        return None
    try:
        return int(data[data.rindex(b')') + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def _parent_of(pid):
    try:
        with open('/proc/%d/stat' % pid, 'rb') as fh:
            data = fh.read()
        return int(data[data.rindex(b')') + 2:].split()[1])
    except (IOError, OSError, ValueError, IndexError):
        return None


def _comm(pid):
    try:
        with open('/proc/%d/comm' % pid, 'rb') as fh:
            return fh.read().decode('utf-8', 'replace').strip()
    except (IOError, OSError):
        return '?'


def ancestors(pid=None, limit=32):
    """[(pid, start_time, name)] from the parent up to (not including) pid 1; [] without /proc.

    A module that was daemonised (``async``) has pid 1 (or a subreaper that outlives the job) as parent:
    then nothing is watched, its ancestors are gone by design.
    """
    out = []
    pid = os.getppid() if pid is None else pid
    while pid and pid > 1 and len(out) < limit:
        start = _start_time(pid)
        if start is None:
            break
        out.append((pid, start, _comm(pid)))
        pid = _parent_of(pid)
    return out


CONTROLLER_ENV = 'HOMELAB_MIGRATIONS_CONTROLLER'


def boot_id():
    """This machine's boot id (/proc/sys/kernel/random/boot_id), or '' without one."""
    try:
        with open('/proc/sys/kernel/random/boot_id') as fh:
            return fh.read().strip()
    except (IOError, OSError):
        return ''


def controller_mark(pid=None):
    """``'<pid>:<start time>:<boot id>'`` of ``pid`` (this process's parent: ansible-playbook when called from an
    ansible worker), for :data:`CONTROLLER_ENV` of the modules the worker starts; '' when it cannot be told."""
    pid = os.getppid() if pid is None else pid
    start = _start_time(pid) if pid and pid > 1 else None
    return '%d:%d:%s' % (pid, start, boot_id()) if start is not None else ''


def controller_from_env(environ=None):
    """[(pid, start, 'ansible-playbook')] from :data:`CONTROLLER_ENV` when it names a process of this machine
    (same boot id), else []. A module started by a worker whose ansible-playbook had already died has no
    ansible-playbook among its ancestors; this names it, so that the module stops at once instead of running
    on its own."""
    value = (os.environ if environ is None else environ).get(CONTROLLER_ENV) or ''
    parts = value.split(':', 2)
    if len(parts) != 3 or not parts[2] or parts[2] != boot_id():
        return []
    try:
        return [(int(parts[0]), int(parts[1]), 'ansible-playbook')]
    except ValueError:
        return []


def gone(watched):
    """The first of ``watched`` (from :func:`ancestors`) that no longer runs, or None."""
    for pid, start, name in watched:
        if _start_time(pid) != start:
            return pid, name
    return None


_ACTIVE = []  # the guards entered in this process, innermost last


def checkpoint():
    """A synchronous look for the innermost active Guard, for the moment before work is made permanent (a COMMIT):
    when the controller is gone now, raise that guard's exception (Interrupted by default) instead of waiting for the
    watcher's next poll. Nothing happens outside a guard or after the guard raised once."""
    if _ACTIVE and not _ACTIVE[-1].raised and _ACTIVE[-1].controller_gone():
        guard = _ACTIVE[-1]
        guard.raised = True
        raise guard.make_exception(guard.reason, None)


class Guard(object):
    """``with Guard(cancel): ...`` turns SIGINT/SIGHUP/SIGTERM and the controller's death into Interrupted.

    ``cancel`` (optional) is called from the watcher thread as soon as the job is cancelled: it must be
    thread-safe and quick (psycopg2's ``connection.cancel()`` is). Only active in the main thread of the
    main interpreter; elsewhere it does nothing.
    """

    def __init__(self, cancel=None, watch_ancestors=True, poll=POLL_SECONDS, make_exception=None):
        self.cancel = cancel
        # make_exception(reason, signum) -> the exception to raise (default: Interrupted)
        self.make_exception = make_exception or Interrupted
        self.watch_ancestors = watch_ancestors
        self.poll = poll
        self.reason = None
        self.raised = False
        self.active = False
        self._previous = {}
        self._previous_wakeup = None
        self._pipe = None
        self._stop = threading.Event()
        self._entered = threading.Event()
        self._thread = None
        self._watched = []

    # ----------------------------------------------------------------------------------------- set-up
    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        try:
            read_fd, write_fd = os.pipe()
            os.set_blocking(write_fd, False)
            os.set_blocking(read_fd, False)
            self._previous_wakeup = signal.set_wakeup_fd(write_fd)
        except (ValueError, OSError, AttributeError):
            return self
        self._pipe = (read_fd, write_fd)
        for name in SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            try:
                self._previous[signum] = signal.signal(signum, self._handler)
            except (ValueError, OSError):
                pass
        self.active = True
        _ACTIVE.append(self)
        self._watched = (ancestors() + controller_from_env()) if self.watch_ancestors else []
        self._thread = threading.Thread(target=self._watch, name='homelab-interrupt-watch')
        self._thread.daemon = True
        self._thread.start()
        self._entered.set()  # the watcher's signal may come now (not while this method sets up)
        return self

    def __exit__(self, *exc):
        if not self.active:
            return False
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        self._stop.set()
        try:  # wake the watcher from its select() now instead of after up to ``poll`` seconds
            os.write(self._pipe[1], b'\0')
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(2)
        for signum, previous in self._previous.items():
            try:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass
        try:
            signal.set_wakeup_fd(self._previous_wakeup if self._previous_wakeup is not None else -1)
        except (ValueError, OSError):
            pass
        for fd in self._pipe:
            try:
                os.close(fd)
            except OSError:
                pass
        self.active = False
        return False

    # --------------------------------------------------------------------------------------- handling
    def _handler(self, signum, frame):
        if self.reason is None:
            self.reason = 'interrupted by %s' % signal_name(signum)
        if self.raised:
            return  # clean-up after the first one is running: let it finish
        self.raised = True
        self._cancel()
        raise self.make_exception(self.reason, signum)

    def _cancel(self):
        if self.cancel is None:
            return
        try:
            self.cancel()
        except Exception:
            pass

    def controller_gone(self):
        """Look now (not at the watcher's next poll) whether the controller or a watched ancestor ended; when it did,
        ``reason`` says so and True is returned (nothing is raised: the caller stops)."""
        if self.reason is None and self._watched:
            lost = gone(self._watched)
            if lost is not None:
                self.reason = self._gone_reason(lost)
        return self.reason is not None

    @staticmethod
    def _gone_reason(lost):
        return ('interrupted: the controller is gone (%s, pid %d, ended); the job was cancelled or its connection '
                'dropped' % (lost[1], lost[0]))

    def _watch(self):
        read_fd = self._pipe[0]
        first = True
        while not self._stop.is_set():
            try:
                # the first look is at once: a module started just after its controller died stops at once
                ready, _w, _x = select.select([read_fd], [], [], 0 if first else self.poll)
                first = False
            except (OSError, ValueError):
                return
            if ready:
                try:
                    data = os.read(read_fd, 64)
                except OSError:
                    data = b''
                names = [signal_name(b) for b in bytearray(data)]
                if any(n in SIGNALS for n in names):
                    # the main thread may sit in a query: make it return so the handler can raise
                    self._cancel()
            if self._watched and self.reason is None:
                lost = gone(self._watched)
                if lost is not None:
                    self.reason = self._gone_reason(lost)
                    self._entered.wait(2)
                    try:
                        os.kill(os.getpid(), signal.SIGTERM)  # the handler raises in the main thread
                    except OSError:
                        pass
                    self._cancel()
