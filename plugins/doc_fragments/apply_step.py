# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""homelab_migration_apply's O(backup) and O(record) (module_utils.service_step: BACKUP_OPTIONS, RECORD_OPTIONS)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  backup:
    description:
      - Back up the service's database first, in this module run, as M(homelab.migrations.homelab_pg_backup) does
        with O(homelab.migrations.homelab_pg_backup#module:state=present) (verified, published, then older backups
        pruned by O(backup.keep_days) / O(backup.keep_count)); RV(backup) is its result.
      - When the backup fails, nothing is migrated and the task fails with RV(error_code=backup_failed) (or
        V(interrupted)) and RV(untouched).
      - Not in check mode. The migrate_all role's run task uses it (one module run per service instead of two).
    type: dict
    suboptions:
      dest:
        description: The backups' directory (homelab_pg_backup's O(homelab.migrations.homelab_pg_backup#module:dest)).
        type: path
        required: true
      format:
        description: C(pg_dump) format (homelab_pg_backup's O(homelab.migrations.homelab_pg_backup#module:format)).
        type: str
        choices: [custom, plain, directory]
      backup:
        description: When to back up (homelab_pg_backup's O(homelab.migrations.homelab_pg_backup#module:backup)).
        type: str
        default: auto
        choices: [auto, always, never]
      lock_wait_timeout:
        description: Seconds C(pg_dump) waits for a table lock before it fails.
        type: int
        default: 30
      keep_days:
        description: After the backup, delete the service's backups older than this many days (0 or unset keeps all).
        type: int
      keep_count:
        description: After the backup, keep only this many of the service's newest backups (0 or unset keeps all).
        type: int
  record:
    description:
      - The migrate_all role's audit record of this service (C(source=role)). When the apply does not fail, the record
        of its outcome (revisions, applied and reverted migrations, O(backup)'s file) is appended to O(audit_log)
        after the apply's own, as M(homelab.migrations.homelab_migration_audit) writes it; RV(records) holds it.
      - After a failure nothing is recorded here (the caller records the outcome after its recovery). Not in check
        mode. Meant for the role's run task.
    type: dict
    suboptions:
      run_id:
        description: The role run's id, recorded as C(run_id).
        type: str
        required: true
      target:
        description: The target as the role names it (recorded as C(target)).
        type: str
      reason:
        description: The role's remark on the service (recorded as C(reason)).
        type: str
        default: ''
  journal:
    description:
      - With O(backup) or O(record), a file (created 0600, never through a symlink) the module appends one JSON line
        to before each step a caller would need to know about after a kill - C(start), C(backup) (with the backup's
        result) and C(apply) before the apply starts, C(record) (the records) before the audit log is written and
        C(recorded) after it - so that a caller whose module run ended without a result knows what was done.
      - A line that cannot be written stops the run before that step (the apply does not start; the record is left
        to the caller). The migrate_all role's run task passes a file in the task's private remote temporary directory.
      - When its first line cannot be written, the run goes on without it.
    type: path
'''
