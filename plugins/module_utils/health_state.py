# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each service's persisted health state in the status report (one home for both of its readers).

    report = with_health(report, audit.health_states(audit_log))
    report = report_with_health(report, audit_log)      # the same, reading the log (IOError/OSError)

The state is the one the last health record of the audit log left (module_utils.audit.health_states, the code
homelab_migration_audit's ``read_health`` runs): ``{state: unverified|passed, since: ISO time, revision}``.
homelab_migration_status with ``audit_log`` and the filter ``migrate_all_with_health`` both add it here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils.audit import health_states


def with_health(status, health):
    """``status`` (the status module's result: a dict with ``services`` {name: entry}) with each service's health
    state (``health`` {name: {state, since, revision}}) as ``health`` in its entry; services without one, and
    states that are not dicts, get none. Returns a new dict; ``status`` is not changed. None counts as empty."""
    status = dict(status or {})
    services = dict(status.get('services') or {})
    for name, state in (health or {}).items():
        if name in services and isinstance(state, dict):
            services[name] = dict(services[name], health=state)
    status['services'] = services
    return status


def report_with_health(report, audit_log):
    """``report`` with the health states the audit log ``audit_log`` (a path; a missing file has none) left.
    Raises IOError/OSError when the log exists but cannot be read."""
    return with_health(report, health_states(audit_log))
