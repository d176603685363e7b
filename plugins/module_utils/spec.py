# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service spec: one argument spec shared by every module, its checks, and dependency order.

The keys every service has are written down here (SHARED_HEAD, SHARED_TAIL); each tool's own keys and their
checks in its options module (adapters/<tool>/options.py), which the registry lists. SERVICE_OPTIONS is the
merged argument spec (shared head, each tool's keys in registry order, shared tail). The docs of the spec
(plugins/doc_fragments/service.py, roles/migrate_all/meta/argument_specs.yml) are generated from these same
dicts by scripts/gen_options.py; tests/unit/plugins/doc_fragments/test_service.py fails when they are stale.

In the option dicts, ``description`` (a list of paragraphs; a ``(context, text)`` pair is a paragraph for
one context only: ``services``, ``single`` or ``role``), ``version_added`` and ``check`` are docs and checks,
stripped from the argument spec (argspec()).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os
import re

from ansible_collections.homelab.migrations.plugins.module_utils.adapters import registry
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl, UrlError

NAME_RE = re.compile(r'^[a-z0-9][a-z0-9_-]{0,62}$')
BACKUP_MODES = ('auto', 'always', 'never')
DOC_KEYS = ('description', 'version_added', 'check')

SHARED_HEAD = dict(
    name=dict(type='str', required=True, description=[
        'Name of the service. 1 to 63 characters of V(a-z), V(0-9), V(_) and V(-), starting with a letter or digit.',
        'Also names the service\'s migration lock, its audit records and its backups.',
        ('role', 'It is also the tag (C(--tags <name>)) that selects the service.')]),
    tool=dict(type='str', required=True, description=['The migration tool the service uses.']),
    path=dict(type='path', required=True, description=['The service\'s root directory on the managed host.']),
    database_url=dict(type='str', required=True, no_log=True, description=[
        'The service\'s database as a libpq URI, for example V(postgresql://user:password@host:5432/dbname).',
        'V(postgres://) and SQLAlchemy-style V(postgresql+psycopg2://) URLs are accepted.',
        'The password is masked in every message and is passed to child processes only through the'
        ' environment or a 0600 passfile.',
        ('role', 'Keep it in a vault. Mark it C(!unsafe) if the password holds C({{), C({%) or C({#)'
                 ' (Ansible\'s own template error would print it).')]),
    depends_on=dict(type='list', elements='str', default=[], description=[
        'Names of services that are migrated before this one. The role skips a service whose dependency failed.',
        ('single', 'Not checked by this module.')]),
)

SHARED_TAIL = dict(
    backup=dict(type='str', default='auto', choices=list(BACKUP_MODES), description=[
        'Whether the role takes a C(pg_dump) backup before migrating this service (only services with work to do'
        ' get one).',
        'V(auto) skips the backup for Neon hosts (C(*.neon.tech)) and says why; V(always) and V(never) do as'
        ' they say.']),
    target=dict(type='str', default='head', description=[
        'Where a normal run takes this service. V(head), V(heads), V(base), a revision id or tag of the'
        ' service\'s tool, or V(-N) for N steps back.',
        ('single', 'The module option O(target) overrides it.')]),
    # the URL may hold credentials (user:password@)
    health_check=dict(type='str', no_log=True, description=[
        'An V(http://) or V(https://) URL that must answer 2xx after the service was migrated,'
        ' or the role rolls the service back.',
        ('single', 'Not used by this module.')]),
)

CONNECTION_REQUIREMENTS = ['psycopg2 (or psycopg2-binary) on the managed host']
CONNECTION_DOCS = dict(
    connect_timeout=dict(type='int', default=10, description=[
        'Seconds to wait for each database connection before the service is reported unreachable.']),
)


def argspec(options):
    """``options`` without the doc and check keys (DOC_KEYS): what AnsibleModule takes. A new dict."""
    out = {}
    for key, opt in options.items():
        out[key] = dict((k, list(v) if isinstance(v, list) else v) for k, v in opt.items() if k not in DOC_KEYS)
    return out


def documented_options():
    """The service spec with docs and checks: shared head, each registered tool's OPTIONS, shared tail.

    Built from the registry on every call, so a tool registered later (a test's fake one) is included.
    """
    out = dict(SHARED_HEAD)
    out['tool'] = dict(SHARED_HEAD['tool'], choices=list(registry.tool_names()))
    for tool in registry.tool_options():
        out.update(tool.OPTIONS)
    out.update(SHARED_TAIL)
    return out


def service_options():
    """The argument spec of one service (a new dict each call)."""
    return argspec(documented_options())


SERVICE_OPTIONS = service_options()
CONNECTION_OPTIONS = argspec(CONNECTION_DOCS)


def module_argument_spec(service_key, own):
    """A module's argument spec: the service spec as ``services`` (a list of dicts) or ``service`` (one dict), the
    module's own options ``own`` and CONNECTION_OPTIONS, all copied (AnsibleModule may change what it is given)."""
    if service_key == 'services':
        spec = dict(services=dict(type='list', elements='dict', required=True, options=service_options()))
    else:
        spec = dict(service=dict(type='dict', required=True, options=service_options()))
    spec.update(copy.deepcopy(own))
    spec.update(copy.deepcopy(CONNECTION_OPTIONS))
    return spec


class SpecError(ValueError):
    """A service spec that cannot be used. The message names the service and what to fix."""


def service_defaults(spec):
    """Fill defaults for a spec that did not come through AnsibleModule (unit tests, role filters).

    Returns a new dict with every key of the service spec; SpecError names unknown keys.
    """
    options = documented_options()
    out = {}
    for key, opt in options.items():
        if key in spec and spec[key] is not None:
            out[key] = spec[key]
        elif 'default' in opt:
            default = opt['default']
            out[key] = list(default) if isinstance(default, list) else default
        else:
            out[key] = None
    unknown = sorted(set(spec) - set(options))
    if unknown:
        raise SpecError('service %r: unknown key(s) %s; valid keys are %s'
                        % (spec.get('name'), ', '.join(unknown), ', '.join(sorted(options))))
    return out


def _relative_path(key, value):
    if os.path.isabs(value) or '..' in value.replace('\\', '/').split('/'):
        return '%s must be a path inside the service directory, got %r' % (key, value)
    return None


def _sql_name(key, value):
    if not isinstance(value, str) or not value or '\x00' in value or len(value) > 63:
        return '%s must be a non-empty name of at most 63 characters' % key
    return None


def _tool_checks(name, spec, kinds):
    """Run the tools' ``check`` of each kind in ``kinds`` (in that order, tools in registry order) on the keys
    that are set. A kind is ``relative_path``, ``sql_name`` or ``callable`` (a check function of the value)."""
    named = {'relative_path': _relative_path, 'sql_name': _sql_name}
    for kind in kinds:
        for tool in registry.tool_options():
            for key, opt in tool.OPTIONS.items():
                check, value = opt.get('check'), spec.get(key)
                if value is None or check is None:
                    continue
                if kind == 'callable' and callable(check):
                    error = check(value)
                elif kind == check:
                    error = named[kind](key, value)
                else:
                    continue
                if error:
                    raise SpecError('service %r: %s' % (name, error))


def validate_service(spec):
    """Check one service spec beyond what the argument spec checks. Returns the DbUrl; SpecError says what to fix.

    Checks, in this order: name, tool, path, the tools' relative paths and SQL names, backup, target,
    health_check, the tools' own checks, database_url. Tool keys are checked whatever the service's tool.
    """
    name = spec.get('name')
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise SpecError('service name %r is not valid: use 1-63 characters of a-z, 0-9, "_" and "-", '
                        'starting with a letter or digit' % (name,))
    tools = registry.tool_names()
    if spec.get('tool') not in tools:
        raise SpecError('service %r: tool must be one of %s, got %r' % (name, ', '.join(tools), spec.get('tool')))
    path = spec.get('path')
    if not isinstance(path, str) or not path:
        raise SpecError('service %r: path is required (the service root on the managed host)' % name)
    _tool_checks(name, spec, ('relative_path', 'sql_name'))
    if spec.get('backup') not in BACKUP_MODES:
        raise SpecError('service %r: backup must be one of %s' % (name, ', '.join(BACKUP_MODES)))
    target = spec.get('target')
    if target is not None and (not isinstance(target, str) or not target.strip()):
        raise SpecError('service %r: target must be a non-empty string (head, heads, base, a revision or -N)' % name)
    health = spec.get('health_check')
    if health is not None and not re.match(r'^https?://', str(health)):
        raise SpecError('service %r: health_check must be an http:// or https:// URL' % name)
    _tool_checks(name, spec, ('callable',))
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
