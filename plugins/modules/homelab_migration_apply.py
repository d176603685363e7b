#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: homelab_migration_apply
short_description: Move a service's database to a migration target, up or down, with the service's own tool
version_added: 0.1.0
description:
  - Declarative; moves one service's PostgreSQL schema to O(target) (its head by default), upgrading or
    downgrading as needed, and reports what it did. A second run with the same target changes nothing.
  - Takes the service's migration lock (a PostgreSQL advisory lock) before reading the state and holds it
    to the end, so two runs never migrate one service at once. The lock dies with the connection.
  - Refuses to run over applied files that were edited (V(modified)) or journal entries drizzle-orm would
    skip (V(out_of_order)) unless O(allow_modified) / O(allow_out_of_order) allow it.
  - With O(audit_log), every run (also a failed or check-mode one) appends one JSON line to that file.
author:
  - homelab.migrations contributors (@homelab)
extends_documentation_fragment:
  - homelab.migrations.service.single
  - homelab.migrations.service.connection
  - homelab.migrations.apply_step
options:
  target:
    description:
      - Where to take the database. V(head) (one head), V(heads) (all heads), V(base) (nothing applied),
        a revision id or tag of the service's tool, or V(-N) to go N migrations back.
      - V(-N) is relative to where the database is, so every run with it goes further back; the other
        targets are absolute (a second run changes nothing).
      - Defaults to O(service.target), which defaults to V(head).
    type: str
  lock_wait:
    description:
      - Seconds to wait for the service's migration lock when another run holds it; then the task fails
        naming the holder. V(0) fails at once.
      - In check mode the lock is not taken; a held lock is reported as a warning.
    type: int
    default: 60
  audit_log:
    description:
      - A file that gets one JSON line per run (time, host, user, service, action, from, to, outcome, error,
        confirmation, applied, reverted, duration). Created with mode 0640. Never contains a password.
      - The task fails before touching anything when the file cannot be written, is a symlink, belongs to another
        user, or lies in a directory writable by group or others or owned by another user.
    type: path
  allow_out_of_order:
    description:
      - Run even when a Drizzle journal entry that is not applied is older than the newest applied one
        (drizzle-orm would silently skip it forever).
    type: bool
    default: false
  allow_modified:
    description:
      - Run even when an applied migration file was edited after it was applied.
    type: bool
    default: false
  transaction:
    description:
      - Drizzle only. V(all) runs every pending migration in one transaction (as drizzle-orm does), V(each)
        one transaction per migration, for migrations that cannot share one.
    type: str
    default: all
    choices: [all, each]
  lock_timeout:
    description:
      - PostgreSQL C(lock_timeout) for the migration sessions (the module's own and those of the tool's command), so
        a statement that needs a table lock another session holds (say an application left C(idle in transaction))
        fails after that long instead of waiting, while every later reader of the table queues behind it.
      - A statement that ran into it is retried (O(lock_retries), O(lock_retry_delay)) when the database shows
        that nothing of the attempt stayed; the final failure (RV(error_code=lock_timeout)) names the blocking
        sessions (RV(blockers)).
      - A PostgreSQL duration such as V(5s) or V(500ms); V(0) waits without limit (not recommended).
    type: str
    default: 5s
  lock_retries:
    description:
      - How many more times a migration whose statement ran into O(lock_timeout) is tried, after a pause, when
        nothing of the attempt stayed (state re-read and planned again). V(0) gives up at once. The whole wait is
        bounded by (O(lock_retries) + 1) x O(lock_timeout) per statement plus the pauses.
    type: int
    default: 3
  lock_retry_delay:
    description:
      - Seconds to pause before the first retry; each further pause doubles, at most 30 s each (V(2) gives 2, 4, 8 s).
    type: int
    default: 2
  statement_timeout:
    description:
      - PostgreSQL C(statement_timeout) for the migration session, for example V(10min).
    type: str
  confirmation:
    description:
      - How this run was confirmed (for example V(prompt), V(extra-var migrate_all_confirm), V(awx job 42));
        recorded as is in the audit record.
    type: str
  action:
    description:
      - The action recorded in the audit record; the role passes V(rollback) when it moves a service back.
    type: str
    default: apply
  expect_from:
    description:
      - Move the service only if, once its lock is held, it is at exactly this revision (several heads joined by
        commas; V(base) or an empty string for nothing applied). Otherwise fail with RV(conflict), changing nothing.
      - The role passes the confirmed plan's C(from_revision) (V(-N) and V(head) made absolute when planned), and going
        back the revision its own apply left; so it never runs what nobody confirmed nor undoes another run's work.
    type: str
  allow_findings:
    description:
      - Before an upgrade runs, pre-flight checks look for what will certainly fail as planned (RV(findings) with
        severity V(error)) - V(not_in_transaction) (a statement PostgreSQL refuses in the transaction the migration
        runs in), V(byte_order_mark), V(ends_transaction) (COMMIT, ROLLBACK, END or ABORT in a migration; if
        allowed, the run stops right after such a statement, from the connection's transaction state, and reports
        what stayed) and each tool's own (in the notes). Any such finding refuses the run before anything is touched
        (RV(error_code=preflight)).
      - List the codes to run anyway (the run then fails as predicted, unless the check was wrong for your setup),
        or V(all).
    type: list
    elements: str
    default: []
  preflight:
    description:
      - V(false) skips the pre-flight checks (no RV(findings), no refusal over them).
    type: bool
    default: true
attributes:
  check_mode:
    description: Connects and reads (read-only session, no lock taken), plans, and reports what would run.
    support: full
  diff_mode:
    description: RV(diff) holds in C(prepared) the SQL that runs or would run (or the revision list where the tool
      cannot render it offline), in C(before)/C(after) the revisions.
    support: full
notes:
  - A failed run leaves the database as the tool's transactions leave it (by default both tools roll the whole run
    back on PostgreSQL); RV(applied) and RV(reverted) report what really happened.
seealso:
  - module: homelab.migrations.homelab_migration_status
'''

EXAMPLES = r'''
- name: Upgrade the dashboard to its target, with an audit record, failing fast on locks
  homelab.migrations.homelab_migration_apply:
    service: "{{ dashboard_service }}"
    audit_log: /var/log/homelab/migrations.jsonl
    confirmation: extra-var migrate_all_confirm
    lock_timeout: 5s
    statement_timeout: 10min
  register: dashboard_migration

- name: Show what moving the dashboard back by one revision would run, without changing anything
  homelab.migrations.homelab_migration_apply:
    service: "{{ dashboard_service }}"
    target: "-1"
  check_mode: true
  diff: true

- name: Revert the stream bot (Drizzle) to a journal tag with its down files
  homelab.migrations.homelab_migration_apply:
    service:
      name: stream-bot
      tool: drizzle
      path: /opt/homelab/services/stream-bot
      database_url: "{{ stream_bot_database_url }}"
    target: 0003_add_channel_settings
    action: rollback
    lock_wait: 10
'''

RETURN = r'''
from_revision:
  description: The revision (several heads joined by commas) or newest applied tag before the run; null when
    nothing was applied.
  returned: always
  type: str
  sample: "006"
to_revision:
  description: The revision after the run as re-read from the database (in check mode, the revision the run
    would reach); null when nothing is applied.
  returned: always
  type: str
  sample: "008"
applied:
  description: Migrations applied by this run, in order (in check mode, the ones that would be applied).
  returned: always
  type: list
  elements: str
  sample: ["007", "008"]
reverted:
  description: Migrations reverted by this run, in order (in check mode, the ones that would be reverted).
  returned: always
  type: list
  elements: str
  sample: []
blockers:
  description: After a failure with RV(error_code=lock_timeout), the sessions seen blocking the migration (from
    C(pg_blocking_pids)), each with C(pid), C(application_name), C(state), C(since) (when it entered that state),
    C(xact_start), C(client_addr).
  returned: on a lock timeout
  type: list
  elements: dict
lock_wait_seconds:
  description: Seconds spent waiting for the service's migration lock.
  returned: always
  type: float
  sample: 0.002
conflict:
  description: True when the run changed nothing because another run is or was at work on the service (its lock was
    held past O(lock_wait), or it was not at O(expect_from)). Restoring a backup would then undo that run's work.
  returned: always
  type: bool
  sample: false
error_code:
  description:
    - Why the run failed, for callers to decide on (never the message's wording); null when it succeeded. A problem
      code (V(unreachable), V(bad_config), V(missing_file), V(out_of_order), V(modified), V(unknown_revision),
      V(multiple_heads), ...) or V(apply_failed), V(backup_failed) (the O(backup) before it failed),
      V(transaction_ended) (a migration ran COMMIT, ROLLBACK, END or
      BEGIN ... COMMIT itself), V(lock_timeout), V(conflict) (not at O(expect_from)), V(interrupted), V(preflight)
      (an error in RV(findings) refused the run before anything was touched; see O(allow_findings)).
  returned: always
  type: str
  sample: apply_failed
untouched:
  description:
    - True when the database is provably as it was before this call - it failed before running anything, or after
      the failure the position (re-read on a new connection) and a fingerprint of the service's schemas (catalogue
      rows of relations, columns, indexes, constraints, types, functions, triggers, views, extensions) are both as
      before and no migration ended its transaction itself.
    - False whenever that is not proved (also after a successful run that changed something).
  returned: always
  type: bool
  sample: true
retryable:
  description: True when the failure was a lost connection or a server that is starting or restarting, so the
    same call may succeed later.
  returned: always
  type: bool
  sample: false
committed:
  description: The migrations whose change stayed (applied or reverted), as re-read from the database.
  returned: always
  type: list
  elements: str
  sample: ["007"]
failed_migration:
  description: The migration (revision id or tag) that failed, or null.
  returned: always
  type: str
  sample: "008"
unrecorded_changes:
  description:
    - True when the database holds changes of this run that no recorded migration accounts for - a migration ended
      its transaction itself (drizzle, seen from the connection's transaction state after each statement), a
      revision that uses C(autocommit_block()) or COMMIT failed, the schema differs while the position did not
      move, or nothing could be re-read. Going back by migrations cannot undo them; the role restores the backup.
  returned: always
  type: bool
  sample: false
schema_changes:
  description: Readable differences between the schema fingerprints taken before the run and after it (short).
  returned: always
  type: list
  elements: str
  sample: ["added table public.a"]
fingerprint:
  description: sha256 of the schema fingerprint before the plan ran and after it (null when not taken, e.g. in
    check mode). The role compares the go-back's C(after) with the failed apply's C(before).
  returned: always
  type: dict
  sample: {before: "3f1c...", after: "3f1c..."}
duration_seconds:
  description: Seconds the whole run took.
  returned: always
  type: float
  sample: 1.35
plan:
  description:
    - The plan the run followed (or would follow in check mode) - C(direction) (V(up), V(down), or null when there is
      nothing to do), C(steps) (the migrations to run, in run order), C(from_revision) and C(to_revision) (where it
      starts and ends), C(target) (as given) and C(notes) (remarks of the tool adapter).
  returned: always
  type: dict
  sample: {direction: up, steps: ["007", "008"], from_revision: "006", to_revision: "008", target: head, notes: []}
findings:
  description:
    - Pre-flight findings of an upgrade - C(migration), C(statement) (its first line(s), or null), C(code),
      C(severity) (V(error) - the run as planned will certainly fail; V(warning) - a lock or rewrite risk;
      V(info)), C(message) (what to do) and C(source) (V(homelab.migrations), or V(squawk) for lint warnings in
      check mode, with the rule name as code and the table size where the statement names a table).
    - Never contains a password.
  returned: always
  type: list
  elements: dict
  sample:
    - {migration: 0007_users_email_idx, statement: 'CREATE INDEX CONCURRENTLY "users_email_idx" ON "users" ("email");',
       code: not_in_transaction, severity: error, source: homelab.migrations,
       message: "PostgreSQL refuses CREATE INDEX CONCURRENTLY inside a transaction block (SQLSTATE 25001) ..."}
status:
  description: The service's entry of M(homelab.migrations.homelab_migration_status)'s C(services) as this run leaves
    it (same keys, built by the same code from the state re-read under the lock after the run, or read before it when
    nothing ran); its C(lock) released by this run, its C(findings) and C(lint) those of what is pending as the status
    module's defaults find them (none with O(preflight=false), and none after a cancel, since the pre-flight may run the
    squawk linter, and a cancelled run ends at once).
  returned: outside check mode, when the state was read (also after a failure or an interruption)
  type: dict
  sample: {status: up_to_date, tool: alembic, current_revision: "008", latest_revision: "008", applied: 8,
           pending: 0, pending_migrations: [], problems: [], lock: {held: false, holder: null}, findings: []}
lint:
  description: Whether the squawk linter ran over the pending SQL (check mode only) - C(linter), C(ran) and, when it
    did not, C(reason) (for example squawk is not installed on the managed host).
  returned: when an upgrade was planned
  type: dict
  sample: {linter: squawk, ran: false, reason: squawk is not installed on the managed host}
queries:
  description: The SQL statements the module itself executed (Drizzle); empty when the tool's command ran them.
  returned: always
  type: list
  elements: str
  sample: ['ALTER TABLE "users" ADD COLUMN "locale" text']
backup:
  description: With O(backup), its result as M(homelab.migrations.homelab_pg_backup) returns it (C(path), C(size_bytes),
    C(sha256), C(duration_seconds), C(skipped), C(reason), C(pruned); C(failed), C(msg) when it failed).
  returned: when O(backup) was given, outside check mode
  type: dict
records:
  description: With O(record), the role's record as written (with C(time), C(host), C(user), C(confirmation)).
  returned: when O(record) was given and the apply did not fail
  type: list
  elements: dict
record_error: {description: Why the O(record) could not be written (the apply succeeded)., returned: when it failed,
               type: str}
outcome:
  description: V(success), V(unchanged), V(check) or V(failed), as in the audit record.
  returned: always
  type: str
  sample: success
target:
  description: The target this run used.
  returned: always
  type: str
  sample: head
service:
  description: The service name.
  returned: always
  type: str
  sample: dashboard
tool:
  description: The service's tool.
  returned: always
  type: str
  sample: drizzle
diff:
  description: In diff mode, C(prepared) (the SQL that runs or would run, or the revision list with a note where the
    tool cannot render it) and C(before)/C(after) (the revisions before the run and after it, as text).
  returned: when diff mode is on and a plan was made
  type: dict
  sample: {before: "revision: 006\n", after: "revision: 008\n", prepared: "ALTER TABLE ..."}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.migrations.plugins.module_utils.service_step import argument_spec, module_main


def main():
    module_main(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True))


if __name__ == '__main__':
    main()
