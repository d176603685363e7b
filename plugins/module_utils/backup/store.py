# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup directory (``dest``): backup names, safe files, publishing a finished dump, retention.

Files in ``dest``: ``{service}_{YYYYmmdd_HHMMSS}.{dump|sql|dir}`` (local time of the start of the
dump; ``_1``, ``_2``... is appended before the extension when that name is already taken) and
beside each one ``<name>.sha256`` (module_utils.backup.checksum). A dump is written under a temporary
name (``.<name>.partial-<pid>-<random>``), verified, and only then renamed (without replacing anything,
renameat2 RENAME_NOREPLACE on Linux) to its final name, after its ``.sha256`` file is in place. A dump
with its final name is therefore always complete. Only entries named exactly so, of the right type and
with a ``.sha256`` file naming them, are this module's: nothing else in ``dest`` is ever touched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import ctypes.util
import errno
import os
import re
import shutil
import stat
import time
import uuid

from ansible_collections.homelab.migrations.plugins.module_utils import child
from ansible_collections.homelab.migrations.plugins.module_utils import safe_path
from ansible_collections.homelab.migrations.plugins.module_utils.backup.checksum import read_sidecar, sidecar_text
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError
from ansible_collections.homelab.migrations.plugins.module_utils.backup.params import check_keep
from ansible_collections.homelab.migrations.plugins.module_utils.spec import NAME_RE

EXTENSIONS = {'custom': 'dump', 'plain': 'sql', 'directory': 'dir'}
FORMAT_OF_EXTENSION = {'dump': 'custom', 'sql': 'plain', 'dir': 'directory'}
# any service's backup name; group 1 is the service
_ANY_BACKUP_RE = re.compile(r'^(.+?)_\d{8}_\d{6}(?:_\d+)?\.(?:dump|sql|dir)$')
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def check_service(service):
    """``service`` if it is a valid backup name prefix (spec.NAME_RE); BackupError otherwise."""
    if not isinstance(service, str) or not NAME_RE.match(service):
        raise BackupError('service %r is not a valid backup name prefix: use 1-63 characters of a-z, 0-9, "_" and '
                          '"-", starting with a letter or digit' % (service,))
    return service


def backup_name_re(service):
    """Names of this service's backups exactly: {service}_{YYYYmmdd_HHMMSS}[_N].{dump|sql|dir}."""
    return re.compile(r'^%s_(\d{8}_\d{6})(?:_([1-9]\d{0,3}))?\.(dump|sql|dir)$' % re.escape(service))


def service_of(name):
    """The service a file name ``{service}_{YYYYmmdd_HHMMSS}[_N].{dump|sql|dir}`` names, or None."""
    match = _ANY_BACKUP_RE.match(name)
    return match.group(1) if match else None


def partial_re(service):
    """Names of this service's temporary files (dumps and .sha256 files being written); group 1 is the pid."""
    return re.compile(r'^\.%s_\d{8}_\d{6}(?:_\d+)?\.(?:dump|sql|dir)(?:\.sha256)?\.partial-(\d+)-[0-9a-f]+$'
                      % re.escape(service))


def temp_name(name):
    """The temporary name a file ``name`` is written under: ``.<name>.partial-<pid>-<random>``."""
    return '.%s.partial-%d-%s' % (name, os.getpid(), uuid.uuid4().hex[:8])


def remove(path):
    """Remove a file or a directory tree (gone already is fine); OSError when it stays."""
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


def fsync_dir(path):
    """fsync a directory so that renames and deletions in it are durable (best effort)."""
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


def rename_noreplace(src, dst, libc=None):
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


def load_libc():
    """libc through ctypes (renameat2 for publish), or None. The process's own symbols (CDLL(None)) hold libc's
    on Linux; ``ctypes.util.find_library('c')``, which runs ``ldconfig -p``, only when renameat2 is not there."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if getattr(libc, 'renameat2', None) is not None:
            return libc
        return ctypes.CDLL(ctypes.util.find_library('c') or None, use_errno=True)
    except (OSError, TypeError):  # pragma: no cover - no usable libc (not Linux)
        return None


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
        raise BackupError(os_error_text('cannot create dest %s' % dest, exc, dest))
    check_dest(dest)
    return True


def check_writable(dest):
    """Check mode: fail as the real run would when dest (or the directory that would hold it) is not writable."""
    existing = dest
    while existing and not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.access(existing or '/', os.W_OK | os.X_OK):
        err = errno.EROFS if _read_only(existing or '/') else errno.EACCES
        what = 'cannot write a backup into dest %s' % dest if existing == dest else 'cannot create dest %s' % dest
        raise BackupError(os_error_text(what, OSError(err, os.strerror(err)), dest))


def _read_only(path):
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # pragma: no cover
        return False


def os_error_text(what, exc, dest):
    """'<what>: <reason> (<what to do>)' for an OSError about ``dest`` (permissions, read-only, full)."""
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
        if match and int(match.group(1)) != os.getpid() and not child.pid_alive(int(match.group(1))):
            remove(os.path.join(dest, name))
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
    for name, path, st, match in safe_path.lstat_entries(dest, pattern.match):
        ext = match.group(3)
        if ext == 'dir':
            if not stat.S_ISDIR(st.st_mode) or not os.path.isfile(os.path.join(path, 'toc.dat')):
                continue
        elif not stat.S_ISREG(st.st_mode):
            continue
        side = read_sidecar(path + '.sha256')
        if side is None or side[1] != name or os.path.islink(path + '.sha256'):
            continue
        fmt = FORMAT_OF_EXTENSION[ext]
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


def prune(params, check_mode=False, pending_newest=0, now=None, new=None):
    """Delete this service's old backups (data first, then its .sha256). Returns the paths (list of str).

    ``new``: the path of the backup this run just wrote (state=present); it is never deleted and counts as the
    newest whatever its mtime says (one copied in with a later mtime cannot push it out of keep_count). In
    check mode nothing is deleted; ``pending_newest=1`` there stands for the backup that would be written.
    BackupError (with ``pruned``: the paths deleted before it) when one cannot be deleted.
    """
    dest = os.path.abspath(params['dest'])
    service = check_service(params['service'])
    check_keep(params)
    if os.path.lexists(dest):
        check_dest(dest)
    if not check_mode:
        remove_stale_partials(dest, service)
    entries = list_backups(dest, service)
    if new is not None:
        entries = [entry for entry in entries if entry['path'] != new]
        pending_newest = 1
    doomed = plan_prune(entries, params.get('keep_days'), params.get('keep_count'),
                        now=now, pending_newest=pending_newest)
    paths = [entry['path'] for entry in doomed]
    if check_mode:
        return paths
    for path in paths:
        try:
            remove(path)
            remove(path + '.sha256')
        except OSError as exc:
            raise BackupError(os_error_text('cannot delete old backup %s' % path, exc, dest),
                              pruned=paths[:paths.index(path)])
    if paths:
        fsync_dir(dest)
    return paths


def diff(dest, service, before, after):
    """The module's --diff: this service's backup names (lists of str) before and after."""
    header = '%s (backups of %s)' % (dest, service)
    return dict(before_header=header, after_header=header,
                before=''.join(n + '\n' for n in before), after=''.join(n + '\n' for n in after))


def free_name(dest, base, ext):
    """The first ``base[_N].ext`` in ``dest`` with neither it nor its .sha256 file there (check mode)."""
    for n in range(0, 10000):
        name = '%s%s.%s' % (base, '' if n == 0 else '_%d' % n, ext)
        full = os.path.join(dest, name)
        if not os.path.lexists(full) and not os.path.lexists(full + '.sha256'):
            return name
    raise BackupError('no free backup name for %s in %s' % (base, dest))  # pragma: no cover


def publish(tmp, dest, base, ext, digest, libc):
    """Put the .sha256 file, then the dump, under a final name that nothing else has. Returns the path."""
    for n in range(0, 10000):
        name = '%s%s.%s' % (base, '' if n == 0 else '_%d' % n, ext)
        final = os.path.join(dest, name)
        if os.path.lexists(final) or os.path.lexists(final + '.sha256'):
            continue
        side_tmp = os.path.join(dest, temp_name(name + '.sha256'))
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
                rename_noreplace(side_tmp, final + '.sha256', libc)
            except FileExistsError:
                continue
            try:
                rename_noreplace(tmp, final, libc)
            except FileExistsError:
                remove(final + '.sha256')
                continue
            except BaseException:
                remove(final + '.sha256')
                raise
        finally:
            remove(side_tmp)
        fsync_dir(dest)
        return final
    raise BackupError('no free backup name for %s in %s' % (base, dest))  # pragma: no cover
