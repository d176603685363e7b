# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of the migrate_all role's inputs that catch a misspelling before anything is touched.

    names | homelab.migrations.migrate_all_unknown_vars(options)        message for unknown migrate_all_* vars
    run_tags | homelab.migrations.migrate_all_unknown_tags(skip, names)  message for tags naming no service
    role_path | homelab.migrations.migrate_all_options                   the argument spec's options
    values | homelab.migrations.migrate_all_spec_check(role_path)        the argument spec check's result
    result | homelab.migrations.migrate_all_spec_errors(services, opts)  short message for argument spec errors

The message filters return an empty string when everything is known, else one message with a "did you mean" suggestion
(difflib) that says what to do next.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import functools
import os
import re

from collections.abc import Mapping

import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

PREFIX = 'migrate_all_'
# variables with the role's prefix that are not role options: the fact the role sets, the playbook's host pattern
NOT_OPTIONS = ('migrate_all_audit', 'migrate_all_hosts')
# tags Ansible gives a meaning to (the role tags its run-wide tasks `always`)
SPECIAL_TAGS = ('all', 'always', 'never', 'tagged', 'untagged')
# tags test tools pass on every run: molecule calls ansible-playbook with --skip-tags molecule-notest,notest
# (and molecule-idempotence-notest in its idempotence step); they name no service and skip none of ours
TOOL_SKIP_TAGS = ('molecule-notest', 'notest', 'molecule-idempotence-notest')


def _suggest(word, choices, strip=''):
    """The closest of ``choices`` to ``word`` (compared without the common ``strip`` prefix), or None."""
    # compared in lower case: DASHBOARD and Stream-Bot are near misses of dashboard and stream-bot
    short = dict(((c[len(strip):] if strip and c.startswith(strip) else c).lower(), c) for c in choices)
    key = (word[len(strip):] if strip and word.startswith(strip) else word).lower()
    match = difflib.get_close_matches(key, list(short), n=1, cutoff=0.6)
    return short[match[0]] if match else None


def _option_names(options):
    if isinstance(options, dict):
        return [str(k) for k in options]
    return [str(k) for k in (options or [])]


def _looks_like_an_option(name):
    """Whether ``name`` is meant as a role option: it starts with ``migrate_all_`` in any case, or its
    first letters are a near miss of it (migrateall_, mirgate_all_, migrate_al_, migrate-all_)."""
    low = name.lower()
    if low.startswith(PREFIX + '_'):
        return False
    if low.startswith(PREFIX):
        return True
    letters = re.sub('[^a-z]', '', low)
    return difflib.SequenceMatcher(None, letters[:10], 'migrateall').ratio() >= 0.85


def _suggest_option(name, known):
    """The closest of ``known`` option names to ``name``, compared in lower case (and without the prefix)."""
    lower = dict((k.lower(), k) for k in known)
    match = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.8)
    return lower[match[0]] if match else _suggest(name, sorted(known), PREFIX)


def migrate_all_unknown_vars(names, options, allowed=None):
    """A message naming every variable in ``names`` meant as a role option that is none, or ''.

    ``names`` are the variable names set for the host (``query('varnames', '.')``); ``options`` the argument
    spec's options (a dict or names). Ansible's variable names are case-sensitive, so ``Migrate_all_action``
    and near misses of the prefix (``migrateall_action``) are ignored by the role like ``migrate_all_acton``:
    all are named. Internal names (``migrate_all__*``), the role's own fact ``migrate_all_audit`` and the
    playbook's ``migrate_all_hosts`` are known; other variables are left alone.
    """
    known = set(_option_names(options)) | set(NOT_OPTIONS) | set(_option_names(allowed))
    unknown = sorted(set(str(n) for n in (names or []) if str(n) not in known and _looks_like_an_option(str(n))))
    if not unknown:
        return ''
    parts = []
    for name in unknown:
        guess = _suggest_option(name, known)
        parts.append('%s (did you mean %s?)' % (name, guess) if guess else name)
    return ('unknown variable%s %s: the migrate_all role has no such option (names are case-sensitive), so %s '
            'would be ignored. Correct the name or remove it (every option: ansible-doc -t role '
            'homelab.migrations.migrate_all). Nothing was changed.'
            % ('s' if len(unknown) > 1 else '', ', '.join(parts), 'they' if len(unknown) > 1 else 'it'))


def _service_names(services_per_host):
    """Every service name in a list of hosts' ``migrate_all_services`` (anything malformed is left out)."""
    names = []
    for services in services_per_host or []:
        if isinstance(services, dict):
            services = [services]
        if not isinstance(services, (list, tuple)):
            continue
        for spec in services:
            if isinstance(spec, (list, tuple)):
                names.extend(_service_names([spec]))
            elif isinstance(spec, dict) and isinstance(spec.get('name'), str) and spec['name'] not in names:
                names.append(spec['name'])
    return names


def migrate_all_unknown_tags(run_tags, skip_tags=None, services_per_host=None):
    """A message naming every ``--tags``/``--skip-tags`` value that names no service of the play, or ''.

    ``services_per_host`` holds each play host's ``migrate_all_services``: a tag naming a service on
    another host of the play is known (that host works on it, this one has nothing to do). Ansible's
    own tags (all, always, never, tagged, untagged) are known too, and so are the tags molecule skips on
    every run (molecule-notest, notest, molecule-idempotence-notest) as ``--skip-tags`` values.
    """
    names = _service_names(services_per_host)
    known = set(names) | set(SPECIAL_TAGS)
    parts = []
    for option, tags in (('--tags', run_tags), ('--skip-tags', skip_tags)):
        for tag in sorted(set(str(t) for t in (tags or []))):
            if tag in known or (option == '--skip-tags' and tag in TOOL_SKIP_TAGS):
                continue
            guess = _suggest(tag, names)
            parts.append('%s %s%s' % (option, tag, ' (did you mean %s?)' % guess if guess else ''))
    if not parts:
        return ''
    return ('%s: no service of this play has that name (services: %s), so the run would %s. '
            'Name a service with --tags, or leave --tags out to work on every service. Nothing was changed.'
            % ('; '.join(parts), ', '.join(names) or 'none',
               'not do what was asked' if len(parts) > 1 else
               ('do nothing' if parts[0].startswith('--tags') else 'not skip anything')))


def _native(value):
    """``value`` as plain dicts, lists and strs (see migrate_all_spec_check)."""
    if isinstance(value, Mapping):
        return dict((_native(k), _native(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_native(v) for v in value]
    if isinstance(value, str):
        return str.__str__(value)
    return value


@functools.lru_cache(maxsize=4)
def _role_options(path):
    loader = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)
    with open(path) as fh:
        return yaml.load(fh, Loader=loader)['argument_specs']['main']['options']  # nosec B506: a safe loader


def migrate_all_options(role_path):
    """The options of the role's main entry point (``<role_path>/meta/argument_specs.yml``), as plain data.

    PyYAML's safe loader reads the file (C-accelerated where libyaml is installed), once per process; ansible's
    ``from_yaml`` would tag every string of its 23 KB, which makes each later copy of it slow. Do not change
    the dict returned (it is shared).
    """
    return _role_options(os.path.join(str(role_path), 'meta', 'argument_specs.yml'))


def migrate_all_spec_check(values, role_path):
    """The check ``ansible.builtin.validate_argument_spec`` makes of the role's variables, as a filter (no task).

    ``values`` maps each option of the role's argument spec (:func:`migrate_all_options` of ``role_path``) that
    is set to its value, as that action takes them from the task's variables. ansible-core's
    ArgumentSpecValidator checks them (what the action runs, with its ``validate_role_argument_spec``):
    ``{'argument_errors': [message, ...]}`` when some do not fit, else ``{}`` (the shape migrate_all_spec_errors
    reads). The spec is read here, not passed in: ansible-core 2.19 hands a filter its arguments as lazy
    template containers, whose deep copy (ArgumentSpecValidator copies its input) costs ten times as much.
    """
    found = ArgumentSpecValidator(migrate_all_options(role_path)).validate(_native(values or {}),
                                                                           validate_role_argument_spec=True)
    return {'argument_errors': found.error_messages} if found.error_messages else {}


def migrate_all_spec_errors(result, services=None, service_options=None):
    """One short message for a ``validate_argument_spec`` result that found errors, or ''.

    ``result`` is the registered result (its ``argument_errors``); ``services`` the ``migrate_all_services``
    given and ``service_options`` the spec's options of one service: a key no service option has is named
    with its index and the closest option (did you mean). The argument spec itself is never repeated.
    """
    result = result if isinstance(result, dict) else {}
    errors = [str(e).strip().rstrip('.') for e in (result.get('argument_errors') or []) if e]
    if not errors:
        return ''
    options = _option_names(service_options)
    hints = []
    if options and isinstance(services, (list, tuple)):
        for index, spec in enumerate(services):
            if not isinstance(spec, dict):
                continue
            for key in sorted(str(k) for k in spec if str(k) not in options):
                guess = _suggest(key, options)
                hints.append('migrate_all_services[%d]%s: unknown key %s%s' % (
                    index, ' (%s)' % spec['name'] if isinstance(spec.get('name'), str) else '', key,
                    ' (did you mean %s?)' % guess if guess else ''))
    return ('the role\'s variables do not fit its argument specs: %s.%s Fix them (every option: ansible-doc -t role '
            'homelab.migrations.migrate_all). Nothing was changed.'
            % ('; '.join(errors), (' ' + '; '.join(hints) + '.') if hints else ''))


class FilterModule(object):
    def filters(self):
        return {
            'migrate_all_unknown_vars': migrate_all_unknown_vars,
            'migrate_all_unknown_tags': migrate_all_unknown_tags,
            'migrate_all_options': migrate_all_options,
            'migrate_all_spec_check': migrate_all_spec_check,
            'migrate_all_spec_errors': migrate_all_spec_errors,
        }
