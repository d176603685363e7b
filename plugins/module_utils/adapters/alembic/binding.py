# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Revision names set to a reference instead of a literal, read statically: ``branch_labels = (cli.EXPAND,)``.

alembic imports a revision file and sees the value; the read side never runs it, so :func:`resolve_unread`
follows module-level literal assignments and imports (``import``, ``from ... import``, relative and star
imports, ``__all__``) through the application's source files under the config's import dirs
(``prepend_sys_path`` and the service path), reading them and never importing them. What cannot be read
that way is reported, never guessed; only down_revision falls back to the ``Revises:`` line alembic's
revision template writes into the file's docstring.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import os
import re

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.files import check_ids, read_file
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.values import (
    FileError, Unread, parse_module, stored_names, to_tuple)


class _Unresolved(Exception):
    """A value that cannot be read without running code."""


_REVISES_RE = re.compile(r'^[ \t]*Revises:[ \t]*(.*?)[ \t]*$', re.M)
_MAX_RESOLVE_DEPTH = 8


def _module_file(name, dirs):
    """The source file of the dotted module ``name`` under one of ``dirs`` (no import), or None."""
    parts = name.split('.')
    if not all(re.match(r'^\w+$', p) for p in parts):
        return None
    for folder in dirs:
        base = os.path.join(folder, *parts)
        # Python's FileFinder: a package directory wins over a module file of the same name
        for path in (os.path.join(base, '__init__.py'), base + '.py'):
            if os.path.isfile(path):
                return path
    return None


def _module_tree(path, cache):
    if path not in cache:
        try:
            data = read_file(path)
            cache[path] = parse_module(data)
        except FileError:
            cache[path] = None
    if cache[path] is None:
        raise _Unresolved()
    return cache[path]


_UNKNOWN = object()


def _unpacked(target, value, name):
    """The value node ``name`` gets from ``target = value`` (a name, or a name inside tuple unpacking of a
    tuple/list display of the same length), _UNKNOWN when the statement binds it otherwise, None when not."""
    if isinstance(target, ast.Name):
        return value if target.id == name else None
    if not any(bound == name for bound, _node in stored_names(target)):
        return None
    if (isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List))
            and len(target.elts) == len(value.elts)
            and not any(isinstance(e, ast.Starred) for e in target.elts + value.elts)):
        for sub_target, sub_value in zip(target.elts, value.elts):
            found = _unpacked(sub_target, sub_value, name)
            if found is not None:
                return found
    return _UNKNOWN


def _binding(tree, name, before=None):
    """How the module-level code of ``tree`` binds ``name`` last, unconditionally: ('value', node),
    ('module', dotted name) or ('from', module, level, imported name); None when it does not.
    With ``before`` (a line number), only statements that start above that line count: the ones
    Python has run when it evaluates that line of the module."""
    found = None
    for stmt in tree.body:
        if before is not None and stmt.lineno >= before:
            break
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                value = _unpacked(target, stmt.value, name)
                if value is _UNKNOWN:
                    found = ('unknown',)  # unpacking of a computed value: only running the code tells
                elif value is not None:
                    found = ('value', value)
        elif isinstance(stmt, ast.AnnAssign):
            if stmt.simple and stmt.value is not None and stmt.target.id == name:
                found = ('value', stmt.value)
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname == name:
                    found = ('module', alias.name)
                elif alias.asname is None and alias.name.split('.')[0] == name:
                    found = ('module', name)
        elif isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                if (alias.asname or alias.name) == name:
                    found = ('from', stmt.module or '', stmt.level, alias.name)
        else:
            for bound, _node in stored_names(stmt):
                if bound == name:
                    found = ('unknown',)  # conditional or computed: only running the code tells
    return found


def _star_modules(tree, where, dirs, before=None):
    """The modules a file star-imports (``from app.cli import *``) above line ``before``, last first, as dotted
    names."""
    out = []
    for stmt in tree.body:
        if before is not None and stmt.lineno >= before:
            break
        if isinstance(stmt, ast.ImportFrom) and any(a.name == '*' for a in stmt.names):
            base = stmt.module or ''
            if stmt.level:
                package = _package_of(where, stmt.level, dirs)
                if package is None:
                    continue
                base = '.'.join(p for p in (package, base) if p)
            out.append(base)
    return list(reversed(out))


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return list(reversed(parts))


def _evaluate(node, tree, where, dirs, cache, depth=0, before=None):
    """The value of ``node`` (a literal, a name or a.b.c reference, or a tuple/list of them) in the module
    ``tree`` at path ``where``, following module-level literal assignments and imports of modules found
    under ``dirs`` by reading them (never importing). Raises _Unresolved."""
    if node is None or depth > _MAX_RESOLVE_DEPTH:
        raise _Unresolved()
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_evaluate(e, tree, where, dirs, cache, depth + 1, before) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    ref = _dotted(node)
    if ref is None:
        raise _Unresolved()
    return _lookup(ref, tree, where, dirs, cache, depth + 1, before)


def _package_of(where, level, dirs):
    """The dotted package a relative import at ``level`` in the file ``where`` starts from, or None."""
    folder = os.path.dirname(where)
    for _dummy in range(level - 1):
        folder = os.path.dirname(folder)
    for root in dirs:
        rel = os.path.relpath(folder, root)
        if rel == '.':
            return ''
        if not rel.startswith('..'):
            return rel.replace(os.sep, '.')
    return None


def _star_exports(tree, name):
    """Whether ``from <module> import *`` binds ``name`` from the module ``tree``: its ``__all__`` when the
    module sets it (as a literal; otherwise unknown: _Unresolved), else every name not starting with '_'."""
    found = _binding(tree, '__all__')
    if found is None:
        return not name.startswith('_')
    if found[0] != 'value':
        raise _Unresolved()
    try:
        exported = ast.literal_eval(found[1])
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise _Unresolved()
    if not isinstance(exported, (list, tuple)):
        raise _Unresolved()
    return name in exported


def _shadowed(package, name, dirs, cache):
    """Whether the code of ``package`` binds ``name`` to something other than its own submodule ``name`` (which
    Python's ``from package import name`` then returns instead of the submodule)."""
    path = _module_file(package, dirs) if package else None
    if path is None:
        return False
    found = _binding(_module_tree(path, cache), name)
    if found is None:
        return False
    if found[0] == 'from' and found[3] == name:  # `from . import name` / `from package import name`
        base = found[1]
        if found[2]:
            parent = _package_of(path, found[2], dirs)
            if parent is None:
                return True
            base = '.'.join(p for p in (parent, base) if p)
        return base != package
    return True


def _lookup(ref, tree, where, dirs, cache, depth, before=None):
    if depth > _MAX_RESOLVE_DEPTH:
        raise _Unresolved()
    found = _binding(tree, ref[0], before)
    if found is None:  # not bound here: a star import (above the use) may bring it
        for module in _star_modules(tree, where, dirs, before):
            path = _module_file(module, dirs)
            if path is not None:
                try:
                    module_tree = _module_tree(path, cache)
                    if not _star_exports(module_tree, ref[0]):
                        continue  # `import *` does not bind it (__all__, or a _private name): Python's NameError
                    return _lookup(ref, module_tree, path, dirs, cache, depth + 1)
                except _Unresolved:
                    continue
        raise _Unresolved()
    if found[0] == 'unknown':
        raise _Unresolved()
    if found[0] == 'value':
        if len(ref) > 1:
            raise _Unresolved()
        return _evaluate(found[1], tree, where, dirs, cache, depth + 1, before)
    if found[0] == 'module':
        module, rest = found[1], ref[1:]
    else:
        _kind, base, level, imported = found
        if level:
            package = _package_of(where, level, dirs)
            if package is None:
                raise _Unresolved()
            base = '.'.join(p for p in (package, base) if p)
        candidate = '.'.join(p for p in (base, imported) if p)
        # `from pkg import name`: an attribute the package's own code binds wins over its submodule `name`
        if _shadowed(base, imported, dirs, cache):
            module, rest = base, [imported] + ref[1:]
        elif _module_file(candidate, dirs):
            module, rest = candidate, ref[1:]
        else:
            module, rest = base, [imported] + ref[1:]
    while len(rest) > 1 and _module_file(module + '.' + rest[0], dirs):
        if _shadowed(module, rest[0], dirs, cache):
            break  # the package's own code binds the name to something else than the submodule
        module = module + '.' + rest.pop(0)
    path = _module_file(module, dirs) if module else None
    if path is None or not rest:
        raise _Unresolved()
    return _lookup(rest, _module_tree(path, cache), path, dirs, cache, depth + 1)


def _revises_from_docstring(tree):
    """down_revision as alembic's revision template writes it in the docstring (``Revises: a, b``), or _Unresolved."""
    doc = ast.get_docstring(tree) if tree is not None else None
    match = _REVISES_RE.search(doc or '')
    if match is None:
        raise _Unresolved()
    ids = [x.strip() for x in match.group(1).split(',') if x.strip()]
    if not ids:
        return None
    return ids[0] if len(ids) == 1 else tuple(ids)


def resolve_unread(path, values, dirs, cache=None):
    """Replace the _Unread values of one file's ``values`` in place.

    A value read statically (a constant the application defines as a literal, found under ``dirs``)
    is what alembic sees when it imports the file. What cannot be read becomes None (no labels, no
    dependencies) or, for down_revision, the ``Revises:`` line of the file's docstring. Returns the
    (name, line, expression, what was assumed) of each value that could not be read; raises _FileError
    for a down_revision that cannot be known at all.
    """
    cache = {} if cache is None else cache
    unread = []
    for name in ('down_revision', 'branch_labels', 'depends_on'):
        item = values.get(name)
        if not isinstance(item, Unread):
            continue
        try:
            # names of the revision file itself count only when bound above the line that uses them
            value = _evaluate(item.node, item.tree, path, dirs, cache, before=item.lineno)
            check_ids(name, value)
            values[name] = value
            continue
        except (_Unresolved, FileError):
            pass
        if name == 'down_revision':
            try:
                values[name] = _revises_from_docstring(item.tree)
            except _Unresolved:
                raise FileError('line %s: down_revision is set to %s, which status cannot read without running the '
                                'file (no literal value found for it under %s, and no `Revises:` line in the '
                                "file's docstring); write down_revision as a plain string, tuple or None"
                                % (item.lineno, item.text, ', '.join(dirs) or 'the service path'))
            assumed = 'the docstring\'s "Revises: %s"' % (to_tuple(values[name], default=()) and
                                                          ', '.join(to_tuple(values[name])) or '')
        else:
            values[name] = None
            assumed = 'none'
        unread.append((name, item.lineno, item.text, assumed))
    return unread
