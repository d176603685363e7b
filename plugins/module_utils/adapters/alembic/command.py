# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service's own ``alembic`` CLI as a child process: which executable, its argv and environment, running
it, and reading its output.

The write side runs the service's alembic (its env.py is service code) in the service path with
``DATABASE_URL`` in the child's environment (never in argv) and the session settings in the child's
``PGOPTIONS``; the module process's own ``os.environ`` is read, never changed. run_child
(module_utils.child) gives it a process group of its own that dies with us (``PR_SET_PDEATHSIG``) and
SIGKILLs it on timeout or errors.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shlex

from ansible_collections.homelab.migrations.plugins.module_utils import durations
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import ApplyError, PlanError
from ansible_collections.homelab.migrations.plugins.module_utils.child import run_child
from ansible_collections.homelab.migrations.plugins.module_utils.regular_file import NotRegularFile, read_regular
from ansible_collections.homelab.migrations.plugins.module_utils.waits import child_application_name

# alembic's log line for each revision it starts (alembic.runtime.migration, INFO): "Running upgrade a -> b, msg"
_RUNNING_RE = re.compile(r'Running (upgrade|downgrade) (.*?) -> ([^\s,]*)')
# what `alembic upgrade --sql` writes before each revision's SQL
_SQL_REVISION_RE = re.compile(r'^-- Running upgrade [^\n]*?-> ', re.M)

STDERR_TAIL_LINES = 30
STDERR_TAIL_CHARS = 4000
PREVIEW_TIMEOUT = 120
# the PostgreSQL settings the child's sessions get through PGOPTIONS, in this order, from the run's options
SESSION_SETTINGS = ('client_connection_check_interval', 'lock_timeout', 'statement_timeout')


def _not_runnable(path):
    """Why the file at ``path`` cannot be executed, or None."""
    if not os.path.exists(path):
        return 'does not exist'
    if os.path.isdir(path):
        return 'is a directory'
    if not os.access(path, os.X_OK):
        return 'is not executable'
    return None


def find_executable(name, cwd, env=None):
    """``name`` looked up on the PATH of ``env`` the way run_child's exec does it (relative entries from cwd)."""
    for folder in os.get_exec_path(env):
        path = os.path.join(cwd, folder, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def command_problem(argv, cwd, env=None, path_lookups=True):
    """Why ``argv`` cannot be started by run_child in ``cwd`` with ``env``, or None when it can.

    argv[0] is resolved as exec resolves it (a name on PATH, a path relative to cwd) and must be an
    executable file; a script's ``#!`` interpreter must exist and be executable too (a moved or
    rebuilt virtualenv leaves scripts whose interpreter is gone). With ``path_lookups`` False,
    names looked up on PATH (argv[0] without a slash, ``#!/usr/bin/env python3``) are not checked.
    """
    exe = argv[0]
    if '/' in exe:
        path = os.path.join(cwd, exe)
        why = _not_runnable(path)
        if why:
            return '%s %s' % (path, why)
    elif not path_lookups:
        return None
    else:
        path = find_executable(exe, cwd, env)
        if path is None:
            return '%s is not on PATH (%s)' % (exe, os.pathsep.join(os.get_exec_path(env)))
    try:
        head = read_regular(path, 256, head=True)
    except NotRegularFile as exc:
        return '%s %s' % (path, exc.strerror)
    except OSError:
        return None  # exec needs no read access to a binary; a script's interpreter would say so itself
    if not head.startswith(b'#!'):
        return None
    words = head[2:].split(b'\n', 1)[0].decode('utf-8', 'replace').split(None, 1)
    if not words:
        return '%s starts with an empty #! line' % path
    interpreter = os.path.join(cwd, words[0])
    why = _not_runnable(interpreter)
    if why:
        return ('%s is a script whose #! interpreter %s %s (a virtualenv that was moved or rebuilt leaves its '
                'scripts like that: recreate it)' % (path, interpreter, why))
    if path_lookups and os.path.basename(interpreter) == 'env' and len(words) > 1:
        program = words[1].split()[0]
        if not program.startswith('-') and '=' not in program and '/' not in program \
                and find_executable(program, cwd, env) is None:
            return '%s is a script run by `#!%s %s`, and %s is not on PATH (%s)' % (
                path, words[0], program, program, os.pathsep.join(os.get_exec_path(env)))
    return None


def output_tail(text, lines=STDERR_TAIL_LINES, chars=STDERR_TAIL_CHARS):
    """The end of a tool's output. Mask it first (self._scrub): a cut could leave a password's tail."""
    text = '\n'.join((text or '').strip().splitlines()[-lines:])
    return text[-chars:]


def pg_setting(name, value):
    """A PGOPTIONS -c value; numbers are seconds, strings are PostgreSQL durations ('500ms', '5s', '0')."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise PlanError('%s must be a number of seconds or a duration like 5s, got %r' % (name, value))
    if isinstance(value, (int, float)):
        if value < 0:
            raise PlanError('%s must not be negative' % name)
        return '%dms' % int(round(value * 1000))
    compact = durations.compact(value)
    if compact is None:
        raise PlanError("%s must be a number of seconds or a PostgreSQL duration like '500ms', '5s', '1min'; got %r"
                        % (name, value))
    return compact


def failed_revision(out, err, steps):
    """The revision alembic was running when it failed: the last "Running upgrade a -> b" it logged (the
    revision it went to; for a downgrade the first it went back from), else the first of ``steps``, or None."""
    steps_run = _RUNNING_RE.findall(err or '') + _RUNNING_RE.findall(out or '')
    if steps_run:
        verb, down, up = steps_run[-1]
        return up if verb == 'upgrade' else down.split(',')[0].strip()
    return steps[0] if steps else None


def sql_by_revision(out):
    """[(revision id, its SQL)] of `alembic upgrade --sql` output, in output order."""
    parts = []
    for piece in _SQL_REVISION_RE.split(out)[1:]:
        head, dummy, body = piece.partition('\n')
        parts.append((head.split(',')[0].strip(), body))
    return parts


class AlembicCommand(object):
    """The alembic CLI of one service (spec keys ``path``, ``alembic_command``, ``alembic_config``).

    ``scrub`` masks the service's secrets in any text that leaves here (a function str -> str).
    """

    def __init__(self, spec, name, dburl, scrub):
        self.spec = spec
        self.name = name
        self.dburl = dburl
        self.scrub = scrub
        self.service_path = os.path.abspath(spec['path'])
        self.config_name = spec.get('alembic_config') or 'alembic.ini'

    def command(self):
        """argv prefix: ``alembic_command``, else the service's .venv/bin/alembic, else alembic from PATH."""
        command = self.spec.get('alembic_command')
        if command:
            return list(command)
        local = os.path.join(self.service_path, '.venv', 'bin', 'alembic')
        if os.path.isfile(local) and os.access(local, os.X_OK):
            return [local]
        return ['alembic']

    def problem(self, path_lookups=True):
        """Why the alembic command cannot be run here (a message that says what to do), or None.

        The same resolution as the run itself: PATH from this process's environment, which the
        child inherits, and relative paths from the service path (its working directory).
        """
        argv = self.command()
        why = command_problem(argv, self.service_path, dict(os.environ), path_lookups=path_lookups)
        if why is None:
            return None
        venv = os.path.join(self.service_path, '.venv')
        if self.spec.get('alembic_command'):
            lead = 'alembic_command %s cannot be run: %s' % (display(argv), why)
            fix = ("set alembic_command to the service's own alembic (e.g. ['%s/bin/alembic']), or leave it out to "
                   'use %s/bin/alembic (or, without it, alembic from PATH)' % (venv, venv))
        elif argv[0] == 'alembic':
            lead = 'alembic_command is not set, %s/bin/alembic does not exist (or is not executable) and %s' % (
                venv, why)
            fix = ("set alembic_command to the service's alembic, or create the service's virtualenv %s with alembic "
                   'installed in it' % venv)
        else:
            lead = 'alembic_command is not set, so %s would run, but %s' % (argv[0], why)
            fix = ("recreate the virtualenv %s (with alembic in it), or set alembic_command to the service's alembic"
                   % venv)
        return '%s; %s' % (lead, fix)

    def env(self, options=None):
        """The child's environment: this process's, without ALEMBIC_CONFIG, with DATABASE_URL (the URL as the
        service has it: its env.py knows which driver/scheme it needs), PGAPPNAME, and PGOPTIONS extended by
        ``-c name=value`` for each of SESSION_SETTINGS set in ``options`` (numbers are seconds, strings
        PostgreSQL durations; PlanError for anything else). ``os.environ`` itself is never changed."""
        options = options or {}
        env = dict(os.environ)
        env.pop('ALEMBIC_CONFIG', None)  # we pass -c; the read side assumes the default pyproject.toml too
        env['DATABASE_URL'] = self.dburl.sqlalchemy_url()
        # its sessions are recognisable (who blocks them, lock holders); a URL's own application_name wins
        env['PGAPPNAME'] = child_application_name(self.name)
        pgopts = []
        for name in SESSION_SETTINGS:
            value = pg_setting(name, options.get(name))
            if value is not None:
                pgopts.append('-c %s=%s' % (name, value))
        if pgopts:
            env['PGOPTIONS'] = ' '.join(([env['PGOPTIONS']] if env.get('PGOPTIONS') else []) + pgopts)
        return env

    def argv(self, command, target, sql=False):
        """``alembic -c <config> <command> <target> [--sql]`` with the service's alembic."""
        argv = self.command() + ['-c', self.config_name, command, target]
        if sql:
            argv.append('--sql')
        return argv

    def run(self, argv, options, timeout):
        """(returncode, stdout, stderr, timed_out) of ``argv`` in the service path (run_child); ApplyError
        (code bad_config) when it cannot be started."""
        env = self.env(options)
        try:
            return run_child(argv, self.service_path, env, timeout=timeout)
        except OSError as exc:
            raise ApplyError('cannot run %s in %s: %s; install alembic in the service (.venv/bin/alembic) or set '
                             'alembic_command' % (argv[0], self.service_path, exc.strerror or exc), code='bad_config')

    def offline_sql(self, command, start, target):
        """(stdout, None) of `alembic <command> <start>:<target> --sql` (runs the service's env.py), or
        (None, why it failed: one line, masked). Waits PREVIEW_TIMEOUT seconds at most."""
        argv = self.argv(command, '%s:%s' % (start, target), sql=True)
        try:
            rc, out, err, timed_out = self.run(argv, {}, PREVIEW_TIMEOUT)
        except ApplyError as exc:
            rc, out, err, timed_out = None, '', str(exc), False
        if rc == 0 and not timed_out:
            return out, None
        why = ('timed out after %ss' % PREVIEW_TIMEOUT if timed_out
               else (output_tail(self.scrub(err), 3) or 'exit %s' % rc))
        return None, ' '.join(why.split())


def display(argv):
    """argv as a shell would show it."""
    return ' '.join(shlex.quote(a) for a in argv)
