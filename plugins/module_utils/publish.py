# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status dashboard: ``api/migrations/status``, ``api/migrations/runs`` and ``monitoring/index.html``.

Everything a web server publishes from ``migrate_all_dashboard_dir`` is built here from the status module's
result and the audit log, reduced to known keys (never a database URL), masked once more, and written
atomically (temp file in the same directory and a rename) so a reader never sees a half-written file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import json
import os
import stat

from ansible_collections.homelab.migrations.plugins.module_utils import report as report_mod
from ansible_collections.homelab.migrations.plugins.module_utils import secrets
from ansible_collections.homelab.migrations.plugins.module_utils.dashboard_page import render_page

# galaxy.yml's version (a unit test keeps them equal): the module runs on the managed host, which has no
# galaxy.yml or MANIFEST.json to read it from
COLLECTION_VERSION = '0.1.0'

STATUS_PATH = 'api/migrations/status'
RUNS_PATH = 'api/migrations/runs'
PAGE_PATH = 'monitoring/index.html'
FILES = (STATUS_PATH, RUNS_PATH, PAGE_PATH)

DEFAULT_REFRESH = 30
DEFAULT_STALE_AFTER = 900
DEFAULT_RUNS = 20
MAX_RUNS = 500
# only the end of a long audit log is read: the newest runs are there
AUDIT_TAIL_BYTES = 4 * 1024 * 1024
# long texts (database errors, SQL statements) are cut for the page
MAX_TEXT = 2000
MAX_LIST = 1000

FINDING_KEYS = ('migration', 'statement', 'code', 'severity', 'message', 'source')
HEALTH_KEYS = ('state', 'status', 'verified', 'reason', 'message', 'url', 'checked_at', 'since', 'run_id',
               'http_status', 'attempts')
RUN_SERVICE_KEYS = ('outcome', 'from', 'to', 'error', 'reason', 'recovery', 'target')


class DashboardError(Exception):
    """The dashboard could not be written; the message says what to do."""


def _text(value, limit=MAX_TEXT):
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value
    # mask first, then cut: a cut URL would hide its password from the mask
    text = secrets.mask(str(value), queries=True)
    if len(text) > limit:
        text = text[:limit] + '... [%d more characters]' % (len(text) - limit)
    return text


def _scalars(value, keys):
    """Known scalar keys of a dict (strings shortened); anything else is dropped."""
    if not isinstance(value, dict):
        return {}
    return dict((k, _text(value[k])) for k in keys
                if k in value and (value[k] is None or isinstance(value[k], (str, int, float, bool))))


def _findings(value):
    if not isinstance(value, (list, tuple)):
        return None
    return [_scalars(f, FINDING_KEYS) for f in list(value)[:MAX_LIST] if isinstance(f, dict)]


def _health(value):
    """A service's health verification state (a string, or a dict of known scalar keys)."""
    if value is None:
        return None
    if isinstance(value, (str, bool)):
        return {'state': _text(value)}
    if isinstance(value, dict):
        health = _scalars(value, HEALTH_KEYS)
        return health or None
    return None


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def status_document(status, generated_at=None, version=COLLECTION_VERSION):
    """``api/migrations/status``: the status module's result in the guide's shape.

    ``success``, ``overall_status``, ``total_pending``, ``services`` (each: status, tool, current_revision,
    latest_revision, applied, pending, pending_migrations, problems, lock, ``findings`` and ``lint`` (the
    pre-flight checks), and ``health`` when the status carries it), ``generated_at`` (UTC) and
    ``collection_version``.
    """
    # mask first, then cut (a cut could leave half a password that no longer looks like one)
    status = secrets.mask_data(status) if isinstance(status, dict) else {}
    doc = report_mod.status_report(status, generated_at or now_iso())
    raw = status.get('services') or {}
    for name, entry in doc['services'].items():
        source = raw.get(name) if isinstance(raw.get(name), dict) else {}
        entry['pending_migrations'] = [_text(p, 300) for p in (entry.get('pending_migrations') or [])[:MAX_LIST]]
        entry['problems'] = [_scalars(p, ('code', 'message')) for p in (entry.get('problems') or [])
                             if isinstance(p, dict)][:MAX_LIST]
        lock = entry.get('lock') if isinstance(entry.get('lock'), dict) else {}
        holder = lock.get('holder')
        entry['lock'] = {'held': bool(lock.get('held')),
                         'holder': _scalars(holder, ('pid', 'application_name', 'client_addr', 'since'))
                         if isinstance(holder, dict) else None}
        if 'findings' in source:
            entry['findings'] = _findings(source.get('findings')) or []
        if isinstance(source.get('lint'), dict):
            entry['lint'] = _scalars(source['lint'], ('linter', 'ran', 'reason', 'version'))
        elif 'lint' in entry:
            entry['lint'] = None
        if source.get('health') is not None:
            entry['health'] = _health(source.get('health'))
    doc['collection_version'] = version
    doc['generator'] = 'homelab.migrations'
    return secrets.mask_data(doc)


def read_audit_tail(path, max_bytes=AUDIT_TAIL_BYTES):
    """The records at the end of an audit log (at most ``max_bytes`` are read), oldest first.

    Returns ``(records, unreadable_lines)``; a missing log is no records. Only a regular file is read, and
    only one that is neither writable by others nor another user's (its runs could be forged).
    """
    if not path:
        return [], 0
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_NONBLOCK', 0))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return [], 0
        if exc.errno == errno.ELOOP:
            raise DashboardError('the audit log %s is a symbolic link; point migrate_all_audit_log at the real '
                                 'file' % path)
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DashboardError('the audit log %s is not a regular file; point migrate_all_audit_log at the '
                                 'audit log file' % path)
        # a log anyone can write (or another user's) could hold forged runs: the page would show them as ours
        if info.st_mode & stat.S_IWOTH:
            raise DashboardError('the audit log %s is writable by others (mode %04o): anyone could add forged runs '
                                 'to the dashboard; chmod o-w %s' % (path, stat.S_IMODE(info.st_mode), path))
        if info.st_uid not in (os.geteuid(), 0):
            raise DashboardError('the audit log %s belongs to another user (uid %d), who could write forged runs '
                                 'into it; chown it to the user running the play' % (path, info.st_uid))
        start = max(0, info.st_size - max_bytes)
        os.lseek(fd, start, os.SEEK_SET)
        chunks = []
        left = info.st_size - start
        while left > 0:
            chunk = os.read(fd, min(left, 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b''.join(chunks)
    finally:
        os.close(fd)
    lines = data.split(b'\n')
    if start > 0 and lines:
        lines = lines[1:]  # the first line was cut by the start offset
    records, bad = [], 0
    for raw in lines:
        raw = raw.strip()
        if not raw:
            continue
        try:
            record = json.loads(raw.decode('utf-8'))
        except (ValueError, RecursionError):  # a corrupt line, or nesting too deep for the parser
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return records, bad


_RANK = {'refused': 5, 'failed': 4, 'rolled_back': 3, 'restored': 3, 'success': 2, 'unchanged': 1, 'skipped': 0}


def _run_outcome(outcomes):
    """A run's outcome from its services' outcomes: refused > failed > success > unchanged > skipped."""
    outcomes = [o for o in outcomes if o]
    if not outcomes:
        return 'unknown'
    if 'refused' in outcomes:
        return 'refused'
    if any(o in ('failed', 'rolled_back', 'restored') for o in outcomes):
        return 'failed'
    return max(outcomes, key=lambda o: _RANK.get(o, 1))


def _new_run(run_id):
    return {'_key': run_id, 'run_id': _text(run_id, 100), 'started': None, 'time': None, 'action': None,
            'outcome': None, 'user': None, 'host': None, 'confirmation': None, 'error': None, 'services': []}


def _add_record(run, seen, record):
    """Fold one audit record into its ``run``; ``seen``: the run's services by name, in the order of their
    last records."""
    when = record.get('time')
    if isinstance(when, str):
        run['started'] = min(run['started'] or when, when)
        run['time'] = max(run['time'] or when, when)
    for key in ('action', 'user', 'host', 'confirmation'):
        if record.get(key) is not None:
            run[key] = _text(record.get(key), 200)
    if record.get('service'):
        entry = {'name': _text(record['service'], 100)}
        entry.update(_scalars(record, RUN_SERVICE_KEYS))
        for key in ('applied', 'reverted'):
            if isinstance(record.get(key), list):
                entry[key] = [_text(x, 300) for x in record[key][:MAX_LIST]]
        seen.pop(entry['name'], None)
        seen[entry['name']] = entry
    elif record.get('outcome') == 'refused':
        run['error'] = _text(record.get('error'))
        run['refused'] = True


def _finish_run(run, seen):
    """The run with its services and its outcome (see :func:`_run_outcome`)."""
    run['services'] = list(seen.values())
    outcomes = [s.get('outcome') for s in run['services']]
    if run.pop('refused', False):
        outcomes.append('refused')
    run['outcome'] = _run_outcome(outcomes)
    if len(run['services']) > MAX_LIST:  # the outcome counts them all; the page shows the last ones
        run['services_omitted'] = len(run['services']) - MAX_LIST
        run['services'] = run['services'][-MAX_LIST:]
    return run


def runs_document(records, limit=DEFAULT_RUNS, generated_at=None, unreadable_lines=0, audit_log=None):
    """``api/migrations/runs``: the role's runs (audit records sharing a ``run_id``), newest first.

    Each run: run_id, time (its last record), started, action, outcome, user, host, confirmation,
    error (a refused run's reason), services: [{name, outcome, from, to, error, reason, recovery, target}]
    (at most MAX_LIST, the last ones; ``services_omitted`` counts the others).
    Records without a ``run_id`` (a module called on its own, the apply module's step records) are not runs.
    """
    limit = max(1, min(int(limit or DEFAULT_RUNS), MAX_RUNS))
    records = [secrets.mask_data(r) for r in records if isinstance(r, dict)]  # mask first, then cut
    runs = {}
    order = {}  # run_id -> position of its first record (the tie-breaker of equal times)
    services = {}  # run_id -> {service name: entry}, in the order of their last records
    for record in records:
        run_id = record.get('run_id')
        if not run_id or not isinstance(run_id, str):
            continue
        if run_id not in runs:
            runs[run_id] = _new_run(run_id)
            order[run_id] = len(order)
            services[run_id] = {}
        _add_record(runs[run_id], services[run_id], record)
    built = [_finish_run(runs[run_id], services[run_id]) for run_id in order]
    built.sort(key=lambda r: (r['time'] or '', order[r['_key']]), reverse=True)
    for run in built:
        run.pop('_key')
    doc = {
        'generated_at': generated_at or now_iso(),
        'collection_version': COLLECTION_VERSION,
        'limit': limit,
        'runs': built[:limit],
        'unreadable_lines': int(unreadable_lines or 0),
        'audit_log': bool(audit_log),
    }
    return secrets.mask_data(doc)


def _json_bytes(doc):
    return (json.dumps(doc, indent=2, sort_keys=True) + '\n').encode('utf-8')


def _ensure_dir(path):
    """A real directory (created 0755, readable by the web server whatever the umask), never a symlink."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
        parent = os.path.dirname(path)
        if parent and parent != path and not os.path.isdir(parent):
            _ensure_dir(parent)
        try:
            os.mkdir(path, 0o755)
        except OSError as exc2:
            if exc2.errno != errno.EEXIST:
                raise
        else:
            os.chmod(path, 0o755)
        info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise DashboardError('%s is a symbolic link; the dashboard is written only into real directories '
                             '(replace the link with a directory, or point migrate_all_dashboard_dir at the target)'
                             % path)
    if not stat.S_ISDIR(info.st_mode):
        raise DashboardError('%s exists and is not a directory; move it away or choose another '
                             'migrate_all_dashboard_dir' % path)


def publish(directory, status=None, audit_log=None, refresh=DEFAULT_REFRESH, stale_after=DEFAULT_STALE_AFTER,
            runs=DEFAULT_RUNS, generated_at=None):
    """Write the dashboard into ``directory``. Without ``status`` the status document is left as it is.

    Returns ``{'status': path|None, 'runs': path, 'page': path, 'unreadable_lines': n}``.
    """
    if not directory:
        raise DashboardError('no dashboard directory given')
    directory = os.path.abspath(directory)
    refresh = int(refresh)
    stale_after = int(stale_after)
    if refresh < 1:
        raise DashboardError('the dashboard refresh interval must be at least 1 second (got %d)' % refresh)
    if stale_after < 1:
        raise DashboardError('the dashboard stale-data age must be at least 1 second (got %d)' % stale_after)
    generated_at = generated_at or now_iso()
    _ensure_dir(directory)
    for sub in ('api', 'api/migrations', 'monitoring'):
        _ensure_dir(os.path.join(directory, sub))
    written = {'status': None}
    if status is not None:
        path = os.path.join(directory, STATUS_PATH)
        report_mod.write_atomic(path, _json_bytes(status_document(status, generated_at)), 0o644)
        written['status'] = path
    records, bad = read_audit_tail(audit_log)
    path = os.path.join(directory, RUNS_PATH)
    report_mod.write_atomic(path, _json_bytes(runs_document(records, runs, generated_at, bad, audit_log)), 0o644)
    written['runs'] = path
    written['unreadable_lines'] = bad
    path = os.path.join(directory, PAGE_PATH)
    report_mod.write_atomic(path, render_page(refresh, stale_after).encode('utf-8'), 0o644)
    written['page'] = path
    return written
