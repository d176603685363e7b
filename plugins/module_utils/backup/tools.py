# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding and running the PostgreSQL client tools (pg_dump, pg_restore, psql) and comparing versions.

Versions are ``server_version_num`` style integers (150013 for 15.13, 90624 for 9.6.24). A client older
than the server's major version is refused (pg_dump refuses or writes an incomplete dump). The tools run
with no stdin, a private umask, scrubbed output, the connection in PG* variables and the password in a
PGPASSFILE (never on a command line), each in its own process group that dies with the module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re
import subprocess

from ansible_collections.homelab.migrations.plugins.module_utils import child
from ansible_collections.homelab.migrations.plugins.module_utils import connection
from ansible_collections.homelab.migrations.plugins.module_utils import secrets
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError
from ansible_collections.homelab.migrations.plugins.module_utils.connection import ConnectError
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl
from ansible_collections.homelab.migrations.plugins.module_utils.passfile import PassFile

# the places PostgreSQL client binaries live besides PATH (Debian/Ubuntu, PGDG RPMs, source builds, Homebrew)
TOOL_GLOBS = ('/usr/lib/postgresql/*/bin', '/usr/pgsql-*/bin', '/usr/local/pgsql/bin',
              '/opt/homebrew/opt/postgresql@*/bin', '/usr/local/opt/postgresql@*/bin')
CLIENT_PACKAGE_HINT = ('install the PostgreSQL client tools (`apt-get install postgresql-client` on Debian/Ubuntu, '
                       '`dnf install postgresql` on Fedora/RHEL) or point the module at them with pg_bindir')


class Runner:
    """Runs PostgreSQL client tools: no stdin, scrubbed output, private umask, each in its own process
    group (pg_dump --jobs workers included) that dies with the module (module_utils.child)."""

    def __init__(self, dburl=None, env=None):
        self.dburl = dburl
        self.env = env
        self.procs = []
        self.pass_fds = ()  # the open backup a restore hands its tools as /dev/fd/N

    def popen(self, argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=None):
        """Start ``argv`` (child.start); BackupError naming the client package when it cannot be run."""
        try:
            proc = child.start(argv, env=env or self.env, stdin=stdin, stdout=stdout, stderr=stderr, umask=0o077,
                               pass_fds=self.pass_fds)
        except OSError as exc:
            raise BackupError('cannot run %s: %s; %s' % (argv[0], exc.strerror or exc, CLIENT_PACKAGE_HINT))
        self.procs.append(proc)
        return proc

    def run(self, argv, timeout=None, stdout=subprocess.PIPE):
        """(rc, stdout text, stderr text), both scrubbed of the URL's secrets; BackupError after ``timeout``
        seconds (None: no limit; the tool's own waits are bounded by lock and connect timeouts)."""
        rc, out, err, timed_out = child.finish(self.popen(argv, stdout=stdout), timeout)
        if timed_out:
            raise BackupError('%s did not finish within %s seconds' % (os.path.basename(argv[0]), timeout))
        return rc, self.text(out), self.text(err)

    def text(self, data):
        """Tool output as text with the URL's secrets masked."""
        data = child.text(data)
        return self.dburl.scrub(data) if self.dburl is not None else data

    def kill_all(self):
        """Kill the process group of every tool still running and reap it."""
        for proc in self.procs:
            if proc.poll() is None:
                child.kill_group(proc)
                proc.wait()


# URL parameters that DbUrl.libpq_env does not map but libpq tools understand as environment variables
_EXTRA_LIBPQ_ENV = {'hostaddr': 'PGHOSTADDR', 'sslcrl': 'PGSSLCRL', 'sslcrldir': 'PGSSLCRLDIR', 'sslsni': 'PGSSLSNI',
                    'sslcertmode': 'PGSSLCERTMODE', 'gssencmode': 'PGGSSENCMODE', 'channel_binding': 'PGCHANNELBINDING',
                    'ssl_min_protocol_version': 'PGSSLMINPROTOCOLVERSION',
                    'ssl_max_protocol_version': 'PGSSLMAXPROTOCOLVERSION', 'krbsrvname': 'PGKRBSRVNAME',
                    'gsslib': 'PGGSSLIB', 'requirepeer': 'PGREQUIREPEER', 'load_balance_hosts': 'PGLOADBALANCEHOSTS'}


def child_app_name(service=None):
    """application_name of this module run's pg_dump/pg_restore/psql sessions (the module's pid makes it unique,
    so an interrupted run can end exactly its own sessions)."""
    return connection.application_name('%s:backup:%d' % (service or 'pg_backup', os.getpid()))


def end_own_sessions(params):
    """After an interruption: end this run's tool sessions still on the server (a pg_dump killed while it
    waited for a lock leaves its backend queued until the lock is free). Best effort, never raises."""
    try:
        conn = connection.connect(DbUrl(params['database_url']), service=(params.get('service') or 'pg_backup')
                                  + ':cleanup', connect_timeout=5)
    except Exception:
        return
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity '
                        'WHERE application_name = %s AND pid <> pg_catalog.pg_backend_pid()',
                        (child_app_name(params.get('service')),))
    except Exception:
        pass
    finally:
        try:
            conn.close()
        except Exception:
            pass


def child_env(dburl, passfile_env, connect_timeout, service=None):
    """Environment for pg_dump/pg_restore/psql: connection via PG* variables, password via PGPASSFILE.

    Inherited PG* variables are dropped so that a stray PGPASSWORD or PGHOST cannot redirect the tool.
    """
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith('PG'))
    env.update(passfile_env)
    for key, var in _EXTRA_LIBPQ_ENV.items():
        if key in dburl.params and var not in env:
            env[var] = dburl.params[key]
    env.setdefault('PGCONNECT_TIMEOUT', str(int(connect_timeout)))
    env.setdefault('PGAPPNAME', child_app_name(service))
    env.pop('LC_ALL', None)
    env.pop('LANGUAGE', None)
    env['LC_MESSAGES'] = 'C'  # error messages we can recognise (disk full, auth failures)
    return env


def _conninfo_value(value):
    return "'%s'" % str(value).replace('\\', '\\\\').replace("'", "\\'")


def dbname_conninfo(dburl):
    """A conninfo for pg_restore --dbname: only the database name; the rest comes from the environment."""
    parts = []
    if dburl.dbname:
        parts.append('dbname=%s' % _conninfo_value(dburl.dbname))
    parts.append('fallback_application_name=%s' % _conninfo_value('homelab.migrations'))
    return ' '.join(parts)


_VERSION_RE = re.compile(r'\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?(?:\.(\d+))?')


def parse_version(text):
    """'pg_dump (PostgreSQL) 15.13 (Debian ...)' -> 150013; 9.6.24 -> 90624; None if unrecognised."""
    match = _VERSION_RE.search(text or '')
    if not match:
        return None
    major = int(match.group(1))
    minor = int(match.group(2) or 0)
    if major >= 10:
        return major * 10000 + minor
    return major * 10000 + minor * 100 + int(match.group(3) or 0)


def major_of(version_num):
    """server_version_num style number -> comparable major (1500 for 15.x, 906 for 9.6.x)."""
    return int(version_num) // 100


def version_text(version_num):
    """150013 -> '15.13'; 90624 -> '9.6.24' (for messages)."""
    version_num = int(version_num)
    if version_num >= 100000:
        return '%d.%d' % (version_num // 10000, version_num % 10000)
    return '%d.%d.%d' % (version_num // 10000, version_num // 100 % 100, version_num % 100)


def major_text(version_num):
    """The major version for messages and package names: 150013 -> '15'; 90624 -> '9.6'."""
    version_num = int(version_num)
    if version_num >= 100000:
        return str(version_num // 10000)
    return '%d.%d' % (version_num // 10000, version_num // 100 % 100)


def tool_version(path, runner=None):
    """The version number ``path --version`` reports (parse_version), or None when it fails or says
    something else (60 s at most)."""
    runner = runner or Runner()
    try:
        rc, out, err = runner.run([path, '--version'], timeout=60)
    except BackupError:
        return None
    if rc != 0:
        return None
    return parse_version(out)


def is_executable(path):
    """True for a regular file this user may execute."""
    return os.path.isfile(path) and os.access(path, os.X_OK)


def tool_candidates(name, search_path=None, globs=TOOL_GLOBS):
    """Every executable ``name`` on PATH and in the usual PostgreSQL bin directories, deduplicated."""
    dirs = [d for d in (search_path if search_path is not None else os.environ.get('PATH', '')).split(os.pathsep) if d]
    for pattern in globs:
        dirs.extend(sorted(glob.glob(pattern)))
    seen = set()
    found = []
    for directory in dirs:
        cand = os.path.join(directory, name)
        if not is_executable(cand):
            continue
        real = os.path.realpath(cand)
        if real in seen:
            continue
        seen.add(real)
        found.append(cand)
    return found


def find_tool(name, explicit=None, bindir=None, search_path=None, globs=TOOL_GLOBS, runner=None):
    """(path, version_num) of the client tool to use.

    ``explicit`` (an option such as pg_dump=) wins, then ``bindir``; otherwise the newest version among
    PATH and the usual bin directories (Debian's pg_wrapper only when nothing else is there: it is asked for
    its version only when no other candidate reports one, since it runs a /usr/lib/postgresql/<major>/bin tool,
    one of the candidates, and could never be newer than the newest of them).
    """
    runner = runner or Runner()
    if explicit or bindir:
        path = explicit or os.path.join(bindir, name)
        where = 'option %s' % name if explicit else 'pg_bindir %s' % bindir
        if not is_executable(path):
            raise BackupError('%s is not an executable file (from %s); %s' % (path, where, CLIENT_PACKAGE_HINT))
        version = tool_version(path, runner)
        if version is None:
            raise BackupError('%s (from %s) did not report a PostgreSQL version with --version; point %s at the '
                              'real PostgreSQL %s binary' % (path, where, name, name))
        return path, version
    best = None
    candidates = tool_candidates(name, search_path, globs)
    wrappers = [os.path.basename(os.path.realpath(cand)) == 'pg_wrapper' for cand in candidates]
    for wrapper in (False, True):
        if best is not None:
            break
        for order, cand in enumerate(candidates):
            if wrappers[order] != wrapper:
                continue
            version = tool_version(cand, runner)
            if version is not None and (best is None or (version, -order) > best[0]):
                best = ((version, -order), cand, version)
    if best is None:
        raise BackupError('%s was not found (searched PATH and %s); %s'
                          % (name, ', '.join(globs), CLIENT_PACKAGE_HINT))
    return best[1], best[2]


def pick_tool(params, name, runner):
    """find_tool for ``name`` with the module's options: the option named like the tool, then pg_bindir."""
    return find_tool(name, explicit=params.get(name), bindir=params.get('pg_bindir'), runner=runner)


def connect(dburl, params):
    """A psycopg2 session (connection.connect) for the module's own read-only queries, waiting at most
    connect_timeout seconds; BackupError with the masked reason when it cannot be opened."""
    timeout = params.get('connect_timeout') or connection.DEFAULT_CONNECT_TIMEOUT
    try:
        return connection.connect(dburl, service=params.get('service'), connect_timeout=timeout)
    except ConnectError as exc:
        raise BackupError(str(exc))


def server_version(dburl, params, runner):
    """server_version_num of the server; clear, masked errors for unreachable/auth/missing database."""
    service = params.get('service')
    timeout = params.get('connect_timeout') or connection.DEFAULT_CONNECT_TIMEOUT
    if connection.HAS_PSYCOPG2:
        conn = connect(dburl, params)
        try:
            with conn.cursor() as cur:
                cur.execute('SHOW server_version_num')
                return int(cur.fetchone()[0])
        finally:
            conn.close()
    # without psycopg2: ask psql
    psql, _version = pick_tool(params, 'psql', runner)
    with PassFile(dburl) as pf:
        env = child_env(dburl, pf.env(), timeout, service)
        rc, out, err = Runner(dburl, env).run([psql, '-X', '-A', '-t', '-q', '--no-password', '-c',
                                               'SHOW server_version_num'], timeout=timeout + 60)
    if rc != 0:
        raise BackupError(connection.describe_connect_error(dburl, err.strip() or 'psql exited with %d' % rc))
    try:
        return int(out.strip())
    except ValueError:
        raise BackupError('could not read the server version of %s from psql: %r' % (dburl.masked, out[:200]))


def check_client_version(tool, tool_path, tool_num, server_num):
    """BackupError (with the package to install and pg_bindir) when the client ``tool`` is of an older major
    version than the server: pg_dump refuses that, or writes a dump that misses newer objects."""
    if major_of(tool_num) < major_of(server_num):
        raise BackupError(
            '%s at %s is version %s but the server runs PostgreSQL %s; %s must be the server\'s major version or '
            'newer (an older client refuses or writes an incomplete dump). Install postgresql-client-%s (or newer), '
            'then set pg_bindir (e.g. /usr/lib/postgresql/%s/bin) or %s if it is not found automatically'
            % (tool, tool_path, version_text(tool_num), version_text(server_num), tool, major_text(server_num),
               major_text(server_num), tool))


def describe_tool_failure(tool, rc, stderr, dburl, dest=None):
    """A one-paragraph error for a failed pg_dump/pg_restore/psql run, with what to do next."""
    text = ' '.join(((dburl.scrub(stderr) if dburl is not None else secrets.mask(stderr)) or '').split())
    if len(text) > 2000:
        text = text[:1000] + ' ... ' + text[-1000:]
    low = text.lower()
    hint = None
    if 'no space left on device' in low or 'disk quota exceeded' in low:
        hint = 'the filesystem of dest%s is full; free some space (prune old backups) or choose another dest' % (
            ' ' + dest if dest else '')
    elif 'permission denied' in low and ('could not open' in low or 'could not create' in low):
        hint = 'the user running the module cannot write there; fix the permissions of dest or use become'
    elif 'password authentication failed' in low or 'no password supplied' in low:
        hint = 'check the user and password in database_url'
    elif 'database' in low and 'does not exist' in low:
        hint = 'create the database first or fix the database name in database_url'
    elif 'server version mismatch' in low:
        hint = 'use a %s from the server\'s major version or newer (pg_bindir)' % tool
    elif ('lock timeout' in low or 'lock table' in low) and 'canceling statement' in low:
        hint = ('another session held a lock on a table longer than lock_wait_timeout (%s); see pg_locks / '
                'pg_stat_activity for who holds it, let it finish or end it, then run again' % tool)
    elif 'could not connect' in low or 'connection to server' in low or 'timeout' in low:
        hint = 'check that the server is running and reachable (host, port, firewall)'
    elif 'unsupported version' in low and 'file header' in low:
        hint = 'the backup was written by a newer pg_dump; use a %s of that version or newer (pg_bindir)' % tool
    elif 'depend' in low and 'cannot drop' in low:
        hint = ('objects created after the backup depend on objects in it; restore with clean: database to drop '
                'everything first, or drop those objects yourself')
    msg = '%s failed (exit code %s) for %s: %s' % (tool, rc, dburl.masked if dburl else 'the database',
                                                   text or 'no error output')
    if hint:
        msg += ' (%s)' % hint
    return dburl.scrub(msg) if dburl is not None else msg
