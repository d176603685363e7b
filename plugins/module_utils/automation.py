# -*- coding: utf-8 -*-
# Copyright: (c) 2026, homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is this play run by a machine (AWX/AAP, ansible-runner, Semaphore, CI) rather than a person?

One place for the answer, so that the confirmation prompt (never asks where nobody can answer) and the
audit record (who ran it) agree. Plain Python: ``automation_context(variables, environ)`` looks only at
the play's variables (extra vars such as ``awx_job_id``) and the controller's environment.

What each runner really leaves behind (checked against their sources):

- AWX / Ansible Automation Platform pass the extra vars ``awx_job_id`` and ``tower_job_id`` (plus
  ``awx_user_name`` ...) and set ``JOB_ID`` in the environment of the job.
- ansible-runner (AWX's executor, also used alone) always sets ``AWX_ISOLATED_DATA_DIR`` (its artifact
  dir) and ``ANSIBLE_STDOUT_CALLBACK=awx_display``; ``ansible_runner.run`` also sets ``RUNNER_OMIT_EVENTS``
  and ``RUNNER_ONLY_FAILED_EVENTS``. It gives ansible-playbook a pseudo-terminal.
- Semaphore passes the extra var ``semaphore_vars`` (task id, user, ...) and also runs ansible-playbook
  in a pseudo-terminal.
- CI systems set ``CI`` (GitHub Actions, GitLab CI, Woodpecker, Drone, Jenkins with the plugin ...).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

AWX_VARS = ('awx_job_id', 'tower_job_id')
SEMAPHORE_VARS = ('semaphore_vars',)
RUNNER_ENV = ('AWX_ISOLATED_DATA_DIR', 'RUNNER_OMIT_EVENTS', 'RUNNER_ONLY_FAILED_EVENTS')
RUNNER_CALLBACK = 'awx_display'
FALSE_WORDS = ('', '0', 'false', 'no', 'off')


def _set(value):
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip() != ''
    return True


def automation_context(variables=None, environ=None):
    """``{'runner': awx|ansible-runner|semaphore|ci|None, 'reason': str|None}``.

    ``variables`` the play's variables (extra vars included; a dict, may be None), ``environ`` the
    controller's environment (``os.environ`` when None). ``runner`` None means nothing says a machine
    runs the play (a terminal may still be missing: that is the caller's second question).
    """
    variables = variables or {}
    environ = os.environ if environ is None else environ
    for name in AWX_VARS:
        if _set(variables.get(name)):
            return {'runner': 'awx', 'reason': 'AWX/Ansible Automation Platform job (extra var %s)' % name}
    for name in SEMAPHORE_VARS:
        if _set(variables.get(name)):
            return {'runner': 'semaphore', 'reason': 'Semaphore task (extra var %s)' % name}
    if _set(environ.get('JOB_ID')) and _set(environ.get('AWX_ISOLATED_DATA_DIR')):
        return {'runner': 'awx', 'reason': 'AWX/Ansible Automation Platform job (JOB_ID in the environment)'}
    for name in RUNNER_ENV:
        if _set(environ.get(name)):
            return {'runner': 'ansible-runner', 'reason': 'ansible-runner (%s in the environment)' % name}
    if (environ.get('ANSIBLE_STDOUT_CALLBACK') or '').strip() == RUNNER_CALLBACK:
        return {'runner': 'ansible-runner',
                'reason': 'ansible-runner (ANSIBLE_STDOUT_CALLBACK=%s)' % RUNNER_CALLBACK}
    ci = environ.get('CI')
    if ci is not None and ci.strip().lower() not in FALSE_WORDS:
        return {'runner': 'ci', 'reason': 'a CI job (CI is set in the environment)'}
    return {'runner': None, 'reason': None}


def _fd_is_tty(pid, fd):
    path = '/proc/%d/fd/%d' % (pid, fd)
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISCHR(st.st_mode):
        return False
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return os.isatty(handle)
    finally:
        os.close(handle)


def controller_is_interactive():
    """True when ansible-playbook's own stdin and stdout are terminals.

    Templating runs in a worker that ansible detached from the terminal (setsid, stdio on
    /dev/null); its parent is the ansible-playbook process, whose fds 0 and 1 are what count.
    Without /proc the answer is False: the role then never waits and needs migrate_all_confirm.
    """
    try:
        worker = os.getsid(0) == os.getpid() and not os.isatty(0)
    except OSError:
        worker = False
    if not worker:
        return os.isatty(0) and os.isatty(1)
    parent = os.getppid()
    return _fd_is_tty(parent, 0) and _fd_is_tty(parent, 1)
