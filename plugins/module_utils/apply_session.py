# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Before and around the apply's database session.

The option checks made before connecting (lock_timeout / statement_timeout durations, the audit log's
writability), the session's settings (read only in check mode, client_connection_check_interval on
PostgreSQL 14+, lock_timeout, statement_timeout) and the child tool's session options (PGOPTIONS).
Failures are apply_result.ApplyFailure with ``code: bad_config``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.homelab.migrations.plugins.module_utils import audit as audit_mod
from ansible_collections.homelab.migrations.plugins.module_utils import durations
from ansible_collections.homelab.migrations.plugins.module_utils.apply_result import ApplyFailure

# a killed module must not leave its backend running a long statement with the lock held (PostgreSQL 14+)
CLIENT_CHECK_INTERVAL_MS = '1000'


def check_duration(name, value):
    """lock_timeout / statement_timeout: a PostgreSQL duration (V(5s), V(500ms), V(2min), V(0)), white space
    removed (durations.compact); None when unset."""
    if value is None:
        return None
    compact = durations.compact(value)
    if compact is None:
        raise ApplyFailure('%s %r is not a PostgreSQL duration; use a number with an optional unit '
                           '(us, ms, s, min, h, d), for example 5s or 500ms' % (name, str(value).strip()),
                           code='bad_config')
    return compact


def check_audit_log(path):
    """Fail before touching anything when the audit log cannot be written (audit.check_writable)."""
    try:
        audit_mod.check_writable(path, done='nothing was changed')
    except audit_mod.AuditLogError as exc:
        raise ApplyFailure(str(exc), code='apply_failed' if exc.unsafe else 'bad_config')


def session_settings(conn, read_only, lock_timeout, statement_timeout):
    """Set up the run's session; ApplyFailure (bad_config) when the server refuses a duration."""
    with conn.cursor() as cur:
        if read_only:
            cur.execute('SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY')
        if conn.server_version >= 140000:
            try:
                cur.execute('SELECT pg_catalog.set_config(%s, %s, false)',
                            ('client_connection_check_interval', CLIENT_CHECK_INTERVAL_MS))
            except Exception:  # not supported on this platform: harmless
                conn.rollback()
        for name, value in (('lock_timeout', lock_timeout), ('statement_timeout', statement_timeout)):
            if value is None:
                continue
            try:
                cur.execute('SELECT pg_catalog.set_config(%s, %s, false)', (name, value))
            except Exception as exc:
                raise ApplyFailure('%s %r was refused by the server: %s; use a PostgreSQL duration such as 5s'
                                   % (name, value, ' '.join(str(exc).split())), code='bad_config')


def child_session_options(conn, options):
    """``options`` for the adapter's apply, with ``client_connection_check_interval`` for the sessions of child tools.

    A killed run kills its migrator (the adapter's job); this makes the migrator's backend notice within a second
    even in the middle of a long statement, roll back and let go of its locks, instead of running on for minutes.
    Only for PostgreSQL 14+ (older servers refuse the unknown setting). The adapter hands it to its child's own
    environment (the alembic adapter: PGOPTIONS); this process's ``os.environ`` is never changed.
    """
    try:
        supported = conn.server_version >= 140000
    except Exception:
        supported = False
    return dict(options, client_connection_check_interval=CLIENT_CHECK_INTERVAL_MS) if supported else dict(options)
