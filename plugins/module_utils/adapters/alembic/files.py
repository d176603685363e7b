# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Revision files: which files alembic loads, and their revision names, read without running them.

:func:`list_revision_files` lists the files the way alembic's ``ScriptDirectory`` does;
:func:`read_revision` takes the four revision names from a file (a regular-expression fast path over
the file's head, else the whole AST: values.py); :func:`revision_from_values` builds alembic's own
``Revision`` from them as ``Script.__init__`` does. Errors are FileError.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import codecs
import io
import os
import re
import tokenize

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import lazy
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.values import (
    FileError, module_names, parse_module, to_tuple, values_from_tree)
from ansible_collections.homelab.migrations.plugins.module_utils.regular_file import (
    MIGRATION_LIMIT, is_regular, read_regular)

# alembic.script.base: which file names are revision files
_ONLY_SOURCE_RE = re.compile(r'(?!\.\#|__init__)(.*\.py)$')
_SOURCELESS_RE = re.compile(r'(?!\.\#|__init__)(.*\.py)(c|o)?$')
_LEGACY_REV_RE = re.compile(r'([a-f0-9]+)\.py$')

# Fast path of the revision file reader (see _fast_values): a file's head made only of whole
# top-level lines -- blank/comment lines, string statements (the docstring), one-line imports and
# simple `name[: annotation] = literal` lines for the four names -- matched by regular expressions.
_NAMES_ALT = br'(?:revision|down_revision|branch_labels|depends_on)'
_NAME_WORD_RE = re.compile(br'\b' + _NAMES_ALT + br'\b')
_EOL = br'[ \t]*(?:#[^\r\n]*)?(?:\r?\n|\Z)'
_FILLER_RE = re.compile(
    br'(?:[ \t]*(?:#[^\r\n]*)?\r?\n'
    br'|[rRuU]?"""(?:[^"\\]+|\\.|"(?!""))*"""' + _EOL
    + br"|[rRuU]?'''(?:[^'\\]+|\\.|'(?!''))*'''" + _EOL
    + br'|(?:from[ \t]+[\w.]+[ \t]+)?import[ \t]+(?![^\n]*\b' + _NAMES_ALT + br'\b)[\w., \t]+' + _EOL
    + br')*', re.S)
_SIMPLE_LINE_RE = re.compile(
    br'(' + _NAMES_ALT + br')(?:[ \t]*:[ \t]*([\w.\[\], \t|]+?))?[ \t]*=[ \t]*'
    br'''(None|'[^'\\\n]*'|"[^"\\\n]*"|[(\[][^()\[\]#\\]*[)\]])''' + _EOL)
_INNER_BRACKETS_RE = re.compile(br'\[[^\[\]]*\]')
_COOKIE_RE = re.compile(br'(?:[^\n]*\n)?[ \t\f]*#[^\n]*?coding[:=][ \t]*([-\w.]+)')


class NoModule(object):
    """Stands in for a revision file's module where alembic's RevisionStep wants one; never called."""
    upgrade = None
    downgrade = None


def list_revision_files(config):
    """Revision file paths in the order ScriptDirectory._load_revisions yields them.

    Like alembic's Script._list_py_dir on Python 3.8-3.11 (os.walk: top-down, symlinked
    directories not entered, files sorted, sub-directories sorted, only the first level unless
    recursive_version_locations) and _from_path (file name rules applied to the resolved path).
    Returns (paths, unreadable): ``unreadable`` are sourceless (.pyc/.pyo only) revisions.
    """
    paths = []
    unreadable = []
    seen = set()
    for location in config.version_locations:
        if not os.path.exists(location):
            continue
        stack = [location]
        while stack:
            root = stack.pop()
            try:
                entries = list(os.scandir(root))
            except OSError:
                entries = []
            files = []
            dirs = []
            for entry in entries:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                (dirs if is_dir else files).append(entry)
            if not os.path.basename(root).endswith('__pycache__'):
                real_root = os.path.realpath(root)
                candidates = []
                for entry in sorted(files, key=lambda e: e.name):
                    if entry.is_symlink() and is_regular(entry.path):
                        candidates.append(os.path.realpath(entry.path))
                    else:
                        candidates.append(os.path.join(real_root, entry.name))
                if config.sourceless:
                    cache = os.path.join(root, '__pycache__')
                    if os.path.isdir(cache):
                        names = set(e.name.split('.')[0] for e in files)
                        candidates.extend(os.path.realpath(os.path.join(cache, f)) for f in os.listdir(cache)
                                          if f.split('.')[0] not in names)
                for real in candidates:
                    if real in seen:
                        continue
                    seen.add(real)
                    kind = _file_kind(config, real)
                    if kind == 'source':
                        paths.append(real)
                    elif kind == 'compiled':
                        unreadable.append(real)
            if not config.recursive:
                break
            for entry in sorted(dirs, key=lambda e: e.name, reverse=True):
                if not entry.is_symlink():
                    stack.append(entry.path)
    return paths, unreadable


def _file_kind(config, path):
    directory, name = os.path.split(path)
    match = (_SOURCELESS_RE if config.sourceless else _ONLY_SOURCE_RE).match(name)
    if not match:
        return None
    if config.sourceless and match.group(2) in ('c', 'o'):
        py_name = match.group(1)
        if os.path.exists(os.path.join(directory, py_name)) or (
                match.group(2) == 'o' and os.path.exists(os.path.join(directory, py_name + 'c'))):
            return None
        return 'compiled'
    return 'source'


def fast_values(data):
    """The revision names' literal values from the file's head, or None when the file needs a full parse.

    The head is consumed in whole top-level lines by regular expressions (see _FILLER_RE and
    _SIMPLE_LINE_RE), so every line taken is a complete module-level statement; the right-hand
    sides go through ``ast.literal_eval``. If the head has no such line, or the rest of the file
    mentions one of the names at all (anywhere, even in a comment), or the file declares a
    non-UTF-8 encoding, the answer is None and the caller parses the whole file with ``ast``.
    """
    if data[:3] == b'\xef\xbb\xbf':
        return None
    second_eol = data.find(b'\n', data.find(b'\n') + 1)
    cookie = _COOKIE_RE.match(data[:second_eol + 1] if second_eol >= 0 else data)
    if cookie and cookie.group(1).lower().replace(b'_', b'-') not in (b'utf-8', b'utf8'):
        return None
    values = {}
    pos = 0
    while True:
        pos = _FILLER_RE.match(data, pos).end()
        line = _SIMPLE_LINE_RE.match(data, pos)
        if line is None:
            break
        annotation = line.group(2)
        if annotation is not None:
            while True:
                annotation, count = _INNER_BRACKETS_RE.subn(b'', annotation)
                if not count:
                    break
            if b'[' in annotation or b']' in annotation:
                return None
        text = line.group(3)
        if text == b'None':
            value = None
        elif text[:1] in (b'"', b"'"):
            try:
                value = text[1:-1].decode('utf-8')
            except UnicodeDecodeError:
                return None
        else:
            try:
                value = ast.literal_eval(text.decode('utf-8'))
            except (SyntaxError, ValueError, TypeError, UnicodeDecodeError, MemoryError, RecursionError):
                return None
        values[line.group(1).decode('ascii')] = value
        pos = line.end()
    if not values or _NAME_WORD_RE.search(data, pos):
        return None
    return values


def read_file(path):
    """The bytes of a revision (or application) file, at most MIGRATION_LIMIT, regular files only. FileError."""
    try:
        return read_regular(path, MIGRATION_LIMIT)
    except OSError as exc:
        raise FileError('cannot be read: %s' % (exc.strerror or exc))


def check_source_encoding(data):
    """Raise _FileError when Python would refuse to import ``data`` over its encoding.

    The reader's fast path looks only at a file's head, yet alembic imports every revision file
    on every command, so one undecodable byte anywhere makes all of them fail. The whole file is
    decoded once, strictly, the way Python picks the encoding (PEP 263 / 3120 as
    :func:`tokenize.detect_encoding` applies them: a UTF-8 BOM, a coding cookie on the first or
    second line, else UTF-8). That is cheap, and almost every file passes. A file that fails gets
    compiled like an import compiles it, because CPython does not decode comments: a stray
    latin-1 byte in a comment imports fine, and a file alembic runs is not an error here.
    """
    try:
        encoding = tokenize.detect_encoding(io.BytesIO(data).readline)[0]
    except SyntaxError as exc:
        text = str(getattr(exc, 'msg', None) or exc)
        if 'unknown encoding' in text or 'encoding problem' in text:
            raise FileError('declares an encoding Python does not accept (%s), so Python refuses to import it; fix '
                            'its `# -*- coding: ... -*-` line, or save the file as UTF-8 and drop the line' % text)
        encoding = 'utf-8'  # the first line does not decode: located below
    offset = 0
    if encoding == 'utf-8-sig':
        encoding, offset = 'utf-8', 3
    try:
        codecs.decode(data[offset:], encoding, 'strict')
        return
    except UnicodeDecodeError as exc:
        bad = offset + exc.start
    except LookupError as exc:
        raise FileError('declares an encoding Python does not accept (%s); save the file as UTF-8' % exc)
    try:
        parse_module(data)
    except FileError as exc:
        if not re.search(r'codec|unicode error|encoding|decode', str(exc)):
            raise
    else:
        return  # only comments hold the bytes: Python (and so alembic) imports it as it is
    shown = 'UTF-8' if encoding.replace('_', '-').lower() in ('utf-8', 'utf8') else encoding
    raise FileError('is not valid %s (byte 0x%02x on line %d), so Python refuses to import it and every `alembic` '
                    'command fails; save the file as UTF-8%s'
                    % (shown, bytearray(data[bad:bad + 1])[0], data.count(b'\n', 0, bad) + 1,
                       '' if shown == 'UTF-8' else ' and fix its coding line'))


def parses_as_text(data):
    """Whether ``ast.parse(data)`` parses exactly the text ``data.decode('utf-8-sig')``: Python reads the file as
    UTF-8 (no other coding cookie, as :func:`tokenize.detect_encoding` decides) and every byte decodes strictly.
    Then that tree is also the tree of the decoded text, which the pre-flight reads (preflight/alembic_calls.py)."""
    try:
        if tokenize.detect_encoding(io.BytesIO(data).readline)[0] not in ('utf-8', 'utf-8-sig'):
            return False
        data.decode('utf-8-sig')
    except (SyntaxError, UnicodeDecodeError):
        return False
    return True


def read_revision(path, data=None):
    """({name: value}, module_names or False) of one revision file; False when only its head was read.

    Raises _FileError.
    """
    if data is None:
        data = read_file(path)
    check_source_encoding(data)
    values = fast_values(data)
    if values is not None:
        return values, False
    tree = parse_module(data)
    return values_from_tree(tree), module_names(tree)


def read_revision_values(path, data=None):
    """({name: value}, whole_file_parsed) of one revision file. Raises _FileError."""
    values, names = read_revision(path, data)
    return values, names is not False


def check_ids(name, value, single=False):
    """FileError unless ``value`` of revision name ``name`` has the type alembic accepts (``single``: one id)."""
    if value is None:
        return
    if single:
        ok = isinstance(value, str) and value != ''
    else:
        ok = isinstance(value, str) or (isinstance(value, (tuple, list, set, frozenset))
                                        and all(isinstance(v, str) for v in value))
    if not ok:
        raise FileError('%s must be %s, got %r' % (name, 'a non-empty string' if single
                                                   else 'None, a string or a tuple of strings', value))


def revision_from_values(path, values):
    """An alembic Revision built from a file's literals, the way Script.__init__ builds it."""
    lazy.require_alembic()
    if 'revision' in values:
        rev_id = values['revision']
        check_ids('revision', rev_id, single=True)
    else:
        legacy = _LEGACY_REV_RE.match(os.path.basename(path))
        if not legacy:
            raise FileError("has no module-level `revision = '...'`")
        rev_id = legacy.group(1)
    if 'down_revision' not in values:
        raise FileError("has no module-level `down_revision = ...` (use None for a base revision)")
    for name in ('down_revision', 'branch_labels', 'depends_on'):
        check_ids(name, values.get(name))
    try:
        rev = lazy.Revision(rev_id, values['down_revision'],
                            dependencies=to_tuple(values.get('depends_on'), default=()),
                            branch_labels=to_tuple(values.get('branch_labels'), default=()))
    except lazy.RevisionError as exc:
        raise FileError(str(exc))
    rev.module = NoModule
    return rev


def revision_from_file(path):
    """alembic's Revision of one file read statically (no resolution of references). FileError."""
    values, _whole = read_revision_values(path)
    return revision_from_values(path, values)
