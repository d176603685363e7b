# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connections to PostgreSQL (psycopg2): connect with a masked error, a pool per module run, and whether an
error means the session is gone.

URLs are read and refused in :mod:`dburl`; passwords for child processes are in :mod:`passfile`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils.dburl import HAS_PSYCOPG2, DbUrl, psycopg2

DEFAULT_CONNECT_TIMEOUT = 10
# SQLSTATE classes of a session that is gone: 08 connection exception, 57P operator intervention (admin shutdown,
# crash shutdown, cannot connect now, database dropped)
_LOST_SQLSTATE_PREFIXES = ('08', '57P')


class ConnectError(Exception):
    """A database could not be reached; the message is already masked."""


def application_name(service):
    """The application_name of this collection's sessions for ``service`` (at most 63 characters, PostgreSQL's
    NAMEDATALEN - 1), so pg_stat_activity and a blocker message tell who it is."""
    return ('homelab.migrations:%s' % service)[:63]


def connect(dburl, service=None, connect_timeout=DEFAULT_CONNECT_TIMEOUT, autocommit=True):
    """Open a psycopg2 connection. Raises :class:`ConnectError` with a masked message."""
    if not HAS_PSYCOPG2:
        raise ConnectError('the Python library psycopg2 is required (pip install psycopg2-binary)')
    if not isinstance(dburl, DbUrl):
        dburl = DbUrl(dburl)
    kwargs = {'connect_timeout': int(connect_timeout)}
    if service:
        kwargs['application_name'] = application_name(service)
    try:
        conn = psycopg2.connect(dburl.dsn(**kwargs))
    except psycopg2.Error as exc:
        raise ConnectError(describe_connect_error(dburl, exc))
    conn.autocommit = autocommit
    return conn


def describe_connect_error(dburl, exc):
    """'cannot connect to <masked URL>: <libpq's message, masked> (<what to check>)'."""
    text = dburl.scrub(str(exc).strip()) or exc.__class__.__name__
    text = ' '.join(text.split())
    hint = 'check that the server is running and reachable, and the host, port and database in the URL'
    low = text.lower()
    if 'password authentication failed' in low or 'no password supplied' in low:
        hint = 'check the user and password in database_url'
    elif 'does not exist' in low and 'database' in low:
        hint = 'create the database first or fix the database name in database_url'
    elif 'timeout' in low:
        hint = 'the server did not answer in time; check the host, port and firewall'
    return 'cannot connect to %s: %s (%s)' % (dburl.masked, text, hint)


class ConnectionPool:
    """One connection per distinct server+database+user, for a module run."""

    def __init__(self, connect_timeout=DEFAULT_CONNECT_TIMEOUT, application=None):
        self.connect_timeout = connect_timeout
        self.application = application
        self._conns = {}
        self._errors = {}

    def get(self, dburl, service=None):
        if not isinstance(dburl, DbUrl):
            dburl = DbUrl(dburl)
        key = dburl.server_key
        if key in self._errors:
            raise ConnectError(self._errors[key])
        conn = self._conns.get(key)
        if conn is None or conn.closed:
            try:
                conn = connect(dburl, service=self.application or service, connect_timeout=self.connect_timeout)
            except ConnectError as exc:
                self._errors[key] = str(exc)
                raise
            self._conns[key] = conn
        return conn

    def close(self):
        for conn in self._conns.values():
            try:
                conn.close()
            except Exception:
                pass
        self._conns = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def quote_ident(name):
    """Quote an SQL identifier (schema/table names from the service spec)."""
    if not isinstance(name, str) or not name or '\x00' in name:
        raise ValueError('invalid SQL identifier %r' % (name,))
    return '"' + name.replace('"', '""') + '"'


def is_connection_lost(exc, conn=None):
    """True when ``exc`` means the session is gone (server down or restarting, backend terminated, network):
    ``conn`` (when given) is closed, the SQLSTATE is of class 08 or 57P, or psycopg2 raised an OperationalError
    or InterfaceError without a SQLSTATE (the connection broke before the server said anything)."""
    try:
        if conn is not None and conn.closed:
            return True
    except Exception:
        pass
    code = getattr(exc, 'pgcode', None) or ''
    if code.startswith(_LOST_SQLSTATE_PREFIXES):
        return True
    return bool(HAS_PSYCOPG2 and isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and not code)


def rollback_quietly(conn):
    """Roll back the open transaction of ``conn`` after a failed read, so the session can go on; never raises
    (a closed or autocommit connection is left as it is)."""
    try:
        if not conn.closed and not conn.autocommit:
            conn.rollback()
    except Exception:
        pass
