# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What certainly fails inside the transaction a migration runs in (tool-neutral rules over lexed statements).

    findings = transaction_findings(transactions, server_version, advice, enum_catalog(conn))

The adapters give the transactions (drizzle-orm: the plan's transaction mode; alembic: each revision's
upgrade() and its autocommit blocks) and the advice in their tool's words. Rules, all from PostgreSQL:
statements refused inside a transaction block (SQLSTATE 25001: VACUUM, CREATE INDEX CONCURRENTLY, ...),
statements that end the transaction (COMMIT, ROLLBACK, END, ABORT; not inside BEGIN ATOMIC), and an enum
label used before the transaction that added it commits (SQLSTATE 55P04; ADD VALUE itself before version 12).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.homelab.migrations.plugins.module_utils.preflight.enums import (
    altered_type, declared_columns, enum_add_value, enum_catalog, enum_rename_value, literals, token_name)
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.findings import (
    ERROR, WARNING, finding, statement_head)

_IF_RUNS = 'If it runs (it is in a branch, loop, handler or nested function, so it may not): '
_ENDS = ('%s ends the transaction the migration runs in: what ran before it is committed (or thrown away) outside '
         'the migration, which the tool records as applied anyway (drizzle-orm), and this collection stops the run '
         'right after it. Remove the transaction control statement; split the work into migrations instead')


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


def transaction_findings(transactions, server_version, advice, catalog=None):
    """not_in_transaction and ends_transaction findings for statements run inside transaction blocks.

    ``transactions``: list of transactions, each a list of (migration, Statement) in run order, every one
    run inside a transaction block. ``server_version``: PostgreSQL's server_version_num (120000 for 12.0), or
    None. ``advice(kind, migration, later_migration)`` says what to do: ``kind``
    is 'always' (refused in any transaction), 'enum_same' (a new enum label used in the same migration) or
    'enum_later' (used by a later migration of the same transaction). ``catalog`` (see :func:`enum_catalog`)
    gives an enum type's committed labels and columns: ADD VALUE IF NOT EXISTS of a committed label adds
    nothing, and a literal spelled like a new label is an ``error`` only where the statement names the type or
    one of its columns (else a ``warning``: it may be a plain text value). A statement marked ``conditional``
    gives a ``warning`` (it may not run). Returns the list of findings.
    """
    catalog = catalog or enum_catalog(None)
    out = []
    for tx in transactions:
        check = _Transaction(server_version, advice, catalog, out)
        for migration, stmt in tx:
            check.add(migration, stmt)
    return out


class _Transaction(object):
    """The rules over the statements of one transaction, in run order (see :func:`transaction_findings`)."""

    def __init__(self, server_version, advice, catalog, out):
        self.server_version = server_version
        self.advice = advice
        self.catalog = catalog
        self.out = out
        self.pending_labels = []  # (type, label, migration, may not run)
        self.columns = {}  # enum type with a pending label: names of its columns (catalogue and this transaction)
        self.atomic = False

    def add(self, migration, stmt):
        maybe = getattr(stmt, 'conditional', False)
        severity = WARNING if maybe else ERROR
        if_runs = _IF_RUNS if maybe else ''
        ends, self.atomic = ends_transaction_kind(stmt, self.atomic)
        if ends:
            self.out.append(finding(migration, statement_head(stmt.text), 'ends_transaction', severity,
                                    if_runs + _ENDS % ends))
            return
        kind = no_transaction_kind(stmt)
        if kind:
            self.out.append(finding(migration, statement_head(stmt.text), 'not_in_transaction', severity, if_runs +
                                    'PostgreSQL refuses %s inside a transaction block (SQLSTATE 25001), and this '
                                    'migration runs inside one. %s' % (kind, self.advice('always', migration, None))))
            return
        added = enum_add_value(stmt, full=True)
        if added:
            self._add_value(migration, stmt, added, severity, if_runs, maybe)
            return
        target = altered_type(stmt)
        if target is not None and target[0] in self.columns:
            # ADD VALUE ... BEFORE 'new' / RENAME VALUE 'new' TO 'other' name the label without using it
            renamed = enum_rename_value(stmt)
            for type_name, label, where, added_maybe in list(self.pending_labels):
                if renamed and type_name == renamed[0] and label == renamed[1]:
                    self.pending_labels.append((type_name, renamed[2], where, added_maybe or maybe))
            return
        for type_name in self.columns:
            self.columns[type_name].update(declared_columns(stmt, type_name))
        self._uses(migration, stmt, maybe, if_runs)

    def _add_value(self, migration, stmt, added, severity, if_runs, maybe):
        version = self.server_version
        if version and version < 120000:
            self.out.append(finding(migration, statement_head(stmt.text), 'not_in_transaction', severity,
                                    if_runs + 'PostgreSQL %d.%d refuses ALTER TYPE ... ADD VALUE inside a '
                                    'transaction block (before version 12), and this migration runs inside one. %s'
                                    % (version // 10000, version % 10000 // 100,
                                       self.advice('always', migration, None))))
        elif added[3] and added[1] in self.catalog(added[2])[0]:
            pass  # IF NOT EXISTS of a label the type has (committed): adds nothing, its use is safe
        else:  # also for a type created in the same transaction (PostgreSQL refuses that too)
            self.pending_labels.append((added[0], added[1], migration, maybe))
            self.columns.setdefault(added[0], set()).update(self.catalog(added[2])[1])

    def _uses(self, migration, stmt, maybe, if_runs):
        used = literals(stmt)
        for type_name, label, where, added_maybe in self.pending_labels:
            if label not in used:
                continue
            later = migration if migration != where else None
            # certain only when the statement names the type or a column of it; a text value spelled
            # like the label (INSERT INTO log (note) VALUES ('happy')) runs fine
            names = set(token_name(tok) for tok in stmt.tokens if tok.kind in ('word', 'ident'))
            certain = (type_name in names or bool(names & self.columns.get(type_name, set()))) and not (
                maybe or added_maybe)
            self.out.append(finding(
                migration, statement_head(stmt.text), 'not_in_transaction', ERROR if certain else WARNING,
                if_runs + "this statement %s the enum label '%s' that %s adds to %s (ALTER TYPE ... ADD "
                'VALUE) in the same transaction; PostgreSQL refuses a new label before the transaction that '
                'added it commits (SQLSTATE 55P04 unsafe use of new value)%s. %s'
                % ('uses' if certain else 'may use', label,
                   'migration %s' % where if later else 'this migration', type_name,
                   '' if certain else (", so it fails if '%s' here is a %s value (it names neither %s nor "
                                       'a column of that type)' % (label, type_name, type_name)),
                   self.advice('enum_later' if later else 'enum_same', where, later))))
            break
