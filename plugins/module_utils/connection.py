# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database URLs and connections.

Accepts libpq URIs (``postgresql://``, ``postgres://``) and SQLAlchemy-style
URLs (``postgresql+psycopg2://``).  Every string that leaves this module for a
message goes through :func:`mask_url` / :meth:`DbUrl.scrub` so the password never
reaches a log.  Passwords go to child processes through the environment or a
0600 passfile, never through argv.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import tempfile

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

try:
    import psycopg2
    import psycopg2.extensions
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only without psycopg2
    psycopg2 = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = exc

MASK = '********'
DEFAULT_CONNECT_TIMEOUT = 10
_SCHEMES = ('postgresql', 'postgres')
_NEON_SUFFIX = '.neon.tech'
# query parameters that libpq understands and that are safe to keep; the rest
# (SQLAlchemy driver options) are dropped when talking to libpq tools.
_SECRET_QUERY_KEYS = ('password', 'sslpassword')


class ConnectError(Exception):
    """A database could not be reached; the message is already masked."""


class UrlError(ValueError):
    """A database URL that cannot be used; the message is already masked."""


def _split(url):
    if not isinstance(url, str) or not url:
        raise UrlError('database_url must be a non-empty string like postgresql://user:password@host:5432/dbname')
    if '://' not in url:
        raise UrlError('database_url %s is not a URL (no "://"); use postgresql://user:password@host:5432/dbname'
                       % mask_url(url))
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    base = scheme.split('+', 1)[0]
    if base not in _SCHEMES:
        raise UrlError(
            'database_url %s has scheme %r; use postgresql://, postgres:// or postgresql+psycopg2://'
            % (mask_url(url), parts.scheme))
    return parts


def mask_url(url):
    """Return ``url`` with any password replaced by a mask. Never raises."""
    if not isinstance(url, str):
        return '<database_url>'
    if '//' not in url and ('@' in url or ':' in url):
        # not a URL (no scheme://): a mistyped one such as user:secret@host/db would show its password
        return MASK
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if '@' in netloc:
            userinfo, hostinfo = netloc.rsplit('@', 1)
            if ':' in userinfo:
                userinfo = userinfo.split(':', 1)[0] + ':' + MASK
            netloc = userinfo + '@' + hostinfo
        query = parts.query
        if query:
            pairs = []
            for key, value in parse_qsl(query, keep_blank_values=True):
                pairs.append((key, MASK if key.lower() in _SECRET_QUERY_KEYS else value))
            query = urlencode(pairs, safe='*')
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except Exception:  # pragma: no cover - defensive: never leak on odd input
        return re.sub(r'//[^@/]*@', '//' + MASK + '@', url)


class DbUrl:
    """A parsed PostgreSQL URL."""

    def __init__(self, url):
        parts = _split(url)
        self.raw = url
        self.driver = parts.scheme.split('+', 1)[1] if '+' in parts.scheme else None
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password is not None else None
        try:
            self.port = parts.port
        except ValueError:
            raise UrlError('database_url %s has an invalid port' % mask_url(url))
        self.host = unquote(parts.hostname) if parts.hostname else None
        self.dbname = unquote(parts.path[1:]) if parts.path and len(parts.path) > 1 else None
        self.params = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key.lower() in _SECRET_QUERY_KEYS and key.lower() == 'password':
                self.password = value
                continue
            self.params[key] = value
        # a unix socket directory may be given as ?host=/var/run/postgresql
        if not self.host and self.params.get('host'):
            self.host = self.params.pop('host')
        if 'port' in self.params and self.port is None:
            try:
                self.port = int(self.params.pop('port'))
            except ValueError:
                raise UrlError('database_url %s has an invalid port' % mask_url(url))
        for key in ('user', 'dbname'):
            if key in self.params and getattr(self, key) is None:
                setattr(self, key, self.params.pop(key))

    # ------------------------------------------------------------------ text
    @property
    def masked(self):
        return mask_url(self.raw)

    def scrub(self, text):
        """Remove the password (raw and URL-encoded) from any text."""
        if text is None:
            return text
        text = str(text)
        # the whole URL first: replacing the password inside it first would leave the rest unmatched
        # (and a URL with a second password in its query would keep the first one)
        if self.raw:
            text = text.replace(self.raw, self.masked)
        if self.password:
            for form in (self.password, quote(self.password, safe=''), quote(self.password)):
                if form:
                    text = text.replace(form, MASK)
        return text

    @property
    def is_neon(self):
        return bool(self.host) and self.host.lower().rstrip('.').endswith(_NEON_SUFFIX)

    @property
    def server_key(self):
        """Identity of server+database+user, for connection reuse."""
        return (self.host or '', self.port or 5432, self.dbname or '', self.user or '',
                tuple(sorted(self.params.items())))

    # ------------------------------------------------------------- consumers
    def libpq_uri(self, with_password=True):
        """A URI libpq (psql, pg_dump) and psycopg2 accept."""
        netloc = ''
        if self.user:
            netloc = quote(self.user, safe='')
            if with_password and self.password is not None:
                netloc += ':' + quote(self.password, safe='')
            netloc += '@'
        host = self.host or ''
        if host.startswith('/'):
            params = dict(self.params, host=host)
            host = ''
        else:
            params = dict(self.params)
            if ':' in host:
                host = '[%s]' % host
        netloc += quote(host, safe='[]:')
        if self.port:
            netloc += ':%d' % self.port
        path = '/' + quote(self.dbname, safe='') if self.dbname else ''
        return urlunsplit(('postgresql', netloc, path, urlencode(sorted(params.items())), ''))

    def sqlalchemy_url(self):
        """The URL an Alembic env.py expects in DATABASE_URL (keeps the original form)."""
        return self.raw

    def libpq_env(self, passfile=None):
        """Environment variables for libpq tools; the password goes via passfile or PGPASSWORD."""
        env = {}
        if self.host:
            env['PGHOST'] = self.host
        if self.port:
            env['PGPORT'] = str(self.port)
        if self.user:
            env['PGUSER'] = self.user
        if self.dbname:
            env['PGDATABASE'] = self.dbname
        mapping = {'sslmode': 'PGSSLMODE', 'sslrootcert': 'PGSSLROOTCERT', 'sslcert': 'PGSSLCERT',
                   'sslkey': 'PGSSLKEY', 'connect_timeout': 'PGCONNECT_TIMEOUT', 'options': 'PGOPTIONS',
                   'application_name': 'PGAPPNAME', 'target_session_attrs': 'PGTARGETSESSIONATTRS'}
        for key, var in mapping.items():
            if key in self.params:
                env[var] = self.params[key]
        if self.password is not None:
            if passfile:
                env['PGPASSFILE'] = passfile
            else:
                env['PGPASSWORD'] = self.password
        return env

    def write_passfile(self, directory=None):
        """Write a 0600 passfile for this URL; the caller removes it (see :class:`PassFile`)."""
        fd, path = tempfile.mkstemp(prefix='.homelab-pgpass-', dir=directory)
        try:
            os.fchmod(fd, 0o600)

            def esc(value):
                return str(value if value is not None else '*').replace('\\', '\\\\').replace(':', '\\:')
            line = ':'.join([esc(self.host or '*'), esc(self.port or '*'), '*', esc(self.user or '*'),
                             esc(self.password or '')])
            os.write(fd, (line + '\n').encode('utf-8'))
        finally:
            os.close(fd)
        return path


class PassFile:
    """Context manager: a 0600 passfile that is removed afterwards."""

    def __init__(self, dburl, directory=None):
        self.dburl = dburl
        self.directory = directory
        self.path = None

    def __enter__(self):
        if self.dburl.password is not None:
            self.path = self.dburl.write_passfile(self.directory)
        return self

    def env(self):
        return self.dburl.libpq_env(passfile=self.path)

    def __exit__(self, *exc):
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        return False


def application_name(service):
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
        conn = psycopg2.connect(dburl.libpq_uri(), **kwargs)
    except psycopg2.Error as exc:
        raise ConnectError(describe_connect_error(dburl, exc))
    conn.autocommit = autocommit
    return conn


def describe_connect_error(dburl, exc):
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
