# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a statement does to an enum type (ALTER TYPE ... ADD VALUE / RENAME VALUE), and the catalogue's view.

PostgreSQL refuses a label added by ALTER TYPE ... ADD VALUE before the transaction that added it commits
(SQLSTATE 55P04, since version 12; before 12 the ADD VALUE itself is refused in a transaction block): these are
the pieces :func:`transaction.transaction_findings` reads statements with.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils import connection


def token_name(tok):
    """A word lower-cased, a quoted identifier as it is: the name PostgreSQL folds it to."""
    return tok.value.lower() if tok.kind == 'word' else tok.value


def _qualified(tokens, i):
    """(last name part, index after the name) for a possibly schema-qualified name at tokens[i]."""
    name = None
    while i < len(tokens) and tokens[i].kind in ('word', 'ident'):
        name = token_name(tokens[i])
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
        if t[i].kind in ('word', 'ident') and token_name(t[i]) == type_name and t[i - 1].kind in ('word', 'ident'):
            out.add(token_name(t[i - 1]))
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
                connection.rollback_quietly(conn)
        cache[name] = (labels, columns)
        return cache[name]
    return lookup


def literals(stmt):
    """The values of the statement's string constants (a set)."""
    return set(tok.value for tok in stmt.tokens if tok.kind == 'string')
