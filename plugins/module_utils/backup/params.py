# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The arguments of homelab_pg_backup (its argument spec, defaults, checks) and the shape of its result.

Every field of the result is in :func:`result`; the module and DESIGN.md name them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils import connection
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError

STATES = ('present', 'restored', 'pruned')
FORMATS = ('custom', 'plain', 'directory')
BACKUP_MODES = ('auto', 'always', 'never')
CLEAN_MODES = ('objects', 'database')

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


def lock_wait(params):
    """lock_wait_timeout in seconds, at least 1 (0 or less would mean: wait forever)."""
    value = params.get('lock_wait_timeout')
    return 30 if value is None else max(1, int(value))


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


def result(**kw):
    """The module result with every field at its default (nothing done), updated with ``kw``."""
    res = dict(changed=False, path=None, size_bytes=None, sha256=None, format=None, duration_seconds=0.0,
               skipped=False, reason=None, pruned=[])
    res.update(kw)
    return res


def check_keep(params):
    """keep_days and keep_count (days, backups) must be 0 or more; BackupError otherwise."""
    for key in ('keep_days', 'keep_count'):
        value = params.get(key)
        if value is not None and value < 0:
            raise BackupError('%s must be 0 or more, got %d' % (key, value))
