# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A verified, atomic restore (``state: restored``) of a backup held open (module_utils.backup.held).

Before anything changes, the backup must match its ``.sha256`` file, be complete (readable to its end by
pg_restore, or end with pg_dump's marker), belong to the service and database (unless
allow_foreign_backup), and be restorable by the role of database_url (extensions, schemas). With jobs 1
the restore runs in one transaction: failed or interrupted, PostgreSQL rolls it back. Every session waits
at most lock_wait_timeout for a table lock (waits.BlockerWatch cancels it and names who held it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import os
import subprocess
import tempfile
import threading
import time

from ansible_collections.homelab.migrations.plugins.module_utils import connection
from ansible_collections.homelab.migrations.plugins.module_utils import waits
from ansible_collections.homelab.migrations.plugins.module_utils.backup import catalog
from ansible_collections.homelab.migrations.plugins.module_utils.backup import store
from ansible_collections.homelab.migrations.plugins.module_utils.backup import tools
from ansible_collections.homelab.migrations.plugins.module_utils.backup.checksum import plain_dump_complete
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import (
    BackupError, Interrupted, TermGuard)
from ansible_collections.homelab.migrations.plugins.module_utils.backup.held import HeldBackup
from ansible_collections.homelab.migrations.plugins.module_utils.backup.params import lock_wait, result
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl, UrlError
from ansible_collections.homelab.migrations.plugins.module_utils.passfile import PassFile

# what one restore runs: the held backup's format and source, the options, tools, server and kept extensions
_Job = collections.namedtuple('_Job', 'fmt src jobs clean kept toc psql pg_restore server_num')


def restore(params, check_mode=False):
    """Restore the backup at ``params['path']`` into database_url; returns the module result (params.result,
    plus kept_extensions and warnings when extensions another role owns were kept). BackupError (masked,
    with error_code, untouched and retryable) otherwise; check mode runs every check and changes nothing."""
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
        return restore_held(params, check_mode, started, jobs, clean, dburl, path, held)


def restore_held(params, check_mode, started, jobs, clean, dburl, path, held):
    """The restore of a backup held open (HeldBackup): its tools read ``held.source``, never ``path``."""
    fmt, digest, size, src = held.fmt, held.digest, held.size, held.source
    known = dict(path=path, format=fmt, sha256=digest, size_bytes=size, untouched=True, retryable=False)
    _check_options(params, path, fmt, jobs, clean)
    runner = tools.Runner(dburl)
    runner.pass_fds = (held.fd,) if held.fd is not None else ()
    pg_restore, toc = _read_backup(params, path, held, dburl, runner, known)
    psql = None
    if fmt == 'plain' or clean == 'database':
        psql, _num = tools.pick_tool(params, 'psql', runner)
    server_num = tools.server_version(dburl, params, runner)
    res = result(changed=True, path=path, size_bytes=size, sha256=digest, format=fmt)
    # extensions a superuser created: this role can neither drop nor re-create them; keep them, or refuse now
    kept = _kept_extensions(params, dburl, path, fmt, toc, src, clean, known)
    if kept:
        res['kept_extensions'] = sorted(kept)
        res['warnings'] = ['extension(s) %s are owned by another role, so the restore kept them as they are '
                           '(neither dropped nor re-created, nor their schema %s)'
                           % (', '.join(sorted(kept)), ', '.join(sorted(set(kept.values()))))]
    if check_mode:
        res['duration_seconds'] = round(time.time() - started, 3)
        return res
    job = _Job(fmt, src, jobs, clean, kept, toc, psql, pg_restore, server_num)
    tool, rc, err, guard = _run(params, dburl, runner, job, path, known)
    if rc != 0:
        raise _failure(params, dburl, job, (tool, rc, err), guard, known)
    res['duration_seconds'] = round(time.time() - started, 3)
    return res


def _check_options(params, path, fmt, jobs, clean):
    if params.get('format') and params['format'] != fmt:
        raise BackupError('%s is a %s-format backup, not %s; leave format unset for restores (it is detected)'
                          % (path, fmt, params['format']))
    if jobs > 1 and fmt == 'plain':
        raise BackupError('jobs > 1 works only for custom and directory backups; psql restores plain ones serially')
    if jobs > 1 and clean == 'database':
        raise BackupError('clean: database restores in one transaction through psql; it cannot use jobs > 1')


def _read_backup(params, path, held, dburl, runner, known):
    """(pg_restore, its --list output), both None for a plain backup, after refusing a backup that is foreign
    (check_source) or incomplete (verify_complete)."""
    pg_restore = toc = None
    if held.fmt != 'plain':
        pg_restore, _num = tools.pick_tool(params, 'pg_restore', runner)
        rc, out, err = runner.run([pg_restore, '--list', held.source])
        if rc != 0:
            raise BackupError('refusing to restore %s: pg_restore cannot read it: %s'
                              % (path, ' '.join(err.split())[:500] or 'exit code %d' % rc),
                              error_code='incomplete_backup', **known)
        toc = out
        check_source(path, params, dburl, catalog.archive_dbname(out), known)
    else:
        check_source(path, params, dburl, None, known)
    verify_complete(path, held.source, held.fmt, pg_restore, runner, known)
    return pg_restore, toc


def _kept_extensions(params, dburl, path, fmt, toc, src, clean, known):
    """{name: schema} of the installed extensions another role owns that the restore keeps as they are;
    BackupError (not_restorable, nothing changed) when the restore could not work with this role."""
    facts = catalog.extension_facts(dburl, params, catalog.toc_extensions(toc) if toc is not None
                                    else catalog.plain_extensions(src))
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
        unowned = catalog.unowned_schemas(dburl, params, set(kept.values()))
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
    return kept


def _run(params, dburl, runner, job, path, known):
    """Run the restore's tools under the interrupt guard and the lock-wait watch: (tool, rc, stderr, watch).
    Interrupted (error_code interrupted) when a signal or the controller's death stopped it."""
    temps = []
    guard = listing = None
    try:
        if job.kept:
            listing = _write_temp(catalog.filtered_toc(job.toc, job.kept))
            temps.append(listing)
        with TermGuard():
            with PassFile(dburl) as pf:
                runner.env = tools.child_env(dburl, pf.env(), params.get('connect_timeout') or 10,
                                             params.get('service'))
                # no NOTICE per DROP ... IF EXISTS: keep stderr for what matters
                # every restore session waits at most lock_wait_timeout for a table lock
                runner.env['PGOPTIONS'] = ' '.join(filter(None, [runner.env.get('PGOPTIONS'),
                                                                 '-c client_min_messages=warning',
                                                                 '-c lock_timeout=%ds' % lock_wait(params)]))
                # a dump starts with SET lock_timeout = 0: the restore's sessions are watched instead, and one
                # waiting for a table lock longer than lock_wait_timeout is cancelled (its transaction rolls back)
                only = ['--use-list=' + listing] if listing else []
                guard_name = (params.get('service') or 'pg_backup') + ':guard'
                guard = waits.BlockerWatch(lambda: connection.connect(dburl, service=guard_name, connect_timeout=10),
                                           app_prefix=runner.env['PGAPPNAME'], cancel_after=lock_wait(params))
                with guard:
                    tool, rc, err = _run_tool(job, runner, dburl, only, temps)
    except Interrupted as exc:
        runner.kill_all()  # the session ends uncommitted: the server rolls the restore back
        known.update(untouched=job.jobs == 1)
        reason = str(exc).split(';', maxsplit=1)[0]
        raise Interrupted('the restore of %s was interrupted (%s); %s' % (
            path, reason, 'it ran in one transaction that was not committed, so the database was left as it was'
            if job.jobs == 1 else 'with jobs > 1 the database may be partly restored: restore again'),
            error_code='interrupted', **known)
    finally:
        runner.kill_all()
        for temp in reversed(temps):
            store.remove(temp)
    return tool, rc, err, guard


def _run_tool(job, runner, dburl, only, temps):
    """The restore itself, by format and clean: (tool, rc, stderr). Temp files it writes go into ``temps``."""
    wipe_text = (catalog.wipe_keeping_sql(job.server_num, job.kept) if job.kept
                 else catalog.wipe_sql(job.server_num))
    psql, pg_restore, src = job.psql, job.pg_restore, job.src
    if job.clean == 'database' and job.fmt == 'plain':
        wipe = _write_temp(wipe_text)
        temps.append(wipe)
        argv = [psql, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction', '--no-password',
                '-f', wipe, '-f', src]
        rc, _out, err = runner.run(argv, stdout=subprocess.DEVNULL)
        return 'psql', rc, err
    if job.clean == 'database':
        # NOT psql --single-transaction: psql would COMMIT at the end of its input even when
        # pg_restore died midway (OOM killer) and the input just stopped. The transaction is opened
        # by the wipe file and committed only by the COMMIT that pg_restore --single-transaction
        # writes as the very last line of a complete restore; input that stops before it ends the
        # session uncommitted, and the server rolls everything (the wipe too) back.
        wipe = _write_temp('BEGIN;\n' + wipe_text)
        temps.append(wipe)
        runner.env['PGOPTIONS'] = runner.env['PGOPTIONS'].replace('client_min_messages=warning',
                                                                  'client_min_messages=error')
        argv = [psql, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '--no-password', '-f', wipe, '-f', '-']
        rc, err = _pipe(runner, [pg_restore, '--single-transaction', '--file=-'] + only + [src], argv)
        return 'psql', rc, err
    if job.fmt == 'plain':
        rc, _out, err = runner.run([psql, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction',
                                    '--no-password', '-f', src], stdout=subprocess.DEVNULL)
        return 'psql', rc, err
    argv = [pg_restore, '--clean', '--if-exists', '--exit-on-error', '--no-password',
            '--dbname=' + tools.dbname_conninfo(dburl)] + only
    argv += ['--jobs=%d' % job.jobs] if job.jobs > 1 else ['--single-transaction']
    rc, _out, err = runner.run(argv + [src], stdout=subprocess.DEVNULL)
    return 'pg_restore', rc, err


def _failure(params, dburl, job, outcome, guard, known):
    """The BackupError for a restore whose tool failed: ``outcome`` is (tool, rc, stderr)."""
    tool, rc, err = outcome
    atomic = job.jobs == 1
    if guard is not None and guard.cancelled:
        who = waits.describe_blockers(guard.found()) or 'another session'
        err = ('the restore waited longer than lock_wait_timeout (%ss) for a table lock held by %s and was '
               'cancelled; %s. %s' % (lock_wait(params), who, waits.blocker_advice(guard.found()) or
                                      'let that session finish, then run again', err or ''))
    known.update(untouched=atomic, retryable=not _server_reachable(dburl, params))
    return BackupError(tools.describe_tool_failure(tool, rc, err, dburl) + (
        '; the restore ran in one transaction that was not committed, so PostgreSQL rolled it back and the '
        'database was left as it was' if atomic else
        '; with jobs > 1 the restore is not one transaction: the database may be partly restored, run it '
        'again (or with jobs: 1)'), error_code='interrupted' if rc < 0 else 'restore_failed', **known)


def check_source(path, params, dburl, recorded_db, known):
    """Refuse a backup of another service (file name prefix) or database (the name recorded in the archive)."""
    if params.get('allow_foreign_backup'):
        return
    service = params.get('service')
    name = os.path.basename(path)
    if service:
        store.check_service(service)
        if not store.backup_name_re(service).match(name):
            owner = store.service_of(name)
            owner = ('a backup of service %r' % owner) if owner else 'not named like a backup of it'
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
