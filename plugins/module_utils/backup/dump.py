# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Taking a backup (``state: present``): pg_dump into a temporary name, verify, checksum, publish, then prune
the service's older backups when keep_days / keep_count are given (nothing when the backup failed or was skipped).

A dump that failed, was interrupted or could not be verified leaves nothing behind; a published one is
complete (module_utils.backup.store). ``backup: auto`` skips Neon hosts (Neon keeps its own history).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import time

from ansible_collections.homelab.migrations.plugins.module_utils import child
from ansible_collections.homelab.migrations.plugins.module_utils import connection
from ansible_collections.homelab.migrations.plugins.module_utils import lock as lock_mod
from ansible_collections.homelab.migrations.plugins.module_utils.backup import store
from ansible_collections.homelab.migrations.plugins.module_utils.backup import tools
from ansible_collections.homelab.migrations.plugins.module_utils.backup.catalog import extension_facts
from ansible_collections.homelab.migrations.plugins.module_utils.backup.checksum import (
    backup_digest, plain_dump_complete)
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError, TermGuard
from ansible_collections.homelab.migrations.plugins.module_utils.backup.params import (
    FORMATS, check_keep, lock_wait, result)
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl, UrlError
from ansible_collections.homelab.migrations.plugins.module_utils.passfile import PassFile

_FORMAT_FLAG = {'custom': 'c', 'plain': 'p', 'directory': 'd'}


def _start_verify(tmp, fmt, pg_restore, runner):
    """Check a plain dump's completion marker now; start ``pg_restore --list`` of a custom or directory dump and
    return its process (:func:`_check_verify` reads its answer), so that the sha256 is read meanwhile."""
    if fmt == 'plain':
        if not plain_dump_complete(tmp):
            raise BackupError('the plain dump is incomplete (pg_dump\'s completion marker is missing); the backup '
                              'was removed; check the disk and the server log and try again')
        return None
    return runner.popen([pg_restore, '--list', tmp])


def _check_verify(proc, runner):
    """BackupError unless ``pg_restore --list`` (``proc``) read the whole archive back (its TOC header)."""
    if proc is None:
        return
    rc, out, err, _timed_out = child.finish(proc)
    out, err = runner.text(out), runner.text(err)
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


def _checked(params):
    """(service, format, jobs, DbUrl) of a backup's parameters; BackupError for a bad one."""
    service = store.check_service(params['service'])
    fmt = params.get('format') or 'custom'
    if fmt not in FORMATS:
        raise BackupError('format must be one of %s' % ', '.join(FORMATS))
    jobs = params.get('jobs') or 1
    if jobs < 1:
        raise BackupError('jobs must be 1 or more')
    if jobs > 1 and fmt != 'directory':
        raise BackupError('jobs: %d needs format: directory (pg_dump dumps in parallel only into a directory)' % jobs)
    check_keep(params)
    try:
        dburl = DbUrl(params['database_url'])
    except UrlError as exc:
        raise BackupError(str(exc))
    return service, fmt, jobs, dburl


def _skip_reason(params, dburl):
    """Why no dump is taken (backup: never, or auto on a Neon host), or None."""
    mode = params.get('backup') or 'auto'
    if mode == 'never':
        return 'backup: never; no dump was taken'
    if mode == 'auto' and dburl.is_neon:
        return ('%s is a Neon host (*.neon.tech): backup: auto does not pg_dump it (Neon keeps its '
                'own history: use point-in-time restore or a branch); set backup: always to dump anyway' % dburl.host)
    return None


def _client_tools(params, dburl, fmt, runner):
    """(pg_dump, pg_restore or None) to use, after checking pg_dump's version against the server's and, for a
    plain dump, that its restore would not be refused (extensions another role owns)."""
    pg_dump, dump_num = tools.pick_tool(params, 'pg_dump', runner)
    server_num = tools.server_version(dburl, params, runner)
    tools.check_client_version('pg_dump', pg_dump, dump_num, server_num)
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
        if params.get('pg_restore') or params.get('pg_bindir') or not tools.is_executable(beside):
            pg_restore, _num = tools.pick_tool(params, 'pg_restore', runner)
        else:
            pg_restore = beside
    return pg_dump, pg_restore


def _dump_argv(params, pg_dump, fmt, jobs, tmp):
    argv = [pg_dump, '--format=' + _FORMAT_FLAG[fmt], '--file=' + tmp, '--no-password']
    # a table lock held by the application (ACCESS EXCLUSIVE) fails the dump instead of stalling it
    argv.append('--lock-wait-timeout=%d' % (1000 * lock_wait(params)))
    if fmt == 'plain':
        # restorable into the same database with psql: drop each object before creating it
        argv += ['--clean', '--if-exists']
    if jobs > 1:
        argv.append('--jobs=%d' % jobs)
    return argv


def _make_temp(dest, name, fmt):
    """Create the temporary file (or directory) pg_dump writes into; returns its path."""
    tmp = os.path.join(dest, store.temp_name(name))
    try:
        if fmt == 'directory':
            os.mkdir(tmp, 0o700)
        else:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise BackupError(store.os_error_text('cannot write a backup into dest %s' % dest, exc, dest))
    return tmp


def _dump(params, job, runner, pg_dump, pg_restore):
    """Dump into a temp name, verify, publish; (path, size_bytes, sha256). Nothing stays behind on failure."""
    dburl, dest, base, ext, fmt, jobs = job
    tmp = _make_temp(dest, '%s.%s' % (base, ext), fmt)
    libc = store.load_libc()
    try:
        with TermGuard():
            try:
                argv = _dump_argv(params, pg_dump, fmt, jobs, tmp)
                with PassFile(dburl) as pf:
                    runner.env = tools.child_env(dburl, pf.env(), params.get('connect_timeout') or 10,
                                                 params['service'])
                    rc, _out, err = runner.run(argv, stdout=subprocess.DEVNULL)
                if rc != 0:
                    raise BackupError(tools.describe_tool_failure('pg_dump', rc, err, dburl, dest) +
                                      '; no backup was written')
                verifying = _start_verify(tmp, fmt, pg_restore, runner) if params.get('verify', True) else None
                _fix_modes(tmp, fmt)
                digest, size = backup_digest(tmp, fmt)  # while pg_restore --list reads the same bytes
                _check_verify(verifying, runner)
                final = store.publish(tmp, dest, base, ext, digest, libc)
            finally:
                runner.kill_all()
    except OSError as exc:
        store.remove(tmp)
        raise BackupError(store.os_error_text('backup into %s failed' % dest, exc, dest) + '; no backup was written')
    except BaseException:
        store.remove(tmp)
        raise
    return final, size, digest


def _keeps(params):
    return params.get('keep_days') is not None or params.get('keep_count') is not None


def _migrating_now(params, dburl):
    """Who holds the service's migration lock (another run is migrating it and may restore its own backup), or None
    (also when that cannot be read: psycopg2 missing, the server gone since the dump)."""
    try:
        conn = connection.connect(dburl, service=params['service'] + ':backup',
                                  connect_timeout=params.get('connect_timeout') or 10)
    except Exception:
        return None
    try:
        return lock_mod.lock_holder(conn, params['service'])
    except Exception:
        return None
    finally:
        conn.close()


def _prune_older(params, res, dburl=None):
    """keep_days / keep_count after the new backup ``res['path']`` was written and verified: delete the service's
    older backups they no longer keep (store.prune; the new one is never among them). Returns the paths deleted.
    None are while another session holds the service's migration lock (a run in progress may restore its backup):
    a warning says so. BackupError naming the new backup (its path, sha256, size in the result) when one cannot be
    deleted."""
    holder = _migrating_now(params, dburl) if dburl is not None else None
    if holder is not None:
        res.setdefault('warnings', []).append(
            'no older backup of %s was pruned: its migration lock is held by %s, a run in progress that may still '
            'need its own backup; the next backup prunes them' % (params['service'], lock_mod.describe_holder(holder)))
        return []
    try:
        return store.prune(params, new=res['path'])
    except BackupError as exc:
        raise BackupError('the backup %s was written and verified, but pruning the older backups failed: %s'
                          % (res['path'], exc), **dict(res, pruned=exc.result.get('pruned') or []))


def take_backup(params, check_mode=False):
    """Take a backup as ``params`` (the module's arguments) ask; returns the module result (params.result,
    plus ``diff``). BackupError (masked, with what to do next) when no backup was written."""
    started = time.time()
    service, fmt, jobs, dburl = _checked(params)
    skipped = _skip_reason(params, dburl)
    if skipped:
        return result(format=fmt, skipped=True, reason=skipped, duration_seconds=round(time.time() - started, 3))
    dest = os.path.abspath(params['dest'])
    store.ensure_dest(dest, check_mode=True)  # type check only
    runner = tools.Runner(dburl)
    pg_dump, pg_restore = _client_tools(params, dburl, fmt, runner)
    base = '%s_%s' % (service, time.strftime('%Y%m%d_%H%M%S', time.localtime(started)))
    ext = store.EXTENSIONS[fmt]
    before = [e['name'] for e in store.list_backups(dest, service)]
    if check_mode:
        store.check_writable(dest)
        name = store.free_name(dest, base, ext)
        pruned = store.prune(params, check_mode=True, pending_newest=1) if _keeps(params) else []
        after = [name] + [n for n in before if os.path.join(dest, n) not in pruned]
        return result(changed=True, path=os.path.join(dest, name), format=fmt, pruned=pruned,
                      duration_seconds=round(time.time() - started, 3), diff=store.diff(dest, service, before, after))
    store.ensure_dest(dest)
    store.remove_stale_partials(dest, service)
    final, size, digest = _dump(params, (dburl, dest, base, ext, fmt, jobs), runner, pg_dump, pg_restore)
    res = result(changed=True, path=final, size_bytes=size, sha256=digest, format=fmt)
    if _keeps(params):
        res['pruned'] = _prune_older(params, res, dburl)
    after = [e['name'] for e in store.list_backups(dest, service)]
    res['diff'] = store.diff(dest, service, before, after)
    res['duration_seconds'] = round(time.time() - started, 3)
    return res
