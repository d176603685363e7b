# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The alembic adapter.

Read side (status, plan): never runs env.py or a revision file and never writes. It reads the
alembic config the way alembic 1.20 does (``script_location``, ``version_locations`` with the
``path_separator`` / ``version_path_separator`` rules, ``recursive_version_locations``,
``sourceless``; ``[tool.alembic]`` of ``pyproject.toml`` as the fallback), lists revision files
exactly like ``ScriptDirectory`` does, takes ``revision`` / ``down_revision`` / ``branch_labels`` /
``depends_on`` from each file with :mod:`ast` (literals only), and builds alembic's own
``RevisionMap`` from ``Revision`` objects. Heads, history, pending and downgrade steps come from
that map with the calls ``alembic heads`` / ``history`` / ``upgrade`` / ``downgrade`` make, so
they agree with the CLI. The current revisions come from the version table.

Write side (apply): runs the service's own ``alembic`` (its env.py is service code) with
``DATABASE_URL`` in the environment (never in argv), in a process group of its own that dies with
us (``PR_SET_PDEATHSIG``), then re-reads the version table and reports what really happened.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import codecs
import configparser
import io
import os
import re
import shlex
import sys
import tokenize
import warnings

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import (
    Adapter, AdapterError, ApplyError, ApplyResult, Plan, PlanError, ServiceState, is_warning, problem)
from ansible_collections.homelab.migrations.plugins.module_utils.child import run_child
from ansible_collections.homelab.migrations.plugins.module_utils.connection import quote_ident
from ansible_collections.homelab.migrations.plugins.module_utils.preflight import api as preflight_mod
from ansible_collections.homelab.migrations.plugins.module_utils.waits import (
    LOCK_NOT_AVAILABLE_CLASS,
    child_application_name,
)
from ansible_collections.homelab.migrations.plugins.module_utils.regular_file import (
    CONFIG_LIMIT,
    MIGRATION_LIMIT,
    NotRegularFile,
    is_regular,
    read_regular,
)

# alembic's revision machinery, imported on first use by _load_alembic(): a module that never reads an
# Alembic service (a drizzle-only status or apply) never pays for importing alembic and SQLAlchemy
HeadMaintainer = Revision = RevisionError = RevisionMap = RevisionStep = MultipleHeads = None
_ALEMBIC = {}  # 'error': the ImportError, or None once loaded
_ALEMBIC_MODULES = ('alembic.script.revision', 'alembic.runtime.migration')

try:  # Python 3.11+
    import tomllib as _toml
except ImportError:  # pragma: no cover - older Pythons
    try:
        import tomli as _toml
    except ImportError:
        _toml = None

MAIN_SECTION = 'alembic'
REV_NAMES = ('revision', 'down_revision', 'branch_labels', 'depends_on')

# alembic.script.base: which file names are revision files
_ONLY_SOURCE_RE = re.compile(r'(?!\.\#|__init__)(.*\.py)$')
_SOURCELESS_RE = re.compile(r'(?!\.\#|__init__)(.*\.py)(c|o)?$')
_LEGACY_REV_RE = re.compile(r'([a-f0-9]+)\.py$')
# alembic.script.revision._relative_destination
_RELATIVE_RE = re.compile(r'(?:(.+?)@)?(\w+)?((?:\+|-)\d+)')
# alembic.config: legacy version_locations splitting when no separator is configured
_LEGACY_SPLIT_RE = re.compile(r', *|(?: +)')
_SEPARATORS = {'space': ' ', 'newline': '\n', 'os': os.pathsep, ':': ':', ';': ';'}

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
_TIMEOUT_RE = re.compile(r'^\d+(?:\.\d+)?\s*(?:us|ms|s|min|h|d)?$')

STDERR_TAIL_LINES = 30
STDERR_TAIL_CHARS = 4000
PREVIEW_TIMEOUT = 120


class _FileError(Exception):
    """A revision file alembic would choke on (or that we cannot read without running it)."""


class _NoModule(object):
    """Stands in for a revision file's module where alembic's RevisionStep wants one; never called."""
    upgrade = None
    downgrade = None


def _import_alembic_light():
    """The modules of _ALEMBIC_MODULES, imported without the parts of alembic the read side never runs.

    ``import alembic`` loads alembic's whole command runtime (``alembic.context``, ``alembic.op`` and its
    operations, every DDL dialect, the autogenerate plugins, Mako and Pygments for the revision
    templates): about 0.15 s, half of a status run, for nothing the read side uses. The revision map and
    the version-table bookkeeping (``HeadMaintainer``, ``RevisionStep``) need none of it, so while the two
    modules load, the package ``__init__`` files of ``alembic`` and ``alembic.script``, ``alembic.ddl``
    (used only when a MigrationContext connects) and Mako (used only to render new revision files) are
    bare stand-ins. Afterwards every module loaded that way and every stand-in leaves sys.modules again:
    this adapter keeps a private copy, and a later ``import alembic`` in the same process gets the real,
    complete package. When alembic is imported already, or the stand-ins do not work with the installed
    alembic, the plain import is used instead.
    """
    import importlib
    if 'alembic' in sys.modules:
        return [importlib.import_module(name) for name in _ALEMBIC_MODULES]
    import importlib.util
    import types
    found = importlib.util.find_spec('alembic')
    if found is None or not found.submodule_search_locations:
        raise ImportError("No module named 'alembic'")
    base = list(found.submodule_search_locations)[0]
    stand_ins = [('alembic', base), ('alembic.script', os.path.join(base, 'script')),
                 ('alembic.ddl', os.path.join(base, 'ddl'))]
    if 'mako' not in sys.modules:
        stand_ins += [('mako', None), ('mako.exceptions', None), ('mako.template', None)]
    placed = {}
    before = set(sys.modules)
    try:
        for name, where in stand_ins:
            module = types.ModuleType(name)
            if where is not None:
                module.__path__ = [where]
            sys.modules[name] = placed[name] = module
        if 'mako.template' in placed:
            placed['mako.template'].Template = None  # alembic renders new revision files with it: never here
        modules = [importlib.import_module(name) for name in _ALEMBIC_MODULES]
        ok = True
    except Exception:  # a layout this does not know: forget the partial load, import alembic the plain way
        ok = False
    for name in set(sys.modules) - before:
        if name.split('.')[0] == 'alembic' or placed.get(name) is sys.modules[name]:
            del sys.modules[name]
    if not ok:
        return [importlib.import_module(name) for name in _ALEMBIC_MODULES]
    return modules


def _load_alembic():
    """Import alembic's revision machinery once; returns the ImportError, or None when it is loaded."""
    global HeadMaintainer, Revision, RevisionError, RevisionMap, RevisionStep, MultipleHeads
    if 'error' not in _ALEMBIC:
        try:
            revision, migration = _import_alembic_light()
            HeadMaintainer, RevisionStep = migration.HeadMaintainer, migration.RevisionStep
            Revision, RevisionError, RevisionMap = revision.Revision, revision.RevisionError, revision.RevisionMap
            MultipleHeads = revision.MultipleHeads
            _ALEMBIC['error'] = None
        except ImportError as exc:
            _ALEMBIC['error'] = exc
    return _ALEMBIC['error']


def alembic_import_error():
    """None when alembic can be used on this host, else the ImportError (imports alembic on first call)."""
    return _load_alembic()


def _require_alembic():
    error = _load_alembic()
    if error is not None:
        raise AdapterError('the Python library alembic is required on the managed host to read migration state '
                           '(pip install alembic): %s' % error)


def _to_tuple(value, default=None):
    """alembic.util.to_tuple"""
    if value is None:
        return default
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(value)
    return (value,)


# --------------------------------------------------------------------------- config
class AlembicConfig(object):
    """What the read side needs from alembic.ini / pyproject.toml, resolved to absolute paths."""

    def __init__(self, service_path, config_name):
        self.service_path = os.path.abspath(service_path)
        self.config_name = config_name or 'alembic.ini'
        given = os.path.join(self.service_path, self.config_name)
        if os.path.basename(self.config_name) == 'pyproject.toml':
            # `alembic -c pyproject.toml`: the toml is the config, the ini is the default (often absent)
            self.ini_path = os.path.join(self.service_path, 'alembic.ini')
            self.toml_path = given
        else:
            self.ini_path = given
            self.toml_path = os.path.join(self.service_path, 'pyproject.toml')
        self.ini = self._read_ini()
        self.toml = None  # loaded on first use
        self.script_location = self._script_location()
        self.version_locations = self._version_locations()
        self.recursive = self._boolean('recursive_version_locations')
        self.sourceless = self._boolean('sourceless')
        self.import_dirs = self._import_dirs()

    def describe(self):
        return self.ini_path if self.ini is not None else self.toml_path

    # .ini, as alembic.config.Config.file_config reads it
    def _read_ini(self):
        if not os.path.exists(self.ini_path):
            if os.path.basename(self.config_name) != 'pyproject.toml':
                raise AdapterError('alembic config %s not found; set alembic_config to the ini file relative to the '
                                   'service path %s' % (self.ini_path, self.service_path))
            return None
        here = os.path.dirname(os.path.abspath(self.ini_path)).replace(os.sep, '/')
        parser = configparser.ConfigParser({'here': here})
        try:
            parser.read_string(read_regular(self.ini_path, CONFIG_LIMIT).decode('utf-8'), source=self.ini_path)
        except (configparser.Error, UnicodeDecodeError, OSError) as exc:
            raise AdapterError('cannot read alembic config %s: %s' % (self.ini_path, ' '.join(str(exc).split())))
        return parser

    def _ini_get(self, name):
        if self.ini is None or not self.ini.has_option(MAIN_SECTION, name):
            return None
        try:
            return self.ini.get(MAIN_SECTION, name)
        except configparser.Error as exc:
            raise AdapterError('alembic config %s: cannot read %s: %s' % (self.ini_path, name,
                                                                          ' '.join(str(exc).split())))

    def _toml_data(self):
        if self.toml is None:
            self.toml = {}
            if os.path.exists(self.toml_path):
                if _toml is None:
                    raise AdapterError('%s may hold [tool.alembic] settings but this Python cannot read TOML; use '
                                       'Python 3.11+ or install tomli on the managed host' % self.toml_path)
                try:
                    data = _toml.loads(read_regular(self.toml_path, CONFIG_LIMIT).decode('utf-8'))
                except (ValueError, OSError) as exc:
                    raise AdapterError('cannot read %s: %s' % (self.toml_path, exc))
                section = data.get('tool', {}).get('alembic', {})
                if not isinstance(section, dict):
                    raise AdapterError('%s: [tool.alembic] is not a table' % self.toml_path)
                self.toml = section
        return self.toml

    def _toml_get(self, name):
        value = self._toml_data().get(name)
        here = {'here': os.path.dirname(os.path.abspath(self.toml_path)).replace(os.sep, '/')}
        try:
            if isinstance(value, str):
                return value % here
            if isinstance(value, list):
                return [v % here for v in value]
        except (TypeError, ValueError, KeyError) as exc:
            raise AdapterError('%s: [tool.alembic] %s: bad %%-substitution (%s)' % (self.toml_path, name, exc))
        return value

    def _option(self, name):
        value = self._ini_get(name)
        if value is None:
            value = self._toml_get(name)
        return value

    def _boolean(self, name):
        value = self._ini_get(name)
        if value is not None:
            return value == 'true'
        value = self._toml_data().get(name, False)
        if not isinstance(value, bool):
            raise AdapterError('%s: [tool.alembic] %s must be true or false' % (self.toml_path, name))
        return value

    def _abs(self, location):
        # alembic resolves relative paths against its cwd, which is the service path
        return os.path.normpath(os.path.join(self.service_path, location))

    def _script_location(self):
        location = self._option('script_location')
        if not location or not isinstance(location, str):
            raise AdapterError("alembic config %s has no 'script_location' in its [alembic] section"
                               % self.describe())
        if not os.path.isabs(location) and ':' in location:
            raise AdapterError("alembic config %s: script_location %r names a package resource; status cannot resolve "
                               "it without importing the package, use a filesystem path" % (self.describe(), location))
        path = self._abs(location)
        if not os.path.isdir(path):
            raise AdapterError('alembic config %s: script_location %s does not exist' % (self.describe(), path))
        return path

    def _separator(self):
        for name in ('path_separator', 'version_path_separator'):
            value = self._ini_get(name)
            if value is not None:
                try:
                    return _SEPARATORS[value]
                except KeyError:
                    raise AdapterError("alembic config %s: %r is not a valid value for %s; expected 'space', "
                                       "'newline', 'os', ':' or ';'" % (self.ini_path, value, name))
        return None

    def _import_dirs(self):
        """Where the application modules a revision file imports are looked for (read, never imported): the
        ``prepend_sys_path`` entries alembic puts on sys.path (split leniently), then the service path."""
        raw = self._ini_get('prepend_sys_path')
        if raw is None:
            raw = self._toml_get('prepend_sys_path')
        parts = raw if isinstance(raw, list) else re.split(r'[\s,%s]+' % re.escape(os.pathsep), raw or '')
        dirs = [self._abs(p) for p in parts if isinstance(p, str) and p.strip()]
        return [d for i, d in enumerate(dirs + [self.service_path]) if d not in dirs[:i]]

    def _version_locations(self):
        raw = self._ini_get('version_locations')
        if raw:
            sep = self._separator()
            if sep is None:
                parts = _LEGACY_SPLIT_RE.split(raw)
            else:
                parts = [x.strip() for x in raw.split(sep) if x]
        else:
            parts = self._toml_get('version_locations')
            if parts is not None and (not isinstance(parts, list) or not all(isinstance(p, str) for p in parts)):
                raise AdapterError('%s: [tool.alembic] version_locations must be a list of paths' % self.toml_path)
        if not parts:
            return [os.path.join(self.script_location, 'versions')]
        for part in parts:
            if not os.path.isabs(part) and ':' in part:
                raise AdapterError('alembic config %s: version location %r names a package resource; use a '
                                   'filesystem path' % (self.describe(), part))
        return [self._abs(p) for p in parts]


# ------------------------------------------------------------------- revision files
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


def _fast_values(data):
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


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.ListComp, ast.SetComp,
           ast.DictComp, ast.GeneratorExp)


def _stored_names(node):
    """Names a module-level statement binds or deletes (not descending into new scopes)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Name) and isinstance(item.ctx, (ast.Store, ast.Del)):
            yield item.id, item
        elif isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield item.name, item
            continue
        elif isinstance(item, (ast.Import, ast.ImportFrom)):
            for alias in item.names:
                yield (alias.asname or alias.name.split('.')[0]), item
            continue
        if isinstance(item, _SCOPES) and item is not node:
            continue
        stack.extend(ast.iter_child_nodes(item))


class _Unread(object):
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
            return _Unread(name, node, tree)
        raise _FileError('line %s: %s is set to an expression (%s), not a literal; status reads revision files '
                         'without running them, so write it as a plain string, tuple or None'
                         % (getattr(node, 'lineno', '?'), name, type(node).__name__))


def _bind(values, target, value, tree=None):
    if isinstance(target, ast.Name):
        if target.id in REV_NAMES:
            values[target.id] = _literal(target.id, value, tree)
        return
    if isinstance(target, (ast.Tuple, ast.List)):
        names = [n for n, _node in _stored_names(target) if n in REV_NAMES]
        if not names:
            return
        if (isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts)
                and not any(isinstance(e, ast.Starred) for e in target.elts + value.elts)):
            for sub_target, sub_value in zip(target.elts, value.elts):
                _bind(values, sub_target, sub_value, tree)
            return
        raise _FileError('line %s: %s is assigned by unpacking an expression; write it as a plain literal assignment'
                         % (target.lineno, ', '.join(names)))
    if isinstance(target, ast.Starred):
        names = [n for n, _node in _stored_names(target) if n in REV_NAMES]
        if names:
            raise _FileError('line %s: %s is assigned by star-unpacking; write it as a plain literal assignment'
                             % (target.lineno, ', '.join(names)))


def parse_module(data):
    """ast.parse with the errors turned into _FileError."""
    try:
        return ast.parse(data)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, 'lineno', None)
        where = ' (line %s)' % line if line is not None else ''
        raise _FileError('is not valid Python%s: %s' % (where, getattr(exc, 'msg', None) or exc))
    except (RecursionError, MemoryError):
        raise _FileError('is too deeply nested to parse')


def full_values(data):
    """{name: value} of the module-level revision names, from the whole file's AST. Raises _FileError."""
    return values_from_tree(parse_module(data))


def module_names(tree):
    """The names a module's top-level code binds (None when a star import may bind anything)."""
    names = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and any(alias.name == '*' for alias in stmt.names):
            return None
        names.update(name for name, _node in _stored_names(stmt))
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
            for name, node in _stored_names(stmt):
                if name in REV_NAMES and name != 'revision':
                    # bound inside an if/try/with...: what alembic sees depends on running the file
                    values[name] = _Unread(name, None, tree, lineno=getattr(node, 'lineno', stmt.lineno),
                                           how='a value bound by a %s statement' % type(stmt).__name__)
                elif name in REV_NAMES:
                    raise _FileError('line %s: %s is bound by a %s statement, not a plain assignment; status reads '
                                     'revision files without running them, so assign a literal at module level'
                                     % (getattr(node, 'lineno', stmt.lineno), name, type(stmt).__name__))
    return values


def read_file(path):
    try:
        return read_regular(path, MIGRATION_LIMIT)
    except OSError as exc:
        raise _FileError('cannot be read: %s' % (exc.strerror or exc))


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
            raise _FileError('declares an encoding Python does not accept (%s), so Python refuses to import it; fix '
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
        raise _FileError('declares an encoding Python does not accept (%s); save the file as UTF-8' % exc)
    try:
        parse_module(data)
    except _FileError as exc:
        if not re.search(r'codec|unicode error|encoding|decode', str(exc)):
            raise
    else:
        return  # only comments hold the bytes: Python (and so alembic) imports it as it is
    shown = 'UTF-8' if encoding.replace('_', '-').lower() in ('utf-8', 'utf8') else encoding
    raise _FileError('is not valid %s (byte 0x%02x on line %d), so Python refuses to import it and every `alembic` '
                     'command fails; save the file as UTF-8%s'
                     % (shown, bytearray(data[bad:bad + 1])[0], data.count(b'\n', 0, bad) + 1,
                        '' if shown == 'UTF-8' else ' and fix its coding line'))


def read_revision(path, data=None):
    """({name: value}, module_names or False) of one revision file; False when only its head was read.

    Raises _FileError.
    """
    if data is None:
        data = read_file(path)
    check_source_encoding(data)
    values = _fast_values(data)
    if values is not None:
        return values, False
    tree = parse_module(data)
    return values_from_tree(tree), module_names(tree)


def read_revision_values(path, data=None):
    """({name: value}, whole_file_parsed) of one revision file. Raises _FileError."""
    values, names = read_revision(path, data)
    return values, names is not False


def _check_ids(name, value, single=False):
    if value is None:
        return
    if single:
        ok = isinstance(value, str) and value != ''
    else:
        ok = isinstance(value, str) or (isinstance(value, (tuple, list, set, frozenset))
                                        and all(isinstance(v, str) for v in value))
    if not ok:
        raise _FileError('%s must be %s, got %r' % (name, 'a non-empty string' if single
                                                    else 'None, a string or a tuple of strings', value))


def revision_from_values(path, values):
    """An alembic Revision built from a file's literals, the way Script.__init__ builds it."""
    _require_alembic()
    if 'revision' in values:
        rev_id = values['revision']
        _check_ids('revision', rev_id, single=True)
    else:
        legacy = _LEGACY_REV_RE.match(os.path.basename(path))
        if not legacy:
            raise _FileError("has no module-level `revision = '...'`")
        rev_id = legacy.group(1)
    if 'down_revision' not in values:
        raise _FileError("has no module-level `down_revision = ...` (use None for a base revision)")
    for name in ('down_revision', 'branch_labels', 'depends_on'):
        _check_ids(name, values.get(name))
    try:
        rev = Revision(rev_id, values['down_revision'],
                       dependencies=_to_tuple(values.get('depends_on'), default=()),
                       branch_labels=_to_tuple(values.get('branch_labels'), default=()))
    except RevisionError as exc:
        raise _FileError(str(exc))
    rev.module = _NoModule
    return rev


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
        except _FileError:
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
    if not any(bound == name for bound, _node in _stored_names(target)):
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
            for bound, _node in _stored_names(stmt):
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
        if not isinstance(item, _Unread):
            continue
        try:
            # names of the revision file itself count only when bound above the line that uses them
            value = _evaluate(item.node, item.tree, path, dirs, cache, before=item.lineno)
            _check_ids(name, value)
            values[name] = value
            continue
        except (_Unresolved, _FileError):
            pass
        if name == 'down_revision':
            try:
                values[name] = _revises_from_docstring(item.tree)
            except _Unresolved:
                raise _FileError('line %s: down_revision is set to %s, which status cannot read without running the '
                                 'file (no literal value found for it under %s, and no `Revises:` line in the '
                                 "file's docstring); write down_revision as a plain string, tuple or None"
                                 % (item.lineno, item.text, ', '.join(dirs) or 'the service path'))
            assumed = 'the docstring\'s "Revises: %s"' % (_to_tuple(values[name], default=()) and
                                                          ', '.join(_to_tuple(values[name])) or '')
        else:
            values[name] = None
            assumed = 'none'
        unread.append((name, item.lineno, item.text, assumed))
    return unread


def revision_from_file(path):
    values, _whole = read_revision_values(path)
    return revision_from_values(path, values)


class RevisionGraph(object):
    """alembic's RevisionMap over the parsed files, plus the file of each revision."""

    def __init__(self, config):
        _require_alembic()
        self.config = config
        self.files = {}
        self.revisions = []
        self.problems = []
        paths, unreadable = list_revision_files(config)
        for path in unreadable:
            self.problems.append('%s: sourceless revision (no .py beside it); status cannot read it without running '
                                 'it, ship the .py file' % path)
        labels = set()
        self.checked = {}  # files whose whole text went through ast already: {path: module_names()}
        self.unread = []  # values status could not read: {path, line, name, text, assumed, revision}
        modules = {}  # parsed application modules, for resolve_unread
        for path in paths:
            try:
                values, names = read_revision(path)
                unread = resolve_unread(path, values, config.import_dirs, modules)
                rev = revision_from_values(path, values)
            except _FileError as exc:
                self.problems.append('%s %s' % (path, exc))
                continue
            if rev.revision in self.files:
                self.problems.append('revision id %r is defined twice: %s and %s; give one of them a new id'
                                     % (rev.revision, self.files[rev.revision], path))
                continue
            self.files[rev.revision] = path
            if names is not False:
                self.checked[path] = names
            labels.update(rev._orig_branch_labels)
            self.revisions.append(rev)
            for name, line, text, assumed in unread:
                self.unread.append({'path': path, 'line': line, 'name': name, 'text': text, 'assumed': assumed,
                                    'revision': rev.revision})
        known = set(self.files)
        # a file that could not be read may well define the revisions the others name: report it alone
        for rev in (self.revisions if not self.problems else []):
            for down in _to_tuple(rev.down_revision, default=()):
                if down not in known:
                    self.problems.append('%s: down_revision %r is not in any revision file under %s'
                                         % (self.files[rev.revision], down, ', '.join(config.version_locations)))
            deps = _to_tuple(rev.dependencies, default=())
            for dep in deps:
                if dep in known or dep in labels:
                    continue
                if self.unread_labels():  # most likely one of the labels status could not read: go on without it
                    self.unread.append({'path': self.files[rev.revision], 'line': None, 'name': 'depends_on',
                                        'text': repr(dep), 'revision': rev.revision,
                                        'assumed': 'no dependency on %r, which names no revision and no branch '
                                                   'label status could read' % dep})
                    rev.dependencies = tuple(d for d in _to_tuple(rev.dependencies, default=()) if d != dep) or None
                else:
                    self.problems.append('%s: depends_on %r is neither a revision nor a branch label'
                                         % (self.files[rev.revision], dep))
        self.map = None
        if self.problems:
            return
        revisions = list(self.revisions)
        rmap = RevisionMap(lambda: revisions)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                self.heads_tuple = rmap.heads  # builds the map: cycles, duplicate labels... raise here
        except RevisionError as exc:
            involved = getattr(exc, 'revisions', None) or [r for r in self.files if re.search(
                r'(?<![\w-])%s(?![\w-])' % re.escape(r), str(exc))]
            self.problems.append('%s (files: %s)' % (exc, ', '.join(self.files[r] for r in involved if r in self.files)
                                                     or 'see the revision ids named'))
            return
        except Exception as exc:  # alembic internals (KeyError...) on odd graphs
            self.problems.append('alembic cannot build the revision map: %s: %s' % (type(exc).__name__, exc))
            return
        self.map = rmap

    @property
    def ok(self):
        return self.map is not None

    def unread_labels(self):
        return [u for u in self.unread if u['name'] == 'branch_labels']

    def warnings(self):
        """One message per value status could not read (a warning: heads, pending and plans do not need it)."""
        out = []
        for item in self.unread:
            where = '%s line %s' % (item['path'], item['line']) if item['line'] else item['path']
            if item['name'] == 'branch_labels':
                why = ('alembic sees the label when it imports the file, status never runs it; heads, pending and '
                       'plans do not need it, but a target naming that label is refused. Write the label as a '
                       "string literal (branch_labels = ('expand',)) or define the constant as a literal in a "
                       'module under %s to use it as a target' % ', '.join(self.config.import_dirs))
            elif item['name'] == 'down_revision':
                why = ('status cannot read it without running the file and took %s; write down_revision as a literal '
                       'so the order cannot differ from what alembic sees' % item['assumed'])
            else:
                why = ('status cannot read it without running the file and assumed %s; write depends_on as a literal '
                       'so the order cannot differ from what alembic sees' % item['assumed'])
            out.append('%s: revision %s sets %s to %s; %s' % (where, item['revision'], item['name'], item['text'], why))
        return out

    def unreadable_target(self, target):
        """Why ``target`` cannot be planned because it may name a branch label status could not read, or None."""
        unread = self.unread_labels()
        if not unread or self.map is None:
            return None
        for part in str(target).split('@'):
            part = re.sub(r'[+-]\d+$', '', part.strip())
            if part in ('', 'head', 'heads', 'base'):
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')
                    if self.map.get_revisions(part):
                        continue
            except Exception:
                pass
            return ('target %r names %r, which is no revision and no branch label status could read; the revision '
                    'files set branch labels that cannot be read without running them: %s. Write those labels as '
                    'string literals, or give a revision id as the target'
                    % (target, part, '; '.join('%s line %s (%s)' % (u['path'], u['line'], u['text']) for u in unread)))
        return None

    def syntax_problems(self, rev_ids, function=None):
        """Problems in the files of ``rev_ids`` (the ones about to run), as messages naming the file.

        The read side parses only the revision names of most files; the files alembic is about to
        run get a full parse so a broken one is reported before anything starts. With ``function``
        ('upgrade' or 'downgrade') each file must also define it at module level: alembic looks it
        up for every step before it runs the first one, and fails on a file without it.
        """
        out = []
        for rev_id in rev_ids:
            path = self.files.get(rev_id)
            if path is None:
                continue
            if path not in self.checked:
                try:
                    self.checked[path] = module_names(parse_module(read_file(path)))
                except _FileError as exc:
                    out.append('%s %s' % (path, exc))
                    continue
            names = self.checked[path]
            if function and names is not None and function not in names:
                out.append('%s has no module-level %s(), so `alembic %s` would fail on revision %s before running '
                           'anything; define `def %s():` in it (with `pass` as its body if there is nothing to do)'
                           % (path, function, function, rev_id, function))
        return out

    def heads(self):
        return list(self.map.heads)

    def redundant_parents(self, rev_id):
        """(listed parents that are ancestors of another listed parent, the other parents) of a merge."""
        rmap = self.map._revision_map
        rev = rmap.get(rev_id)
        downs = list(_to_tuple(getattr(rev, 'down_revision', None), default=()))
        if len(downs) < 2:
            return [], downs

        def ancestors(start):
            seen = set()
            todo = [start]
            while todo:
                node = rmap.get(todo.pop())
                for down in _to_tuple(getattr(node, 'down_revision', None), default=()):
                    if down not in seen:
                        seen.add(down)
                        todo.append(down)
            return seen
        of = dict((d, ancestors(d)) for d in downs)
        redundant = [a for a in downs if any(a in of[b] for b in downs if b != a)]
        return redundant, [d for d in downs if d not in redundant]

    def history(self):
        """Oldest first: the reverse of what `alembic history` prints."""
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            revs = list(self.map.iterate_revisions('heads', 'base', inclusive=True, assert_relative_length=False))
        return [r.revision for r in reversed(revs)]

    def applied_set(self, rows):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            revs = self.map.get_revisions(tuple(rows))
            return set(r.revision for r in self.map._get_ancestor_nodes(revs, include_dependencies=True))

    def upgrade_steps(self, destination, rows):
        """ScriptDirectory._upgrade_revs: revisions `alembic upgrade <destination>` runs, in order."""
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            revs = list(self.map.iterate_revisions(destination, tuple(rows), implicit_base=True))
        return [r.revision for r in reversed(revs)]

    def downgrade_steps(self, destination, rows):
        """ScriptDirectory._downgrade_revs: revisions `alembic downgrade <destination>` reverts, in order."""
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            revs = list(self.map.iterate_revisions(tuple(rows), destination, select_for_downgrade=True))
        return [r.revision for r in revs]

    def resolve(self, target):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return [r.revision for r in self.map.get_revisions(target) if r is not None]

    def all_current(self, rows):
        """What `alembic current` prints for these version table rows (dependencies shown as heads too)."""
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return set(r.revision for r in self.map._get_all_current(tuple(rows)) if r is not None)

    def rows_after(self, rows, steps, is_upgrade):
        """The version table rows after alembic runs ``steps`` from ``rows``: alembic's own HeadMaintainer
        logic (merges, unmerges, dependencies) replayed on a set instead of the table."""
        rmap = self.map

        class Heads(HeadMaintainer):
            def __init__(self, heads):  # no migration context: only the set is kept
                self.heads = set(heads)

            def _insert_version(self, version):
                if version in self.heads:
                    raise ValueError('revision %s is already in the version table' % version)
                self.heads.add(version)

            def _delete_version(self, version):
                self.heads.remove(version)

            def _update_version(self, from_, to_):
                if to_ in self.heads:
                    raise ValueError('revision %s is already in the version table' % to_)
                self.heads.remove(from_)
                self.heads.add(to_)

        heads = Heads(rows)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            for rev_id in steps:
                heads.update_to_step(RevisionStep(rmap, rmap._revision_map[rev_id], is_upgrade))
        return heads.heads


# ------------------------------------------------------------------------ child process
# run_child (module_utils.child) runs alembic: own process group, SIGKILL when we die or on timeout/errors


def _not_runnable(path):
    """Why the file at ``path`` cannot be executed, or None."""
    if not os.path.exists(path):
        return 'does not exist'
    if os.path.isdir(path):
        return 'is a directory'
    if not os.access(path, os.X_OK):
        return 'is not executable'
    return None


def find_executable(name, cwd, env=None):
    """``name`` looked up on the PATH of ``env`` the way run_child's exec does it (relative entries from cwd)."""
    for folder in os.get_exec_path(env):
        path = os.path.join(cwd, folder, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def command_problem(argv, cwd, env=None, path_lookups=True):
    """Why ``argv`` cannot be started by run_child in ``cwd`` with ``env``, or None when it can.

    argv[0] is resolved as exec resolves it (a name on PATH, a path relative to cwd) and must be an
    executable file; a script's ``#!`` interpreter must exist and be executable too (a moved or
    rebuilt virtualenv leaves scripts whose interpreter is gone). With ``path_lookups`` False,
    names looked up on PATH (argv[0] without a slash, ``#!/usr/bin/env python3``) are not checked.
    """
    exe = argv[0]
    if '/' in exe:
        path = os.path.join(cwd, exe)
        why = _not_runnable(path)
        if why:
            return '%s %s' % (path, why)
    elif not path_lookups:
        return None
    else:
        path = find_executable(exe, cwd, env)
        if path is None:
            return '%s is not on PATH (%s)' % (exe, os.pathsep.join(os.get_exec_path(env)))
    try:
        head = read_regular(path, 256, head=True)
    except NotRegularFile as exc:
        return '%s %s' % (path, exc.strerror)
    except OSError:
        return None  # exec needs no read access to a binary; a script's interpreter would say so itself
    if not head.startswith(b'#!'):
        return None
    words = head[2:].split(b'\n', 1)[0].decode('utf-8', 'replace').split(None, 1)
    if not words:
        return '%s starts with an empty #! line' % path
    interpreter = os.path.join(cwd, words[0])
    why = _not_runnable(interpreter)
    if why:
        return ('%s is a script whose #! interpreter %s %s (a virtualenv that was moved or rebuilt leaves its '
                'scripts like that: recreate it)' % (path, interpreter, why))
    if path_lookups and os.path.basename(interpreter) == 'env' and len(words) > 1:
        program = words[1].split()[0]
        if not program.startswith('-') and '=' not in program and '/' not in program \
                and find_executable(program, cwd, env) is None:
            return '%s is a script run by `#!%s %s`, and %s is not on PATH (%s)' % (
                path, words[0], program, program, os.pathsep.join(os.get_exec_path(env)))
    return None


def _is_relative(target):
    """A relative target (-1, +2, label@-1, rev+1) as alembic reads it."""
    match = _RELATIVE_RE.match(target)
    return bool(match) and match.end() == len(target)


def _tail(text, lines=STDERR_TAIL_LINES, chars=STDERR_TAIL_CHARS):
    """The end of a tool's output. Mask it first (self._scrub): a cut could leave a password's tail."""
    text = '\n'.join((text or '').strip().splitlines()[-lines:])
    return text[-chars:]


def _pg_setting(name, value):
    """A PGOPTIONS -c value; numbers are seconds, strings are PostgreSQL durations ('500ms', '5s', '0')."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise PlanError('%s must be a number of seconds or a duration like 5s, got %r' % (name, value))
    if isinstance(value, (int, float)):
        if value < 0:
            raise PlanError('%s must not be negative' % name)
        return '%dms' % int(round(value * 1000))
    text = str(value).strip()
    if not _TIMEOUT_RE.match(text):
        raise PlanError("%s must be a number of seconds or a PostgreSQL duration like '500ms', '5s', '1min'; got %r"
                        % (name, value))
    return text.replace(' ', '')


# ---------------------------------------------------------------------------- adapter
def _alembic_advice(kind, migration, later):
    if kind == 'always':
        return ("Run it inside `with op.get_context().autocommit_block():` in upgrade() of revision %s (alembic "
                'commits the transaction before the block and begins a new one after it), or put it in a revision '
                'of its own that does so' % migration)
    advice = ('Put the ALTER TYPE ... ADD VALUE inside `with op.get_context().autocommit_block():` in revision %s, so '
              'it commits before the statements that use the new label' % migration)
    if kind == 'enum_later':
        advice += (", or give each revision its own transaction (transaction_per_migration=True in env.py's "
                   'context.configure())')
    return advice


# autocommit_block(), or SQL text that ends a transaction, in a revision file
_SELF_COMMIT_RE = re.compile(r"autocommit_block|['\"]\s*(?:COMMIT|ROLLBACK|END|ABORT)"
                             r"(?:\s+(?:WORK|TRANSACTION|AND\s+(?:NO\s+)?CHAIN))?\s*;?\s*['\"]"
                             r"|;\s*(?:COMMIT|ROLLBACK)\b|\.commit\(\)", re.IGNORECASE)


# env.py that connects in autocommit mode: each statement commits by itself
_ENV_AUTOCOMMIT_RE = re.compile(r"autocommit", re.IGNORECASE)

_RUNNING_RE = re.compile(r'Running (upgrade|downgrade) (.*?) -> ([^\s,]*)')


class AlembicAdapter(Adapter):
    tool = 'alembic'

    # -------------------------------------------------------------- helpers
    @property
    def service_path(self):
        return os.path.abspath(self.spec['path'])

    @property
    def config_name(self):
        return self.spec.get('alembic_config') or 'alembic.ini'

    def version_table(self):
        table = self.spec.get('version_table') or 'alembic_version'
        schema = self.spec.get('version_table_schema')
        return (quote_ident(schema) + '.' if schema else '') + quote_ident(table)

    def _scrub(self, text):
        return self.dburl.scrub(text) if self.dburl is not None else text

    def tracking_tables(self):
        return [(self.spec.get('version_table_schema') or 'public',
                 self.spec.get('version_table') or 'alembic_version')]

    def may_commit_itself(self, plan):
        """Planned revisions that use ``autocommit_block()`` or send transaction control (COMMIT, ROLLBACK...).

        alembic commits the open transaction when an ``autocommit_block()`` starts (with it what earlier
        revisions of the run did) and runs the block outside any transaction: a later failure rolls back only
        what came after it. Read from the revision files' text (never executed).
        """
        state = plan.extra.get('state') if plan is not None else None
        graph = state.extra.get('graph') if state is not None else None
        files = getattr(graph, 'files', None) or {}
        if plan is not None and plan.steps and self._env_may_autocommit(state):
            # env.py runs the migrations on an autocommit connection (isolation_level="AUTOCOMMIT"...), or
            # commits itself: every statement of a failed revision may have stayed
            return list(plan.steps)
        out = []
        for rev in plan.steps if plan is not None else []:
            path = files.get(rev)
            if not path:
                continue
            try:
                # read again after the run: it may have become a FIFO or a link to /dev/zero meanwhile
                text = read_regular(path, MIGRATION_LIMIT).decode('utf-8', 'replace')
            except (IOError, OSError):
                out.append(rev)  # cannot tell: assume it may
                continue
            if _SELF_COMMIT_RE.search(text):
                out.append(rev)
        return out

    @staticmethod
    def _env_may_autocommit(state):
        """Whether the service's env.py may run statements outside alembic's transaction: an AUTOCOMMIT
        isolation level, a DBAPI ``autocommit`` switch, a commit of its own (True when it cannot be read)."""
        config = state.extra.get('config') if state is not None else None
        location = getattr(config, 'script_location', None)
        if not location:
            return False
        try:
            text = read_file(os.path.join(location, 'env.py')).decode('utf-8', 'replace')
        except Exception:
            return True
        return bool(_ENV_AUTOCOMMIT_RE.search(text) or _SELF_COMMIT_RE.search(text))

    def read_rows(self, conn):
        """Version table rows in table order; None when the table does not exist."""
        table = self.version_table()
        try:
            with conn.cursor() as cur:
                cur.execute('SELECT pg_catalog.to_regclass(%s)', (table,))
                if cur.fetchone()[0] is None:
                    return None
                cur.execute('SELECT version_num FROM ' + table)
                return [row[0] for row in cur.fetchall()]
        except Exception as exc:
            text = ' '.join(self._scrub(str(exc)).split()) or type(exc).__name__
            lost = (type(exc).__name__ in ('OperationalError', 'InterfaceError')
                    and getattr(exc, 'pgcode', None) is None)
            if lost or getattr(conn, 'closed', 0):
                raise AdapterError('cannot read the alembic version table %s: %s (check that the database is up)'
                                   % (table, text), code='unreachable')
            raise AdapterError('cannot read the alembic version table %s: %s (check version_table / '
                               'version_table_schema and that the user may read it)' % (table, text))

    def other_version_tables(self, conn, known):
        """Other tables shaped like alembic's version table whose rows are all revision ids in ``known``
        (and not none), i.e. where this service's env.py may keep its version table: a list of
        (quoted name, in the session's default schema, rows, schema, table).

        One catalog query (plus a small read of each candidate); a hint only, so errors give [].
        """
        found = []
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT n.nspname, c.relname, n.nspname = pg_catalog.current_schema() "
                    "FROM pg_catalog.pg_attribute a "
                    "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
                    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE a.attname = 'version_num' AND a.attnum > 0 AND NOT a.attisdropped "
                    "AND c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' "
                    "AND c.oid IS DISTINCT FROM pg_catalog.to_regclass(%s) "
                    "AND pg_catalog.has_schema_privilege(n.oid, 'USAGE') "
                    "AND pg_catalog.has_table_privilege(c.oid, 'SELECT') "
                    "ORDER BY 3 DESC, 1, 2 LIMIT 20", (self.version_table(),))
                candidates = cur.fetchall()
                for schema, table, in_default in candidates:
                    name = quote_ident(schema) + '.' + quote_ident(table)
                    cur.execute('SELECT version_num::text FROM ' + name + ' LIMIT 100')
                    rows = [row[0] for row in cur.fetchall()]
                    if rows and all(r in known for r in rows):
                        found.append((name, in_default, rows, schema, table))
        except Exception:
            if not getattr(conn, 'closed', 1) and not getattr(conn, 'autocommit', True):
                try:
                    conn.rollback()
                except Exception:
                    pass
            return []
        return found

    def _settings_hint(self, other):
        """'version_table: x (and ...)' for a table found by other_version_tables."""
        name, in_default, rows, schema, table = other
        if in_default:
            return 'version_table: %s and no version_table_schema' % table
        return 'version_table: %s and version_table_schema: %s' % (table, schema)

    def load_graph(self):
        """(AlembicConfig, RevisionGraph); AdapterError for an unusable config."""
        _require_alembic()
        config = AlembicConfig(self.spec['path'], self.config_name)
        return config, RevisionGraph(config)

    # ------------------------------------------------------------ read side
    def read_state(self, conn):
        _require_alembic()
        problems = []
        try:
            config, graph = self.load_graph()
        except AdapterError as exc:
            config = graph = None
            problems.append(problem('bad_config', self._scrub(str(exc))))
        rows = self.read_rows(conn)
        table_exists = rows is not None
        rows = rows or []
        extra = {'config': config, 'graph': graph, 'rows': list(rows), 'version_table': self.version_table(),
                 'version_table_exists': table_exists}
        # a configured path (alembic_command, .venv) that cannot run is a fact of the host, shown by status;
        # a name looked up on PATH depends on the caller's environment: plan() checks it when something runs
        why = self.command_problem(path_lookups=False)
        if why is not None:
            extra['command_problem'] = problem('bad_config', self._scrub(why))
            problems.append(extra['command_problem'])
        if graph is not None and not graph.ok:
            for text in graph.problems:
                problems.append(problem('bad_config', self._scrub(text)))
        if graph is None or not graph.ok:
            return ServiceState(self.tool, current=rows, problems=problems, extra=extra)
        if not rows:
            # nothing applied as far as the configured table tells: is env.py keeping its table elsewhere?
            others = self.other_version_tables(conn, graph.files)
            if others:
                problems.append(problem('bad_config', self._scrub(
                    'the version table %s %s, but %s; %s most likely where the service\'s env.py keeps its version '
                    'table, and `alembic upgrade` would move that one while this collection reads %s as nothing '
                    'applied. Set %s in the service spec (the version_table / version_table_schema that env.py '
                    'passes to context.configure()), or make env.py use %s'
                    % (self.version_table(), 'is empty' if table_exists else 'does not exist',
                       ', '.join('%s holds %s' % (o[0], ', '.join(o[2])) for o in others),
                       'that is' if len(others) == 1 else 'one of them is', self.version_table(),
                       self._settings_hint(others[0]), self.version_table()))))

        for text in graph.warnings():
            problems.append(problem('bad_config', self._scrub(text), severity='warning'))
        history = graph.history()
        position = dict((rid, i) for i, rid in enumerate(history))
        heads = graph.heads()
        target = self.target()
        if len(heads) > 1 and target == 'head':
            # as alembic: `upgrade head` refuses several heads; `heads`, a label or one revision are fine
            problems.append(problem('multiple_heads', 'the revision files have %d heads (%s) and the target is head, '
                                    'which `alembic upgrade head` refuses; set the service target to heads to apply '
                                    'all of them (expand/contract branches), name one branch (label@head), or join '
                                    'them with `alembic merge heads`' % (len(heads), ', '.join(heads))))
        unreadable = graph.unreadable_target(target)
        if unreadable:
            extra['target_problem'] = problem('bad_config', self._scrub(unreadable))
            problems.append(extra['target_problem'])
        elif target not in ('head', 'heads', 'base') and not _is_relative(target):
            try:  # the service's own target must name something, and one head per branch it names
                graph.resolve(target)
            except MultipleHeads as exc:
                extra['target_problem'] = problem('multiple_heads', self._scrub(
                    'the service target %r names several heads: %s; alembic refuses it. Name one of them (or '
                    '<label>@head of a branch with one head), or use target heads'
                    % (target, ' '.join(str(exc).split()))))
            except RevisionError as exc:
                extra['target_problem'] = problem('bad_config', self._scrub(
                    'the service target %r is no revision, branch label or head of these revision files: %s; set '
                    'target to heads, head, a revision id or a branch label' % (target, ' '.join(str(exc).split()))))
            if extra.get('target_problem'):
                problems.append(extra['target_problem'])
        current = sorted(rows, key=lambda r: (position.get(r, len(history)), r))
        unknown = [r for r in rows if r not in position]
        applied = []
        pending = []
        if unknown:
            problems.append(problem('unknown_revision', 'the version table %s holds %s, which no revision file under '
                                    '%s defines; deploy the code that matches the database (or `alembic stamp` it '
                                    'if the revision was removed on purpose)'
                                    % (self.version_table(), ', '.join(repr(u) for u in unknown),
                                       ', '.join(config.version_locations))))
        else:
            try:
                applied_set = graph.applied_set(rows)
                applied = [r for r in history if r in applied_set]
                pending = graph.upgrade_steps('heads', rows)
                if target not in ('head', 'heads', 'base') and not extra.get('target_problem') \
                        and not _is_relative(target):
                    try:  # a target naming one branch (label, label@head, a revision): what a run would apply
                        pending = graph.upgrade_steps(target, rows)
                    except RevisionError:
                        pass  # not an upgrade target (below the current revision, unknown): plan() says so
                for text in graph.syntax_problems(pending, 'upgrade'):
                    problems.append(problem('bad_config', self._scrub(text)))
            except RevisionError as exc:
                problems.append(problem('unknown_revision', 'the version table %s (%s) does not fit the revision '
                                        'files: %s' % (self.version_table(), ', '.join(rows), exc)))
                applied, pending = [], []
        extra['history_position'] = position
        return ServiceState(self.tool, current=current, heads=heads, applied=applied, pending=pending,
                            problems=problems, history=history, extra=extra)

    def target(self):
        """The service's own target (spec ``target``), where a normal run takes it."""
        return str(self.spec.get('target') or 'head').strip() or 'head'

    # ---------------------------------------------------------------- plan
    def plan(self, conn, state, target, options=None):
        _require_alembic()
        options = options or {}
        target = (target if target is not None else 'head')
        target = str(target).strip()
        if not target:
            raise PlanError('target is empty; use head, heads, base, a revision id or -N')
        graph = state.extra.get('graph')
        unreadable = graph.unreadable_target(target) if graph is not None and graph.ok else None
        if unreadable:
            raise PlanError('cannot plan service %r: %s' % (self.name, self._scrub(unreadable)), code='bad_config')
        blocking = [p for p in state.problems if p['code'] in ('bad_config', 'unknown_revision')
                    and p != state.extra.get('command_problem')  # checked below, when alembic has to run
                    and p != state.extra.get('target_problem')  # about the spec's target: checked above
                    and not is_warning(p)]
        if blocking:
            raise PlanError('cannot plan service %r: %s' % (self.name, blocking[0]['message']),
                            code=blocking[0]['code'])
        graph = state.extra.get('graph')
        rows = list(state.extra.get('rows') or [])
        applied_before = set(state.applied)
        relative = _RELATIVE_RE.match(target)
        if target.startswith('-') and not re.match(r'^-\d+$', target):
            raise PlanError('target %r is not valid; use head, heads, base, a revision id or -N' % target)
        if relative and relative.end() == len(target):
            direction = 'down' if int(relative.group(3)) < 0 else 'up'
            if direction == 'down' and relative.group(1) is None and relative.group(2) is None and len(rows) > 1:
                raise PlanError('target %s is ambiguous: the database is at several heads (%s); give a revision id '
                                'or branch@-N instead' % (target, ', '.join(state.current)))
            if direction == 'down' and not rows and relative.group(2) is None:
                raise PlanError('target %s: nothing is applied, there is nothing to go back from' % target)
        elif target == 'base':
            direction = 'down'
        elif target in ('head', 'heads'):
            direction = 'up'
            if target == 'head' and len(state.heads) > 1:
                raise PlanError('target head is ambiguous: the revision files have %d heads (%s); use target heads to '
                                'apply all of them, name one head, or merge them with `alembic merge heads`'
                                % (len(state.heads), ', '.join(state.heads)), code='multiple_heads')
        else:
            try:
                wanted = graph.resolve(target)
            except RevisionError as exc:
                raise PlanError('target %r: %s (known heads: %s)' % (target, exc, ', '.join(state.heads) or 'none'))
            if not all(r in applied_before for r in wanted):
                direction = 'up'
            elif wanted and set(wanted) <= graph.all_current(rows):
                direction = None  # already there
            else:
                direction = 'down'
        try:
            if direction == 'up':
                steps = graph.upgrade_steps(target, rows)
            elif direction == 'down':
                steps = graph.downgrade_steps(target, rows)
            else:
                steps = []
        except RevisionError as exc:
            raise PlanError('target %r cannot be reached from %s: %s'
                            % (target, state.current_revision or 'base', exc))
        except Exception as exc:  # alembic's own walk fails (an AssertionError for <label>@-N off that branch)
            raise PlanError('target %r cannot be planned from %s: alembic itself fails on it (%s%s), as `alembic %s '
                            '%s` would; give a revision id, or <label>@-N only for a branch the database is on'
                            % (target, state.current_revision or 'base', type(exc).__name__,
                               ': %s' % exc if str(exc) else '', 'upgrade' if direction == 'up' else 'downgrade',
                               target))
        verb = 'upgrade' if direction == 'up' else 'downgrade'
        broken = graph.syntax_problems(steps, verb)
        if broken:
            raise PlanError('cannot %s service %r: %s' % (verb, self.name, '; '.join(broken)))
        why = self.command_problem() if steps else None
        if why is not None:
            raise PlanError('cannot %s service %r: %s' % (verb, self.name, self._scrub(why)))
        notes = []
        position = state.extra.get('history_position') or {}
        try:
            after_rows = graph.rows_after(rows, steps, direction == 'up')
            expected_rows = sorted(after_rows, key=lambda r: (position.get(r, len(position)), r))
        except (AttributeError, TypeError, NameError) as exc:  # an alembic on this host without those internals
            expected_rows = None
            notes.append('the version table after the run cannot be predicted with this alembic version (%s: %s); '
                         'it is read back afterwards' % (type(exc).__name__, exc))
        except Exception as exc:  # alembic's own version table bookkeeping would fail the same way
            if direction == 'up' and any(len(graph.redundant_parents(r)[1]) > 1 and graph.redundant_parents(r)[0]
                                         for r in steps):
                # a merge listing an ancestor of another parent: the pre-flight finding merge_lists_ancestor says
                # so and refuses the run unless the user allows it; then alembic runs and fails as predicted
                expected_rows = None
                notes.append('alembic will fail to update the version table at a merge that lists an ancestor of '
                             'another of its parents (%s: %s)' % (type(exc).__name__, exc))
            else:
                raise PlanError('alembic would fail to update the version table %s going to %r from %s: %s %s'
                                % (self.version_table(), target, state.current_revision or 'base',
                                   type(exc).__name__, exc))
        if steps and options.get('transaction') == 'each':
            notes.append("alembic runs migrations in the transactions the service's env.py sets up "
                         '(transaction_per_migration); transaction=each does not change that')
        if direction == 'up' and len(state.heads) > 1 and target == 'heads':
            notes.append('the revision files have several heads (%s); all of them are applied' % ', '.join(state.heads))
        if not steps:
            direction = None
        to_revision = (','.join(expected_rows) or None) if expected_rows is not None else None
        return Plan(direction, steps, state.current_revision, to_revision, target,
                    notes=notes, extra={'command': 'upgrade' if direction != 'down' else 'downgrade',
                                        'cli_target': target, 'rows_before': rows,
                                        'applied_before': sorted(applied_before),
                                        'expected_rows': expected_rows, 'state': state})

    # ------------------------------------------------------------ pre-flight
    @staticmethod
    def _env_names_transaction_per_migration(state):
        """Whether the service's env.py mentions transaction_per_migration (None when it cannot be read)."""
        config = state.extra.get('config')
        location = getattr(config, 'script_location', None)
        if not location:
            return None
        try:
            text = read_file(os.path.join(location, 'env.py'))
        except Exception:
            return None
        return b'transaction_per_migration' in text

    def version_num_length(self, conn):
        """The declared length of version_num in the existing version table, or None (unbounded / no table)."""
        with conn.cursor() as cur:
            cur.execute("SELECT a.atttypmod, pg_catalog.format_type(a.atttypid, NULL) FROM pg_catalog.pg_attribute a "
                        "WHERE a.attrelid = pg_catalog.to_regclass(%s) AND a.attname = 'version_num' "
                        "AND NOT a.attisdropped", (self.version_table(),))
            row = cur.fetchone()
        if row is None or row[0] is None or row[0] < 0:
            return None
        if row[1] in ('character varying', 'character'):
            return row[0] - 4
        return None

    def preflight(self, conn, state, steps, options=None, lint=False, direction='up'):
        """Findings for upgrading through ``steps``: revision ids longer than version_num, merges listing an
        ancestor of another parent, and statements of upgrade() (op.execute SQL, op.create_index /
        op.drop_index with postgresql_concurrently=True) PostgreSQL refuses in the revision's transaction
        (outside `with op.get_context().autocommit_block():`). Never runs env.py or a revision file, so
        there is no SQL to lint: the ``lint`` result says so. ``direction`` 'down' checks the statements of
        downgrade() only."""
        graph = state.extra.get('graph')
        lint_info = {'linter': preflight_mod.SQUAWK, 'ran': False,
                     'reason': "alembic SQL is only known by running the service's env.py (alembic upgrade --sql), "
                               'which happens only with alembic_sql_preview: true on the service, so squawk does '
                               'not lint its revisions'}
        if graph is None or not graph.ok or not steps:
            return {'findings': [], 'lint': lint_info}
        findings = []
        table = self.version_table()
        length = preflight_mod.ALEMBIC_VERSION_NUM_DEFAULT
        if state.extra.get('version_table_exists') and conn is not None:
            try:
                length = self.version_num_length(conn)
            except Exception:
                length = preflight_mod.ALEMBIC_VERSION_NUM_DEFAULT
        if direction == 'up':
            findings.extend(preflight_mod.revision_id_findings(steps, length, table, graph.files))
        for rev in (steps if direction == 'up' else []):
            redundant, real = graph.redundant_parents(rev)
            if redundant and len(real) > 1:
                findings.append(preflight_mod.finding(
                    rev, None, 'merge_lists_ancestor', preflight_mod.ERROR,
                    'merge revision %s lists %s in down_revision, but %s already an ancestor of %s, which it lists '
                    'too; `alembic upgrade` fails at this merge (KeyError while it updates the version table). '
                    'Remove %s from down_revision in %s, so it reads %r'
                    % (rev, ', '.join(redundant), 'that is' if len(redundant) == 1 else 'those are',
                       ', '.join(real), ', '.join(redundant), graph.files.get(rev), tuple(real))))
        try:
            version = conn.server_version if conn is not None else None
        except Exception:
            version = None
        # alembic runs every revision of one command in one transaction unless env.py asks for one per revision
        # (transaction_per_migration): only when env.py never names that option is one transaction certain
        one_transaction = self._env_names_transaction_per_migration(state) is False
        transactions = []
        for rev in steps:
            path = graph.files.get(rev)
            try:
                calls = preflight_mod.alembic_upgrade_calls(read_file(path),
                                                            'upgrade' if direction == 'up' else 'downgrade')
            except Exception:
                continue  # the plan reports a file it cannot read or parse
            txs = preflight_mod.alembic_transactions(rev, calls)
            if one_transaction and transactions and txs and calls and not calls[0][1]:
                transactions[-1].extend(txs[0])  # continues the transaction the previous revision left open
                txs = txs[1:]
            if one_transaction and calls and calls[-1][1]:
                txs.append([])  # an autocommit block at the end: the next revision starts a new transaction
            transactions.extend(txs if one_transaction else [tx for tx in txs if tx])
        findings.extend(preflight_mod.transaction_findings([tx for tx in transactions if tx], version,
                                                           _alembic_advice, preflight_mod.enum_catalog(conn)))
        if lint and direction == 'up' and self.spec.get('alembic_sql_preview'):
            lint_findings, lint_info = self._lint(conn, state, steps, options or {})
            findings.extend(lint_findings)
        for item in findings:
            item['message'] = self._scrub(item['message'])
            if item['statement']:
                item['statement'] = self._scrub(item['statement'])
        return {'findings': findings, 'lint': lint_info}

    def _lint(self, conn, state, steps, options):
        """squawk over `alembic upgrade <from>:<target> --sql` (the service opted in to running env.py for it),
        each revision's part of the output linted as that revision."""
        skipped = {'linter': preflight_mod.SQUAWK, 'ran': False}
        if preflight_mod.squawk_path() is None:
            return [], dict(skipped, reason='squawk is not installed on the managed host (pip install squawk-cli '
                                            'there to lint pending SQL for lock and rewrite risks)')
        rows = list(state.extra.get('rows') or [])
        if len(rows) > 1:
            return [], dict(skipped, reason='the database is at several heads, which `alembic upgrade --sql` '
                                            'cannot start from')
        target = options.get('target') or self.spec.get('target') or 'heads'
        argv = self.argv('upgrade', '%s:%s' % (rows[0] if rows else 'base', target), sql=True)
        try:
            rc, out, err, timed_out = self._run(argv, {}, PREVIEW_TIMEOUT)
        except ApplyError as exc:
            rc, out, err, timed_out = None, '', str(exc), False
        if rc != 0 or timed_out:
            why = 'timed out after %ss' % PREVIEW_TIMEOUT if timed_out else (_tail(self._scrub(err), 3)
                                                                             or 'exit %s' % rc)
            return [], dict(skipped, reason='`alembic upgrade --sql` failed: %s' % ' '.join(why.split()))
        parts = []
        for piece in re.split(r'^-- Running upgrade [^\n]*?-> ', out, flags=re.M)[1:]:
            head, dummy, body = piece.partition('\n')
            rev = head.split(',')[0].strip()
            parts.append((rev, body))
        wanted = [(rev, body) for rev, body in parts if rev in steps]
        return preflight_mod.squawk_findings(wanted, conn, options=options)

    # ------------------------------------------------------------ write side
    def command(self):
        command = self.spec.get('alembic_command')
        if command:
            return list(command)
        local = os.path.join(self.service_path, '.venv', 'bin', 'alembic')
        if os.path.isfile(local) and os.access(local, os.X_OK):
            return [local]
        return ['alembic']

    def command_problem(self, path_lookups=True):
        """Why the alembic command cannot be run here (a message that says what to do), or None.

        The same resolution as the run itself: PATH from this process's environment, which the
        child inherits, and relative paths from the service path (its working directory).
        """
        argv = self.command()
        why = command_problem(argv, self.service_path, dict(os.environ), path_lookups=path_lookups)
        if why is None:
            return None
        venv = os.path.join(self.service_path, '.venv')
        if self.spec.get('alembic_command'):
            lead = 'alembic_command %s cannot be run: %s' % (self._display(argv), why)
            fix = ("set alembic_command to the service's own alembic (e.g. ['%s/bin/alembic']), or leave it out to "
                   'use %s/bin/alembic (or, without it, alembic from PATH)' % (venv, venv))
        elif argv[0] == 'alembic':
            lead = 'alembic_command is not set, %s/bin/alembic does not exist (or is not executable) and %s' % (
                venv, why)
            fix = ("set alembic_command to the service's alembic, or create the service's virtualenv %s with alembic "
                   'installed in it' % venv)
        else:
            lead = 'alembic_command is not set, so %s would run, but %s' % (argv[0], why)
            fix = ("recreate the virtualenv %s (with alembic in it), or set alembic_command to the service's alembic"
                   % venv)
        return '%s; %s' % (lead, fix)

    def child_env(self, options=None):
        options = options or {}
        env = dict(os.environ)
        env.pop('ALEMBIC_CONFIG', None)  # we pass -c; the read side assumes the default pyproject.toml too
        # the URL as the service has it: its env.py knows which driver/scheme it needs
        env['DATABASE_URL'] = self.dburl.sqlalchemy_url()
        # its sessions are recognisable (who blocks them, lock holders); a URL's own application_name wins
        env['PGAPPNAME'] = child_application_name(self.name)
        pgopts = []
        for name in ('lock_timeout', 'statement_timeout'):
            value = _pg_setting(name, options.get(name))
            if value is not None:
                pgopts.append('-c %s=%s' % (name, value))
        if pgopts:
            env['PGOPTIONS'] = ' '.join(([env['PGOPTIONS']] if env.get('PGOPTIONS') else []) + pgopts)
        return env

    def argv(self, command, target, sql=False):
        argv = self.command() + ['-c', self.config_name, command, target]
        if sql:
            argv.append('--sql')
        return argv

    def _display(self, argv):
        return ' '.join(shlex.quote(a) for a in argv)

    def _run(self, argv, options, timeout):
        env = self.child_env(options)
        try:
            return run_child(argv, self.service_path, env, timeout=timeout)
        except OSError as exc:
            raise ApplyError('cannot run %s in %s: %s; install alembic in the service (.venv/bin/alembic) or set '
                             'alembic_command' % (argv[0], self.service_path, exc.strerror or exc), code='bad_config')

    def preview_sql(self, plan):
        if not plan.steps:
            plan.sql = ''
            return plan.sql
        rows = plan.extra.get('rows_before') or []
        command = plan.extra.get('command', 'upgrade')
        state = plan.extra.get('state')
        graph = state.extra.get('graph') if state is not None and getattr(state, 'extra', None) else None
        files = getattr(graph, 'files', None) or {}
        root = self.service_path

        def where(rev):
            path = files.get(rev)
            return ' (%s)' % os.path.relpath(path, root) if path else ''
        listing = '\n'.join('--   %s%s' % (s, where(s)) for s in plan.steps)
        header = '-- %s: alembic %s %s runs %d revision(s):\n%s\n' % (self.name, command, plan.target,
                                                                      len(plan.steps), listing)
        if not self.spec.get('alembic_sql_preview'):
            # alembic --sql runs env.py (service code, which may write to the database): only on request
            plan.sql = header + ('-- (no SQL preview: set alembic_sql_preview: true on this service to render it '
                                 'with `alembic %s --sql`, which runs the service\'s env.py)\n' % command)
            return plan.sql
        if len(rows) > 1:
            plan.sql = header + ('-- (no offline SQL: the database is at several heads, which `--sql` cannot '
                                 'start from)\n')
            return plan.sql
        start = rows[0] if rows else 'base'
        argv = self.argv(command, '%s:%s' % (start, plan.extra.get('cli_target', plan.target)), sql=True)
        try:
            rc, out, err, timed_out = self._run(argv, {}, PREVIEW_TIMEOUT)
        except ApplyError as exc:
            rc, out, err, timed_out = None, '', str(exc), False
        if rc == 0 and not timed_out:
            plan.sql = self._scrub(out)
        else:
            reason = ('timed out after %ss' % PREVIEW_TIMEOUT if timed_out
                      else (_tail(self._scrub(err), 3) or 'exit %s' % rc))
            plan.sql = header + '-- (no offline SQL: `alembic %s --sql` failed: %s)\n' % (
                command, ' '.join(reason.split()))
        return plan.sql

    def apply(self, conn, plan, options=None):
        options = options or {}
        state = plan.extra.get('state')
        if not plan.steps:
            return ApplyResult(from_revision=plan.from_revision, to_revision=plan.from_revision)
        graph = state.extra['graph']
        argv = self.argv(plan.extra['command'], plan.extra['cli_target'])
        shown = self._display(argv)
        rc, out, err, timed_out = self._run(argv, options, options.get('timeout'))
        try:
            rows_after = self.read_rows(conn) or []
        except AdapterError as exc:
            raise ApplyError('%s exited %s, and then the version table could not be read: %s; check the database '
                             'before retrying' % (shown, rc, exc), code='unreachable',
                             details={'returncode': rc, 'stderr': _tail(self._scrub(err))})
        before = set(plan.extra.get('applied_before') or [])
        known = [r for r in rows_after if r in graph.files]
        after = graph.applied_set(known) if known else set()
        order_up = list(plan.steps) + [r for r in state.history if r not in plan.steps]
        applied = [r for r in order_up if r in after and r not in before]
        order_down = list(plan.steps) + [r for r in reversed(state.history) if r not in plan.steps]
        reverted = [r for r in order_down if r in before and r not in after]
        position = state.extra.get('history_position') or {}
        to_rows = sorted(rows_after, key=lambda r: (position.get(r, len(position)), r))
        to_revision = ','.join(to_rows) or None
        details = {'applied': applied, 'reverted': reverted, 'from_revision': plan.from_revision,
                   'to_revision': to_revision, 'returncode': rc, 'command': shown}
        if timed_out or rc != 0:
            # the revision alembic was running when it failed: the last "Running upgrade a -> b" it logged
            steps_run = _RUNNING_RE.findall(err or '') + _RUNNING_RE.findall(out or '')
            if steps_run:
                verb, down, up = steps_run[-1]
                details['failed'] = up if verb == 'upgrade' else down.split(',')[0].strip()
            elif plan.steps:
                details['failed'] = plan.steps[0]
            why = ('was killed after %ss (timeout)' % options.get('timeout') if timed_out else 'failed (exit %s)' % rc)
            tail = _tail(self._scrub(err)) or _tail(self._scrub(out))
            details['stderr'] = tail
            partial = ''
            if applied or reverted:
                partial = '; it got as far as %s (applied %s%s)' % (
                    to_revision or 'base', ', '.join(applied) or 'nothing',
                    ', reverted ' + ', '.join(reverted) if reverted else '')
            else:
                partial = '; its version table is unchanged at %s' % (to_revision or 'base')
            # the driver's exception class for SQLSTATE 55P03 in alembic's traceback: a statement ran into
            # lock_timeout; the caller may retry when the database shows nothing stayed
            code = 'lock_timeout' if (not timed_out and LOCK_NOT_AVAILABLE_CLASS in (err or '')) else 'apply_failed'
            raise ApplyError('%s %s%s. alembic said:\n%s' % (shown, why, partial, tail), code=code,
                             details=details)
        expected = plan.extra.get('expected_rows')
        if expected is not None and set(rows_after) != set(expected):
            details['stderr'] = _tail(self._scrub(err))
            head = ('%s succeeded but the version table %s now holds %s, not %s as planned'
                    % (shown, self.version_table(), to_revision or 'nothing', ','.join(expected) or 'nothing'))
            others = self.other_version_tables(conn, graph.files)
            moved = [o for o in others if set(o[2]) == set(expected)]
            if moved:
                why = ("; alembic moved %s instead (it now holds %s): the service's env.py keeps its version table "
                       'there, not in %s. Set %s in the service spec (what env.py passes to context.configure()), '
                       'or make env.py use %s' % (moved[0][0], ', '.join(moved[0][2]), self.version_table(),
                                                  self._settings_hint(moved[0]), self.version_table()))
            else:
                why = ("; check that the service's env.py migrates the database in DATABASE_URL and keeps its "
                       'version table in %s (version_table / version_table_schema in the service spec must name the '
                       'table env.py passes to context.configure())%s'
                       % (self.version_table(), ''.join('; %s holds %s' % (o[0], ', '.join(o[2])) for o in others)))
            raise ApplyError(head + why, code='apply_failed', details=details)
        return ApplyResult(applied=applied, reverted=reverted, from_revision=plan.from_revision,
                           to_revision=to_revision, queries=[shown])
