# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an alembic revision's upgrade() (or downgrade()) will send, read from its source with :mod:`ast`.

Nothing of the revision runs: op.execute / <conn>.execute with a literal SQL string (or text('...')), and
op.create_index / op.drop_index with postgresql_concurrently=True, in source order, each marked when it is inside
``with op.get_context().autocommit_block():`` (alembic commits before the block and begins anew after it) or in
code that may not run. Also alembic's own limit: version_num is String(32) unless env.py widens it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast

from ansible_collections.homelab.migrations.plugins.module_utils.preflight.findings import ERROR, finding

ALEMBIC_VERSION_NUM_DEFAULT = 32  # alembic creates version_num as String(32)


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


def alembic_upgrade_calls(data, function='upgrade', tree=None):
    """The calls of module-level upgrade() (or ``function``) of a revision file's bytes (see _UpgradeCalls).

    ``tree``: ``ast.parse`` of the text ``data`` decodes to (UTF-8, BOM dropped), when the caller parsed it
    already; else it is parsed here. SyntaxError / ValueError for text that is no Python."""
    source = data.decode('utf-8-sig', 'replace') if isinstance(data, bytes) else data
    if tree is None:
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
        # imported here: most revisions send no literal SQL, and the lexer is slow to import
        from ansible_collections.homelab.migrations.plugins.module_utils.preflight.lexer import Statement, split_sql
        shown = call[3] if len(call) > 3 else None
        for stmt in split_sql(sql):
            stmt = Statement(shown if shown is not None else stmt.text, stmt.tokens, stmt.start,
                             conditional=bool(len(call) > 4 and call[4]))
            transactions[-1].append((rev, stmt))
    return [tx for tx in transactions if tx]


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
