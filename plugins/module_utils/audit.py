# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit trail: one JSON line per module run, appended atomically, never a password."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import getpass
import json
import os
import socket
import stat

from ansible_collections.homelab.migrations.plugins.module_utils import regular_file, safe_path
from ansible_collections.homelab.migrations.plugins.module_utils.secrets import mask, mask_data

AUDIT_FIELDS = ('time', 'host', 'user', 'service', 'action', 'from', 'to', 'outcome', 'error', 'confirmation')
OUTCOMES = ('success', 'failed', 'unchanged', 'skipped', 'rolled_back', 'restored', 'check', 'refused')


def _user():
    for var in ('HOMELAB_AUDIT_USER', 'AWX_USER', 'SEMAPHORE_USER', 'SUDO_USER'):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())


def make_record(service, action, from_revision=None, to_revision=None, outcome='success', error=None,
                confirmation=None, scrub=None, **extra):
    """Build an audit record. ``scrub`` is a callable that masks secrets (DbUrl.scrub)."""
    record = {
        'time': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='milliseconds'),
        'host': socket.gethostname(),
        'user': _user(),
        'service': service,
        'action': action,
        'from': from_revision,
        'to': to_revision,
        'outcome': outcome,
        'error': error,
        'confirmation': confirmation,
    }
    record.update(extra)
    if scrub is not None:
        record = json.loads(scrub(json.dumps(record)))
    return record


def check_log_path(path):
    """Raise safe_path.UnsafePathError when another user could swap the audit log: its directory (or the
    nearest one that exists) writable by group/others or owned by another user, or the log a symlink or
    another user's file."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    while parent and not os.path.isdir(parent) and parent != os.path.dirname(parent):
        parent = os.path.dirname(parent)
    safe_path.check_dir(parent, 'the directory of audit_log %s,' % path)
    try:
        st = os.lstat(path)
    except OSError:
        return
    if os.path.islink(path):
        raise safe_path.UnsafePathError(errno.ELOOP, 'audit_log %s is a symlink; give the real file (%s) so nobody '
                                        'can point it elsewhere' % (path, os.path.realpath(path)))
    if not stat.S_ISREG(st.st_mode):
        raise safe_path.UnsafePathError(errno.EINVAL, 'audit_log %s is %s, not a regular file: writing to it could '
                                        'wait forever (a FIFO waits for a reader); give the path of a regular file '
                                        'or of one to create' % (path, regular_file.kind_of(st.st_mode)))
    if st.st_uid not in (os.geteuid(), 0):
        raise safe_path.UnsafePathError(errno.EPERM, 'audit_log %s belongs to another user (uid %d), who could '
                                        'rewrite it; chown it to the user running the play or choose another path'
                                        % (path, st.st_uid))


class AuditLogError(Exception):
    """The audit log cannot be written (see :func:`check_writable`); ``unsafe`` when another user could swap it."""

    def __init__(self, message, unsafe=False):
        super(AuditLogError, self).__init__(message)
        self.unsafe = unsafe


def check_writable(path, done='nothing was done'):
    """Raise :class:`AuditLogError` (before a module does anything) when ``path`` cannot be appended to: another
    user could swap it or it is no regular file (:func:`check_log_path`: a directory, a FIFO, a symlink), it
    exists and this user may not write it, or it does not exist and the nearest directory that does is not
    writable. ``done`` closes the messages (what the caller left undone). No ``path``: no log, nothing to check."""
    if not path:
        return
    path = os.path.abspath(path)
    try:
        check_log_path(path)
    except OSError as exc:
        raise AuditLogError('%s (nothing was done)' % (exc.strerror or exc), unsafe=True)
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise AuditLogError('audit_log %s is not writable by this user; fix its permissions or choose another '
                                'path (%s)' % (path, done))
        return
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not parent or not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise AuditLogError('audit_log %s cannot be created: %s is not a writable directory; fix the permissions or '
                            'choose another path (%s)' % (path, parent or '/', done))


def append_record(path, record):
    """Append ``record`` as one JSON line to ``path`` with a single O_APPEND write.

    The file is created 0640 (parent directories 0750). Concurrent writers never interleave lines. A log
    another user could swap (see :func:`check_log_path`) or a symlink is refused (O_NOFOLLOW).
    """
    line = (json.dumps(record, sort_keys=True, default=str) + '\n').encode('utf-8')
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o750)
    check_log_path(path)
    created = False
    try:
        fd = safe_path.open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o640, 'audit_log')
        created = True
    except OSError as exc:
        if not os.path.lexists(path) or isinstance(exc, safe_path.UnsafePathError):
            raise
        # O_NONBLOCK: a FIFO swapped in after the check must not make open() wait for a reader (ENXIO instead)
        fd = safe_path.open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK, 0o640, 'audit_log')
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise safe_path.UnsafePathError(errno.EINVAL, 'audit_log %s is not a regular file; give the path of a '
                                            'regular file' % path)
        os.set_blocking(fd, True)
    try:
        if created:
            os.fchmod(fd, 0o640)
        written = os.write(fd, line)
        if written != len(line):  # pragma: no cover - a full disk mid-write
            raise OSError('short write to audit log %s' % path)
    finally:
        os.close(fd)
    return record


def read_records(path):
    """All records of an audit log (for tests and the role's fact)."""
    records = []
    if not os.path.exists(path):
        return records
    with open(path, 'rb') as fh:
        for raw in fh:
            raw = raw.strip()
            if raw:
                records.append(json.loads(raw.decode('utf-8')))
    return records


HEALTH_ACTION = 'health_check'
HEALTH_STATES = ('unverified', 'passed')


def health_states(path):
    """The health state each service's last health record left: {service: {state, since, revision}}.

    The role writes ``health: unverified`` (action ``health_check``) BEFORE it checks a service's health and
    ``health: passed`` once the check passed; a run that failed the check, or was cancelled (SIGTERM) while it
    retried, leaves the service ``unverified`` until a later check passes. Lines that are not JSON are skipped.
    """
    out = {}
    if not path or not os.path.isfile(path):
        return out
    with open(path, 'rb') as fh:
        for raw in fh:
            try:
                rec = json.loads(raw.decode('utf-8'))
            except ValueError:
                continue
            found = health_state_of(rec)
            if found:
                out[found[0]] = found[1]
    return out


def health_state_of(rec):
    """The health state one audit record leaves: ``(service, {state, since, revision})``, or None when it leaves
    none (not a dict, not a ``health_check`` record, no service, no known ``health`` value, or a check-mode one)."""
    if not isinstance(rec, dict) or rec.get('action') != HEALTH_ACTION or not rec.get('service'):
        return None
    if rec.get('health') not in HEALTH_STATES or rec.get('check_mode'):
        return None
    return rec['service'], {'state': rec['health'], 'since': rec.get('time'), 'revision': rec.get('to')}


_BASE = ('service', 'action', 'from', 'to', 'outcome', 'error', 'confirmation')


def build_records(records, confirmation):
    """The audit records ``records`` (dicts with at least service, action and outcome; ``from``/``to`` the
    revisions) completed as homelab_migration_audit writes them: time, host, user (:func:`make_record`), the
    run's ``confirmation`` unless a record has its own, every password masked. ValueError names a record that
    lacks a required key (only a refused run's record may name no service)."""
    built = []
    for index, rec in enumerate(records):
        for key in ('service', 'action', 'outcome'):
            if not rec.get(key) and not (key == 'service' and rec.get('outcome') == 'refused'):
                raise ValueError('records[%d] has no %s; every record needs service, action and outcome '
                                 '(only the record of a refused run may name no service)' % (index, key))
        extra = dict((k, v) for k, v in rec.items() if k not in _BASE and k not in ('time', 'host', 'user'))
        record = make_record(rec.get('service') or None, rec['action'], from_revision=rec.get('from'),
                             to_revision=rec.get('to'), outcome=rec['outcome'], error=rec.get('error'),
                             confirmation=rec.get('confirmation') or confirmation, scrub=mask, **mask_data(extra))
        for key in ('time', 'host', 'user'):
            if rec.get(key):
                record[key] = rec[key]
        built.append(record)
    return built
