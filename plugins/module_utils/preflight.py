# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pre-flight findings: what the planned run will certainly fail on, or lock, before anything runs.

    findings = adapter.preflight(conn, state, steps, options)   # each adapter knows its tool
    blocking(findings, allow)                                   # the error findings ``allow`` does not cover

A finding is ``{migration, statement, code, severity, message, source}``; ``severity`` is ``error`` when
the run as planned will certainly fail, ``warning`` for a lock or rewrite risk (squawk), ``info`` else.

The SQL is read with a small PostgreSQL lexer (comments, nested block comments, string literals with
their escapes, quoted identifiers and dollar quoting), so nothing inside a literal or a comment is
mistaken for a statement. Tool-independent rules live here; the adapters give the statements and the
transactions they run in (drizzle: the plan's transaction mode; alembic: each revision's upgrade()).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from ansible_collections.homelab.migrations.plugins.module_utils import secrets

ERROR = 'error'
WARNING = 'warning'
INFO = 'info'
SEVERITIES = (ERROR, WARNING, INFO)
SOURCE = 'homelab.migrations'
SQUAWK = 'squawk'

# the codes this collection raises itself (squawk's rule names come on top, source: squawk)
CODES = ('not_in_transaction', 'revision_id_too_long', 'merge_lists_ancestor', 'byte_order_mark', 'ends_transaction',
         'breakpoint_splits_statement')
ALLOW_ALL = 'all'

# squawk rules about style and type choices, not about what a pending migration locks, rewrites or fails on:
# left out (a pre-flight finding is about this run)
SQUAWK_STYLE_RULES = ('prefer-bigint-over-int', 'prefer-bigint-over-smallint', 'prefer-identity', 'prefer-text-field',
                      'prefer-timestamp-tz', 'prefer-robust-stmts', 'require-enum-value-ordering', 'ban-char-field')
# what the run can set itself (apply options lock_timeout / statement_timeout; role migrate_all_*_timeout)
SQUAWK_TIMEOUT_ADVICE = {
    'require-lock-timeout': 'set lock_timeout for the run (role variable migrate_all_lock_timeout)',
    'require-statement-timeout': 'set statement_timeout for the run (role variable migrate_all_statement_timeout)',
}
STATEMENT_LINES = 2
STATEMENT_CHARS = 200
SQUAWK_TIMEOUT = 60
ALEMBIC_VERSION_NUM_DEFAULT = 32  # alembic creates version_num as String(32)

_WORD_START = re.compile(r'[A-Za-z_\u0080-\uffff]')
_WORD = re.compile(r'[A-Za-z0-9_$\u0080-\uffff]*')
_DOLLAR_TAG = re.compile(r'\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$')
_PASSWORD_LITERAL = re.compile(r"(PASSWORD\s+)(E?'(?:[^']|'')*')", re.I)


def finding(migration, statement, code, severity, message, source=SOURCE):
    if severity not in SEVERITIES:
        raise ValueError('unknown severity %r' % severity)
    return {'migration': migration, 'statement': statement, 'code': code, 'severity': severity,
            'message': message, 'source': source}


# ------------------------------------------------------------------------------------------- lexer
class Token(object):
    __slots__ = ('kind', 'text', 'value', 'start')

    def __init__(self, kind, text, value, start):
        self.kind = kind    # word | ident | string | number | param | punct | semicolon
        self.text = text    # as written
        self.value = value  # word: upper-case; ident: unquoted name; string: the literal's value
        self.start = start

    def __repr__(self):
        return 'Token(%s, %r)' % (self.kind, self.text)


def _string_end(sql, i, backslash):
    """Index after the closing quote of a '...' literal whose opening quote is at ``i``; None if unterminated."""
    n = len(sql)
    j = i + 1
    while j < n:
        ch = sql[j]
        if backslash and ch == '\\':
            j += 2
            continue
        if ch == "'":
            if j + 1 < n and sql[j + 1] == "'":
                j += 2
                continue
            return j + 1
        j += 1
    return None


_OCTAL = re.compile(r'[0-7]{1,3}')
_HEX = re.compile(r'[0-9A-Fa-f]{1,2}')
# what may stand between two string constants PostgreSQL joins into one: whitespace with a newline, -- comments
# (scan.l's quotecontinue: horiz_whitespace* newline special_whitespace* quote)
_CONTINUATION = re.compile(r"(?:[ \t\f]|--[^\n\r]*)*[\n\r](?:[ \t\n\r\f\v]+|--[^\n\r]*[\n\r])*'")
_UESCAPE = re.compile(r"\s*UESCAPE\s*'([^'])'", re.I)


def _unescape(body, backslash):
    """The value of a '...' literal's body; with ``backslash`` (E'...') PostgreSQL's escapes: \\b \\f \\n \\r
    \\t, octal \\ooo and hex \\xhh bytes, \\uXXXX and \\UXXXXXXXX, any other \\c is c."""
    body = body.replace("''", "'")
    if not backslash or '\\' not in body:
        return body
    out = bytearray()
    i = 0
    n = len(body)
    simple = {'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}
    while i < n:
        ch = body[i]
        if ch != '\\' or i + 1 >= n:
            out += ch.encode('utf-8', 'surrogatepass')
            i += 1
            continue
        nxt = body[i + 1]
        m = _OCTAL.match(body, i + 1)
        if m:
            out.append(int(m.group(0), 8) & 0xFF)
            i = m.end()
            continue
        if nxt == 'x':
            m = _HEX.match(body, i + 2)
            if m:
                out.append(int(m.group(0), 16))
                i = m.end()
                continue
        if nxt in 'uU':
            width = 4 if nxt == 'u' else 8
            digits = body[i + 2:i + 2 + width]
            if len(digits) == width and all(c in '0123456789abcdefABCDEF' for c in digits):
                try:
                    out += chr(int(digits, 16)).encode('utf-8', 'surrogatepass')
                except ValueError:
                    pass
                i += 2 + width
                continue
        out += simple.get(nxt, nxt).encode('utf-8', 'surrogatepass')
        i += 2
    return out.decode('utf-8', 'replace')


def _unicode_unescape(body, escape='\\'):
    """The value of a U&'...' literal's body (already joined, '' undoubled) with escape character ``escape``."""
    out = []
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch != escape:
            out.append(ch)
            i += 1
            continue
        if body.startswith(escape, i + 1):
            out.append(escape)
            i += 2
            continue
        plus = body.startswith('+', i + 1)
        width = 6 if plus else 4
        start = i + 2 if plus else i + 1
        digits = body[start:start + width]
        if len(digits) == width and all(c in '0123456789abcdefABCDEF' for c in digits):
            try:
                out.append(chr(int(digits, 16)))
            except ValueError:
                pass
            i = start + width
            continue
        out.append(ch)
        i += 1
    return ''.join(out)


def skip_block_comment(text, i):
    """Skip the ``/* ... */`` comment starting at ``text[i]``; PostgreSQL nests them (scan.l ``xc``).

    Returns ``(end, closed)``: the index after the comment (``len(text)`` when unterminated) and whether
    its last ``*/`` was found.
    """
    n = len(text)
    depth = 1
    i += 2
    while i < n and depth:
        if text.startswith('/*', i):
            depth += 1
            i += 2
        elif text.startswith('*/', i):
            depth -= 1
            i += 2
        else:
            i += 1
    return i, not depth


def lex(sql, block_comments=None):
    """PostgreSQL tokens of ``sql`` without whitespace and comments. An unterminated literal or comment
    runs to the end (the server fails on it; nothing inside it is a statement). ``block_comments``, a list,
    receives the (start, end) of each /* */ comment."""
    tokens = []
    i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
            continue
        if sql.startswith('--', i):
            nl = sql.find('\n', i)
            i = n if nl < 0 else nl + 1
            continue
        if sql.startswith('/*', i):
            opened = i
            i = skip_block_comment(sql, i)[0]
            if block_comments is not None:
                block_comments.append((opened, i))
            continue
        if ch == "'" or (ch in 'EeBbXxNn' and sql.startswith("'", i + 1)) or \
                (ch in 'Uu' and sql.startswith("&'", i + 1)):
            backslash = ch in 'Ee'
            unicode = ch in 'Uu'
            quote = sql.index("'", i)
            parts = []
            while True:
                end = _string_end(sql, quote, backslash)
                if end is None:
                    parts.append(sql[quote + 1:])
                    end = n
                    break
                parts.append(sql[quote + 1:end - 1])
                more = _CONTINUATION.match(sql, end)  # 'a'<newline>'b' is one constant 'ab'
                if not more:
                    break
                quote = more.end() - 1
            if unicode:
                escape = _UESCAPE.match(sql, end)
                value = _unicode_unescape(''.join(p.replace("''", "'") for p in parts),
                                          escape.group(1) if escape else '\\')
                end = escape.end() if escape else end
            else:
                value = ''.join(_unescape(p, backslash) for p in parts)
            tokens.append(Token('string', sql[i:end], value, i))
            i = end
            continue
        if ch == '"' or (ch in 'Uu' and sql.startswith('&"', i + 1)):
            quote = sql.index('"', i)
            j = quote + 1
            while True:
                k = sql.find('"', j)
                if k < 0:
                    k = n
                    break
                if sql.startswith('""', k):
                    j = k + 2
                    continue
                break
            tokens.append(Token('ident', sql[i:k + 1], sql[quote + 1:k].replace('""', '"'), i))
            i = k + 1
            continue
        if ch == '$':
            m = _DOLLAR_TAG.match(sql, i)
            if m:
                tag = m.group(0)
                end = sql.find(tag, m.end())
                stop = n if end < 0 else end + len(tag)
                tokens.append(Token('string', sql[i:stop], sql[m.end():end if end >= 0 else n], i))
                i = stop
                continue
            m = re.compile(r'\$\d+').match(sql, i)
            if m:
                tokens.append(Token('param', m.group(0), m.group(0), i))
                i = m.end()
                continue
        if _WORD_START.match(ch):
            m = _WORD.match(sql, i + 1)
            text = sql[i:m.end()]
            tokens.append(Token('word', text, text.upper(), i))
            i = m.end()
            continue
        if ch.isdigit():
            m = re.compile(r'[0-9][0-9_]*(\.[0-9_]*)?([eE][+-]?[0-9]+)?').match(sql, i)
            tokens.append(Token('number', m.group(0), m.group(0), i))
            i = m.end()
            continue
        tokens.append(Token('semicolon' if ch == ';' else 'punct', ch, ch, i))
        i += 1
    return tokens


class Statement(object):
    def __init__(self, text, tokens, start=0, conditional=False):
        self.text = text
        self.tokens = tokens
        self.start = start
        self.conditional = conditional  # in code that may not run (alembic: a branch, loop or nested function)

    @property
    def words(self):
        return [t.value if t.kind == 'word' else None for t in self.tokens]


def split_sql(sql):
    """The statements of ``sql`` (split on top-level semicolons; empty ones dropped), each with its tokens."""
    out = []
    current = []
    start = None
    for tok in lex(sql):
        if tok.kind == 'semicolon':
            if current:
                out.append(Statement(sql[start:tok.start], current, start))
            current, start = [], None
            continue
        if start is None:
            start = tok.start
        current.append(tok)
    if current:
        out.append(Statement(sql[start:], current, start))
    return out


def cut_inside(sql, marker):
    """The offsets of ``marker`` in ``sql`` that fall inside a string literal, quoted identifier, dollar-quoted
    body or /* */ comment (a tool that splits the text on ``marker`` cuts that statement in two)."""
    spans = []
    tokens = lex(sql, spans)
    spans.extend((t.start, t.start + len(t.text)) for t in tokens if t.kind in ('string', 'ident'))
    out = []
    pos = sql.find(marker)
    while pos >= 0:
        if any(start < pos < end for start, end in spans):
            out.append(pos)
        pos = sql.find(marker, pos + 1)
    return out


def statement_head(text, lines=STATEMENT_LINES, limit=STATEMENT_CHARS):
    """The first line(s) of a statement (leading comments and blank lines dropped), password literals masked."""
    tokens = lex(text)
    body = text[tokens[0].start:] if tokens else text.strip()
    offset = tokens[0].start if tokens else 0
    # a literal that names a password (a conninfo with password=<libpq-quoted value>, in any SQL quoting) is
    # masked whole: its value's own quoting is libpq's, which no pattern over the SQL text spells reliably
    for tok in reversed([t for t in tokens if t.kind == 'string' and 'password' in (t.value + t.text).lower()]):
        start = tok.start - offset
        body = body[:start] + "'********'" + body[start + len(tok.text):]
    kept = [line.rstrip() for line in body.splitlines() if line.strip()][:lines]
    head = '\n'.join(kept)
    head = _PASSWORD_LITERAL.sub(lambda m: m.group(1) + "'********'", head)
    if len(head) > limit:
        head = head[:limit - 3] + '...'
    return head


# ---------------------------------------------------------------------------------------- rules
def _after_options(tokens, i):
    """Skip a parenthesised option list at tokens[i] (VACUUM (...), REINDEX (...))."""
    if i < len(tokens) and tokens[i].text == '(':
        depth = 0
        while i < len(tokens):
            if tokens[i].text == '(':
                depth += 1
            elif tokens[i].text == ')':
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
    return i


def _option_on(tokens, i, name):
    """Whether the parenthesised option list at tokens[i] (REINDEX (CONCURRENTLY, VERBOSE false)) turns
    option ``name`` on: named without a value, or with true/on/1."""
    if i >= len(tokens) or tokens[i].text != '(':
        return False
    end = _after_options(tokens, i)
    items = [[]]
    for tok in tokens[i + 1:end - 1]:
        if tok.text == ',':
            items.append([])
        else:
            items[-1].append(tok)
    for item in items:
        if item and item[0].kind == 'word' and item[0].value == name:
            if len(item) == 1:
                return True
            value = item[1].value.lower() if item[1].kind in ('word', 'string') else item[1].text
            return value in ('true', 'on', '1', 'yes', 't', 'y')
    return False


def no_transaction_kind(stmt):
    """The name of what PostgreSQL refuses inside a transaction block (SQLSTATE 25001), or None."""
    t = stmt.tokens
    w = [tok.value if tok.kind == 'word' else None for tok in t]
    if not w:
        return None
    first = w[0]
    second = w[1] if len(w) > 1 else None
    if first == 'VACUUM':
        return 'VACUUM'
    if first == 'ALTER' and second == 'SYSTEM':
        return 'ALTER SYSTEM'
    if first in ('CREATE', 'DROP') and second in ('DATABASE', 'TABLESPACE'):
        return '%s %s' % (first, second)
    if first == 'ALTER' and second == 'DATABASE' and 'SET' in w and 'TABLESPACE' in w[w.index('SET'):]:
        return 'ALTER DATABASE ... SET TABLESPACE'
    if first == 'CREATE':
        i = 1
        if i < len(w) and w[i] == 'UNIQUE':
            i += 1
        if i + 1 < len(w) and w[i] == 'INDEX' and w[i + 1] == 'CONCURRENTLY':
            return 'CREATE INDEX CONCURRENTLY'
        if second == 'SUBSCRIPTION':
            flat = ' '.join(tok.text.lower() for tok in t)
            if not re.search(r'create_slot\s*=\s*(false|off|0|\'false\'|\'off\')', flat):
                return 'CREATE SUBSCRIPTION (it creates a replication slot)'
    if first == 'DROP' and second == 'INDEX' and len(w) > 2 and w[2] == 'CONCURRENTLY':
        return 'DROP INDEX CONCURRENTLY'
    if first == 'DISCARD' and second == 'ALL':
        return 'DISCARD ALL'
    if first in ('COMMIT', 'ROLLBACK') and second == 'PREPARED':
        return '%s PREPARED' % first
    if first == 'REINDEX':
        i = _after_options(t, 1)
        kind = w[i] if i < len(w) else None
        if i + 1 < len(w) and w[i + 1] == 'CONCURRENTLY' or _option_on(t, 1, 'CONCURRENTLY'):
            return 'REINDEX %s CONCURRENTLY' % kind
        if kind in ('SCHEMA', 'DATABASE', 'SYSTEM'):
            return 'REINDEX %s' % kind
    if first == 'CLUSTER' and all(x == 'VERBOSE' for x in w[1:]) and all(tok.kind == 'word' for tok in t):
        return 'CLUSTER (without a table)'
    if first == 'ALTER' and second == 'TABLE' and 'DETACH' in w:
        j = w.index('DETACH')
        if 'CONCURRENTLY' in w[j:]:
            return 'ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY'
    return None


def ends_transaction_kind(stmt, atomic=False):
    """(what, atomic): ``what`` names a statement that ends the transaction it runs in (COMMIT, ROLLBACK
    without TO, END, ABORT), or None; ``atomic`` says a SQL-standard function body (BEGIN ATOMIC ... END) is
    open, whose END ends no transaction. Pass the returned ``atomic`` to the next statement."""
    w = [tok.value if tok.kind == 'word' else None for tok in stmt.tokens]
    if not w:
        return None, atomic
    first = w[0]
    if atomic:
        return None, first != 'END'
    for i in range(1, len(w) - 1):
        if w[i] == 'BEGIN' and w[i + 1] == 'ATOMIC':
            return None, True
    if first == 'ROLLBACK' and 'TO' in w[1:4]:
        return None, False  # ROLLBACK TO SAVEPOINT keeps the transaction
    if first in ('COMMIT', 'ROLLBACK', 'END', 'ABORT') and (len(w) == 1 or w[1] in ('WORK', 'TRANSACTION', 'AND')):
        return ' '.join(x for x in w[:3] if x), False
    return None, False


def _name(tok):
    return tok.value.lower() if tok.kind == 'word' else tok.value


def _qualified(tokens, i):
    """(last name part, index after the name) for a possibly schema-qualified name at tokens[i]."""
    name = None
    while i < len(tokens) and tokens[i].kind in ('word', 'ident'):
        name = _name(tokens[i])
        i += 1
        if i < len(tokens) and tokens[i].text == '.':
            i += 1
            continue
        break
    return name, i


def altered_type(stmt):
    """(last name part, the name as written) of the type an ALTER TYPE statement changes, else None."""
    t = stmt.tokens
    if len(t) < 3 or t[0].value != 'ALTER' or t[1].value != 'TYPE':
        return None
    name, i = _qualified(t, 2)
    if name is None:
        return None
    return name, stmt.text[t[2].start - stmt.start:t[i - 1].start - stmt.start + len(t[i - 1].text)]


def enum_add_value(stmt, full=False):
    """(type name, new label) of ALTER TYPE ... ADD VALUE, else None; with ``full`` (type name, new label,
    the type's name as written, IF NOT EXISTS given)."""
    t = stmt.tokens
    if len(t) < 5 or t[0].value != 'ALTER' or t[1].value != 'TYPE':
        return None
    name, i = _qualified(t, 2)
    if name is None or i + 1 >= len(t) or t[i].value != 'ADD' or t[i + 1].value != 'VALUE':
        return None
    i += 2
    if_not_exists = i + 2 < len(t) and [x.value for x in t[i:i + 3]] == ['IF', 'NOT', 'EXISTS']
    if if_not_exists:
        i += 3
    if i < len(t) and t[i].kind == 'string':
        return (name, t[i].value, altered_type(stmt)[1], if_not_exists) if full else (name, t[i].value)
    return None


def enum_rename_value(stmt):
    """(type name, old label, new label) of ALTER TYPE ... RENAME VALUE 'a' TO 'b', else None."""
    target = altered_type(stmt)
    if target is None:
        return None
    t = stmt.tokens
    dummy, i = _qualified(t, 2)
    rest = t[i:]
    if len(rest) == 5 and [x.value for x in (rest[0], rest[1], rest[3])] == ['RENAME', 'VALUE', 'TO'] and \
            rest[2].kind == 'string' and rest[4].kind == 'string':
        return target[0], rest[2].value, rest[4].value
    return None


def declared_columns(stmt, type_name):
    """Column names the statement declares with type ``type_name`` (ADD COLUMN m mood, CREATE TABLE (m mood))."""
    t = stmt.tokens
    out = set()
    for i in range(1, len(t)):
        if t[i].kind in ('word', 'ident') and _name(t[i]) == type_name and t[i - 1].kind in ('word', 'ident'):
            out.add(_name(t[i - 1]))
    return out


def enum_catalog(conn):
    """A function (type name as written) -> (committed labels, names of columns of that type or its array
    type) from the catalogue of ``conn``; (set(), set()) when that cannot be read (no connection, no type)."""
    cache = {}

    def lookup(name):
        if name in cache:
            return cache[name]
        labels, columns = set(), set()
        if conn is not None:
            try:
                with conn.cursor() as cur:
                    cur.execute('SELECT e.enumlabel FROM pg_catalog.pg_enum e '
                                'WHERE e.enumtypid = pg_catalog.to_regtype(%s)', (name,))
                    labels = set(row[0] for row in cur.fetchall())
                    cur.execute('SELECT DISTINCT a.attname FROM pg_catalog.pg_attribute a '
                                'JOIN pg_catalog.pg_type t ON t.oid = pg_catalog.to_regtype(%s) '
                                'WHERE a.atttypid IN (t.oid, t.typarray) AND a.attnum > 0 AND NOT a.attisdropped',
                                (name,))
                    columns = set(row[0] for row in cur.fetchall())
            except Exception:
                labels, columns = set(), set()
                try:
                    if not conn.closed and not conn.autocommit:
                        conn.rollback()
                except Exception:
                    pass
        cache[name] = (labels, columns)
        return cache[name]
    return lookup


def literals(stmt):
    return set(tok.value for tok in stmt.tokens if tok.kind == 'string')


def transaction_findings(transactions, server_version, advice, catalog=None):
    """not_in_transaction findings for statements run inside transaction blocks.

    ``transactions``: list of transactions, each a list of (migration, Statement) in run order, every one
    run inside a transaction block. ``advice(kind, migration, later_migration)`` says what to do: ``kind``
    is 'always' (refused in any transaction), 'enum_same' (a new enum label used in the same migration) or
    'enum_later' (used by a later migration of the same transaction). ``catalog`` (see :func:`enum_catalog`)
    gives an enum type's committed labels and columns: ADD VALUE IF NOT EXISTS of a committed label adds
    nothing, and a literal spelled like a new label is an ``error`` only where the statement names the type or
    one of its columns (else a ``warning``: it may be a plain text value).
    """
    catalog = catalog or enum_catalog(None)
    out = []
    for tx in transactions:
        pending_labels = []  # (type, label, migration)
        columns = {}  # enum type with a pending label: names of its columns (catalogue and this transaction)
        atomic = False
        for migration, stmt in tx:
            maybe = getattr(stmt, 'conditional', False)
            severity = WARNING if maybe else ERROR
            if_runs = ('If it runs (it is in a branch, loop, handler or nested function, so it may not): '
                       if maybe else '')
            ends, atomic = ends_transaction_kind(stmt, atomic)
            if ends:
                out.append(finding(migration, statement_head(stmt.text), 'ends_transaction', severity, if_runs +
                                   '%s ends the transaction the migration runs in: what ran before it is committed '
                                   '(or thrown away) outside the migration, which the tool records as applied anyway '
                                   '(drizzle-orm), and this collection stops the run right after it. Remove the '
                                   'transaction control statement; split the work into migrations instead' % ends))
                continue
            kind = no_transaction_kind(stmt)
            if kind:
                out.append(finding(migration, statement_head(stmt.text), 'not_in_transaction', severity, if_runs +
                                   'PostgreSQL refuses %s inside a transaction block (SQLSTATE 25001), and this '
                                   'migration runs inside one. %s' % (kind, advice('always', migration, None))))
                continue
            added = enum_add_value(stmt, full=True)
            if added:
                if server_version and server_version < 120000:
                    out.append(finding(migration, statement_head(stmt.text), 'not_in_transaction', severity,
                                       if_runs + 'PostgreSQL %d.%d refuses ALTER TYPE ... ADD VALUE inside a '
                                       'transaction block (before version 12), and this migration runs inside one. %s'
                                       % (server_version // 10000, server_version % 10000 // 100,
                                          advice('always', migration, None))))
                elif added[3] and added[1] in catalog(added[2])[0]:
                    pass  # IF NOT EXISTS of a label the type has (committed): adds nothing, its use is safe
                else:  # also for a type created in the same transaction (PostgreSQL refuses that too)
                    pending_labels.append((added[0], added[1], migration, maybe))
                    columns.setdefault(added[0], set()).update(catalog(added[2])[1])
                continue
            target = altered_type(stmt)
            if target is not None and target[0] in columns:
                # ADD VALUE ... BEFORE 'new' / RENAME VALUE 'new' TO 'other' name the label without using it
                renamed = enum_rename_value(stmt)
                for type_name, label, where, added_maybe in list(pending_labels):
                    if renamed and type_name == renamed[0] and label == renamed[1]:
                        pending_labels.append((type_name, renamed[2], where, added_maybe or maybe))
                continue
            for type_name in columns:
                columns[type_name].update(declared_columns(stmt, type_name))
            used = literals(stmt)
            for type_name, label, where, added_maybe in pending_labels:
                if label in used:
                    later = migration if migration != where else None
                    # certain only when the statement names the type or a column of it; a text value spelled
                    # like the label (INSERT INTO log (note) VALUES ('happy')) runs fine
                    names = set(_name(tok) for tok in stmt.tokens if tok.kind in ('word', 'ident'))
                    certain = (type_name in names or bool(names & columns.get(type_name, set()))) and not (
                        maybe or added_maybe)
                    out.append(finding(
                        migration, statement_head(stmt.text), 'not_in_transaction', ERROR if certain else WARNING,
                        if_runs + "this statement %s the enum label '%s' that %s adds to %s (ALTER TYPE ... ADD "
                        'VALUE) in the same transaction; PostgreSQL refuses a new label before the transaction that '
                        'added it commits (SQLSTATE 55P04 unsafe use of new value)%s. %s'
                        % ('uses' if certain else 'may use', label,
                           'migration %s' % where if later else 'this migration', type_name,
                           '' if certain else (", so it fails if '%s' here is a %s value (it names neither %s nor "
                                               'a column of that type)' % (label, type_name, type_name)),
                           advice('enum_later' if later else 'enum_same', where, later))))
                    break
    return out


# --------------------------------------------------------------------------------- other checks
def revision_id_findings(steps, max_length, table, files=None):
    """revision_id_too_long: alembic writes each revision it runs into version_num (varchar(max_length))."""
    out = []
    if not max_length:
        return out
    for rev in steps:
        if len(rev) > max_length:
            out.append(finding(
                rev, None, 'revision_id_too_long', ERROR,
                'revision id %r is %d characters long but %s.version_num holds at most %d, so alembic fails '
                '(value too long for type character varying(%d)) when it records it. Give the revision a '
                'shorter id (in its file%s and in the down_revision of its children), or widen the column: '
                'ALTER TABLE %s ALTER COLUMN version_num TYPE varchar(%d)'
                % (rev, len(rev), table, max_length, max_length,
                   ' %s' % files[rev] if files and rev in files else '', table, max(len(rev), 64))))
    return out


def blocking(findings, allow=None):
    """The error findings the ``allow`` list (codes, or 'all') does not let through."""
    allow = set(allow or [])
    if ALLOW_ALL in allow:
        return []
    return [f for f in findings if f.get('severity') == ERROR and f.get('code') not in allow]


def describe_blocking(name, blocked):
    parts = []
    for f in blocked[:5]:
        parts.append('%s in %s: %s' % (f['code'], f['migration'], f['message']))
    more = len(blocked) - 5
    return ('service %r: pre-flight found %d migration(s) that will certainly fail as planned: %s%s. Nothing was '
            'changed. Fix them as said, or set allow_findings (role: migrate_all_allow_findings) to %s to run anyway'
            % (name, len(blocked), ' | '.join(parts), ' (and %d more)' % more if more > 0 else '',
               sorted(set(f['code'] for f in blocked))))


# -------------------------------------------------------------------------------------- squawk
def squawk_path():
    """The squawk executable on this host (PATH, or beside the Python running the module), or None."""
    found = shutil.which(SQUAWK)
    if found:
        return found
    beside = os.path.join(os.path.dirname(sys.executable), SQUAWK)
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    return None


def run_squawk(migrations, exe=None, timeout=SQUAWK_TIMEOUT, pg_version=None, in_transaction=True, exclude=()):
    """squawk's violations of ``migrations`` [(name, sql text)] in one squawk run: {name: [{rule, message, help,
    line}]} (``line`` 0-based in that text); raises RuntimeError with a reason when squawk cannot be run or its
    output cannot be read."""
    exe = exe or squawk_path()
    if exe is None:
        raise RuntimeError('squawk is not installed on the managed host (pip install squawk-cli)')
    tmp = tempfile.mkdtemp(prefix='homelab-preflight-')
    names = {}
    try:
        paths = []
        for index, (name, sql) in enumerate(migrations):
            path = os.path.join(tmp, '%04d.sql' % index)
            with open(path, 'w', encoding='utf-8') as fh:
                fh.write(sql)
            names[path] = name
            names[os.path.basename(path)] = name
            paths.append(path)
        argv = [exe, '--reporter', 'json']
        if in_transaction:
            argv.append('--assume-in-transaction')
        if exclude:
            argv.append('--exclude=%s' % ','.join(exclude))
        if pg_version:
            argv.append('--pg-version=%d.%d' % (pg_version // 10000, pg_version % 10000 // 100))
        try:
            proc = subprocess.run(argv + paths, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                                  check=False, cwd=tmp, env=dict(os.environ, SQUAWK_DISABLE_UPLOAD='1'))
        except subprocess.TimeoutExpired:
            raise RuntimeError('squawk did not finish within %ds' % timeout)
        except OSError as exc:
            raise RuntimeError('squawk could not be started: %s' % exc)
        text = proc.stdout.decode('utf-8', 'replace').strip()
        try:
            data = json.loads(text or '[]')
        except ValueError:
            data = None
        if not isinstance(data, list):
            said = secrets.mask(proc.stderr.decode('utf-8', 'replace'))  # mask first, then cut
            raise RuntimeError('squawk answered with exit code %d and no JSON report: %s'
                               % (proc.returncode, ' '.join(said.split())[:300]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = dict((name, []) for name, dummy in migrations)
    for item in data:
        if not isinstance(item, dict) or not item.get('rule_name'):
            continue
        name = names.get(str(item.get('file'))) or names.get(os.path.basename(str(item.get('file'))))
        if name is None:
            continue
        out[name].append({'rule': str(item['rule_name']), 'message': str(item.get('message') or ''),
                          'help': str(item.get('help') or ''), 'line': item.get('line'),
                          'level': item.get('level')})
    return out


# rules whose finding is about the table named in the statement (rewrite or lock while it runs)
_TABLE_WORDS = ('TABLE', 'ON')


def table_of(stmt):
    """The table a DDL statement is about (ALTER TABLE x / CREATE INDEX ... ON x), or None."""
    t = stmt.tokens
    for i, tok in enumerate(t):
        if tok.kind == 'word' and tok.value in _TABLE_WORDS and i > 0:
            j = i + 1
            for skip in (('IF', 'EXISTS'), ('ONLY',)):
                if [x.value for x in t[j:j + len(skip)]] == list(skip):
                    j += len(skip)
            if j < len(t) and t[j].kind in ('word', 'ident'):
                parts = []
                while j < len(t) and t[j].kind in ('word', 'ident'):
                    parts.append(t[j].text)
                    j += 1
                    if j < len(t) and t[j].text == '.':
                        j += 1
                        continue
                    break
                return '.'.join(parts)
    return None


def table_sizes(conn, names):
    """{name as written: (pg_total_relation_size bytes, estimated rows)} for tables that exist."""
    out = {}
    if not names or conn is None:
        return out
    try:
        with conn.cursor() as cur:
            for name in sorted(names):
                cur.execute('SELECT pg_catalog.pg_total_relation_size(c.oid), c.reltuples::bigint '
                            'FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass(%s)', (name,))
                row = cur.fetchone()
                if row is not None:
                    out[name] = (int(row[0]), int(row[1]))
    except Exception:
        try:
            if not conn.closed and not conn.autocommit:
                conn.rollback()
        except Exception:
            pass
    return out


def human_size(n):
    for unit in ('bytes', 'kB', 'MB', 'GB', 'TB'):
        if n < 1024 or unit == 'TB':
            return ('%d %s' % (n, unit)) if unit == 'bytes' else ('%.1f %s' % (n, unit))
        n /= 1024.0
    return str(n)


def squawk_findings(migrations, conn=None, exe=None, in_transaction=True, options=None):
    """Lint ``migrations`` [(name, sql text)] with squawk: (findings, lint) where lint says whether it ran.

    Each violation becomes a warning finding (source squawk, the rule name as code); where the statement
    names a table, the message says its size from the catalogue (or that it does not exist yet). Style rules
    (SQUAWK_STYLE_RULES) are left out, and the timeout rules when ``options`` set that timeout for the run.
    """
    exe = exe or squawk_path()
    if exe is None:
        return [], {'linter': SQUAWK, 'ran': False,
                    'reason': 'squawk is not installed on the managed host (pip install squawk-cli there to lint '
                              'pending SQL for lock and rewrite risks)'}
    if not migrations:
        return [], {'linter': SQUAWK, 'ran': False, 'reason': 'no pending SQL to lint'}
    try:
        version = conn.server_version if conn is not None else None
    except Exception:
        version = None
    try:
        exclude = list(SQUAWK_STYLE_RULES)
        for rule, name in (('require-lock-timeout', 'lock_timeout'),
                           ('require-statement-timeout', 'statement_timeout')):
            if (options or {}).get(name):
                exclude.append(rule)
        results = run_squawk(migrations, exe, pg_version=version, in_transaction=in_transaction, exclude=exclude)
    except RuntimeError as exc:
        return [], {'linter': SQUAWK, 'ran': False, 'reason': str(exc)}
    out = []
    about = []
    for name, sql in migrations:
        violations = results.get(name) or []
        statements = split_sql(sql) if violations else []
        for v in violations:
            stmt = _statement_at(sql, statements, v.get('line'))
            table = table_of(stmt) if stmt is not None else None
            message = (v['message'] + ((' ' + v['help']) if v['help'] else '')).strip()
            if v['rule'] in SQUAWK_TIMEOUT_ADVICE:
                message += ': %s' % SQUAWK_TIMEOUT_ADVICE[v['rule']]
            out.append(finding(name, statement_head(stmt.text) if stmt is not None else None, v['rule'], WARNING,
                               message, source=SQUAWK))
            about.append((out[-1], table))
    sizes = table_sizes(conn, set(t for dummy, t in about if t)) if conn is not None else None
    for item, table in about:
        if table and sizes is not None and table in sizes:
            size, rows = sizes[table]
            item['message'] += ' (table %s: %s, about %d rows)' % (table, human_size(size), max(rows, 0))
        elif table and sizes is not None:
            # made by the pending SQL itself: nobody else sees it, nothing to lock or rewrite yet
            item['message'] += ' (table %s: not in the database yet, so no risk in this run)' % table
            item['severity'] = INFO
    return _one_per_timeout_rule(out), {'linter': SQUAWK, 'ran': True, 'reason': None}


def _one_per_timeout_rule(findings):
    """The timeout rules fire on every statement: one finding per rule (the first on an existing table, else
    the first) says it, with the count of the others."""
    chosen = {}
    counts = {}
    for item in findings:
        code = item['code']
        if code not in SQUAWK_TIMEOUT_ADVICE:
            continue
        counts[code] = counts.get(code, 0) + 1
        if code not in chosen or (chosen[code]['severity'] != WARNING and item['severity'] == WARNING):
            chosen[code] = item
    for code, item in chosen.items():
        if counts[code] > 1:
            item['message'] += ' (and %d more statement(s) of the pending SQL)' % (counts[code] - 1)
    return [item for item in findings if item['code'] not in SQUAWK_TIMEOUT_ADVICE or chosen[item['code']] is item]


def _statement_at(sql, statements, line):
    """The statement squawk's 0-based ``line`` points into."""
    if not statements:
        return None
    if not isinstance(line, int):
        return statements[0]
    best = statements[0]
    for stmt in statements:
        if sql.count('\n', 0, stmt.start) <= line:
            best = stmt
    return best


# ------------------------------------------------------------------------------- alembic (ast)
class _UpgradeCalls(ast.NodeVisitor):
    """op.execute / <conn>.execute with a literal SQL string and op.create_index / op.drop_index with
    postgresql_concurrently=True in upgrade(), in source order, each marked when it is inside
    `with op.get_context().autocommit_block():` (alembic runs that outside the migration's transaction)."""

    def __init__(self, source):
        self.source = source
        self.depth = 0
        self.maybe = 0  # inside a branch, loop, handler or nested function: the call may not run
        self.calls = []  # (sql text, autocommit, line, statement shown or None, may not run)

    def _with(self, node):
        auto = any(_is_autocommit_block(item.context_expr) for item in node.items)
        for item in node.items:
            self.visit(item)
        self.depth += 1 if auto else 0
        for stmt in node.body:
            self.visit(stmt)
        self.depth -= 1 if auto else 0

    visit_With = _with
    visit_AsyncWith = _with

    def _maybe(self, nodes):
        self.maybe += 1
        for node in nodes:
            self.visit(node)
        self.maybe -= 1

    def visit_If(self, node):
        self.visit(node.test)
        self._maybe(node.body + node.orelse)

    def visit_While(self, node):
        self.visit(node.test)
        self._maybe(node.body + node.orelse)

    def visit_For(self, node):
        self.visit(node.iter)
        self._maybe([node.target] + node.body + node.orelse)

    visit_AsyncFor = visit_For

    def visit_Try(self, node):
        for stmt in node.body:
            self.visit(stmt)
        self._maybe(node.handlers + node.orelse)
        for stmt in node.finalbody:
            self.visit(stmt)

    visit_TryStar = visit_Try

    def _nested(self, node):
        self._maybe([node])

    def generic_maybe(self, node):
        self.maybe += 1
        self.generic_visit(node)
        self.maybe -= 1

    # a nested function or class, a lambda, a conditional expression, `a and b`, a comprehension, `match`
    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = generic_maybe
    visit_IfExp = visit_BoolOp = visit_ListComp = visit_SetComp = visit_DictComp = generic_maybe
    visit_GeneratorExp = visit_Match = generic_maybe

    def visit_Call(self, node):
        self.generic_visit(node)
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, 'id', None)
        if name == 'execute' and node.args:
            sql = _literal_sql(node.args[0])
            if sql is not None:
                self.calls.append((sql, self.depth > 0, node.lineno, None, self.maybe > 0))
        elif name in ('create_index', 'drop_index'):
            for kw in node.keywords:
                if kw.arg == 'postgresql_concurrently' and isinstance(kw.value, ast.Constant) and kw.value.value:
                    segment = ast.get_source_segment(self.source, node) or name
                    verb = 'CREATE INDEX CONCURRENTLY' if name == 'create_index' else 'DROP INDEX CONCURRENTLY'
                    # the SQL alembic emits for it; the statement shown is the call as written
                    self.calls.append(((verb + ' /* %s */' % ' '.join(segment.split())), self.depth > 0,
                                       node.lineno, segment, self.maybe > 0))


def _is_autocommit_block(expr):
    return isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == 'autocommit_block'


def _literal_sql(node):
    """The SQL text of op.execute's argument when it is a literal: 'sql' or text('sql') / sa.text('sql')."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Call) and node.args and not node.keywords:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', None)
        if name == 'text':
            return _literal_sql(node.args[0])
    return None


def alembic_upgrade_calls(data, function='upgrade'):
    """The calls of module-level upgrade() (or ``function``) of a revision file's bytes (see _UpgradeCalls)."""
    source = data.decode('utf-8-sig', 'replace') if isinstance(data, bytes) else data
    tree = ast.parse(source)
    visitor = _UpgradeCalls(source)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            for stmt in node.body:
                visitor.visit(stmt)
    return visitor.calls


def alembic_transactions(rev, calls):
    """The transactions of one revision's upgrade(): an autocommit block ends one and begins the next."""
    transactions = [[]]
    for call in calls:
        sql, autocommit = call[0], call[1]
        if autocommit:
            if transactions[-1]:
                transactions.append([])
            continue
        shown = call[3] if len(call) > 3 else None
        for stmt in split_sql(sql):
            stmt = Statement(shown if shown is not None else stmt.text, stmt.tokens, stmt.start,
                             conditional=bool(len(call) > 4 and call[4]))
            transactions[-1].append((rev, stmt))
    return [tx for tx in transactions if tx]
