# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service spec: one argument spec shared by every module, its checks, and dependency order.

The keys and defaults are the contract in DESIGN.md; plugins/doc_fragments/service.py documents
them for ansible-doc and must stay in step with SERVICE_OPTIONS below.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.homelab.migrations.plugins.module_utils.connection import DbUrl, UrlError

NAME_RE = re.compile(r'^[a-z0-9][a-z0-9_-]{0,62}$')
TOOLS = ('alembic', 'drizzle')
BACKUP_MODES = ('auto', 'always', 'never')

SERVICE_OPTIONS = dict(
    name=dict(type='str', required=True),
    tool=dict(type='str', required=True, choices=list(TOOLS)),
    path=dict(type='path', required=True),
    database_url=dict(type='str', required=True, no_log=True),
    depends_on=dict(type='list', elements='str', default=[]),
    alembic_config=dict(type='str', default='alembic.ini'),
    alembic_command=dict(type='list', elements='str'),
    alembic_sql_preview=dict(type='bool', default=False),
    version_table=dict(type='str', default='alembic_version'),
    version_table_schema=dict(type='str'),
    migrations_dir=dict(type='str', default='migrations'),
    migrations_table=dict(type='str', default='__drizzle_migrations'),
    migrations_schema=dict(type='str', default='drizzle'),
    backup=dict(type='str', default='auto', choices=list(BACKUP_MODES)),
    target=dict(type='str', default='head'),
    health_check=dict(type='str', no_log=True),  # the URL may hold credentials (user:password@)
)

CONNECTION_OPTIONS = dict(
    connect_timeout=dict(type='int', default=10),
)


class SpecError(ValueError):
    """A service spec that cannot be used. The message names the service and what to fix."""


def service_defaults(spec):
    """Fill defaults for a spec that did not come through AnsibleModule (unit tests, role filters)."""
    out = {}
    for key, opt in SERVICE_OPTIONS.items():
        if key in spec and spec[key] is not None:
            out[key] = spec[key]
        elif 'default' in opt:
            default = opt['default']
            out[key] = list(default) if isinstance(default, list) else default
        else:
            out[key] = None
    unknown = sorted(set(spec) - set(SERVICE_OPTIONS))
    if unknown:
        raise SpecError('service %r: unknown key(s) %s; valid keys are %s'
                        % (spec.get('name'), ', '.join(unknown), ', '.join(sorted(SERVICE_OPTIONS))))
    return out


def _check_relative(service, key, value):
    if value is None:
        return
    if os.path.isabs(value) or '..' in value.replace('\\', '/').split('/'):
        raise SpecError('service %r: %s must be a path inside the service directory, got %r'
                        % (service, key, value))


def validate_service(spec):
    """Check one service spec beyond what the argument spec checks. Returns the DbUrl."""
    name = spec.get('name')
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise SpecError('service name %r is not valid: use 1-63 characters of a-z, 0-9, "_" and "-", '
                        'starting with a letter or digit' % (name,))
    if spec.get('tool') not in TOOLS:
        raise SpecError('service %r: tool must be one of %s, got %r' % (name, ', '.join(TOOLS), spec.get('tool')))
    path = spec.get('path')
    if not isinstance(path, str) or not path:
        raise SpecError('service %r: path is required (the service root on the managed host)' % name)
    for key in ('alembic_config', 'migrations_dir'):
        _check_relative(name, key, spec.get(key))
    for key in ('version_table', 'version_table_schema', 'migrations_table', 'migrations_schema'):
        value = spec.get(key)
        if value is not None and (not isinstance(value, str) or not value or '\x00' in value or len(value) > 63):
            raise SpecError('service %r: %s must be a non-empty name of at most 63 characters' % (name, key))
    if spec.get('backup') not in BACKUP_MODES:
        raise SpecError('service %r: backup must be one of %s' % (name, ', '.join(BACKUP_MODES)))
    target = spec.get('target')
    if target is not None and (not isinstance(target, str) or not target.strip()):
        raise SpecError('service %r: target must be a non-empty string (head, heads, base, a revision or -N)' % name)
    health = spec.get('health_check')
    if health is not None and not re.match(r'^https?://', str(health)):
        raise SpecError('service %r: health_check must be an http:// or https:// URL' % name)
    command = spec.get('alembic_command')
    if command is not None and (not isinstance(command, list) or not command
                                or not all(isinstance(c, str) and c for c in command)):
        raise SpecError('service %r: alembic_command must be a non-empty list of strings' % name)
    try:
        return DbUrl(spec.get('database_url'))
    except UrlError as exc:
        raise SpecError('service %r: %s' % (name, exc))


def validate_services(specs):
    """Validate a list of specs: each one, unique names, known depends_on. Returns {name: DbUrl}."""
    urls = {}
    seen = set()
    for spec in specs:
        url = validate_service(spec)
        name = spec['name']
        if name in seen:
            raise SpecError('service name %r is used twice; service names must be unique' % name)
        seen.add(name)
        urls[name] = url
    for spec in specs:
        for dep in spec.get('depends_on') or []:
            if dep not in seen:
                raise SpecError('service %r depends on %r, which is not in the service list (known: %s)'
                                % (spec['name'], dep, ', '.join(sorted(seen))))
            if dep == spec['name']:
                raise SpecError('service %r depends on itself' % dep)
    return urls


def dependency_order(specs):
    """Services ordered so each comes after everything in its depends_on; list order breaks ties.

    A cycle raises SpecError naming the services on it.
    """
    by_name = {}
    for spec in specs:
        by_name[spec['name']] = spec
    for spec in specs:
        for dep in spec.get('depends_on') or []:
            if dep not in by_name:
                raise SpecError('service %r depends on %r, which is not in the service list' % (spec['name'], dep))
    order = []
    state = {}  # name -> 1 visiting, 2 done

    def visit(name, stack):
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = stack[stack.index(name):] + [name]
            raise SpecError('depends_on has a cycle: %s; remove one of these dependencies' % ' -> '.join(cycle))
        state[name] = 1
        stack.append(name)
        for dep in by_name[name].get('depends_on') or []:
            visit(dep, stack)
        stack.pop()
        state[name] = 2
        order.append(by_name[name])

    for spec in specs:
        visit(spec['name'], [])
    return order
