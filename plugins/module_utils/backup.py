# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_dump backups that are really there: written aside, verified, checksummed, renamed; restore; prune.

Everything the ``homelab_pg_backup`` module does lives here, as plain functions of a parameter dict
(:func:`run`), so the module, the tests and the benchmark all go through the same code path.

Files in ``dest``: ``{service}_{YYYYmmdd_HHMMSS}.{dump|sql|dir}`` (local time of the start of the
dump; ``_1``, ``_2``... is appended before the extension when that name is already taken) and
beside each one ``<name>.sha256`` in ``sha256sum`` format. For the directory format the checksum is
the sha256 of a manifest: one ``<sha256 of file>  <path relative to the directory>`` line per file,
sorted by path. A dump is written under a temporary name (``.<name>.partial-<pid>-<random>``),
verified, and only then renamed (without replacing anything) to its final name, after its
``.sha256`` file is in place. A dump with its final name is therefore always complete.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import ctypes.util
import errno
import glob
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import uuid

from ansible_collections.homelab.migrations.plugins.module_utils import audit as audit_mod
from ansible_collections.homelab.migrations.plugins.module_utils import child
from ansible_collections.homelab.migrations.plugins.module_utils import connection
from ansible_collections.homelab.migrations.plugins.module_utils import interrupt
from ansible_collections.homelab.migrations.plugins.module_utils import regular_file
from ansible_collections.homelab.migrations.plugins.module_utils import safe_path
from ansible_collections.homelab.migrations.plugins.module_utils import secrets
from ansible_collections.homelab.migrations.plugins.module_utils import waits
from ansible_collections.homelab.migrations.plugins.module_utils.connection import (
    ConnectError, DbUrl, PassFile, UrlError)
from ansible_collections.homelab.migrations.plugins.module_utils.spec import NAME_RE

STATES = ('present', 'restored', 'pruned')
FORMATS = ('custom', 'plain', 'directory')
BACKUP_MODES = ('auto', 'always', 'never')
CLEAN_MODES = ('objects', 'database')
EXTENSIONS = {'custom': 'dump', 'plain': 'sql', 'directory': 'dir'}
_FORMAT_FLAG = {'custom': 'c', 'plain': 'p', 'directory': 'd'}
# the places PostgreSQL client binaries live besides PATH (Debian/Ubuntu, PGDG RPMs, source builds, Homebrew)
TOOL_GLOBS = ('/usr/lib/postgresql/*/bin', '/usr/pgsql-*/bin', '/usr/local/pgsql/bin',
              '/opt/homebrew/opt/postgresql@*/bin', '/usr/local/opt/postgresql@*/bin')
PLAIN_COMPLETE_MARKER = b'-- PostgreSQL database dump complete'
CLIENT_PACKAGE_HINT = ('install the PostgreSQL client tools (`apt-get install postgresql-client` on Debian/Ubuntu, '
                       '`dnf install postgresql` on Fedora/RHEL) or point the module at them with pg_bindir')
_CHUNK = 1024 * 1024
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100

ARGUMENT_SPEC = dict(
    database_url=dict(type='str', no_log=True),
    state=dict(type='str', default='present', choices=list(STATES)),
    dest=dict(type='path'),
    service=dict(type='str'),
    format=dict(type='str', choices=list(FORMATS)),
    path=dict(type='path'),
    keep_days=dict(type='int'),
    keep_count=dict(type='int'),
    jobs=dict(type='int', default=1),
    verify=dict(type='bool', default=True),
    backup=dict(type='str', default='auto', choices=list(BACKUP_MODES)),
    clean=dict(type='str', default='objects', choices=list(CLEAN_MODES)),
    connect_timeout=dict(type='int', default=connection.DEFAULT_CONNECT_TIMEOUT),
    lock_wait_timeout=dict(type='int', default=30),
    pg_dump=dict(type='path'),
    pg_restore=dict(type='path'),
    psql=dict(type='path'),
    pg_bindir=dict(type='path'),
    audit_log=dict(type='path'),
    allow_foreign_backup=dict(type='bool', default=False),
)
REQUIRED_IF = [
    ('state', 'present', ('database_url', 'dest', 'service')),
    ('state', 'restored', ('database_url', 'path')),
    ('state', 'pruned', ('dest', 'service')),
    ('state', 'pruned', ('keep_days', 'keep_count'), True),
]


def _lock_wait(params):
    """lock_wait_timeout in seconds, at least 1 (0 or less would mean: wait forever)."""
    value = params.get('lock_wait_timeout')
    return 30 if value is None else max(1, int(value))


class BackupError(Exception):
    """A failure with a message that is already masked and says what to do next."""

    def __init__(self, message, **result):
        super(BackupError, self).__init__(message)
        self.result = result


class Interrupted(BackupError):
    """SIGTERM arrived while a backup or restore ran."""


def defaults(params):
    """Fill the argument spec's defaults into ``params`` (for callers that bypass AnsibleModule)."""
    out = {}
    for key, opt in ARGUMENT_SPEC.items():
        value = params.get(key)
        out[key] = opt.get('default') if value is None else value
    unknown = sorted(set(params) - set(ARGUMENT_SPEC))
    if unknown:
        raise BackupError('unknown parameter(s) %s' % ', '.join(unknown))
    return out


def _result(**kw):
    res = dict(changed=False, path=None, size_bytes=None, sha256=None, format=None, duration_seconds=0.0,
               skipped=False, reason=None, pruned=[])
    res.update(kw)
    return res


# --------------------------------------------------------------------------------------- child processes
def _load_libc():
    """libc through ctypes (renameat2 for _publish), or None."""
    try:
        return ctypes.CDLL(ctypes.util.find_library('c') or None, use_errno=True)
    except (OSError, TypeError):  # pragma: no cover - no usable libc (not Linux)
        return None


class _Runner:
    """Runs PostgreSQL client tools: no stdin, scrubbed output, private umask, each in its own process
    group (pg_dump --jobs workers included) that dies with the module (module_utils.child)."""

    def __init__(self, dburl=None, env=None):
        self.dburl = dburl
        self.env = env
        self.procs = []
        self.pass_fds = ()  # the open backup a restore hands its tools as /dev/fd/N

    def popen(self, argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=None):
        try:
            proc = child.start(argv, env=env or self.env, stdin=stdin, stdout=stdout, stderr=stderr, umask=0o077,
                               pass_fds=self.pass_fds)
        except OSError as exc:
            raise BackupError('cannot run %s: %s; %s' % (argv[0], exc.strerror or exc, CLIENT_PACKAGE_HINT))
        self.procs.append(proc)
        return proc

    def run(self, argv, timeout=None, stdout=subprocess.PIPE):
        rc, out, err, timed_out = child.finish(self.popen(argv, stdout=stdout), timeout)
        if timed_out:
            raise BackupError('%s did not finish within %s seconds' % (os.path.basename(argv[0]), timeout))
        return rc, self.text(out), self.text(err)

    def text(self, data):
        data = child.text(data)
        return self.dburl.scrub(data) if self.dburl is not None else data

    def kill_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                child.kill_group(proc)
                proc.wait()


class _TermGuard(interrupt.Guard):
    """SIGINT, SIGHUP, SIGTERM or the controller's death (module_utils.interrupt) become Interrupted while it
    is active: the running pg_dump / pg_restore / psql group is killed (child.finish), temp files removed, and
    the result says interrupted."""

    def __init__(self):
        super(_TermGuard, self).__init__(make_exception=lambda reason, signum: Interrupted(
            '%s; the running pg_dump/pg_restore/psql was stopped and its unfinished work removed or rolled back'
            % reason))


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


# ---------------------------------------------------------------------------------------------- tools
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
    version_num = int(version_num)
    if version_num >= 100000:
        return '%d.%d' % (version_num // 10000, version_num % 10000)
    return '%d.%d.%d' % (version_num // 10000, version_num // 100 % 100, version_num % 100)


def major_text(version_num):
    version_num = int(version_num)
    if version_num >= 100000:
        return str(version_num // 10000)
    return '%d.%d' % (version_num // 10000, version_num // 100 % 100)


def tool_version(path, runner=None):
    runner = runner or _Runner()
    try:
        rc, out, err = runner.run([path, '--version'], timeout=60)
    except BackupError:
        return None
    if rc != 0:
        return None
    return parse_version(out)


def _is_executable(path):
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
        if not _is_executable(cand):
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
    PATH and the usual bin directories (Debian's pg_wrapper only when nothing else is there).
    """
    runner = runner or _Runner()
    if explicit or bindir:
        path = explicit or os.path.join(bindir, name)
        where = 'option %s' % name if explicit else 'pg_bindir %s' % bindir
        if not _is_executable(path):
            raise BackupError('%s is not an executable file (from %s); %s' % (path, where, CLIENT_PACKAGE_HINT))
        version = tool_version(path, runner)
        if version is None:
            raise BackupError('%s (from %s) did not report a PostgreSQL version with --version; point %s at the '
                              'real PostgreSQL %s binary' % (path, where, name, name))
        return path, version
    best = None
    for order, cand in enumerate(tool_candidates(name, search_path, globs)):
        version = tool_version(cand, runner)
        if version is None:
            continue
        wrapper = os.path.basename(os.path.realpath(cand)) == 'pg_wrapper'
        key = (version, not wrapper, -order)
        if best is None or key > best[0]:
            best = (key, cand, version)
    if best is None:
        raise BackupError('%s was not found (searched PATH and %s); %s'
                          % (name, ', '.join(globs), CLIENT_PACKAGE_HINT))
    return best[1], best[2]


def _tool(params, name, runner):
    return find_tool(name, explicit=params.get(name), bindir=params.get('pg_bindir'), runner=runner)


# ---------------------------------------------------------------------------------------------- server
def server_version(dburl, params, runner):
    """server_version_num of the server; clear, masked errors for unreachable/auth/missing database."""
    service = params.get('service')
    timeout = params.get('connect_timeout') or connection.DEFAULT_CONNECT_TIMEOUT
    if connection.HAS_PSYCOPG2:
        try:
            conn = connection.connect(dburl, service=service, connect_timeout=timeout)
        except ConnectError as exc:
            raise BackupError(str(exc))
        try:
            with conn.cursor() as cur:
                cur.execute('SHOW server_version_num')
                return int(cur.fetchone()[0])
        finally:
            conn.close()
    # without psycopg2: ask psql
    psql, _version = _tool(params, 'psql', runner)
    with PassFile(dburl) as pf:
        env = child_env(dburl, pf.env(), timeout, service)
        rc, out, err = _Runner(dburl, env).run([psql, '-X', '-A', '-t', '-q', '--no-password', '-c',
                                                'SHOW server_version_num'], timeout=timeout + 60)
    if rc != 0:
        raise BackupError(connection.describe_connect_error(dburl, err.strip() or 'psql exited with %d' % rc))
    try:
        return int(out.strip())
    except ValueError:
        raise BackupError('could not read the server version of %s from psql: %r' % (dburl.masked, out[:200]))


def check_client_version(tool, tool_path, tool_num, server_num):
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


# ------------------------------------------------------------------------------------------ files, names
def check_service(service):
    if not isinstance(service, str) or not NAME_RE.match(service):
        raise BackupError('service %r is not a valid backup name prefix: use 1-63 characters of a-z, 0-9, "_" and '
                          '"-", starting with a letter or digit' % (service,))
    return service


def backup_name_re(service):
    """Names of this service's backups exactly: {service}_{YYYYmmdd_HHMMSS}[_N].{dump|sql|dir}."""
    return re.compile(r'^%s_(\d{8}_\d{6})(?:_([1-9]\d{0,3}))?\.(dump|sql|dir)$' % re.escape(service))


def partial_re(service):
    return re.compile(r'^\.%s_\d{8}_\d{6}(?:_\d+)?\.(?:dump|sql|dir)(?:\.sha256)?\.partial-(\d+)-[0-9a-f]+$'
                      % re.escape(service))


def _temp_name(name):
    return '.%s.partial-%d-%s' % (name, os.getpid(), uuid.uuid4().hex[:8])


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        # a dying pg_dump worker may still add a file: retry for a moment
        for _attempt in range(50):
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.lexists(path):
                return
            time.sleep(0.1)
        shutil.rmtree(path)
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError:  # pragma: no cover - not supported on this platform
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _rename_noreplace(src, dst, libc=None):
    """Rename ``src`` to ``dst`` unless ``dst`` exists (FileExistsError). Atomic on Linux (renameat2)."""
    func = getattr(libc, 'renameat2', None) if libc is not None else None
    if func is not None:
        res = func(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
        if res == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(err, os.strerror(err), dst)
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), dst)
    if os.path.isdir(src):
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
        os.rename(src, dst)
    else:
        os.link(src, dst)
        os.unlink(src)


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as fh:
        while True:
            block = fh.read(_CHUNK)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def directory_manifest(path):
    """'<sha256>  <relative path>' lines, sorted, for every file of a directory-format dump."""
    entries = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in files:
            full = os.path.join(root, name)
            if os.path.islink(full) or not os.path.isfile(full):
                raise BackupError('%s is not a regular file; a pg_dump directory holds only regular files' % full)
            entries.append(os.path.relpath(full, path))
        for name in dirs:
            if os.path.islink(os.path.join(root, name)):
                raise BackupError('%s is a symlink; a pg_dump directory holds only regular files'
                                  % os.path.join(root, name))
    lines = ['%s  %s\n' % (file_sha256(os.path.join(path, rel)), rel) for rel in sorted(entries)]
    return ''.join(lines)


def backup_digest(path, fmt):
    """(sha256, size_bytes) of a backup file, or of the manifest of a directory-format backup."""
    if fmt == 'directory':
        manifest = directory_manifest(path)
        size = 0
        for root, _dirs, files in os.walk(path):
            for name in files:
                size += os.path.getsize(os.path.join(root, name))
        return hashlib.sha256(manifest.encode('utf-8')).hexdigest(), size
    return file_sha256(path), os.path.getsize(path)


def sidecar_text(digest, name):
    return '%s  %s\n' % (digest, name)


_SIDECAR_RE = re.compile(r'^([0-9a-fA-F]{64}) [ *](.+)$')


def read_sidecar(path):
    """(digest, name) from a sha256sum-format file, or None when it is not one."""
    try:
        fd = safe_path.open_nofollow(path, os.O_RDONLY | os.O_NONBLOCK, what='checksum file')  # a FIFO: no wait
        try:
            data = os.read(fd, 4096) if stat.S_ISREG(os.fstat(fd).st_mode) else b''
        finally:
            os.close(fd)
    except OSError:
        return None
    lines = data.decode('utf-8', 'replace').splitlines()
    if not lines:
        return None
    match = _SIDECAR_RE.match(lines[0].rstrip('\r'))
    if not match:
        return None
    return match.group(1).lower(), match.group(2)


def detect_format(path):
    """custom / directory / plain from the backup itself."""
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, 'toc.dat')):
            raise BackupError('%s is a directory but not a pg_dump directory-format backup (no toc.dat)' % path)
        return 'directory'
    with open(path, 'rb') as fh:
        head = fh.read(5)
    if head == b'PGDMP':
        return 'custom'
    if head[:2] == b'\x1f\x8b':
        raise BackupError('%s is gzip-compressed; decompress it (gunzip) and restore the .sql file' % path)
    return 'plain'


def plain_dump_complete(path):
    """True when a plain-format dump ends with pg_dump's completion marker."""
    size = os.path.getsize(path)
    with open(path, 'rb') as fh:
        fh.seek(max(0, size - 8192))
        tail = fh.read()
    return PLAIN_COMPLETE_MARKER in tail


def check_dest(dest, what='dest (the backup directory)'):
    """Refuse a backup directory another user could change: writable by group/others, owned by another
    user, a symlink, or inside such a directory (safe_path.check_dir)."""
    try:
        safe_path.check_dir(dest, what)
    except safe_path.UnsafePathError as exc:
        raise BackupError('%s; nothing was done' % exc.strerror)


def ensure_dest(dest, check_mode=False):
    """Create ``dest`` 0700 (parents too). Existing directories keep their mode but must be safe
    (:func:`check_dest`). Returns True if created."""
    if os.path.islink(dest) or os.path.isdir(dest):
        check_dest(dest)
        return False
    if os.path.lexists(dest):
        raise BackupError('dest %s exists and is not a directory; choose a directory for the backups' % dest)
    if check_mode:
        return True
    try:
        os.makedirs(dest, 0o700)
        os.chmod(dest, 0o700)
    except OSError as exc:
        raise BackupError(_os_error_text('cannot create dest %s' % dest, exc, dest))
    check_dest(dest)
    return True


def _check_writable(dest):
    """Check mode: fail as the real run would when dest (or the directory that would hold it) is not writable."""
    existing = dest
    while existing and not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.access(existing or '/', os.W_OK | os.X_OK):
        err = errno.EROFS if _read_only(existing or '/') else errno.EACCES
        what = 'cannot write a backup into dest %s' % dest if existing == dest else 'cannot create dest %s' % dest
        raise BackupError(_os_error_text(what, OSError(err, os.strerror(err)), dest))


def _read_only(path):
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # pragma: no cover
        return False


def _os_error_text(what, exc, dest):
    reason = exc.strerror or str(exc)
    hint = 'check dest'
    if exc.errno in (errno.EACCES, errno.EPERM):
        hint = 'the user running the module (uid %d) may not write there; fix the permissions of %s, choose ' \
               'another dest, or use become' % (os.geteuid(), dest)
    elif exc.errno == errno.EROFS:
        hint = '%s is on a read-only filesystem; choose another dest' % dest
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = 'the filesystem of %s is full; free some space (prune old backups) or choose another dest' % dest
    return '%s: %s (%s)' % (what, reason, hint)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_partials(dest, service):
    """Remove this service's temp files left by runs that were killed (their pid no longer exists)."""
    removed = []
    pattern = partial_re(service)
    try:
        names = os.listdir(dest)
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            _remove(os.path.join(dest, name))
            removed.append(os.path.join(dest, name))
    return removed


def list_backups(dest, service):
    """This service's backups in ``dest``, newest first: dicts with path, name, mtime, format.

    Only entries named exactly like the module names them, of the right type, and with a ``.sha256`` file
    beside them that names them, count: anything else in ``dest`` is not ours and is never touched.
    """
    if not os.path.isdir(dest):
        return []
    pattern = backup_name_re(service)
    found = []
    for name in os.listdir(dest):
        match = pattern.match(name)
        if not match:
            continue
        path = os.path.join(dest, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        ext = match.group(3)
        if ext == 'dir':
            if not stat.S_ISDIR(st.st_mode) or not os.path.isfile(os.path.join(path, 'toc.dat')):
                continue
        elif not stat.S_ISREG(st.st_mode):
            continue
        side = read_sidecar(path + '.sha256')
        if side is None or side[1] != name or os.path.islink(path + '.sha256'):
            continue
        fmt = {'dump': 'custom', 'sql': 'plain', 'dir': 'directory'}[ext]
        found.append(dict(path=path, name=name, mtime=st.st_mtime, format=fmt))
    found.sort(key=lambda e: (e['mtime'], e['name']), reverse=True)
    return found


def plan_prune(entries, keep_days=None, keep_count=None, now=None, pending_newest=0):
    """The entries (newest first) to delete.

    A backup goes when it is older than keep_days *and* not among the newest keep_count; with only one of
    the two, that one decides. The newest backup always stays. ``pending_newest`` counts backups about
    to be made (check mode of state=present), which are newer than every entry.
    """
    if keep_days is None and keep_count is None:
        return []
    now = time.time() if now is None else now
    cutoff = None if keep_days is None else now - keep_days * 86400.0
    doomed = []
    for index, entry in enumerate(entries):
        rank = index + pending_newest
        if rank == 0:
            continue
        kept_by_count = keep_count is not None and rank < keep_count
        kept_by_age = cutoff is not None and entry['mtime'] >= cutoff
        if not kept_by_count and not kept_by_age:
            doomed.append(entry)
    return doomed


def _check_keep(params):
    for key in ('keep_days', 'keep_count'):
        value = params.get(key)
        if value is not None and value < 0:
            raise BackupError('%s must be 0 or more, got %d' % (key, value))


def prune(params, check_mode=False, pending_newest=0, now=None):
    """Delete this service's old backups (data first, then its .sha256). Returns the paths."""
    dest = os.path.abspath(params['dest'])
    service = check_service(params['service'])
    _check_keep(params)
    if os.path.lexists(dest):
        check_dest(dest)
    if not check_mode:
        remove_stale_partials(dest, service)
    doomed = plan_prune(list_backups(dest, service), params.get('keep_days'), params.get('keep_count'),
                        now=now, pending_newest=pending_newest)
    paths = [entry['path'] for entry in doomed]
    if check_mode:
        return paths
    for path in paths:
        try:
            _remove(path)
            _remove(path + '.sha256')
        except OSError as exc:
            raise BackupError(_os_error_text('cannot delete old backup %s' % path, exc, dest),
                              pruned=paths[:paths.index(path)])
    if paths:
        _fsync_dir(dest)
    return paths


def _diff(dest, service, before, after):
    header = '%s (backups of %s)' % (dest, service)
    return dict(before_header=header, after_header=header,
                before=''.join(n + '\n' for n in before), after=''.join(n + '\n' for n in after))


# ---------------------------------------------------------------------------------------------- backup
def _free_name(dest, base, ext):
    for n in range(0, 10000):
        name = '%s%s.%s' % (base, '' if n == 0 else '_%d' % n, ext)
        full = os.path.join(dest, name)
        if not os.path.lexists(full) and not os.path.lexists(full + '.sha256'):
            return name
    raise BackupError('no free backup name for %s in %s' % (base, dest))  # pragma: no cover


def _publish(tmp, dest, base, ext, digest, libc):
    """Put the .sha256 file, then the dump, under a final name that nothing else has. Returns the path."""
    for n in range(0, 10000):
        name = '%s%s.%s' % (base, '' if n == 0 else '_%d' % n, ext)
        final = os.path.join(dest, name)
        if os.path.lexists(final) or os.path.lexists(final + '.sha256'):
            continue
        side_tmp = os.path.join(dest, _temp_name(name + '.sha256'))
        try:
            fd = os.open(side_tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                data = sidecar_text(digest, name).encode('utf-8')
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), side_tmp)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                _rename_noreplace(side_tmp, final + '.sha256', libc)
            except FileExistsError:
                continue
            try:
                _rename_noreplace(tmp, final, libc)
            except FileExistsError:
                _remove(final + '.sha256')
                continue
            except BaseException:
                _remove(final + '.sha256')
                raise
        finally:
            _remove(side_tmp)
        _fsync_dir(dest)
        return final
    raise BackupError('no free backup name for %s in %s' % (base, dest))  # pragma: no cover


def _verify_dump(tmp, fmt, pg_restore, runner, dburl):
    if fmt == 'plain':
        if not plain_dump_complete(tmp):
            raise BackupError('the plain dump is incomplete (pg_dump\'s completion marker is missing); the backup '
                              'was removed; check the disk and the server log and try again')
        return
    rc, out, err = runner.run([pg_restore, '--list', tmp], stdout=subprocess.PIPE)
    if rc != 0 or 'Archive created at' not in out:
        raise BackupError('the new backup could not be read back by pg_restore --list (%s); it was removed. %s'
                          % (' '.join(err.split())[:500] or 'exit code %d' % rc,
                             'Check the disk and try again'))


def _fix_modes(tmp, fmt):
    if fmt == 'directory':
        os.chmod(tmp, 0o700)
        for root, dirs, files in os.walk(tmp):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o700)
            for name in files:
                os.chmod(os.path.join(root, name), 0o600)
    else:
        os.chmod(tmp, 0o600)


def take_backup(params, check_mode=False):
    started = time.time()
    service = check_service(params['service'])
    fmt = params.get('format') or 'custom'
    if fmt not in FORMATS:
        raise BackupError('format must be one of %s' % ', '.join(FORMATS))
    jobs = params.get('jobs') or 1
    if jobs < 1:
        raise BackupError('jobs must be 1 or more')
    if jobs > 1 and fmt != 'directory':
        raise BackupError('jobs: %d needs format: directory (pg_dump dumps in parallel only into a directory)' % jobs)
    _check_keep(params)
    try:
        dburl = DbUrl(params['database_url'])
    except UrlError as exc:
        raise BackupError(str(exc))
    mode = params.get('backup') or 'auto'
    if mode == 'never':
        return _result(format=fmt, skipped=True, reason='backup: never; no dump was taken',
                       duration_seconds=round(time.time() - started, 3))
    if mode == 'auto' and dburl.is_neon:
        return _result(format=fmt, skipped=True, duration_seconds=round(time.time() - started, 3),
                       reason='%s is a Neon host (*.neon.tech): backup: auto does not pg_dump it (Neon keeps its '
                              'own history: use point-in-time restore or a branch); set backup: always to dump anyway'
                              % dburl.host)
    dest = os.path.abspath(params['dest'])
    ensure_dest(dest, check_mode=True)  # type check only
    runner = _Runner(dburl)
    pg_dump, dump_num = _tool(params, 'pg_dump', runner)
    server_num = server_version(dburl, params, runner)
    check_client_version('pg_dump', pg_dump, dump_num, server_num)
    if fmt == 'plain':  # say now, before any change, what the restore would refuse
        kept = extension_facts(dburl, params, None)
        if kept['kept']:
            raise BackupError(
                'a plain-format backup of %s could not be restored with these credentials: the database holds '
                'extension(s) %s owned by another role (a superuser created them), which user %s can neither drop '
                'nor re-create; use format: custom (the default) or directory, whose restore keeps them; no backup '
                'was written' % (dburl.masked, ', '.join(sorted(kept['kept'])), kept['user']),
                error_code='not_restorable')
    pg_restore = None
    if params.get('verify', True) and fmt != 'plain':
        beside = os.path.join(os.path.dirname(pg_dump), 'pg_restore')
        if params.get('pg_restore') or params.get('pg_bindir') or not _is_executable(beside):
            pg_restore, _num = _tool(params, 'pg_restore', runner)
        else:
            pg_restore = beside
    base = '%s_%s' % (service, time.strftime('%Y%m%d_%H%M%S', time.localtime(started)))
    ext = EXTENSIONS[fmt]
    before = [e['name'] for e in list_backups(dest, service)]
    if check_mode:
        _check_writable(dest)
        name = _free_name(dest, base, ext)
        pruned = []
        if params.get('keep_days') is not None or params.get('keep_count') is not None:
            pruned = prune(params, check_mode=True, pending_newest=1)
        after = [name] + [n for n in before if os.path.join(dest, n) not in pruned]
        return _result(changed=True, path=os.path.join(dest, name), format=fmt, pruned=pruned,
                       duration_seconds=round(time.time() - started, 3), diff=_diff(dest, service, before, after))

    ensure_dest(dest)
    remove_stale_partials(dest, service)
    tmp = os.path.join(dest, _temp_name('%s.%s' % (base, ext)))
    try:
        if fmt == 'directory':
            os.mkdir(tmp, 0o700)
        else:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise BackupError(_os_error_text('cannot write a backup into dest %s' % dest, exc, dest))
    libc = _load_libc()
    try:
        with _TermGuard():
            try:
                argv = [pg_dump, '--format=' + _FORMAT_FLAG[fmt], '--file=' + tmp, '--no-password']
                # a table lock held by the application (ACCESS EXCLUSIVE) fails the dump instead of stalling it
                argv.append('--lock-wait-timeout=%d' % (1000 * _lock_wait(params)))
                if fmt == 'plain':
                    # restorable into the same database with psql: drop each object before creating it
                    argv += ['--clean', '--if-exists']
                if jobs > 1:
                    argv.append('--jobs=%d' % jobs)
                with PassFile(dburl) as pf:
                    runner.env = child_env(dburl, pf.env(), params.get('connect_timeout') or 10, service)
                    rc, _out, err = runner.run(argv, stdout=subprocess.DEVNULL)
                if rc != 0:
                    raise BackupError(describe_tool_failure('pg_dump', rc, err, dburl, dest) +
                                      '; no backup was written')
                if params.get('verify', True):
                    _verify_dump(tmp, fmt, pg_restore, runner, dburl)
                _fix_modes(tmp, fmt)
                digest, size = backup_digest(tmp, fmt)
                final = _publish(tmp, dest, base, ext, digest, libc)
            finally:
                runner.kill_all()
    except OSError as exc:
        _remove(tmp)
        raise BackupError(_os_error_text('backup into %s failed' % dest, exc, dest) + '; no backup was written')
    except BaseException:
        _remove(tmp)
        raise
    result = _result(changed=True, path=final, size_bytes=size, sha256=digest, format=fmt)
    if params.get('keep_days') is not None or params.get('keep_count') is not None:
        result['pruned'] = prune(params)
    after = [e['name'] for e in list_backups(dest, service)]
    result['diff'] = _diff(dest, service, before, after)
    result['duration_seconds'] = round(time.time() - started, 3)
    return result


# --------------------------------------------------------------------------------------------- restore
def verify_backup(path):
    """(format, sha256, size) of a backup whose .sha256 file matches it; BackupError otherwise (HeldBackup)."""
    with HeldBackup(os.path.abspath(path).rstrip('/') or '/') as held:
        return held.fmt, held.digest, held.size


_EXPECTED_FORMAT = {'dump': 'custom', 'sql': 'plain', 'dir': 'directory'}


class HeldBackup:
    """A backup opened once for a restore: the bytes checked are the bytes restored.

    A file (custom or plain format) is opened with O_NOFOLLOW and stays open; its checks (PGDMP header,
    sha256 against the .sha256 file) read that open file, and the tools get it as ``/dev/fd/N``, so a file
    swapped in under the same name after the check is never read. A directory-format backup is copied into a
    private 0700 directory beside it, checked there, and restored from that copy.
    """

    def __init__(self, path):
        self.path = path
        self.fd = None
        self.copy = None
        self.source = path
        self.fmt = self.digest = self.size = None

    def __enter__(self):
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.copy:
            shutil.rmtree(self.copy, ignore_errors=True)
            self.copy = None

    def _refuse(self, why, **result):
        raise BackupError('refusing to restore %s: %s' % (self.path, why), **result)

    def _open(self):
        path = self.path
        check_dest(os.path.dirname(path), 'the directory of the backup')
        if not os.path.lexists(path):
            raise BackupError('backup %s does not exist; give path the full path of a backup made by this module'
                              % path)
        ext = path.rsplit('.', 1)[-1] if '.' in os.path.basename(path) else ''
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            self._refuse('it is a symlink; give the real file (%s)' % os.path.realpath(path))
        if stat.S_ISDIR(st.st_mode):
            self.fmt = detect_format(path)
            self._copy_directory()
        else:
            self._open_file(ext)
        expected = self._sidecar()
        if self.digest != expected[0]:
            self._refuse('its sha256 is %s but %s.sha256 says %s, so the file was truncated or modified after the '
                         'backup; restore another backup' % (self.digest, path, expected[0]),
                         path=path, format=self.fmt, sha256=self.digest, size_bytes=self.size)

    def _open_file(self, ext):
        try:
            # O_NONBLOCK: open() of a FIFO swapped in for the backup would wait for a writer forever
            self.fd = safe_path.open_nofollow(self.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_NOCTTY', 0),
                                              what='backup')
        except OSError as exc:
            raise BackupError('refusing to restore %s: %s' % (self.path, exc.strerror or exc))
        st = os.fstat(self.fd)
        if not stat.S_ISREG(st.st_mode):
            self._refuse('it is %s, not a regular file' % regular_file.kind_of(st.st_mode))
        os.set_blocking(self.fd, True)
        head = os.pread(self.fd, 5, 0)
        if head[:2] == b'\x1f\x8b':
            raise BackupError('%s is gzip-compressed; decompress it (gunzip) and restore the .sql file' % self.path)
        self.fmt = 'custom' if head == b'PGDMP' else 'plain'
        if ext in _EXPECTED_FORMAT and _EXPECTED_FORMAT[ext] != self.fmt:
            self._refuse('a .%s backup must be a pg_dump %s-format archive%s, and this one is not, so it was '
                         'replaced or is not a backup made by this module'
                         % (ext, _EXPECTED_FORMAT[ext], ' (it starts with PGDMP)' if ext == 'dump' else ''))
        digest = hashlib.sha256()
        offset = 0
        while True:
            block = os.pread(self.fd, _CHUNK, offset)
            if not block:
                break
            digest.update(block)
            offset += len(block)
        self.digest, self.size = digest.hexdigest(), offset
        self.source = '/dev/fd/%d' % self.fd

    def _copy_directory(self):
        self.copy = tempfile.mkdtemp(prefix='.%s.restore-' % os.path.basename(self.path),
                                     dir=os.path.dirname(self.path))
        target = os.path.join(self.copy, os.path.basename(self.path))
        os.mkdir(target, 0o700)
        for root, dirs, files in os.walk(self.path):
            rel = os.path.relpath(root, self.path)
            for name in dirs:
                if os.path.islink(os.path.join(root, name)):
                    self._refuse('%s is a symlink; a pg_dump directory holds only regular files'
                                 % os.path.join(root, name))
                os.mkdir(os.path.join(target, rel, name), 0o700)
            for name in files:
                src = safe_path.open_nofollow(os.path.join(root, name), os.O_RDONLY, what='backup file')
                try:
                    if not stat.S_ISREG(os.fstat(src).st_mode):
                        self._refuse('%s is not a regular file' % os.path.join(root, name))
                    dst = os.open(os.path.join(target, rel, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    try:
                        while True:
                            block = os.read(src, _CHUNK)
                            if not block:
                                break
                            os.write(dst, block)
                    finally:
                        os.close(dst)
                finally:
                    os.close(src)
        self.digest, self.size = backup_digest(target, 'directory')
        self.source = target

    def _sidecar(self):
        side = self.path + '.sha256'
        if not os.path.lexists(side):
            self._refuse('its checksum file %s is missing, so the backup cannot be verified (it may be incomplete '
                         'or not made by this module). Restore it by hand if you trust it, or write the checksum '
                         'with: sha256sum %s > %s' % (side, os.path.basename(self.path), os.path.basename(side)))
        expected = read_sidecar(side)
        if expected is None:
            self._refuse('%s is not a sha256sum-format checksum file (or is a symlink)' % side)
        if expected[1] != os.path.basename(self.path):
            self._refuse('its checksum file names %r, not %r; keep a backup and its .sha256 file under the names the '
                         'module gave them' % (expected[1], os.path.basename(self.path)))
        return expected


_WIPE_SQL = """DO $homelab$
DECLARE r record;
BEGIN
  FOR r IN SELECT nspname FROM pg_catalog.pg_namespace
           WHERE nspname NOT IN ('pg_catalog', 'information_schema')
             AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp\\_%' LOOP
    EXECUTE pg_catalog.format('DROP SCHEMA %I CASCADE', r.nspname);
  END LOOP;
  PERFORM pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;
END
$homelab$;
"""
# the public schema as initdb makes it (PostgreSQL 15+ / older)
_PUBLIC_SQL_15 = """CREATE SCHEMA public AUTHORIZATION pg_database_owner;
COMMENT ON SCHEMA public IS 'standard public schema';
GRANT USAGE ON SCHEMA public TO PUBLIC;
"""
_PUBLIC_SQL_OLD = """CREATE SCHEMA public;
COMMENT ON SCHEMA public IS 'standard public schema';
GRANT ALL ON SCHEMA public TO PUBLIC;
"""


def wipe_sql(server_num):
    """SQL that drops every schema and large object of the database, then recreates an empty public schema."""
    return _WIPE_SQL + (_PUBLIC_SQL_15 if major_of(server_num) >= 1500 else _PUBLIC_SQL_OLD)


_EXTENSIONS_SQL = """
SELECT e.extname, n.nspname, pg_catalog.pg_has_role(e.extowner, 'USAGE')
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
"""
_CAN_CREATE_SQL = """
SELECT r.rolsuper, pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'), current_user
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""
# pg_restore --list lines: "<id>; <tableoid> <oid> <DESC> <namespace> <tag> <owner>"
_TOC_RE = re.compile(r'^\d+; \d+ \d+ (EXTENSION|SCHEMA|COMMENT|ACL) - (.*?) ?$')


def extension_facts(dburl, params, names):
    """What the restoring role can do about the extensions ``names`` a backup holds (read only; None: all
    the database has).

    Returns {'kept': {name: schema}, 'missing': [names it cannot create], 'user': name}: ``kept`` are
    installed extensions the role does not own (a superuser created them): a restore with this role
    can neither drop nor re-create them, so it leaves them as they are; ``missing`` are extensions
    the backup needs that are not installed and that this role may not create (not a superuser, and
    the extension is not trusted or the role lacks CREATE on the database). Nothing is known
    without psycopg2 (then both are empty).
    """
    facts = {'kept': {}, 'missing': [], 'user': None}
    if names == [] or not connection.HAS_PSYCOPG2:
        return facts
    timeout = params.get('connect_timeout') or connection.DEFAULT_CONNECT_TIMEOUT
    try:
        conn = connection.connect(dburl, service=params.get('service'), connect_timeout=timeout)
    except ConnectError as exc:
        raise BackupError(str(exc))
    try:
        with conn.cursor() as cur:
            cur.execute(_CAN_CREATE_SQL)
            superuser, may_create, facts['user'] = cur.fetchone()
            cur.execute(_EXTENSIONS_SQL)
            installed = dict((name, (schema, own)) for name, schema, own in cur.fetchall())
            if names is None:  # every extension pg_dump dumps (not the built-in ones in pg_catalog)
                names = sorted(n for n, (schema, _own) in installed.items() if schema != 'pg_catalog')
            absent = [n for n in names if n not in installed]
            trusted = {}
            if absent and not superuser:
                cur.execute('SELECT name, bool_or(trusted) FROM pg_catalog.pg_available_extension_versions '
                            'WHERE name = ANY(%s) GROUP BY name', (absent,))
                trusted = dict(cur.fetchall())
    finally:
        conn.close()
    for name in names:
        if name in installed:
            if not superuser and not installed[name][1]:
                facts['kept'][name] = installed[name][0]
        elif not superuser and not (trusted.get(name) and may_create):
            facts['missing'].append(name)
    return facts


_UNOWNED_SCHEMAS_SQL = """
SELECT n.nspname, pg_catalog.pg_get_userbyid(n.nspowner)
FROM pg_catalog.pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND NOT (n.nspname = ANY(%s))
  AND NOT pg_catalog.pg_has_role(current_user, n.nspowner, 'USAGE')
  AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
ORDER BY 1
"""


def unowned_schemas(dburl, params, kept_schemas):
    """[(schema, owner)] that ``clean: database`` would drop but the restoring role may not (it neither owns
    them nor is a member of their owner, and is no superuser): the public schema of a database another role
    owns (PostgreSQL 15+: owned by pg_database_owner), a schema a superuser made. Read only; [] without
    psycopg2."""
    if not connection.HAS_PSYCOPG2:
        return []
    timeout = params.get('connect_timeout') or connection.DEFAULT_CONNECT_TIMEOUT
    try:
        conn = connection.connect(dburl, service=params.get('service'), connect_timeout=timeout)
    except ConnectError as exc:
        raise BackupError(str(exc))
    try:
        with conn.cursor() as cur:
            cur.execute(_UNOWNED_SCHEMAS_SQL, (sorted(kept_schemas),))
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def _toc_entry(line):
    """(DESC, tag and owner words) of a ``pg_restore --list`` line about a database-level object, or None."""
    match = _TOC_RE.match(line)
    return (match.group(1), match.group(2).split(' ')) if match else None


def toc_extensions(toc):
    """Extension names a backup's ``pg_restore --list`` output creates."""
    out = []
    for line in toc.splitlines():
        entry = _toc_entry(line)
        if entry and entry[0] == 'EXTENSION':
            out.append(entry[1][0])
    return out


def filtered_toc(toc, kept):
    """``pg_restore --list`` output without the entries a role that does not own the ``kept`` extensions
    ({name: schema}) cannot restore: the extensions, their comments, and the schema each lives in
    (created/dropped with it), with that schema's comment and grants (commented out: pg_restore -L skips them)."""
    schemas = set(kept.values())
    out = []
    for line in toc.splitlines():
        entry = _toc_entry(line)
        if entry:
            desc, words = entry
            target = tuple(words[:2]) if desc in ('COMMENT', 'ACL') else (desc, words[0])
            if target[0] == 'EXTENSION' and target[1] in kept or target[0] == 'SCHEMA' and target[1] in schemas:
                out.append(';' + line)
                continue
        out.append(line)
    return '\n'.join(out) + '\n'


_WIPE_KEEPING_SQL = """DO $homelab$
DECLARE r record; keep oid[];
BEGIN
  keep := ARRAY(SELECT e.extnamespace FROM pg_catalog.pg_extension e WHERE e.extname = ANY(%s));
  FOR r IN SELECT oid, nspname FROM pg_catalog.pg_namespace
           WHERE nspname NOT IN ('pg_catalog', 'information_schema')
             AND nspname NOT LIKE 'pg\\_toast%%' AND nspname NOT LIKE 'pg\\_temp\\_%%' LOOP
    IF r.oid <> ALL(keep) THEN
      EXECUTE pg_catalog.format('DROP SCHEMA %%I CASCADE', r.nspname);
    END IF;
  END LOOP;
  -- the schemas that hold an extension this role does not own: everything in them but the extensions' members
  FOR r IN SELECT c.oid, pg_catalog.format('%%s %%s CASCADE', CASE c.relkind WHEN 'v' THEN 'DROP VIEW IF EXISTS'
             WHEN 'm' THEN 'DROP MATERIALIZED VIEW IF EXISTS' WHEN 'S' THEN 'DROP SEQUENCE IF EXISTS'
             WHEN 'f' THEN 'DROP FOREIGN TABLE IF EXISTS' ELSE 'DROP TABLE IF EXISTS' END, c.oid::regclass) AS sql
           FROM pg_catalog.pg_class c
           WHERE c.relnamespace = ANY(keep) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
             AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass
                             AND d.objid = c.oid AND d.deptype = 'e') LOOP
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid = r.oid) THEN EXECUTE r.sql; END IF;
  END LOOP;
  FOR r IN SELECT p.oid, pg_catalog.format('DROP ROUTINE IF EXISTS %%s CASCADE', p.oid::regprocedure) AS sql
           FROM pg_catalog.pg_proc p
           WHERE p.pronamespace = ANY(keep)
             AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                             AND d.objid = p.oid AND d.deptype = 'e') LOOP
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE oid = r.oid) THEN EXECUTE r.sql; END IF;
  END LOOP;
  FOR r IN SELECT t.oid, pg_catalog.format('DROP TYPE IF EXISTS %%s CASCADE', t.oid::regtype) AS sql
           FROM pg_catalog.pg_type t
           WHERE t.typnamespace = ANY(keep) AND t.typtype IN ('c', 'd', 'e', 'r', 'm') AND t.typrelid = 0
             AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_type'::regclass
                             AND d.objid = t.oid AND d.deptype = 'e') LOOP
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_type WHERE oid = r.oid) THEN EXECUTE r.sql; END IF;
  END LOOP;
  PERFORM pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;
END
$homelab$;
"""


def wipe_keeping_sql(server_num, kept):
    """wipe_sql that leaves the ``kept`` extensions ({name: schema}) and the schemas they live in standing."""
    names = 'ARRAY[%s]::name[]' % ', '.join("'%s'" % n.replace("'", "''") for n in sorted(kept))
    sql = _WIPE_KEEPING_SQL % names
    if 'public' not in kept.values():
        sql += _PUBLIC_SQL_15 if major_of(server_num) >= 1500 else _PUBLIC_SQL_OLD
    return sql


def restore(params, check_mode=False):
    started = time.time()
    jobs = params.get('jobs') or 1
    if jobs < 1:
        raise BackupError('jobs must be 1 or more')
    clean = params.get('clean') or 'objects'
    try:
        dburl = DbUrl(params['database_url'])
    except UrlError as exc:
        raise BackupError(str(exc))
    path = os.path.abspath(params['path']).rstrip('/') or '/'
    with HeldBackup(path) as held:
        return _restore_held(params, check_mode, started, jobs, clean, dburl, path, held)


def _restore_held(params, check_mode, started, jobs, clean, dburl, path, held):
    """The restore of a backup held open (HeldBackup): its tools read ``held.source``, never ``path``."""
    fmt, digest, size, src = held.fmt, held.digest, held.size, held.source
    known = dict(path=path, format=fmt, sha256=digest, size_bytes=size, untouched=True, retryable=False)
    if params.get('format') and params['format'] != fmt:
        raise BackupError('%s is a %s-format backup, not %s; leave format unset for restores (it is detected)'
                          % (path, fmt, params['format']))
    if jobs > 1 and fmt == 'plain':
        raise BackupError('jobs > 1 works only for custom and directory backups; psql restores plain ones serially')
    if jobs > 1 and clean == 'database':
        raise BackupError('clean: database restores in one transaction through psql; it cannot use jobs > 1')
    runner = _Runner(dburl)
    runner.pass_fds = (held.fd,) if held.fd is not None else ()
    psql = pg_restore = None
    if fmt != 'plain':
        pg_restore, _num = _tool(params, 'pg_restore', runner)
        rc, out, err = runner.run([pg_restore, '--list', src])
        if rc != 0:
            raise BackupError('refusing to restore %s: pg_restore cannot read it: %s'
                              % (path, ' '.join(err.split())[:500] or 'exit code %d' % rc),
                              error_code='incomplete_backup', **known)
        check_source(path, params, dburl, archive_dbname(out), known)
    else:
        check_source(path, params, dburl, None, known)
    verify_complete(path, src, fmt, pg_restore, runner, known)
    if fmt == 'plain' or clean == 'database':
        psql, _num = _tool(params, 'psql', runner)
    server_num = server_version(dburl, params, runner)
    result = _result(changed=True, path=path, size_bytes=size, sha256=digest, format=fmt)
    # extensions a superuser created: this role can neither drop nor re-create them; keep them, or refuse now
    toc = out if fmt != 'plain' else None
    facts = extension_facts(dburl, params, toc_extensions(toc) if toc is not None else plain_extensions(src))
    if facts['missing']:
        raise BackupError(
            'refusing to restore %s: it needs the extension(s) %s, which database %s does not have and which user %s '
            'may not create (not a superuser; not a trusted extension, or no CREATE on the database); nothing was '
            'changed. Ask a superuser to run CREATE EXTENSION %s in that database, then restore again'
            % (path, ', '.join(facts['missing']), dburl.dbname or '(default)', facts['user'],
               ' / '.join(facts['missing'])), error_code='not_restorable', **known)
    kept = facts['kept']
    if clean == 'database':
        # clean: database drops every schema but those of the kept extensions: one this role may not drop fails
        # the restore halfway (rolled back); say so now, with what works instead
        unowned = unowned_schemas(dburl, params, set(kept.values()))
        if unowned:
            raise BackupError(
                'refusing to restore %s with clean: database: it drops every schema first, and user %s may not drop '
                '%s; nothing was changed. Restore with clean: objects (it drops only what the backup holds), or '
                "with the credentials of the schemas' owner"
                % (path, facts['user'] or 'of database_url',
                   ', '.join('schema %s (owned by %s)' % u for u in unowned)), error_code='not_restorable', **known)
    if kept and fmt == 'plain':
        raise BackupError(
            'refusing to restore %s: the database holds extension(s) %s owned by another role (a superuser created '
            'them), which user %s cannot drop and re-create as this plain-format backup does; nothing was changed. '
            'Restore a custom-format backup (format: custom, the default), which keeps them, or restore as their '
            'owner' % (path, ', '.join(sorted(kept)), facts['user']), error_code='not_restorable',
            **known)
    if kept:
        result['kept_extensions'] = sorted(kept)
        result['warnings'] = ['extension(s) %s are owned by another role, so the restore kept them as they are '
                              '(neither dropped nor re-created, nor their schema %s)'
                              % (', '.join(sorted(kept)), ', '.join(sorted(set(kept.values()))))]
    if check_mode:
        result['duration_seconds'] = round(time.time() - started, 3)
        return result
    wipe = listing = None
    guard = None
    try:
        if kept:
            listing = _write_temp(filtered_toc(toc, kept))
        with _TermGuard():
            with PassFile(dburl) as pf:
                runner.env = child_env(dburl, pf.env(), params.get('connect_timeout') or 10, params.get('service'))
                # no NOTICE per DROP ... IF EXISTS: keep stderr for what matters
                # every restore session waits at most lock_wait_timeout for a table lock
                runner.env['PGOPTIONS'] = ' '.join(filter(None, [runner.env.get('PGOPTIONS'),
                                                                 '-c client_min_messages=warning',
                                                                 '-c lock_timeout=%ds' % _lock_wait(params)]))
                # a dump starts with SET lock_timeout = 0: the restore's sessions are watched instead, and one
                # waiting for a table lock longer than lock_wait_timeout is cancelled (its transaction rolls back)
                only = ['--use-list=' + listing] if listing else []
                guard_name = (params.get('service') or 'pg_backup') + ':guard'
                guard = waits.BlockerWatch(lambda: connection.connect(dburl, service=guard_name, connect_timeout=10),
                                           app_prefix=runner.env['PGAPPNAME'], cancel_after=_lock_wait(params))
                with guard:
                    wipe_text = wipe_keeping_sql(server_num, kept) if kept else wipe_sql(server_num)
                    if clean == 'database' and fmt == 'plain':
                        wipe = _write_temp(wipe_text)
                        tool = 'psql'
                        argv = [psql, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction', '--no-password',
                                '-f', wipe, '-f', src]
                        rc, _out, err = runner.run(argv, stdout=subprocess.DEVNULL)
                    elif clean == 'database':
                        # NOT psql --single-transaction: psql would COMMIT at the end of its input even when
                        # pg_restore died midway (OOM killer) and the input just stopped. The transaction is opened
                        # by the wipe file and committed only by the COMMIT that pg_restore --single-transaction
                        # writes as the very last line of a complete restore; input that stops before it ends the
                        # session uncommitted, and the server rolls everything (the wipe too) back.
                        wipe = _write_temp('BEGIN;\n' + wipe_text)
                        tool = 'psql'
                        runner.env['PGOPTIONS'] = runner.env['PGOPTIONS'].replace('client_min_messages=warning',
                                                                                  'client_min_messages=error')
                        argv = [psql, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '--no-password', '-f', wipe, '-f', '-']
                        rc, err = _pipe(runner, [pg_restore, '--single-transaction', '--file=-'] + only + [src],
                                        argv)
                    elif fmt == 'plain':
                        tool = 'psql'
                        rc, _out, err = runner.run([psql, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction',
                                                    '--no-password', '-f', src], stdout=subprocess.DEVNULL)
                    else:
                        tool = 'pg_restore'
                        argv = [pg_restore, '--clean', '--if-exists', '--exit-on-error', '--no-password',
                                '--dbname=' + dbname_conninfo(dburl)] + only
                        argv += ['--jobs=%d' % jobs] if jobs > 1 else ['--single-transaction']
                        rc, _out, err = runner.run(argv + [src], stdout=subprocess.DEVNULL)
    except Interrupted as exc:
        runner.kill_all()  # the session ends uncommitted: the server rolls the restore back
        known.update(untouched=jobs == 1)
        reason = str(exc).split(';', maxsplit=1)[0]
        raise Interrupted('the restore of %s was interrupted (%s); %s' % (
            path, reason, 'it ran in one transaction that was not committed, so the database was left as it was'
            if jobs == 1 else 'with jobs > 1 the database may be partly restored: restore again'),
            error_code='interrupted', **known)
    finally:
        runner.kill_all()
        for temp in (wipe, listing):
            if temp:
                _remove(temp)
    if rc != 0:
        atomic = jobs == 1
        if guard is not None and guard.cancelled:
            who = waits.describe_blockers(guard.found()) or 'another session'
            err = ('the restore waited longer than lock_wait_timeout (%ss) for a table lock held by %s and was '
                   'cancelled; %s. %s' % (_lock_wait(params), who, waits.blocker_advice(guard.found()) or
                                          'let that session finish, then run again', err or ''))
        known.update(untouched=atomic, retryable=not _server_reachable(dburl, params))
        raise BackupError(describe_tool_failure(tool, rc, err, dburl) + (
            '; the restore ran in one transaction that was not committed, so PostgreSQL rolled it back and the '
            'database was left as it was' if atomic else
            '; with jobs > 1 the restore is not one transaction: the database may be partly restored, run it '
            'again (or with jobs: 1)'), error_code='interrupted' if rc < 0 else 'restore_failed', **known)
    result['duration_seconds'] = round(time.time() - started, 3)
    return result


_PLAIN_EXTENSION_RE = re.compile(r'^CREATE EXTENSION IF NOT EXISTS ("(?:[^"]|"")+"|[\w$]+)', re.M)


def plain_extensions(path):
    """Extension names a plain-format backup creates (pg_dump writes each CREATE EXTENSION on a line of its own)."""
    names = []
    try:
        with open(path, 'rb') as fh:
            for raw in fh:
                if raw.startswith(b'CREATE EXTENSION IF NOT EXISTS '):
                    match = _PLAIN_EXTENSION_RE.match(raw.decode('utf-8', 'replace'))
                    if match:
                        name = match.group(1)
                        names.append(name[1:-1].replace('""', '"') if name.startswith('"') else name)
    except OSError:
        return []
    return names


def archive_dbname(listing):
    """The database name pg_dump recorded in an archive (``; Dbname: x`` in ``pg_restore --list``), or None."""
    for line in (listing or '').splitlines():
        match = re.match(r'^;\s+dbname:\s*(.*?)\s*$', line, re.I)
        if match:
            return match.group(1)
    return None


def check_source(path, params, dburl, recorded_db, known):
    """Refuse a backup of another service (file name prefix) or database (the name recorded in the archive)."""
    if params.get('allow_foreign_backup'):
        return
    service = params.get('service')
    name = os.path.basename(path)
    if service:
        check_service(service)
        if not backup_name_re(service).match(name):
            match = re.match(r'^(.+?)_\d{8}_\d{6}(?:_\d+)?\.(?:dump|sql|dir)$', name)
            owner = ('a backup of service %r' % match.group(1)) if match else 'not named like a backup of it'
            raise BackupError('refusing to restore %s over service %r: it is %s (this module names backups '
                              '%s_YYYYmmdd_HHMMSS.dump|sql|dir). Give the path of a backup of %r, or set '
                              'allow_foreign_backup: true if you really mean to restore it there; nothing was changed'
                              % (path, service, owner, service, service), error_code='foreign_backup', **known)
    if recorded_db is not None and dburl.dbname and recorded_db != dburl.dbname:
        raise BackupError('refusing to restore %s into database %r: the archive was dumped from database %r. Give the '
                          'path of a backup of %r, or set allow_foreign_backup: true if you really mean to restore it '
                          'there; nothing was changed' % (path, dburl.dbname, recorded_db, dburl.dbname),
                          error_code='foreign_backup', **known)


def verify_complete(path, src, fmt, pg_restore, runner, known):
    """Refuse an archive that is not complete: plain must end with pg_dump's completion marker; custom and
    directory archives must be readable to their end (``pg_restore --file=/dev/null`` reads every entry and all
    data). A checksum file proves only that the file did not change since it was written, not that pg_dump
    finished it (an operator may have written it for a cut-short file)."""
    if fmt == 'plain':
        if not plain_dump_complete(src):
            raise BackupError('refusing to restore %s: it does not end with pg_dump\'s completion marker, so the dump '
                              'was cut short (disk full, pg_dump killed, a partial copy); restore another backup; '
                              'nothing was changed' % path, error_code='incomplete_backup', **known)
        return
    rc, _out, err = runner.run([pg_restore, '--file=' + os.devnull, src], stdout=subprocess.DEVNULL)
    if rc != 0:
        raise BackupError('refusing to restore %s: the archive cannot be read to its end (%s), so it is truncated or '
                          'damaged even if its checksum matches; restore another backup; nothing was changed'
                          % (path, ' '.join(err.split())[:300] or 'exit code %d' % rc),
                          error_code='incomplete_backup', **known)


def _server_reachable(dburl, params):
    """After a failed restore: can a new session be opened? (False: the server is down or restarting.)"""
    if not connection.HAS_PSYCOPG2:
        return True  # cannot tell: not retryable
    try:
        conn = connection.connect(dburl, connect_timeout=params.get('connect_timeout') or 10)
    except Exception:
        return False
    try:
        conn.close()
    except Exception:
        pass
    return True


def _write_temp(text):
    fd, path = tempfile.mkstemp(prefix='.homelab-restore-', suffix='.sql')
    with os.fdopen(fd, 'w') as fh:
        fh.write(text)
    return path


def _pipe(runner, producer_argv, consumer_argv):
    """producer | consumer; returns (rc, stderr) of the first that failed (producer errors first)."""
    producer = runner.popen(producer_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    consumer = runner.popen(consumer_argv, stdin=producer.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    producer.stdout.close()
    errors = {}

    def drain(name, stream):
        errors[name] = stream.read()
    reader = threading.Thread(target=drain, args=('producer', producer.stderr))
    reader.daemon = True
    reader.start()
    consumer_err = consumer.stderr.read()
    consumer.wait()
    producer.wait()
    reader.join()
    if consumer.returncode != 0:
        return consumer.returncode, runner.text(consumer_err)
    return producer.returncode, runner.text(errors.get('producer'))


# ------------------------------------------------------------------------------------------------ entry
def _dispatch(params, check_mode):
    state = params['state']
    if state == 'present':
        return take_backup(params, check_mode)
    if state == 'restored':
        return restore(params, check_mode)
    if state == 'pruned':
        started = time.time()
        dest = os.path.abspath(params['dest'])
        service = check_service(params['service'])
        if params.get('keep_days') is None and params.get('keep_count') is None:
            raise BackupError('state: pruned needs keep_days and/or keep_count')
        before = [e['name'] for e in list_backups(dest, service)]
        paths = prune(params, check_mode)
        after = [n for n in before if os.path.join(dest, n) not in paths]
        return _result(changed=bool(paths), pruned=paths, duration_seconds=round(time.time() - started, 3),
                       diff=_diff(dest, service, before, after))
    raise BackupError('state must be one of %s' % ', '.join(STATES))


def check_audit_log(path):
    """Fail before doing anything when the audit log cannot be written."""
    if not path:
        return
    path = os.path.abspath(path)
    try:
        audit_mod.check_log_path(path)
    except OSError as exc:
        raise BackupError('%s (nothing was done)' % (exc.strerror or exc))
    if os.path.isdir(path):
        raise BackupError('audit_log %s is a directory; give the path of a file (nothing was done)' % path)
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise BackupError('audit_log %s is not writable by this user; fix its permissions or choose another '
                              'path (nothing was done)' % path)
        return
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not parent or not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise BackupError('audit_log %s cannot be created: %s is not a writable directory; fix the permissions or '
                          'choose another path (nothing was done)' % (path, parent or '/'))


_ACTIONS = {'present': 'backup', 'restored': 'restore', 'pruned': 'prune'}


def _audit_service(params):
    if params.get('service'):
        return params['service']
    name = os.path.basename((params.get('path') or '').rstrip('/'))
    match = re.match(r'^(.+)_\d{8}_\d{6}(?:_\d+)?\.(?:dump|sql|dir)$', name)
    return match.group(1) if match else None


def _outcome(params, result, check_mode):
    if check_mode:
        return 'check'
    if result.get('skipped'):
        return 'skipped'
    if params['state'] == 'restored':
        return 'restored'
    if params['state'] == 'pruned' and not result.get('changed'):
        return 'unchanged'
    return 'success'


def _write_audit(params, result, outcome, error, check_mode, scrub):
    record = audit_mod.make_record(
        _audit_service(params), _ACTIONS.get(params['state'], params['state']), outcome=outcome, error=error,
        scrub=scrub, path=result.get('path'), format=result.get('format'), sha256=result.get('sha256'),
        size_bytes=result.get('size_bytes'), pruned=list(result.get('pruned') or []), reason=result.get('reason'),
        duration_seconds=result.get('duration_seconds'), check_mode=check_mode)
    audit_mod.append_record(params['audit_log'], record)


def _scrubber(url):
    try:
        dburl = DbUrl(url) if url else None
    except UrlError:
        dburl = None
    if dburl is None:
        return lambda text: secrets.mask(text, [url] if isinstance(url, str) else None)
    return dburl.scrub


def run(params, check_mode=False):
    """Do what ``params`` (the module's arguments) ask. Returns the module result; raises BackupError.

    With ``audit_log``, every run (also a failed or check-mode one) appends one JSON line to it.
    """
    params = defaults(params)
    scrub = _scrubber(params.get('database_url'))
    check_audit_log(params.get('audit_log'))
    started = time.time()
    result, outcome, error, failure = {}, 'failed', None, None
    try:
        result = _dispatch(params, check_mode)
        outcome = _outcome(params, result, check_mode)
    except BackupError as exc:
        error = scrub(str(exc))
        if isinstance(exc, Interrupted):
            outcome = 'interrupted'
            exc.result['error_code'] = interrupt.ERROR_CODE
            if params.get('database_url'):
                end_own_sessions(params)
        failure = BackupError(error, **exc.result)
    except Exception as exc:  # a bug or an unforeseen OS error: answer without a traceback, masked
        error = scrub('unexpected %s during state %s: %s' % (exc.__class__.__name__, params.get('state'), exc))
        failure = BackupError(error)
    if params.get('audit_log'):
        audited = dict(result) if failure is None else dict(failure.result)
        audited.setdefault('duration_seconds', round(time.time() - started, 3))
        try:
            _write_audit(params, audited, outcome, error, check_mode, scrub)
        except Exception as exc:
            warning = 'the audit record could not be written to %s: %s' % (params['audit_log'], exc)
            if failure is None:
                result.setdefault('warnings', []).append(warning)
            else:
                failure = BackupError('%s; also %s' % (failure, warning), **failure.result)
    if failure is not None:
        # the fields the role decides on; a backup or a prune never changes the database
        failure.result.setdefault('error_code', 'interrupted' if isinstance(failure, Interrupted) else
                                  ('backup_failed' if params['state'] != 'restored' else 'restore_failed'))
        failure.result.setdefault('untouched', params['state'] != 'restored')
        failure.result.setdefault('retryable', False)
        raise failure
    result.setdefault('error_code', None)
    result.setdefault('untouched', not (params['state'] == 'restored' and result.get('changed') and not check_mode))
    result.setdefault('retryable', False)
    return result
