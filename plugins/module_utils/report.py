# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Status report JSON (the dashboard API shape) and node_exporter textfile metrics, written atomically."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import tempfile
import time

from ansible_collections.homelab.migrations.plugins.module_utils import regular_file
from ansible_collections.homelab.migrations.plugins.module_utils import safe_path
from ansible_collections.homelab.migrations.plugins.module_utils import secrets

METRIC_PREFIX = 'homelab_migration_'
LAST_RUN_PREFIX = METRIC_PREFIX + 'last_run'
STATUS_KEYS = ('status', 'tool', 'current_revision', 'latest_revision', 'applied', 'pending',
               'pending_migrations', 'problems', 'lock', 'findings', 'lint')
FINDING_SEVERITIES = ('error', 'warning', 'info')


def write_atomic(path, data, mode=0o644):
    """Write ``data`` (bytes) to ``path`` through a temp file in the same directory and a rename.

    Readers (the dashboard, node_exporter) see the old file or the new one, never a partial one.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    # another user who can write the directory could swap the file (or a symlink put there could aim it elsewhere)
    safe_path.check_parent(path, 'report file')
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on a directory
        pass
    return path


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def status_report(status, generated_at=None):
    """The status module's result reduced to the dashboard API shape (plus ``generated_at``)."""
    status = status or {}
    services = {}
    for name, info in sorted((status.get('services') or {}).items()):
        services[name] = dict((key, (info or {}).get(key)) for key in STATUS_KEYS)
        if services[name]['findings'] is None:
            services[name]['findings'] = []
    return secrets.mask_data({
        'success': bool(status.get('success')),
        'overall_status': status.get('overall_status', 'error'),
        'total_pending': int(status.get('total_pending') or 0),
        'services': services,
        'generated_at': generated_at or now_iso(),
    })


def write_status_report(path, status, generated_at=None):
    report = status_report(status, generated_at)
    write_atomic(path, (json.dumps(report, indent=2, sort_keys=True) + '\n').encode('utf-8'), 0o644)
    return report


def _label(value):
    return str(value).replace('\\', '\\\\').replace('\n', '\\n').replace('"', '\\"')


def _labels(**labels):
    return '{%s}' % ','.join('%s="%s"' % (k, _label(v)) for k, v in sorted(labels.items()) if v is not None)


def _num(value):
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, float):
        return repr(value)
    return str(int(value or 0))


class _Metrics(object):
    def __init__(self):
        self.lines = []
        self.declared = set()

    def add(self, name, value, help_text, labels=None, kind='gauge'):
        if name not in self.declared:
            self.declared.add(name)
            self.lines.append('# HELP %s %s' % (name, help_text))
            self.lines.append('# TYPE %s %s' % (name, kind))
        self.lines.append('%s%s %s' % (name, _labels(**(labels or {})) if labels else '', _num(value)))


def previous_last_run(text):
    """The last-run lines (with their HELP/TYPE) of an existing textfile, to keep across status-only writes."""
    kept = []
    for line in (text or '').splitlines():
        body = line[len('# HELP '):] if line.startswith('# HELP ') else (
            line[len('# TYPE '):] if line.startswith('# TYPE ') else line)
        if body.startswith(LAST_RUN_PREFIX):
            kept.append(line)
    return kept


def prometheus_text(status, run=None, previous=None, now=None):
    """node_exporter textfile metrics.

    status    the status module's result (pending per service, status per service)
    run       optional {action, outcome, services: {name: outcome}} of the run that just ended;
              without it the last-run lines of ``previous`` (the old file's text) are kept
    """
    now = time.time() if now is None else now
    metrics = _Metrics()
    status = status or {}
    for name, info in sorted((status.get('services') or {}).items()):
        info = info or {}
        labels = {'service': name, 'tool': info.get('tool') or 'unknown'}
        metrics.add(METRIC_PREFIX + 'pending', info.get('pending') or 0,
                    'Migrations not yet applied, per service.', labels)
    for name, info in sorted((status.get('services') or {}).items()):
        info = info or {}
        labels = {'service': name, 'tool': info.get('tool') or 'unknown'}
        metrics.add(METRIC_PREFIX + 'applied', info.get('applied') or 0,
                    'Migrations applied, per service.', labels)
    for name, info in sorted((status.get('services') or {}).items()):
        metrics.add(METRIC_PREFIX + 'status_error', (info or {}).get('status') == 'error',
                    '1 when the service status could not be read cleanly (see the status report problems).',
                    {'service': name})
    for name, info in sorted((status.get('services') or {}).items()):
        found = (info or {}).get('findings') or []
        for severity in FINDING_SEVERITIES:
            metrics.add(METRIC_PREFIX + 'findings', sum(1 for f in found if (f or {}).get('severity') == severity),
                        'Pre-flight findings about the pending migrations, per service and severity (error: the '
                        'run as planned will certainly fail).', {'service': name, 'severity': severity})
    metrics.add(METRIC_PREFIX + 'total_pending', status.get('total_pending') or 0,
                'Migrations not yet applied, all services.')
    metrics.add(METRIC_PREFIX + 'status_timestamp_seconds', float(now),
                'Unix time the status was read.')
    lines = list(metrics.lines)
    if run:
        last = _Metrics()
        action = run.get('action') or 'apply'
        last.add(LAST_RUN_PREFIX + '_timestamp_seconds', float(run.get('time') or now),
                 'Unix time the last migrate_all run (not check mode) ended.', {'action': action})
        last.add(LAST_RUN_PREFIX + '_success', run.get('outcome') == 'success',
                 '1 when the last migrate_all run succeeded for every service.', {'action': action})
        for name, outcome in sorted((run.get('services') or {}).items()):
            last.add(LAST_RUN_PREFIX + '_service_outcome', 1,
                     'Outcome of each service in the last migrate_all run (the outcome label).',
                     {'service': name, 'outcome': outcome})
        lines.extend(last.lines)
    else:
        lines.extend(previous_last_run(previous))
    return '\n'.join(lines) + '\n'


def write_prometheus_textfile(path, status, run=None, now=None):
    previous = None
    try:
        # only a regular file, capped: a FIFO there waited forever, a link to /dev/zero read until memory ran out
        previous = regular_file.read_regular(path, regular_file.CONFIG_LIMIT).decode('utf-8', 'replace')
    except (IOError, OSError):
        previous = None
    text = prometheus_text(status, run=run, previous=previous, now=now)
    write_atomic(path, text.encode('utf-8'), 0o644)
    return text
