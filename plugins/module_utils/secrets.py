# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one masking function of the collection.

Every module, filter and report masks text through :func:`mask` (and :func:`mask_data` for nested
results, :func:`shorten` to mask first and then cut). A secret is masked in every spelling a tool may
print it: raw; percent-encoded (upper or lower case hex, ``+`` for spaces); as SQLAlchemy renders it;
``%%``-doubled as config files (configparser, alembic.ini) need; JSON- and repr-escaped; inside an HTTP
basic-auth header (base64 of ``user:password``). Independently of known secrets, the userinfo of any
``scheme://user:password@`` and any ``password=...`` keyword value is masked.

Secrets are given per call (no registry of secrets; :func:`spellings` only memoises its result): a password string,
a ``(user, password)`` pair, a URL string (its userinfo is taken apart the ways parsers disagree on), or any object
with ``user`` and ``password`` attributes (``connection.DbUrl``). SQL's ``PASSWORD '...'`` literal (a migration
creating a role, quoted back by PostgreSQL's error) is masked too. An http(s) URL given as a secret (a health
check) also has its query string, fragment and credential-named query values masked (``?token=...``).

Three variants for where the text goes: :func:`mask` with ``queries`` (a published page: the query and fragment of
every http(s) URL), :func:`mask_sql` (a statement shown in a finding: secret literals become ``'********'`` so it
still reads as SQL), :func:`scheme_only` (a URL that cannot be parsed: ``scheme://********``), :func:`cut_urls`
(an audit record: every URL but http(s) ones cut to ``scheme://...``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import functools
import json
import re

from urllib.parse import parse_qsl, quote, quote_plus, unquote, unquote_plus, urlsplit

MASK = '********'
# a masked SQL string constant: the statement around it still reads as SQL
MASKED_LITERAL = "'%s'" % MASK
# a secret shorter than this is not masked as a bare substring (it would garble every message); the
# URL and keyword patterns below still mask it where it stands as a password.
MIN_SECRET_LEN = 3

# a spelling shorter than this is masked where it stands alone, not inside a longer name or path: a weak
# password ('bot', 'homelab') is part of service names, paths and revisions, where masking it would break them
# and show the reader the password (stream-********); it is still masked as a URL's or a keyword's password
WEAK_LEN = 8
_PERCENT = re.compile(r'%[0-9A-Fa-f]{2}')
# scheme://user:password@ : the password runs to the last '@' of the token (an unencoded '@' in a
# password must not leave its tail); a token ends at white space or a quote.
_URL_USERINFO = re.compile(r'''(?<![A-Za-z0-9+.-])([A-Za-z0-9+.-]*://)([^\s:/@"'<>]*):[^\s"'<>]*@''')
# password=... (conninfo keywords, query parameters, JSON keys, PGPASSWORD=...)
_KEYWORD_PASSWORD = re.compile(
    r'''(?i)((?:ssl)?password["']?\s*[=:]\s*)('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|(?:\\.|\\$|[^\s'"&,;)}\]\\])+)''')

# SQL's PASSWORD 'literal' (CREATE/ALTER ROLE ... [ENCRYPTED] PASSWORD '...', E'...', $$...$$): PostgreSQL quotes
# the failing statement in its error (LINE 1: ...), which may cut the literal before its closing quote
_SQL_PASSWORD = re.compile(
    r'''(?i)(\bpassword\s+)(E'(?:[^'\\\n]|\\.|'')*'?|'(?:[^'\n]|'')*'?|(\$[A-Za-z_0-9]*\$).*?(?:\3|$))''',
    re.MULTILINE)


# the query and fragment of an http(s) URL (a health check's ?token=): never published, whatever wrote the text
_URL_QUERY = re.compile(r'''(?i)(https?://[^\s"'<>?#]*)[?#][^\s"'<>]*''')
# the scheme of a URL ('postgresql+psycopg2://'): all that is shown of a URL that cannot be parsed
URL_SCHEME = re.compile(r'^([A-Za-z][A-Za-z0-9+.-]*)://')
# a URL in free text: its scheme, then up to white space or a quote
_ANY_URL = re.compile(r"\b([a-z][a-z0-9+.-]*)://(?=[^\s,;()'\"<>])[^\s'\"<>]+", re.I)


def _lower_hex(text):
    return _PERCENT.sub(lambda m: m.group(0).lower(), text)


# a query parameter of an http(s) URL whose name says it carries a credential (?token=, ?api_key=, ?sig=)
_CREDENTIAL_PARAM = re.compile(r'(?i)(pass|secret|token|key|auth|sig|cred|session)')


def url_query_secrets(url):
    """What an http(s) URL (a health check) may carry a credential in besides its userinfo: the whole query
    string, the fragment, and each value of a parameter named like a credential (``?access_token=...``)."""
    if not isinstance(url, str) or not re.match(r'(?i)https?://', url.strip()):
        return []
    try:
        parts = urlsplit(url.strip())
        values = [v for k, v in parse_qsl(parts.query) if _CREDENTIAL_PARAM.search(k)]
    except ValueError:
        return []
    return [chunk for chunk in [parts.query, parts.fragment] + values if chunk]


def url_userinfo_candidates(url):
    """(user, password) pairs a URL string may hold, split at the first and at the last '@'."""
    if not isinstance(url, str) or '://' not in url:
        return []
    rest = url.split('://', 1)[1]
    rest = re.split(r'[\s"\'<>]', rest, maxsplit=1)[0]
    pairs = []
    for at in (rest.find('@'), rest.rfind('@')):
        if at <= 0:
            continue
        userinfo = rest[:at]
        if ':' in userinfo:
            user, password = userinfo.split(':', 1)
            pairs.append((user, password))
    return pairs


def _pairs(secrets):
    """Normalise the ``secrets`` argument to a list of (user, password) pairs (user may be None)."""
    if secrets is None:
        return []
    if isinstance(secrets, (str, tuple)) or hasattr(secrets, 'password'):
        secrets = [secrets]
    pairs = []
    for item in secrets:
        if item is None:
            continue
        if isinstance(item, tuple):
            pairs.append((item[0] if len(item) > 1 else None, item[-1]))
        elif hasattr(item, 'secret_pairs'):
            pairs.extend(item.secret_pairs())
        elif hasattr(item, 'password'):
            pairs.append((getattr(item, 'user', None), item.password))
        elif isinstance(item, str) and '://' in item:
            for user, password in url_userinfo_candidates(item):
                pairs.append((user, password))
                pairs.extend((user, p) for p in _decoded(password))
            for chunk in url_query_secrets(item):
                pairs.append((None, chunk))
                pairs.extend((None, p) for p in _decoded(chunk))
        elif isinstance(item, str):
            pairs.append((None, item))
    return [(u, p) for u, p in pairs if isinstance(p, str) and p]


def _decoded(text):
    return set(v for v in (unquote(text), unquote_plus(text)) if v and v != text)


def spellings(password, user=None):
    """Every spelling of ``password`` a tool may print (a set of strings, none shorter than MIN_SECRET_LEN)."""
    if not isinstance(password, str) or len(password) < MIN_SECRET_LEN:
        return set()
    if not isinstance(user, (str, type(None))):
        return set(_spellings(password, user))
    return set(_cached_spellings(password, user))


@functools.lru_cache(maxsize=32)
def _cached_spellings(password, user):
    """:func:`_spellings`, computed once per process for each (password, user): a module masks every message
    with the same few secrets (about 0.2 ms each time otherwise, dozens of times per run)."""
    return frozenset(_spellings(password, user))


def _spellings(password, user):
    forms = {password}
    # as libpq keyword strings (host=... password=...) and pgpass lines write it: a backslash before each
    # backslash and quote (quoted value), also before white space (unquoted value), before ':' (pgpass)
    forms.add(re.sub(r"([\\'])", r'\\\1', password))
    forms.add(re.sub(r"([\\'\s])", r'\\\1', password))
    forms.add(password.replace('\\', '\\\\').replace(':', '\\:'))
    for safe in ('', '/', ' +', "!$&'()*+,;=", "!$&'()*+,;=:"):
        forms.add(quote(password, safe=safe))
    forms.add(quote_plus(password))
    forms |= set(_lower_hex(f) for f in forms)
    forms |= set(f.replace('%', '%%') for f in forms)
    escaped = set()
    for form in forms:
        for enc in (json.dumps(form)[1:-1], json.dumps(form, ensure_ascii=False)[1:-1], repr(form)[1:-1],
                    json.dumps(json.dumps(form))[3:-3]):
            escaped.add(enc)
    if any(ord(c) > 126 for c in password):
        # a non-ASCII password as Python prints bytes (b'\\xc3\\xbc'), ascii() / backslashreplace (\\xfc), a tool
        # that decodes UTF-8 as Latin-1, or one that replaces what its encoding lacks with '?'
        for form in forms:
            data = form.encode('utf-8', 'surrogateescape')
            escaped.update((repr(data)[2:-1], ascii(form)[1:-1], data.decode('latin-1'),
                            form.encode('ascii', 'replace').decode('ascii'),
                            form.encode('latin-1', 'replace').decode('latin-1')))
    forms |= escaped
    if user:
        # HTTP basic auth (a health check URL with credentials): base64 of user:password
        forms.add(base64.b64encode(('%s:%s' % (user, password)).encode('utf-8')).decode('ascii'))
    return set(f for f in forms if f and len(f) >= MIN_SECRET_LEN)


def all_spellings(secrets):
    """The union of :func:`spellings` over ``secrets`` (for ``AnsibleModule.no_log_values``)."""
    forms = set()
    for user, password in _pairs(secrets):
        forms |= spellings(password, user)
    return forms


def mask(text, secrets=None, keep=(), queries=False):
    """``text`` with every spelling of every secret, every URL userinfo password and every
    ``password=`` value replaced by MASK; with ``queries`` also the query string and fragment of every
    http(s) URL (``https://host/health?********``: what a published page shows). ``keep``: exact strings
    (see :func:`exact_strings`) in which a known secret is left alone. Never raises; non-strings other than
    bytes come back as they are.
    """
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    if not isinstance(text, str):
        return text
    try:
        text = _mask_spans(text, _spans(text, all_spellings(secrets), keep))
    except Exception:  # pragma: no cover - never let masking itself leak or fail
        return MASK
    return _URL_QUERY.sub(lambda m: m.group(1) + '?' + MASK, text) if queries else text


def mask_sql(sql, spans=()):
    """``sql`` with each of ``spans`` [(start, end)] (string constants a lexer found to carry a secret) and
    each ``PASSWORD '...'`` constant replaced by MASKED_LITERAL: ``CREATE ROLE r PASSWORD '********'``."""
    found = list(spans) + [(m.start(2), m.end(2)) for m in _SQL_PASSWORD.finditer(sql)]
    return _mask_spans(sql, found, MASKED_LITERAL)


def scheme_only(url, other=MASK):
    """What may be shown of a URL that cannot be parsed, whose password may stand anywhere in it:
    ``scheme://********``, MASK without a scheme, ``other`` for a value that is no string."""
    if not isinstance(url, str):
        return other
    match = URL_SCHEME.match(url)
    return '%s://%s' % (match.group(1), MASK) if match else MASK


def cut_urls(text, keep=('http', 'https')):
    """``text`` masked (:func:`mask`), then every URL whose scheme is not in ``keep`` cut to ``scheme://...``:
    a record that names no database, not even without its password (health check URLs stay)."""
    text = mask(text)
    return _ANY_URL.sub(lambda m: m.group(0) if m.group(1).lower() in keep else m.group(1) + '://...', text)


def _spans(text, forms, keep=()):
    """(start, end) of every occurrence of every form, URL userinfo password and ``password=`` value, all
    found in the original ``text``: one rule's replacement cannot hide what another rule would have found
    (a secret URL fragment masked first used to take the '@' the userinfo rule needs)."""
    spans = []
    kept = []  # where the exact strings ``keep`` stand: a known secret inside one of them is left alone
    for word in keep:
        start = text.find(word) if word else -1
        while start >= 0:
            kept.append((start, start + len(word)))
            start = text.find(word, start + 1)
    for form in forms:
        start = text.find(form)
        while start >= 0:
            stop = start + len(form)
            inside = len(form) < WEAK_LEN and (_ident(text, start - 1, -1) or _ident(text, stop, 1))
            if not inside and not any(a <= start and stop <= b and (a, b) != (start, stop) for a, b in kept):
                spans.append((start, stop))
            start = text.find(form, start + 1)
    for m in _URL_USERINFO.finditer(text):
        spans.append((m.end(2) + 1, m.end() - 1))
    for m in _KEYWORD_PASSWORD.finditer(text):
        spans.append((m.start(2), m.end(2)))
    for m in _SQL_PASSWORD.finditer(text):
        spans.append((m.start(2), m.end(2)))
    return spans


def _ident(text, index, step):
    """Whether text[index] continues a name or path (a letter, digit or '_', or one of '-./' with a letter or
    digit beyond it: 'stream-bot', 'x.dump', but not the full stop or dash that ends a sentence)."""
    if not 0 <= index < len(text):
        return False
    char = text[index]
    if char.isalnum() or char == '_':
        return True
    beyond = index + step
    return char in '-./' and 0 <= beyond < len(text) and (text[beyond].isalnum() or text[beyond] == '_')


def _mask_spans(text, spans, replacement=MASK):
    """``text`` with each run of overlapping or touching spans replaced by one ``replacement``."""
    out = []
    pos = 0
    end = -1
    for start, stop in sorted(s for s in spans if s[1] > s[0]):
        if start <= end:
            end = max(end, stop)
            continue
        if end >= 0:
            out.append(replacement)
            pos = end
        out.append(text[pos:start])
        end = stop
    if end >= 0:
        out.append(replacement)
        pos = end
    out.append(text[pos:])
    return ''.join(out)


def mask_data(value, secrets=None):
    """:func:`mask` applied to every string of a nested dict/list (keys included)."""
    if isinstance(value, dict):
        return dict((mask(k, secrets), mask_data(v, secrets)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [mask_data(v, secrets) for v in value]
    if isinstance(value, (str, bytes)):
        return mask(value, secrets)
    return value


# Result fields a module builds from non-secret data (paths, names, revisions, codes) that callers act on: the
# role restores the backup at ``path``, goes back to ``from_revision``, looks services up by name. A weak
# password that happens to be part of them ('homelab' in /var/backups/homelab-migrations, 'bot' in stream-bot,
# 'cafe' in a revision id) must not be masked there: the run would break, and '********-migrations' would
# tell the reader the password. Free text (messages, errors, output, SQL) is masked in full.
EXACT_KEYS = frozenset((
    'path', 'dest', 'service', 'name', 'tool', 'format', 'sha256', 'from_revision', 'to_revision', 'target',
    'expect_from', 'steps', 'applied', 'reverted', 'failed_migration', 'fingerprint', 'current_revision',
    'latest_revision', 'heads', 'pending', 'pending_migrations', 'before', 'after', 'error_code', 'outcome',
    'direction', 'status', 'overall_status', 'pruned', 'kept_extensions', 'revision', 'revisions'))


def _plain(value):
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    return isinstance(value, (list, tuple)) and all(v is None or isinstance(v, (str, int, float, bool))
                                                    for v in value)


def _exact_strings(value, exact=False):
    if isinstance(value, dict):
        for key, inner in value.items():
            if isinstance(key, str):
                yield key
            yield from _exact_strings(inner, exact or (key in EXACT_KEYS and _plain(inner)))
    elif isinstance(value, (list, tuple)):
        for inner in value:
            yield from _exact_strings(inner, exact)
    elif exact and isinstance(value, str):
        yield value


def exact_strings(result):
    """The strings of a result's exact fields and keys, longest first (``keep`` for :func:`mask`)."""
    return sorted(set(_exact_strings(result)), key=len, reverse=True)


def mask_result(value, secrets=None, keep=None):
    """:func:`mask_data` for a module result: dict keys and the plain values of EXACT_KEYS stay as they are, and
    in the free text a secret that is only part of one of those exact strings (stream-bot, a path) is left too."""
    if keep is None:
        keep = exact_strings(value)
    if isinstance(value, dict):
        return dict((k, v if k in EXACT_KEYS and _plain(v) else mask_result(v, secrets, keep))
                    for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [mask_result(v, secrets, keep) for v in value]
    if isinstance(value, (str, bytes)):
        return mask(value, secrets, keep)
    return value


def module_result(module, result, secrets=None):
    """``result`` ready for ``module.exit_json``/``fail_json``: every spelling of ``secrets`` that appears in no
    exact field goes to ``module.no_log_values`` (Ansible masks it everywhere, the invocation included); a
    spelling shorter than WEAK_LEN that is part of an exact field (a weak password) is masked in the free text
    only. A longer one is masked everywhere, exact fields included (a migration label holding the password)."""
    forms = all_spellings(secrets)
    exact = set(_exact_strings(result))
    clash = set(f for f in forms if len(f) < WEAK_LEN and any(f in text for text in exact))
    module.no_log_values.update(forms - clash)
    return mask_result(result, secrets) if clash else result


def shorten(text, limit, secrets=None, tail=True, lines=None):
    """Mask first, then cut to the last (or first) ``limit`` characters (and ``lines`` lines)."""
    text = mask(text, secrets)
    if not text:
        return text
    if lines:
        parts = text.splitlines()
        parts = parts[-lines:] if tail else parts[:lines]
        text = '\n'.join(parts)
    if limit and len(text) > limit:
        text = text[-limit:] if tail else text[:limit]
    return text
