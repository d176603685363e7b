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
  - Used by the P(homelab.migrations.migrate_all#role) role; every part is optional.
author:
  - homelab.migrations contributors (@homelab)
options:
  audit_log:
    description:
      - Audit log to append O(records) to. Created V(0640) when missing.
      - Without it the records are only returned (the role keeps them in its C(migrate_all_audit) fact).
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
    type: path
  prometheus_textfile:
    description:
      - Path of a node_exporter textfile (C(*.prom)) to write from O(status) and O(run).
      - Without O(run) the last-run metrics of the existing file are kept.
    type: path
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
'''

RETURN = r'''
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
'''

import time
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homelab.migrations.plugins.module_utils.audit import append_record, make_record
from ansible_collections.homelab.migrations.plugins.module_utils.report import (
    scrub,
    scrub_data,
    write_prometheus_textfile,
    write_status_report,
)

_BASE = ('service', 'action', 'from', 'to', 'outcome', 'error', 'confirmation')


def build_records(records, confirmation):
    built = []
    for index, rec in enumerate(records):
        for key in ('service', 'action', 'outcome'):
            if not rec.get(key) and not (key == 'service' and rec.get('outcome') == 'refused'):
                raise ValueError('records[%d] has no %s; every record needs service, action and outcome '
                                 '(only the record of a refused run may name no service)' % (index, key))
        extra = dict((k, v) for k, v in rec.items() if k not in _BASE and k not in ('time', 'host', 'user'))
        record = make_record(rec.get('service') or None, rec['action'], from_revision=rec.get('from'),
                             to_revision=rec.get('to'), outcome=rec['outcome'], error=rec.get('error'),
                             confirmation=rec.get('confirmation') or confirmation, scrub=scrub, **scrub_data(extra))
        for key in ('time', 'host', 'user'):
            if rec.get(key):
                record[key] = rec[key]
        built.append(record)
    return built


def main():
    module = AnsibleModule(
        argument_spec=dict(
            audit_log=dict(type='path'),
            records=dict(type='list', elements='dict', default=[]),
            confirmation=dict(type='str'),
            status=dict(type='dict'),
            status_report=dict(type='path'),
            prometheus_textfile=dict(type='path'),
            run=dict(type='dict', options=dict(
                action=dict(type='str', default='apply'),
                outcome=dict(type='str', required=True),
                services=dict(type='dict', default={}),
            )),
        ),
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
    if module.check_mode:
        module.exit_json(**result)
    step = 'audit log'
    try:
        for record in records if params['audit_log'] else []:
            append_record(params['audit_log'], record)
            result['changed'] = True
        if params['status_report']:
            step = 'status report'
            write_status_report(params['status_report'], params['status'])
            result['status_report'] = params['status_report']
            result['changed'] = True
        if params['prometheus_textfile']:
            step = 'textfile metrics'
            run = params['run']
            if run is not None:
                run = dict(run, time=time.time())
            write_prometheus_textfile(params['prometheus_textfile'], params['status'], run=run)
            result['prometheus_textfile'] = params['prometheus_textfile']
            result['changed'] = True
    except (IOError, OSError) as exc:
        module.fail_json(msg='could not write the %s: %s; check that the directory exists or can be created and '
                             'is writable by the user the play runs as' % (step, exc),
                         exception=traceback.format_exc(), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
