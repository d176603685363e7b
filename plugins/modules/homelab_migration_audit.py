#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: homelab_migration_audit
short_description: Append migration audit records and write the status report and textfile metrics
version_added: 0.1.0
description:
  - Appends one JSON line per record to an audit log (the same format the other modules of the
    collection write), with the time, host and user filled in on the managed host.
  - Writes the migration status report (the dashboard API shape of
    M(homelab.migrations.homelab_migration_status)) as JSON, atomically.
  - Writes node_exporter textfile metrics (pending migrations per service, last run time and outcome),
    atomically.
  - Writes the status dashboard into O(dashboard_dir) (C(api/migrations/status), C(api/migrations/runs),
    C(monitoring/index.html)), each file atomically.
  - Used by the P(homelab.migrations.migrate_all#role) role; every part is optional.
author:
  - homelab.migrations contributors (@homelab)
options:
  audit_log:
    description:
      - Audit log to append O(records) to. Created V(0640) when missing.
      - Refused when it is a symlink, belongs to another user, or lies in a directory writable by group or others
        or owned by another user (another user could swap it).
      - Without it the records are only returned (the role keeps them in its C(migrate_all_audit) fact).
      - With O(dashboard_dir), the recent runs of C(api/migrations/runs) are read from the end of this log (after
        O(records) are appended).
    type: path
  records:
    description:
      - Records to append. Each is a dict with at least C(service), C(action) and C(outcome);
        C(from), C(to), C(error), C(confirmation) and any further keys are kept.
      - A record of a run refused before any service was worked on (C(outcome=refused)) concerns no
        single service; its C(service) may be empty (written as null).
      - C(time), C(host) and C(user) are filled in when missing. Anything that looks like a password in a
        URL is masked.
    type: list
    elements: dict
    default: []
  confirmation:
    description:
      - How the run was confirmed (V(prompt), V(migrate_all_confirm), ...); used for records without one.
    type: str
  status:
    description:
      - The result of M(homelab.migrations.homelab_migration_status), for O(status_report) and
        O(prometheus_textfile).
    type: dict
  status_report:
    description:
      - Path of the status report JSON to write from O(status) (temp file and rename, mode V(0644)).
      - Refused when it is a symlink or its directory is writable by group or others or owned by another user
        (the same holds for O(prometheus_textfile)).
    type: path
  prometheus_textfile:
    description:
      - Path of a node_exporter textfile (C(*.prom)) to write from O(status) and O(run).
      - Without O(run) the last-run metrics of the existing file are kept.
    type: path
  dashboard_dir:
    description:
      - Directory to publish the status dashboard into (created V(0755) when missing; the files are V(0644), so a
        web server can serve it). Three files, each written through a temp file and a rename in its own directory.
      - C(api/migrations/status), the status JSON in the dashboard API shape (C(success), C(overall_status),
        C(total_pending), C(services) with each service's C(findings) and C(health) when the status has them) plus
        C(generated_at) (UTC) and C(collection_version). Written only when O(status) is given.
      - C(api/migrations/runs), the last O(dashboard_runs) runs of the P(homelab.migrations.migrate_all#role) role
        read from the end of O(audit_log) (records sharing a C(run_id)), newest first, each with its run id, time,
        action, outcome, user, confirmation and per-service outcome with from and to revisions.
      - C(monitoring/index.html), a self-contained page (no external script, font or style) that loads both
        documents by relative URL and refreshes itself.
      - Only known keys reach these files (never a database URL), and anything that looks like a password in a
        URL is masked.
    type: path
  dashboard_refresh:
    description: Seconds between two refreshes of the dashboard page (the page caps it at a day, 86400 s).
    type: int
    default: 30
  dashboard_stale_after:
    description:
      - The page warns that the data is stale when C(generated_at) of the status is older than this many seconds.
    type: int
    default: 900
  dashboard_runs:
    description: How many runs C(api/migrations/runs) keeps (at most 500).
    type: int
    default: 20
  read_health:
    description:
      - Return RV(health), the health state each service's last health record in O(audit_log) left.
      - The role records V(unverified) before it checks a service's health and V(passed) once the check passed,
        so a service whose check failed, or whose run was cancelled while the check retried, stays V(unverified)
        until a later check passes; the next run checks it even when nothing is pending.
    type: bool
    default: false
  run:
    description:
      - The run that just ended, for the textfile metrics.
    type: dict
    suboptions:
      action:
        description: V(apply) or V(rollback).
        type: str
        default: apply
      outcome:
        description: V(success) or V(failed).
        type: str
        required: true
      services:
        description: Outcome per service name.
        type: dict
        default: {}
attributes:
  check_mode:
    description: Nothing is written; the records are returned as they would be written.
    support: full
  diff_mode:
    description: No diff is returned.
    support: none
notes:
  - The role calls the status report part with C(check_mode=false), so the report is fresh after a
    check-mode run too.
'''

EXAMPLES = r'''
- name: Record the outcome of one service
  homelab.migrations.homelab_migration_audit:
    audit_log: /var/log/homelab-migrations/audit.log
    records:
      - service: stream-bot
        action: apply
        from: 0002_add_giveaways
        to: 0004_add_giveaway_concurrency_improvements
        outcome: success
    confirmation: migrate_all_confirm

- name: Record a run that was refused before it touched anything
  homelab.migrations.homelab_migration_audit:
    audit_log: /var/log/homelab-migrations/audit.log
    records:
      - service:
        action: apply
        outcome: refused
        error: stream-bot has changes pending and the run was not confirmed. Nothing was touched.
        selected: [dashboard, stream-bot]
        changed: false
        source: role
    confirmation: none

- name: Publish the status for the dashboard and node_exporter
  homelab.migrations.homelab_migration_audit:
    status: "{{ migration_status }}"
    status_report: /var/lib/homelab/migration-status.json
    prometheus_textfile: /var/lib/node_exporter/textfile_collector/homelab_migrations.prom

- name: Publish the status dashboard (serve /srv/migrations with nginx, Caddy or python3 -m http.server)
  homelab.migrations.homelab_migration_audit:
    status: "{{ migration_status }}"
    audit_log: /var/log/homelab-migrations/audit.log
    dashboard_dir: /srv/migrations
'''

RETURN = r'''
health:
  description: With O(read_health), per service the state its last health record left.
  returned: when O(read_health) is true
  type: dict
  sample: {stream-bot: {state: unverified, since: "2026-01-02T03:04:05.678+00:00", revision: "0004_x"}}
records:
  description: The records as appended (or as they would be in check mode).
  returned: always
  type: list
  elements: dict
status_report:
  description: Path of the status report written, if any.
  returned: when O(status_report) is set
  type: str
prometheus_textfile:
  description: Path of the textfile written, if any.
  returned: when O(prometheus_textfile) is set
  type: str
dashboard:
  description: The dashboard files written.
  returned: when O(dashboard_dir) is set
  type: dict
  contains:
    status:
      description: Path of C(api/migrations/status), or null when no O(status) was given.
      type: str
    runs:
      description: Path of C(api/migrations/runs).
      type: str
    page:
      description: Path of C(monitoring/index.html).
      type: str
    unreadable_lines:
      description: Lines at the end of the audit log that were not JSON records (skipped).
      type: int
'''

import time
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homelab.migrations.plugins.module_utils.audit import (
    append_record, build_records, health_states)


def _argument_spec():
    return dict(
        audit_log=dict(type='path'),
        records=dict(type='list', elements='dict', default=[]),
        confirmation=dict(type='str'),
        status=dict(type='dict'),
        status_report=dict(type='path'),
        prometheus_textfile=dict(type='path'),
        dashboard_dir=dict(type='path'),
        dashboard_refresh=dict(type='int', default=30),
        dashboard_stale_after=dict(type='int', default=900),
        dashboard_runs=dict(type='int', default=20),
        read_health=dict(type='bool', default=False),
        run=dict(type='dict', options=dict(
            action=dict(type='str', default='apply'),
            outcome=dict(type='str', required=True),
            services=dict(type='dict', default={}),
        )),
    )


class _DashboardFailed(Exception):
    """publish.DashboardError, carried out of write_outputs (publish is imported only when it is used)."""


def write_outputs(params, records, result, where):
    """Append ``records`` to the audit log, then write the status report, the textfile metrics and the
    dashboard that ``params`` ask for, noting each in ``result``; ``where['step']`` names the output being
    written when an OSError is raised; _DashboardFailed for publish.DashboardError.

    report.py and publish.py are imported only for the outputs asked for: the role's audit calls of each
    service (audit log only) never compile them."""
    for record in records if params['audit_log'] else []:
        append_record(params['audit_log'], record)
        result['changed'] = True
    if params['status_report'] or params['prometheus_textfile']:
        from ansible_collections.homelab.migrations.plugins.module_utils.report import (
            write_prometheus_textfile, write_status_report)
    if params['status_report']:
        where['step'] = 'status report'
        write_status_report(params['status_report'], params['status'])
        result['status_report'] = params['status_report']
        result['changed'] = True
    if params['prometheus_textfile']:
        where['step'] = 'textfile metrics'
        run = params['run']
        if run is not None:
            run = dict(run, time=time.time())
        write_prometheus_textfile(params['prometheus_textfile'], params['status'], run=run)
        result['prometheus_textfile'] = params['prometheus_textfile']
        result['changed'] = True
    if params['dashboard_dir']:
        where['step'] = 'dashboard'
        from ansible_collections.homelab.migrations.plugins.module_utils.publish import DashboardError, publish
        try:
            result['dashboard'] = publish(params['dashboard_dir'], status=params['status'],
                                          audit_log=params['audit_log'], refresh=params['dashboard_refresh'],
                                          stale_after=params['dashboard_stale_after'], runs=params['dashboard_runs'])
        except DashboardError as exc:
            raise _DashboardFailed(str(exc))
        result['changed'] = True


def main():
    module = AnsibleModule(
        argument_spec=_argument_spec(),
        required_by=dict(status_report=('status',), prometheus_textfile=('status',)),
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False, records=[])
    try:
        records = build_records(params['records'], params['confirmation'])
    except ValueError as exc:
        module.fail_json(msg=str(exc), **result)
    result['records'] = records
    if params['read_health']:
        try:
            result['health'] = health_states(params['audit_log'])
        except (IOError, OSError) as exc:
            module.fail_json(msg='could not read the health state from the audit log %s: %s; check its permissions'
                             % (params['audit_log'], exc), **result)
    if module.check_mode:
        module.exit_json(**result)
    where = {'step': 'audit log'}
    try:
        write_outputs(params, records, result, where)
    except _DashboardFailed as exc:
        module.fail_json(msg='could not write the dashboard: %s' % exc, **result)
    except (IOError, OSError) as exc:
        module.fail_json(msg='could not write the %s: %s; check that the directory exists or can be created and '
                             'is writable by the user the play runs as' % (where['step'], exc),
                         exception=traceback.format_exc(), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
