#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: homelab_migration_status
short_description: Report the migration state of services, each as its own migration tool sees it
version_added: 0.1.0
description:
  - Reads, for every service, which migrations are applied and which are pending, exactly as the
    service's own tool sees it (the notes say how, per tool), plus problems the tools do not report
    (edited applied files, entries drizzle-orm would silently skip, unknown rows, several heads).
  - Never changes anything; the database sessions it opens are read-only. Revision files are parsed,
    never executed.
  - A service that cannot be read (unreachable database, broken migration folder) gets status V(error) and
    its problems in RV(services); the other services are still reported.
  - Shows whether another run holds a service's migration lock (the advisory lock
    M(homelab.migrations.homelab_migration_apply) takes), and who.
  - Services on the same server and database share one connection.
author:
  - homelab.migrations contributors (@homelab)
extends_documentation_fragment:
  - homelab.migrations.service.services
  - homelab.migrations.service.connection
options:
  fail_on_error:
    description:
      - Fail the task when any service has status V(error). The full report is returned either way.
    type: bool
    default: false
  preflight:
    description:
      - Check the pending migrations before anything runs and report RV(services.findings) (and, when the
        C(squawk) linter is installed on the managed host, lint the pending Drizzle SQL). V(false) skips the
        checks - RV(services.findings) is then empty and planned services are not refused over findings.
    type: bool
    default: true
  plan:
    description:
      - Also plan the services, exactly as M(homelab.migrations.homelab_migration_apply) in check mode
        would, from this same read (no second connection or read per service). Each planned service gets
        RV(services.plan).
      - A plan that cannot be made (a broken file, a refused change, an unreachable database) is reported
        in RV(services.plan) with C(failed) and C(msg); it does not fail the task.
    type: dict
    suboptions:
      services:
        description: Names of the services to plan (each must be in O(services)). Default is every service.
        type: list
        elements: str
      target:
        description:
          - Where to plan every named service to, with the values
            O(homelab.migrations.homelab_migration_apply#module:target) takes.
          - Default is each service's own O(services[].target).
        type: str
      allow_out_of_order:
        description: As O(homelab.migrations.homelab_migration_apply#module:allow_out_of_order).
        type: bool
        default: false
      allow_modified:
        description: As O(homelab.migrations.homelab_migration_apply#module:allow_modified).
        type: bool
        default: false
      lock_wait:
        description:
          - As O(homelab.migrations.homelab_migration_apply#module:lock_wait); the plan never waits for the
            lock, it names the wait a real run would make in its warning when the lock is held.
        type: int
        default: 60
      transaction:
        description:
          - As O(homelab.migrations.homelab_migration_apply#module:transaction); the pre-flight findings
            (RV(services.findings)) depend on it.
        type: str
        default: all
        choices: [all, each]
      allow_findings:
        description:
          - As O(homelab.migrations.homelab_migration_apply#module:allow_findings); a plan with an error finding
            not allowed here fails.
        type: list
        elements: str
        default: []
      lock_timeout:
        description:
          - As O(homelab.migrations.homelab_migration_apply#module:lock_timeout); when set, the squawk lint does not
            warn about a missing C(lock_timeout).
        type: str
      statement_timeout:
        description:
          - As O(homelab.migrations.homelab_migration_apply#module:statement_timeout); when set, the squawk lint does
            not warn about a missing C(statement_timeout).
        type: str
  audit_log:
    description:
      - Audit log of the runs (O(homelab.migrations.homelab_migration_audit#module:audit_log)). When given, each
        service's entry gets RV(services.health), the health state its last health record in this log left, read
        as O(homelab.migrations.homelab_migration_audit#module:read_health) reads it. A log that does not exist
        yet leaves every service without one; one that cannot be read fails the task.
      - Only read, never written.
    type: path
attributes:
  check_mode:
    description: Fully supported; the module never changes anything.
    support: full
  diff_mode:
    description:
      - With O(plan), RV(diff) holds for each planned service that would change the SQL the run would send, as
        M(homelab.migrations.homelab_migration_apply) shows it in diff mode. Without O(plan), nothing to show.
    support: partial
notes:
  - The pending list of a service is what an upgrade to its head(s) would run, in run order.
  - Status reads wait at most 5 seconds for a lock on a tracking table; a service whose tables are
    locked by a running migration is reported with a V(locked) problem.
seealso:
  - module: homelab.migrations.homelab_migration_apply
'''

EXAMPLES = r'''
- name: Migration status of the homelab
  homelab.migrations.homelab_migration_status:
    services:
      - "{{ dashboard_service }}"
      - name: stream-bot
        tool: drizzle
        path: /opt/homelab/services/stream-bot
        database_url: "{{ stream_bot_database_url }}"
        depends_on: [dashboard]
      - name: discord-bot
        tool: drizzle
        path: /opt/homelab/services/discord-bot
        database_url: "{{ discord_bot_database_url }}"
  register: migration_status

- name: Show what is pending
  ansible.builtin.debug:
    msg: "{{ item.key }}: {{ item.value.status }} ({{ item.value.pending_migrations | join(', ') }})"
  loop: "{{ migration_status.services | dict2items }}"

- name: What a run to each service's target would do (the apply module's check mode, one read)
  homelab.migrations.homelab_migration_status:
    services: "{{ migrate_all_services }}"
    plan:
      services: [stream-bot]
  register: migration_plan

- name: Fail a scheduled job when any service cannot be read
  homelab.migrations.homelab_migration_status:
    services: "{{ migrate_all_services }}"
    fail_on_error: true
    connect_timeout: 5
'''

RETURN = r'''
success:
  description: Whether every service could be read without a problem (RV(overall_status) is not V(error)).
  returned: always
  type: bool
  sample: true
overall_status:
  description: V(error) when any service is in error, else V(pending) when any has pending migrations,
    else V(up_to_date).
  returned: always
  type: str
  sample: pending
total_pending:
  description: Number of pending migrations over all services.
  returned: always
  type: int
  sample: 3
diff:
  description:
    - In diff mode with O(plan), one entry per planned service that would change - C(prepared) (the SQL the
      run would send), C(before)/C(after) (the revisions) and headers naming the service.
  returned: when diff mode is on and a planned service would change
  type: list
  elements: dict
services:
  description: The state of each service, by service name, in the order of O(services).
  returned: always
  type: dict
  sample:
    stream-bot:
      status: pending
      tool: drizzle
      current_revision: 0006_add_channels
      latest_revision: 0008_add_locale
      applied: 7
      pending: 2
      pending_migrations: [0007_add_index, 0008_add_locale]
      problems: []
      lock: {held: false, holder: null}
      findings: []
  contains:
    status:
      description: V(up_to_date), V(pending), or V(error) when the state could not be read or has a problem
        (every problem but V(locked) and those with C(severity=warning)).
      type: str
      returned: always
    tool:
      description: The service's tool.
      type: str
      returned: always
    current_revision:
      description: The applied revision (several heads joined by commas) or newest applied tag; null when nothing
        is applied or the state could not be read.
      type: str
      returned: always
    latest_revision:
      description: The head revision(s) or the last journal tag in the service's files.
      type: str
      returned: always
    applied:
      description: Number of applied migrations.
      type: int
      returned: always
    pending:
      description: Number of pending migrations.
      type: int
      returned: always
    pending_migrations:
      description: Revision ids or Drizzle tags an upgrade would run, in run order.
      type: list
      elements: str
      returned: always
    problems:
      description:
        - What is wrong, as C(code) and C(message). Codes are V(unreachable), V(bad_config), V(multiple_heads),
          V(unknown_revision), V(modified), V(missing_file), V(out_of_order), V(unknown_migration) and V(locked).
        - A problem with C(severity=warning) is something the run works around (for example a branch label written
          as an expression status cannot read); it does not make the service an error.
        - V(multiple_heads) is reported only when the service's target is V(head); with V(heads), a branch label or
          C(label@head) several heads are normal.
        - Messages never contain a password.
      type: list
      elements: dict
      returned: always
    lock:
      description:
        - Whether another session holds the service's migration lock, and the holder
          (C(pid), C(application_name), C(client_addr), C(since)) or null.
      type: dict
      returned: always
    findings:
      description:
        - Pre-flight findings about the pending migrations (the plan's, when O(plan) names the service), as
          RV(homelab.migrations.homelab_migration_apply#module:findings) - C(migration), C(statement), C(code),
          C(severity) (V(error) means the run as planned will certainly fail), C(message), C(source)
          (V(squawk) for lint warnings). An empty list when there is nothing to say. Never a password.
      type: list
      elements: dict
      returned: always
    lint:
      description:
        - Whether squawk linted the pending SQL - C(linter), C(ran), C(reason) (why not, for example squawk is
          not installed on the managed host, or the SQL is only known by running the service's own code, which its
          tool's options do not allow).
      type: dict
      returned: when the service has pending migrations
    plan:
      description:
        - What M(homelab.migrations.homelab_migration_apply) in check mode would return for the service
          (C(changed), C(target), C(from_revision), C(to_revision), C(applied), C(reverted), C(plan),
          C(outcome), C(warnings)), planned from this read; C(failed) and C(msg) when it cannot be planned.
      type: dict
      returned: when O(plan) is given and names the service
      sample:
        changed: true
        target: head
        from_revision: "006"
        to_revision: "008"
        applied: ["007", "008"]
        reverted: []
        outcome: check
        plan: {direction: up, steps: ["007", "008"], from_revision: "006", to_revision: "008", target: head}
        warnings: []
    health:
      description:
        - The health state the service's last health record in O(audit_log) left - C(state) (V(unverified) from
          before a health check until one passes, V(passed) after), C(since) (the record's time, ISO 8601) and
          C(revision) (the revision it was checked at).
        - As RV(homelab.migrations.homelab_migration_audit#module:health) returns it, per service.
      type: dict
      returned: when O(audit_log) is given and the log has a health record of the service
      sample: {state: passed, since: "2026-01-02T03:04:05.678+00:00", revision: "0004_x"}
'''

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.migrations.plugins.module_utils.health_state import report_with_health
from ansible_collections.homelab.migrations.plugins.module_utils.prologue import require_tools, start
from ansible_collections.homelab.migrations.plugins.module_utils.spec import (
    dependency_order, module_argument_spec, validate_services)
from ansible_collections.homelab.migrations.plugins.module_utils.status import (
    STATUS_OPTIONS, PlanOptionError, build_report, error_summary, plan_diffs)
from ansible_collections.homelab.migrations.plugins.module_utils.secrets import exact_strings, mask, module_result


def argument_spec():
    return module_argument_spec('services', STATUS_OPTIONS)


def _validated(services):
    urls = validate_services(services)
    dependency_order(services)
    return urls


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    services = module.params['services']
    urls = start(module, lambda: _validated(services), 'nothing was read or changed')
    # Ansible masks the whole URL (no_log); the password alone (in a driver message, say) too, in every spelling,
    # but not inside the exact fields (service names, revisions) a weak password may be part of
    secrets_ = list(urls.values())
    require_tools(module, [s['tool'] for s in services])

    try:
        report = build_report(services, urls=urls, connect_timeout=module.params['connect_timeout'],
                              plan=module.params['plan'], diff=module._diff, preflight=module.params['preflight'])
    except PlanOptionError as exc:
        module.fail_json(msg='%s; nothing was read or changed' % exc)
    except Exception as exc:  # build_report turns failures into problems; this is a last resort
        module.fail_json(**module_result(module, dict(
            msg='reading the migration status failed unexpectedly: %s: %s' % (exc.__class__.__name__, exc),
            exception=traceback.format_exc()), secrets_))
    if module.params['audit_log']:
        try:
            report = report_with_health(report, module.params['audit_log'])
        except (IOError, OSError) as exc:
            module.fail_json(msg='could not read the health state from the audit log %s: %s; check its permissions'
                             % (module.params['audit_log'], exc))
    if module.params['fail_on_error'] and not report['success']:
        lines = error_summary(report)
        module.fail_json(**module_result(module, dict(
            report, msg='%d service(s) in error: %s' % (len(lines), ' | '.join(lines)), changed=False), secrets_))
    for name, entry in report['services'].items():
        for warning in (entry.get('plan') or {}).get('warnings') or []:
            module.warn(mask('%s: %s' % (name, warning) if name not in warning else warning, secrets_,
                             exact_strings(report)))
    diffs = plan_diffs(report) if module._diff else []
    if diffs:
        report['diff'] = diffs
    module.exit_json(**module_result(module, dict(report, changed=False), secrets_))


if __name__ == '__main__':
    main()
