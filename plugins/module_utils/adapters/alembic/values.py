# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The values a revision file gives its four revision names, read from its AST (never run).

``revision``, ``down_revision``, ``branch_labels`` and ``depends_on`` are what alembic's ``Script``
(alembic.script.base) takes from a revision module's globals. Here they come from module-level
assignments of literals; a name bound to anything else becomes :class:`Unread` (resolved statically
later, see binding.py) or, for ``revision``, a :class:`FileError`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast

REV_NAMES = ('revision', 'down_revision', 'branch_labels', 'depends_on')


class FileError(Exception):
    """A revision file alembic would choke on (or that we cannot read without running it); the message
    follows the file's path."""


def to_tuple(value, default=None):
    """alembic.util.to_tuple"""
    if value is None:
        return default
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(value)
    return (value,)


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.ListComp, ast.SetComp,
           ast.DictComp, ast.GeneratorExp)


# nodes that neither bind a name nor hold a node that does: a Name's context, a constant
_NO_NAMES = (ast.expr_context, ast.Constant)


def stored_names(node):
    """(name, node) for the names a module-level statement binds or deletes (not descending into new scopes), in
    the order of a depth-first walk that takes a node's children (ast.iter_child_nodes order) last first."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Name):
            if isinstance(item.ctx, (ast.Store, ast.Del)):
                yield item.id, item
            continue  # its only child is its context
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield item.name, item
            continue
        if isinstance(item, (ast.Import, ast.ImportFrom)):
            for alias in item.names:
                yield (alias.asname or alias.name.split('.')[0]), item
            continue
        if isinstance(item, _SCOPES) and item is not node:
            continue
        for field in item._fields:  # ast.iter_child_nodes, less the nodes without names
            value = getattr(item, field, None)
            if isinstance(value, list):
                stack.extend(v for v in value if isinstance(v, ast.AST) and not isinstance(v, _NO_NAMES))
            elif isinstance(value, ast.AST) and not isinstance(value, _NO_NAMES):
                stack.append(value)


class Unread(object):
    """A revision name (down_revision, branch_labels, depends_on) set to something other than a literal:
    ``branch_labels = (cli.EXPAND_BRANCH,)``. alembic imports the file and sees the value; status never runs
    it, so RevisionGraph tries to read the value statically (resolve_unread) and otherwise works without it."""

    def __init__(self, name, node, tree, lineno=None, how=None):
        self.name = name
        self.node = node
        self.tree = tree
        self.lineno = lineno if lineno is not None else getattr(node, 'lineno', None)
        self.how = how
        try:
            self.text = ' '.join(ast.unparse(node).split()) if node is not None else how
        except Exception:  # ast.unparse: Python 3.9+
            self.text = type(node).__name__
        if self.text and len(self.text) > 80:
            self.text = self.text[:77] + '...'


def _literal(name, node, tree=None):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        if name != 'revision':
            return Unread(name, node, tree)
        raise FileError('line %s: %s is set to an expression (%s), not a literal; status reads revision files '
                        'without running them, so write it as a plain string, tuple or None'
                        % (getattr(node, 'lineno', '?'), name, type(node).__name__))


def _bind(values, target, value, tree=None):
    if isinstance(target, ast.Name):
        if target.id in REV_NAMES:
            values[target.id] = _literal(target.id, value, tree)
        return
    if isinstance(target, (ast.Tuple, ast.List)):
        names = [n for n, _node in stored_names(target) if n in REV_NAMES]
        if not names:
            return
        if (isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts)
                and not any(isinstance(e, ast.Starred) for e in target.elts + value.elts)):
            for sub_target, sub_value in zip(target.elts, value.elts):
                _bind(values, sub_target, sub_value, tree)
            return
        raise FileError('line %s: %s is assigned by unpacking an expression; write it as a plain literal assignment'
                        % (target.lineno, ', '.join(names)))
    if isinstance(target, ast.Starred):
        names = [n for n, _node in stored_names(target) if n in REV_NAMES]
        if names:
            raise FileError('line %s: %s is assigned by star-unpacking; write it as a plain literal assignment'
                            % (target.lineno, ', '.join(names)))


def parse_module(data):
    """ast.parse with the errors turned into _FileError."""
    try:
        return ast.parse(data)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, 'lineno', None)
        where = ' (line %s)' % line if line is not None else ''
        raise FileError('is not valid Python%s: %s' % (where, getattr(exc, 'msg', None) or exc))
    except (RecursionError, MemoryError):
        raise FileError('is too deeply nested to parse')


def full_values(data):
    """{name: value} of the module-level revision names, from the whole file's AST. Raises _FileError."""
    return values_from_tree(parse_module(data))


def module_names(tree):
    """The names a module's top-level code binds (None when a star import may bind anything)."""
    names = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and any(alias.name == '*' for alias in stmt.names):
            return None
        names.update(name for name, _node in stored_names(stmt))
    return names


def values_from_tree(tree):
    """{name: value} of the module-level revision names of a parsed file. Raises _FileError."""
    values = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                _bind(values, target, stmt.value, tree)
        elif isinstance(stmt, ast.AnnAssign):
            if stmt.value is not None and stmt.simple:
                _bind(values, stmt.target, stmt.value, tree)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # docstrings
        else:
            for name, node in stored_names(stmt):
                if name in REV_NAMES and name != 'revision':
                    # bound inside an if/try/with...: what alembic sees depends on running the file
                    values[name] = Unread(name, None, tree, lineno=getattr(node, 'lineno', stmt.lineno),
                                          how='a value bound by a %s statement' % type(stmt).__name__)
                elif name in REV_NAMES:
                    raise FileError('line %s: %s is bound by a %s statement, not a plain assignment; status reads '
                                    'revision files without running them, so assign a literal at module level'
                                    % (getattr(node, 'lineno', stmt.lineno), name, type(stmt).__name__))
    return values
