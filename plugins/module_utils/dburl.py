# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database URLs, read by libpq's own parser, and refused when they cannot be used.

Accepts what libpq's own parser (psycopg2's ``parse_dsn``, else PQconninfoParse through ctypes) accepts: URIs
(``postgresql://``, ``postgres://``, also socket directories, ``options``, multi-host), libpq keyword strings
(``host=... dbname=...``), and SQLAlchemy-style URLs (``postgresql+psycopg2://``). A URL that cannot be
parsed is refused (:class:`UrlError`) with a message that shows none of its userinfo. Every string that leaves
this module for a message goes through :mod:`secrets` (:meth:`DbUrl.scrub`, :attr:`DbUrl.masked`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import ctypes.util
import re

from urllib.parse import quote, urlencode, urlunsplit

from ansible_collections.homelab.migrations.plugins.module_utils import secrets

try:
    import psycopg2
    import psycopg2.extensions
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only without psycopg2
    psycopg2 = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = exc

MASK = secrets.MASK
_SCHEMES = ('postgresql', 'postgres')
_NEON_SUFFIX = '.neon.tech'
_SCHEME_RE = secrets.URL_SCHEME
_KEYWORD_RE = re.compile(r'^\s*[A-Za-z_][A-Za-z0-9_]*\s*=')
# connection keywords kept as DbUrl attributes; every other libpq keyword is a param
_MAIN_KEYS = ('user', 'password', 'host', 'port', 'dbname')
_FORM = 'use postgresql://user:password@host:5432/dbname or a libpq keyword string (host=... dbname=...)'
_ENCODE_HINT = ('percent-encode special characters in the user and password (@ as %40, : as %3A, / as %2F, '
                '? as %3F, # as %23, % as %25, space as %20)')


class UrlError(ValueError):
    """A database URL that cannot be used; the message is already masked (it shows no userinfo)."""


def _refuse(url, why, hint=_ENCODE_HINT):
    """A UrlError naming only the scheme of ``url``: a URL that cannot be parsed may hold its password anywhere."""
    return UrlError('database_url %s cannot be used: %s; %s' % (secrets.scheme_only(url), why, hint))


def _libpq_reason(exc):
    """libpq's parse error without the quoted parts (they repeat the URL, password included)."""
    text = str(exc).replace('invalid dsn:', '').strip().split('"', 1)[0].strip().rstrip(':').strip()
    return text if len(text) >= 8 else 'libpq cannot parse it'


def _parse(url):
    """(conninfo dict from libpq's parser, scheme driver, written password) or UrlError."""
    if not isinstance(url, str) or not url.strip():
        raise UrlError('database_url must be a non-empty string; ' + _FORM)
    match = _SCHEME_RE.match(url)
    written = None
    driver = None
    if match:
        scheme = match.group(1).lower()
        base, _sep, driver = scheme.partition('+')
        if base not in _SCHEMES:
            raise _refuse(url, 'its scheme is %r, not postgresql://, postgres:// or postgresql+psycopg2://'
                          % match.group(1)[:40], _FORM)
        rest = url[match.end():]
        at = rest.find('@')
        if at >= 0:
            if '/' in rest[:at]:
                raise _refuse(url, "a '/' comes before the '@' that ends the user and password")
            if '@' in rest[at + 1:]:
                raise _refuse(url, "it has more than one '@'")
            userinfo = rest[:at]
            if ':' in userinfo:
                written = userinfo.split(':', 1)[1]
        text = 'postgresql://' + rest
    elif _KEYWORD_RE.match(url):
        text = url
    else:
        raise _refuse(url, 'it is not a URL (no "scheme://") nor a libpq keyword string (key=value ...)', _FORM)
    try:
        info = parse_dsn(text)
    except UrlError:
        raise
    except Exception as exc:
        refused = _refuse(url, _libpq_reason(exc))
        # libpq's message quotes the URL (password included): a traceback must not show it as the context
        refused.__suppress_context__ = True
        raise refused
    if match and info.get('password') is None and written is not None:  # pragma: no cover - libpq keeps ':'
        raise _refuse(url, 'libpq found no password where one was written')
    return info, driver or None, written


class _ConninfoOption(ctypes.Structure):
    _fields_ = [('keyword', ctypes.c_char_p), ('envvar', ctypes.c_char_p), ('compiled', ctypes.c_char_p),
                ('val', ctypes.c_char_p), ('label', ctypes.c_char_p), ('dispchar', ctypes.c_char_p),
                ('dispsize', ctypes.c_int)]


def _libpq():
    for name in (ctypes.util.find_library('pq'), 'libpq.so.5', 'libpq.so'):
        if name:
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
    return None


def parse_dsn(text):
    """libpq's own conninfo parser: psycopg2.extensions.parse_dsn, or PQconninfoParse from libpq itself
    (through ctypes) on a host without psycopg2 (homelab_pg_backup works with the client tools alone)."""
    if psycopg2 is not None:
        return psycopg2.extensions.parse_dsn(text)
    lib = _libpq()
    if lib is None:
        raise UrlError('database_url cannot be read: neither psycopg2 nor libpq (libpq5) is installed; install '
                       'python3-psycopg2 or the PostgreSQL client package')
    lib.PQconninfoParse.restype = ctypes.POINTER(_ConninfoOption)
    lib.PQconninfoParse.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.PQconninfoFree.argtypes = [ctypes.POINTER(_ConninfoOption)]
    lib.PQfreemem.argtypes = [ctypes.c_void_p]
    err = ctypes.c_void_p()
    opts = lib.PQconninfoParse(text.encode('utf-8'), ctypes.byref(err))
    if not opts:
        address = err.value
        message = 'libpq cannot parse it'
        if address is not None:
            message = ctypes.string_at(address).decode('utf-8', 'replace')
            lib.PQfreemem(address)
        raise ValueError(message)
    info = {}
    try:
        i = 0
        while opts[i].keyword:
            if opts[i].val is not None:
                info[opts[i].keyword.decode('utf-8')] = opts[i].val.decode('utf-8', 'surrogateescape')
            i += 1
    finally:
        lib.PQconninfoFree(opts)
    return info


def mask_url(url):
    """``url`` (a URL or keyword string) with its password masked; a URL that cannot be parsed shows no
    userinfo. Never raises."""
    try:
        return DbUrl(url).masked
    except UrlError:
        return secrets.scheme_only(url, '<database_url>')
    except Exception:  # pragma: no cover - defensive: never leak on odd input
        return MASK


def url_secrets(url):
    """What secrets.mask needs to mask the password of ``url`` (parsed when possible, else the string)."""
    if not isinstance(url, str) or not url:
        return []
    try:
        return [DbUrl(url), url]
    except Exception:
        return [url]


class DbUrl:
    """A PostgreSQL URL or keyword string, parsed by libpq's own parser (psycopg2's ``parse_dsn``).

    ``host`` and ``port`` hold libpq's values (comma-separated lists for a multi-host URL); ``port`` is an
    int when there is exactly one; ``params`` holds every other libpq keyword (sslmode, options, ...).
    """

    def __init__(self, url):
        info, self.driver, self._written_password = _parse(url)
        self.raw = url
        self.is_uri = bool(_SCHEME_RE.match(url))
        self.password = info.get('password')
        self.user = info.get('user') or None
        self.dbname = info.get('dbname') or None
        self.host = info.get('host') or None
        ports = info.get('port') or ''
        self.ports = [p.strip() for p in ports.split(',')] if ports else []
        for port in self.ports:
            if port and (not port.isdigit() or not 0 < int(port) < 65536):
                raise _refuse(url, 'it has an invalid port (a number from 1 to 65535 is needed)')
        self.port = int(self.ports[0]) if len(self.ports) == 1 and self.ports[0] else None
        if self.is_uri and self.user and ':' in self.user:
            # postgresql://app%3Apassword@host/: the whole userinfo percent-encoded makes the password part of the
            # user name, which every message, the audit log and pg_dump's PGUSER would then show
            raise _refuse(url, "its user name holds a ':' (percent-encoded as %3A), so the password would be read as "
                          "part of the user name; write the ':' between user and password unencoded", _FORM)
        self.params = dict((k, v) for k, v in info.items() if k not in _MAIN_KEYS)
        hosts = self.host.split(',') if self.host else []
        if len(self.ports) > 1 and len(self.ports) != len(hosts):
            raise _refuse(url, 'it names %d hosts but %d ports' % (len(hosts), len(self.ports)), _FORM)

    def conninfo(self, with_password=True, **extra):
        """The libpq keywords of this URL (for psycopg2.connect / make_dsn)."""
        info = dict(self.params)
        for key in ('host', 'dbname', 'user'):
            if getattr(self, key):
                info[key] = getattr(self, key)
        if self.ports:
            info['port'] = ','.join(self.ports)
        if with_password and self.password is not None:
            info['password'] = self.password
        info.update(extra)
        return info

    def secret_pairs(self):
        """(user, password) pairs for secrets.mask: the decoded password and the one written in the URL."""
        pairs = []
        if self.password:
            pairs.append((self.user, self.password))
        if self._written_password and self._written_password != self.password:
            pairs.append((self.user, self._written_password))
        return pairs

    # ------------------------------------------------------------------ text
    @property
    def masked(self):
        """The URL as written, password masked (safe for any message)."""
        return secrets.mask(self.raw, [self])

    def scrub(self, text):
        """``text`` with this URL's password masked in every spelling (see secrets.mask)."""
        if text is None:
            return text
        return secrets.mask(str(text), [self])

    @property
    def is_neon(self):
        hosts = (self.host or '').split(',')
        return bool(self.host) and all(h.strip().lower().rstrip('.').endswith(_NEON_SUFFIX) for h in hosts)

    @property
    def server_key(self):
        """Identity of server+database+user, for connection reuse."""
        return (self.host or '', ','.join(self.ports) or '5432', self.dbname or '', self.user or '',
                tuple(sorted(self.params.items())))

    # ------------------------------------------------------------- consumers
    def dsn(self, with_password=True, **extra):
        """A libpq keyword string (psycopg2's make_dsn) for psycopg2.connect."""
        return psycopg2.extensions.make_dsn(**self.conninfo(with_password=with_password, **extra))

    def libpq_uri(self, with_password=True):
        """A postgresql:// URI libpq (psql, pg_dump) and psycopg2 accept."""
        netloc = ''
        if self.user:
            netloc = quote(self.user, safe='')
            if with_password and self.password is not None:
                netloc += ':' + quote(self.password, safe='')
            netloc += '@'
        params = dict(self.params)
        hosts = self.host.split(',') if self.host else []
        if any(h.startswith('/') for h in hosts) or (len(self.ports) > 1 and not hosts):
            if self.host:
                params['host'] = self.host
            if self.ports:
                params['port'] = ','.join(self.ports)
        else:
            ports = self.ports if len(self.ports) == len(hosts) else (self.ports[:1] * len(hosts) or [])
            items = []
            for i, host in enumerate(hosts or ['']):
                item = '[%s]' % host if ':' in host else quote(host, safe='')
                port = ports[i] if i < len(ports) else (self.ports[0] if self.ports and not hosts else '')
                items.append(item + (':%s' % port if port else ''))
            netloc += ','.join(items)
        path = '/' + quote(self.dbname, safe='') if self.dbname else ''
        return urlunsplit(('postgresql', netloc, path, urlencode(sorted(params.items()), quote_via=quote), ''))

    def sqlalchemy_url(self):
        """The URL an Alembic env.py expects in DATABASE_URL: a URL as the user wrote it, or one built
        from a keyword string."""
        if self.is_uri:
            return self.raw
        return self.libpq_uri()

    def libpq_env(self, passfile=None):
        """Environment variables for libpq tools; the password goes via passfile or PGPASSWORD."""
        env = {}
        for key, value in self.conninfo(with_password=False).items():
            var = LIBPQ_ENV.get(key)
            if var and value is not None:
                env[var] = str(value)
        if self.password is not None:
            if passfile:
                env['PGPASSFILE'] = passfile
            else:
                env['PGPASSWORD'] = self.password
        return env

    def passfile_line(self):
        """One pgpass line matching any host, port, database and user: the file serves this URL only."""
        return '*:*:*:*:%s\n' % (self.password or '').replace('\\', '\\\\').replace(':', '\\:')


# libpq connection keywords and the environment variables libpq tools read them from
LIBPQ_ENV = {
    'host': 'PGHOST', 'hostaddr': 'PGHOSTADDR', 'port': 'PGPORT', 'dbname': 'PGDATABASE', 'user': 'PGUSER',
    'options': 'PGOPTIONS', 'application_name': 'PGAPPNAME', 'sslmode': 'PGSSLMODE',
    'sslrootcert': 'PGSSLROOTCERT', 'sslcert': 'PGSSLCERT', 'sslkey': 'PGSSLKEY', 'sslcrl': 'PGSSLCRL',
    'sslcrldir': 'PGSSLCRLDIR', 'sslsni': 'PGSSLSNI', 'sslcertmode': 'PGSSLCERTMODE',
    'sslnegotiation': 'PGSSLNEGOTIATION', 'sslcompression': 'PGSSLCOMPRESSION',
    'requiressl': 'PGREQUIRESSL', 'gssencmode': 'PGGSSENCMODE', 'gsslib': 'PGGSSLIB',
    'gssdelegation': 'PGGSSDELEGATION', 'krbsrvname': 'PGKRBSRVNAME', 'channel_binding': 'PGCHANNELBINDING',
    'require_auth': 'PGREQUIREAUTH', 'requirepeer': 'PGREQUIREPEER', 'connect_timeout': 'PGCONNECT_TIMEOUT',
    'client_encoding': 'PGCLIENTENCODING', 'target_session_attrs': 'PGTARGETSESSIONATTRS',
    'load_balance_hosts': 'PGLOADBALANCEHOSTS', 'service': 'PGSERVICE',
    'ssl_min_protocol_version': 'PGSSLMINPROTOCOLVERSION', 'ssl_max_protocol_version': 'PGSSLMAXPROTOCOLVERSION',
    'tcp_user_timeout': 'PGTCPUSERTIMEOUT', 'keepalives': 'PGKEEPALIVES',
}
