# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migrate_all role's choice of services: their dependency order, the ones a run works on, their plans.

Plain Python on the controller (private to the collection: the role reaches it through the filters in
``plugins/filter`` and the ``homelab_migration_run`` action). Never returns a database URL.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.homelab.migrations.plugins.module_utils.automation import (
    automation_context,
    controller_is_interactive,
)
from ansible_collections.homelab.migrations.plugins.module_utils.health_state import with_health
from ansible_collections.homelab.migrations.plugins.module_utils.spec import (
    SpecError,
    dependency_order,
    service_defaults,
    validate_services,
)


NONE = '(none)'


def cell(value):
    if value is None or value == '':
        return NONE
    return str(value)


def result_of(results, name):
    return (results or {}).get(name) or {}


def _services(services):
    if not isinstance(services, (list, tuple)) or not services:
        raise AnsibleFilterError('migrate_all_services must be a non-empty list of service specs '
                                 '(name, tool, path, database_url, ...); see the role\'s argument_specs')
    specs = []
    for index, spec in enumerate(services):
        if not isinstance(spec, dict):
            raise AnsibleFilterError('migrate_all_services[%d] must be a dict (a service spec), got %s'
                                     % (index, type(spec).__name__))
        try:
            specs.append(service_defaults(spec))
        except SpecError as exc:
            raise AnsibleFilterError(str(exc))
    return specs


def migrate_all_order(services, validate=True):
    """Service names ordered by depends_on (list order breaks ties). Validates every spec first.

    ``validate=False`` orders specs known to be valid (ordered once already) by their names and depends_on
    alone: ansible-core renders only the keys a filter reads, so the other keys' templates (URLs, paths) are
    not rendered a second time.
    """
    if not validate:
        specs = [{'name': spec['name'], 'depends_on': spec.get('depends_on') or []} for spec in services]
    else:
        specs = _services(services)
    try:
        if validate:
            validate_services(specs)
        return [spec['name'] for spec in dependency_order(specs)]
    except SpecError as exc:
        raise AnsibleFilterError('migrate_all_services: %s' % exc)


def migrate_all_selected(order, run_tags=None, skip_tags=None):
    """The names a run works on: all of them, or those named by --tags, minus --skip-tags."""
    run_tags = set(run_tags or ['all'])
    skip_tags = set(skip_tags or [])
    if 'all' in run_tags:
        chosen = list(order)
    else:
        chosen = [name for name in order if name in run_tags]
    return [name for name in chosen if name not in skip_tags]


def migrate_all_plans(status, names):
    """The plans of ``names`` from the status module's result (its ``plan`` option), in that order.

    Each is what homelab_migration_apply in check mode returns; a service without one (the status
    task did not plan it) gets a failed plan that says so, so nothing runs on a guess.
    """
    services = (status or {}).get('services') or {}
    plans = []
    for name in names or []:
        plan = (services.get(name) or {}).get('plan')
        if not isinstance(plan, dict):
            plan = {'failed': True, 'changed': False,
                    'msg': 'service %r: the status read made no plan for it; nothing was changed' % name}
        plans.append(plan)
    return plans


def migrate_all_changed(plans, names):
    """Names whose check-mode plan would change something."""
    return [name for name, plan in zip(names or [], plans or []) if (plan or {}).get('changed')]


def migrate_all_target(spec, action='apply', rollback_target=None):
    """Where a run takes a service: its target (head) for apply; -1 or migrate_all_rollback_target for rollback."""
    if action == 'rollback':
        return str(rollback_target).strip() if rollback_target not in (None, '') else '-1'
    target = (spec or {}).get('target')
    return str(target) if target not in (None, '') else 'head'


def migrate_all_with_health(status, health):
    """The status module's result with each service's persisted health state (``health``: {state, since,
    revision}, from homelab_migration_audit's ``read_health``) in its entry; services without one get none
    (module_utils.health_state.with_health, which homelab_migration_status's ``audit_log`` uses too)."""
    return with_health(status, health)


def migrate_all_interactive(mode=True, variables=None):
    """``mode`` false never prompts; true/'auto' prompts only where a person can answer.

    Nobody can answer under AWX/AAP, ansible-runner, Semaphore or CI (``variables``: the play's variables
    that say so, e.g. ``{'awx_job_id': ..., 'semaphore_vars': ...}``; the controller's environment is read
    too), nor when ansible-playbook's stdin/stdout are not a terminal.
    """
    if isinstance(mode, str):
        mode = mode.strip().lower() not in ('false', 'no', 'off', '0', 'never', '')
    if not mode:
        return False
    if automation_context(variables)['runner']:
        return False
    return controller_is_interactive()


def migrate_all_automation(variables=None):
    """``{'runner': awx|ansible-runner|semaphore|ci|None, 'reason': ...}`` (module_utils.automation)."""
    return automation_context(variables)
