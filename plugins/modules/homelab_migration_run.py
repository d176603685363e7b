#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: homelab_migration_run
short_description: Back up, migrate, check and record services in dependency order (the migrate_all role's run)
version_added: 0.1.0
description:
  - The part of a P(homelab.migrations.migrate_all#role) run that changes things, in one task. For each service
    of O(selected), in that order, it decides from O(status) and O(plans) whether to run it, backs its database
    up (M(homelab.migrations.homelab_pg_backup)), moves it to the target revision pinned to its confirmed plan
    (M(homelab.migrations.homelab_migration_apply)), checks its health when it has a health check
    (M(homelab.migrations.homelab_migration_health); unverified until a check passes). The backup step prunes the
    service's older backups (O(backup.keep_days), O(backup.keep_count)) right after its new backup is verified.
  - After a failed step it goes back to the revision the apply found under its lock, else restores the run's
    backup, unless the apply proved it changed nothing (its C(untouched) result).
    Every decision reads the modules' structured result fields, never a message's wording.
  - It writes each service's audit record (M(homelab.migrations.homelab_migration_audit)). With O(rollback_scope=run)
    and a failed service, the services migrated earlier in the run go back, newest first.
  - Shows one line per service per step at default verbosity; the modules run on the managed host.
  - Meant for the role, which passes its variables; using it on its own is possible but the role is the interface.
author:
  - homelab.migrations contributors (@homelab)
options:
  services:
    description: Every service spec (the role's C(migrate_all_services)); dependencies are looked up here.
    type: list
    elements: dict
    required: true
  selected:
    description: The names to work on, in dependency order.
    type: list
    elements: str
    required: true
  plans:
    description:
      - Each selected service's plan (what M(homelab.migrations.homelab_migration_apply) returns in check mode),
        by name. A service without one is not run (it fails with "no plan was made").
    type: dict
    default: {}
  status:
    description: The result of M(homelab.migrations.homelab_migration_status), with each service's health state.
    type: dict
    required: true
  run_id:
    description: The run's id, written into every audit record.
    type: str
    required: true
  confirmation:
    description: How the run was confirmed (written into the audit records); empty for none.
    type: str
    default: ''
  action:
    description: V(apply) moves services to their target, V(rollback) to O(rollback_target).
    type: str
    choices: [apply, rollback]
    default: apply
  rollback_target:
    description: Where V(rollback) goes (default V(-1)).
    type: str
  rollback_scope:
    description: V(run) also takes back the services migrated earlier in this run when one fails.
    type: str
    choices: [service, run]
    default: service
  audit_log:
    description: The audit log (JSON lines); empty writes none.
    type: str
    default: ''
  backup:
    description: Where and how backups are taken and kept.
    type: dict
    required: true
    suboptions:
      dest:
        description: The backup directory.
        type: str
        required: true
      format:
        description: pg_dump's format (see M(homelab.migrations.homelab_pg_backup)).
        type: str
        default: custom
      lock_wait_timeout:
        description: Seconds pg_dump waits for its table locks.
        type: int
        default: 30
      keep_days:
        description: After a service's new backup, prune its backups older than this many days; V(0) keeps them.
        type: int
        default: 0
      keep_count:
        description: After a service's new backup, keep this many newest backups of it (the new one counts); V(0) keeps
          all.
        type: int
        default: 0
  apply:
    description:
      - Options passed to M(homelab.migrations.homelab_migration_apply) for the forward move (C(lock_wait),
        C(allow_out_of_order), C(allow_modified), C(transaction), C(allow_findings), C(preflight), C(lock_timeout),
        C(lock_retries), C(lock_retry_delay), C(statement_timeout)); empty values are left out. Going back uses
        only C(lock_wait).
    type: dict
    default: {}
  recovery:
    description: How going back and restoring are retried while their result is retryable.
    type: dict
    default: {}
    suboptions:
      retries:
        description: Retries after the first attempt.
        type: int
        default: 5
      delay:
        description: Seconds between attempts.
        type: float
        default: 3
      restore_clean:
        description: The restore's C(clean) (see M(homelab.migrations.homelab_pg_backup)).
        type: str
        default: database
  health:
    description: The health check's bounds (see M(homelab.migrations.homelab_migration_health)).
    type: dict
    default: {}
    suboptions:
      timeout:
        description: Seconds per attempt.
        type: raw
        default: 10
      retries:
        description: Attempts after the first.
        type: int
        default: 3
      delay:
        description: Seconds between attempts.
        type: raw
        default: 2
      validate_certs:
        description: Verify TLS certificates.
        type: bool
        default: true
attributes:
  check_mode:
    description:
      - In check mode it does nothing and says so (the role plans with
        M(homelab.migrations.homelab_migration_status)).
    support: full
  diff_mode:
    description:
      - With C(--diff), RV(diff) lists each apply's diff (going back too), headed with its service, as
        M(homelab.migrations.homelab_migration_apply) returns it (C(prepared), the SQL it ran).
    support: full
  action:
    description: Runs on the controller as an action plugin; its steps are modules on the managed host.
    support: full
notes:
  - Every wait is bounded by the modules' own options (lock waits, statement and health check timeouts, retries).
  - A cancel cancels. C(ansible-playbook) ending (Ctrl-C, SIGTERM from AWX or Semaphore, SIGKILL, SIGHUP) ends the
    running module (it watches its ancestors) and this task runs nothing after it, even where ansible-core starts
    its worker in a session of its own (2.19).
seealso:
  - module: homelab.migrations.homelab_migration_apply
  - module: homelab.migrations.homelab_pg_backup
'''

EXAMPLES = r'''
- name: Back up, migrate and record the selected services (what the migrate_all role does)
  homelab.migrations.homelab_migration_run:
    services: "{{ migrate_all_services }}"
    selected: [dashboard, stream-bot]
    plans: "{{ plans_by_name }}"
    status: "{{ status_result }}"
    run_id: 20260101T000000Z-0000abcd
    backup:
      dest: /var/backups/homelab-migrations
      keep_count: 5
  register: migrated
'''

RETURN = r'''
results:
  description:
    - Each service's outcome by name, the fields of its audit record (C(outcome) V(success), V(unchanged),
      V(skipped), V(failed), V(rolled_back) or V(restored); C(from), C(to), C(applied), C(reverted), C(backup),
      C(backup_size_bytes), C(backup_seconds), C(error), C(recovery), C(committed), C(untouched), C(restored)).
  returned: unless the task failed (an audit record could not be written, or the job was cancelled)
  type: dict
outcomes:
  description:
    - When the task failed (an audit record could not be written, or the job was cancelled), each service's
      C(outcome) by name, instead of RV(results), RV(migrated), RV(records) and RV(timings) (a failed task's whole
      result is printed, and those repeat the error in every record).
  returned: when the task failed
  type: dict
migrated:
  description: The services migrated in this run (name, before, after, backup), in order.
  returned: unless the task failed
  type: list
  elements: dict
records:
  description: The audit records as written.
  returned: unless the task failed
  type: list
  elements: dict
cancelled:
  description:
    - The job was cancelled (a module said C(error_code=interrupted), or C(ansible-playbook) is gone). The task
      failed and nothing after the cancelled step ran, no going back, no restore, no further service.
  returned: always
  type: bool
diff:
  description: In diff mode, the diff of each apply run (C(before), C(after), C(prepared)), in order.
  returned: in diff mode, when an apply ran
  type: list
  elements: dict
status:
  description:
    - The migration status after the run, in the shape of
      RV(homelab.migrations.homelab_migration_status#module:services) and its summary fields (C(success),
      C(overall_status), C(total_pending), C(services)), as a status read with O(audit_log) (no C(plan)) would
      return it - each service's C(health) is the state the run's last health record for it left, else the one in
      O(status).
    - Built from O(status) and the applies - each service the run moved or took back gets the entry its last apply
      returned (the apply's own read under its lock); a service a backup was restored into, or whose last apply
      returned no entry, is read again with M(homelab.migrations.homelab_migration_status) (those services only).
    - When no service got as far as its backup, the run touched nothing and this is O(status) as given (with the
      health states the run's health checks left).
  returned: unless the task failed
  type: dict
timings:
  description:
    - One entry per module run, in order, for benchmarks and troubleshooting. C(service), C(module), C(state) (the
      backup module's), C(action) (the apply module's), C(seconds) (wall time on the controller) and
      C(duration_seconds) (what the module reports of its own work, or null).
  returned: unless the task failed
  type: list
  elements: dict
'''
