# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the migrate_all role hands to the tools that run it (AWX/AAP, Semaphore, ansible-runner).

    vars | homelab.migrations.migrate_all_run_user                   who started the run there ('' if unknown)
    results | homelab.migrations.migrate_all_stats(...)              the run's outcome per service, for set_stats

Never a database URL or a password: names, revisions, counts, sizes and outcomes only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections.abc import Mapping

# AWX / AAP pass the launching user as extra vars (awx_* and the older tower_* names); Semaphore passes
# semaphore_vars: {task_details: {id, username, message, ...}} (its LocalJob.getEnvironmentExtraVars).
USER_SOURCES = (('awx_user_name',), ('tower_user_name',), ('semaphore_vars', 'task_details', 'username'))


def _dig(variables, path):
    value = variables
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _cli_extra_vars():
    """The extra vars of this ansible-playbook run (``-e``), as AWX/ansible-runner and Semaphore pass them, or None
    outside ansible-playbook. A file that cannot be read here (a vault-encrypted ``-e @secrets.yml``) is left
    out: AWX and Semaphore never pass their user in one."""
    try:
        from ansible import context
        from ansible.parsing.dataloader import DataLoader
        from ansible.parsing.splitter import parse_kv
    except ImportError:  # pragma: no cover - only on the controller
        return None
    specs = context.CLIARGS.get('extra_vars') if context.CLIARGS else None
    if specs is None:
        return None
    loader = DataLoader()
    extra = {}
    for spec in specs:
        spec = str(spec).strip()
        try:
            if spec.startswith('@'):
                data = loader.load_from_file(spec[1:])
            elif spec.startswith(('[', '{')):
                data = loader.load(spec)
            else:
                data = parse_kv(spec)
        except Exception:  # pylint: disable=broad-except
            continue
        if isinstance(data, Mapping):
            extra.update(data)
    return extra


def migrate_all_run_user(variables, from_extra_vars=False):
    """The user AWX or Semaphore says started this run, from ``variables`` (a dict of the play's variables
    ``awx_user_name``, ``tower_user_name``, ``semaphore_vars``; missing ones may be None), or ''.

    With ``from_extra_vars`` (the role), a value counts only when it came as an extra var (``-e``) of this
    ansible-playbook run, the way AWX/ansible-runner and Semaphore pass it: the same name set in an inventory
    (anyone who can edit it could name another user, or rename the Semaphore user) is ignored.
    """
    variables = variables if isinstance(variables, dict) else {}
    if from_extra_vars:
        extra = _cli_extra_vars()
        if extra is not None:
            variables = dict((path[0], extra.get(path[0])) for path in USER_SOURCES)
    for path in USER_SOURCES:
        value = _dig(variables, path)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return ''


def _service_stats(result):
    out = {
        'outcome': result.get('outcome') or 'unknown',
        'from': result.get('from'),
        'to': result.get('to'),
        'applied': list(result.get('applied') or []),
        'reverted': list(result.get('reverted') or []),
        'backup': result.get('backup'),
    }
    for key in ('backup_size_bytes', 'backup_seconds', 'backup_skipped', 'error', 'recovery'):
        if result.get(key) not in (None, ''):
            out[key] = result[key]
    return out


def migrate_all_stats(results, order=None, status=None, check_mode=False, action='apply', run_id=None,
                      selected=None, host=None):
    """The data of the role's ``set_stats`` for one host: ``{host: {...}}``.

    A run: ``outcome`` (success, failed, unchanged: nothing was applied), ``services`` with each worked-on
    service's outcome, revisions, applied/reverted migrations and backup. Check mode: ``outcome`` check and,
    per service, its status, current and latest revision and pending migrations (from ``status``).
    """
    results = results if isinstance(results, dict) else {}
    order = [n for n in (order or list(results)) if isinstance(n, str)]
    data = {'action': action, 'run_id': run_id, 'check_mode': bool(check_mode),
            'selected': [n for n in (selected or []) if isinstance(n, str)]}
    if check_mode:
        services = ((status or {}).get('services') or {}) if isinstance(status, dict) else {}
        data['services'] = dict(
            (name, {'status': (services.get(name) or {}).get('status', 'error'),
                    'current': (services.get(name) or {}).get('current_revision'),
                    'latest': (services.get(name) or {}).get('latest_revision'),
                    'pending': list((services.get(name) or {}).get('pending_migrations') or [])})
            for name in order)
        data['outcome'] = 'check'
        data['overall_status'] = (status or {}).get('overall_status') if isinstance(status, dict) else None
        data['total_pending'] = (status or {}).get('total_pending') if isinstance(status, dict) else None
    else:
        data['services'] = dict((name, _service_stats(results[name])) for name in order
                                if isinstance(results.get(name), dict))
        outcomes = [s['outcome'] for s in data['services'].values()]
        data['outcome'] = ('failed' if 'failed' in outcomes else
                           'success' if [o for o in outcomes if o not in ('unchanged', 'skipped')] else 'unchanged')
    return {str(host or 'localhost'): data}


class FilterModule(object):
    def filters(self):
        return {
            'migrate_all_run_user': migrate_all_run_user,
            'migrate_all_stats': migrate_all_stats,
        }
