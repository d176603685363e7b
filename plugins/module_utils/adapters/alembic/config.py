# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The alembic config as the read side needs it: ``alembic.ini`` and ``[tool.alembic]`` of ``pyproject.toml``.

Read the way alembic 1.20's ``alembic.config.Config`` reads them (``script_location``,
``version_locations`` with the ``path_separator`` / ``version_path_separator`` rules,
``recursive_version_locations``, ``sourceless``, ``prepend_sys_path``; the toml as the fallback), with
relative paths resolved against the service path (alembic's working directory). Errors are AdapterError
with a message that says what to fix.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import configparser
import os
import re

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import AdapterError
from ansible_collections.homelab.migrations.plugins.module_utils.regular_file import CONFIG_LIMIT, read_regular


def _toml_library():
    """tomllib (Python 3.11+) or tomli, imported only for a service that has a pyproject.toml; None without."""
    try:
        import tomllib
        return tomllib
    except ImportError:  # pragma: no cover - older Pythons
        try:
            import tomli
            return tomli
        except ImportError:
            return None


MAIN_SECTION = 'alembic'
# alembic.config: legacy version_locations splitting when no separator is configured
_LEGACY_SPLIT_RE = re.compile(r', *|(?: +)')
_SEPARATORS = {'space': ' ', 'newline': '\n', 'os': os.pathsep, ':': ':', ';': ';'}


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
        """The config file to name in messages: the ini, or the toml when there is no ini."""
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
                _toml = _toml_library()
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
