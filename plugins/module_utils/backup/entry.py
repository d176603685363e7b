# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the ``homelab_pg_backup`` module runs: :func:`run` of its parameter dict, with the audit record.

The module, the tests and the benchmark all go through :func:`run`, so they share one code path:
``state: present`` (module_utils.backup.dump), ``restored`` (.restore), ``pruned`` (.store).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.homelab.migrations.plugins.module_utils import audit as audit_mod
from ansible_collections.homelab.migrations.plugins.module_utils import interrupt
from ansible_collections.homelab.migrations.plugins.module_utils import secrets
from ansible_collections.homelab.migrations.plugins.module_utils.backup import store
from ansible_collections.homelab.migrations.plugins.module_utils.backup.dump import take_backup
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError, Interrupted
from ansible_collections.homelab.migrations.plugins.module_utils.backup.params import (
    STATES, defaults, result as make_result)
from ansible_collections.homelab.migrations.plugins.module_utils.backup.tools import end_own_sessions
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl, UrlError


def _prune(params, check_mode):
    """state: pruned: delete this service's backups that keep_days / keep_count no longer keep."""
    started = time.time()
    dest = os.path.abspath(params['dest'])
    service = store.check_service(params['service'])
    if params.get('keep_days') is None and params.get('keep_count') is None:
        raise BackupError('state: pruned needs keep_days and/or keep_count')
    before = [e['name'] for e in store.list_backups(dest, service)]
    paths = store.prune(params, check_mode)
    after = [n for n in before if os.path.join(dest, n) not in paths]
    return make_result(changed=bool(paths), pruned=paths, duration_seconds=round(time.time() - started, 3),
                       diff=store.diff(dest, service, before, after))


def _dispatch(params, check_mode):
    state = params['state']
    if state == 'present':
        return take_backup(params, check_mode)
    if state == 'restored':
        # imported here: a backup or a prune (every run of the role) never compiles the restore code
        from ansible_collections.homelab.migrations.plugins.module_utils.backup.restore import restore
        return restore(params, check_mode)
    if state == 'pruned':
        return _prune(params, check_mode)
    raise BackupError('state must be one of %s' % ', '.join(STATES))


def check_audit_log(path):
    """Fail before doing anything when the audit log cannot be written (audit.check_writable)."""
    try:
        audit_mod.check_writable(path)
    except audit_mod.AuditLogError as exc:
        raise BackupError(str(exc))


_ACTIONS = {'present': 'backup', 'restored': 'restore', 'pruned': 'prune'}


def _audit_service(params):
    if params.get('service'):
        return params['service']
    return store.service_of(os.path.basename((params.get('path') or '').rstrip('/')))


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
