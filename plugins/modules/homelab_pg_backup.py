#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: homelab_pg_backup
short_description: Take, verify, restore and prune pg_dump backups of a service's database
version_added: 0.1.0
description:
  - With O(state=present), runs C(pg_dump) for the database in O(database_url) and stores the dump in O(dest) as
    C({service}_{YYYYmmdd_HHMMSS}.dump) (custom format), C(.sql) (plain) or C(.dir) (directory). The timestamp is the
    managed host's local time when the backup started; when that name is taken, C(_1), C(_2)... is added before the
    extension. Nothing is ever overwritten.
  - The dump is written under a temporary name starting with C(.) and containing C(partial), checked (see O(verify)),
    given a C(.sha256) file in C(sha256sum) format beside it, and only then renamed to its final name. A failed or
    interrupted backup therefore never leaves a file with a final name; its temporary file is removed (after a
    C(SIGKILL), by the next run for the same service).
  - Backup files are mode C(0600); a O(dest) that the module creates is mode C(0700). An existing O(dest) keeps its
    mode.
  - For the directory format the checksum is the sha256 of a manifest with one C(<sha256>  <relative path>) line per
    file of the directory, sorted by path.
  - C(pg_dump) must be of the server's major version or newer (the module asks the server for
    C(server_version_num)); a client that is too old is an error. Unless O(pg_dump) or O(pg_bindir) is given, the
    newest C(pg_dump) on E(PATH) and in C(/usr/lib/postgresql/*/bin) (and the other usual places) is used.
  - With O(state=restored), restores O(path) into the database after checking it against its C(.sha256) file; a
    missing or mismatching checksum (a truncated or modified file) is refused. Custom and directory backups are restored
    with C(pg_restore --clean --if-exists --single-transaction), plain ones with
    C(psql -v ON_ERROR_STOP=1 --single-transaction -f).
  - Restoring with the service's own, non-superuser credentials works when a superuser created extensions in its
    database (C(citext), C(pg_stat_statements)); extensions the restoring role does not own are kept as they are
    (their entries are left out with C(pg_restore --use-list)), and the result says so (RV(kept_extensions), a
    warning). A backup that needs an extension the database lacks and the role may not create, or a plain-format
    backup when such extensions exist, is refused before anything is changed (check mode says so too).
  - With O(state=pruned), deletes this service's old backups according to O(keep_days) and O(keep_count).
  - With O(state=present) and O(keep_days) or O(keep_count), the same module run then prunes the service's older
    backups, once the new one is written and verified (the new one is never pruned, and counts as the newest). A
    backup that failed or was skipped prunes nothing. A backup whose pruning then fails is an error that names the
    new backup (RV(path), RV(sha256)) and the backups deleted before the failure (RV(pruned)).
  - The password reaches C(pg_dump), C(pg_restore) and C(psql) only through a temporary mode C(0600) C(PGPASSFILE);
    the other connection parameters go through C(PG*) environment variables. No URL or password is put on a command
    line, and URLs in messages are masked. The client tools are killed when the module dies.
author:
  - homelab.migrations contributors (@homelab)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - O(state=present) connects to the server to check it and the C(pg_dump) version, writes nothing and returns the
        RV(path) it would create (and in RV(pruned) what O(keep_days)/O(keep_count) would delete).
      - O(state=restored) checks the backup and its checksum, and changes nothing.
      - O(state=pruned) lists in RV(pruned) what it would delete.
  diff_mode:
    support: partial
    details:
      - Shows the service's backups in O(dest) before and after. For O(state=restored) the diff shows nothing.
  platform:
    platforms: posix
options:
  database_url:
    description:
      - libpq URI of the database, C(postgresql://user:password@host:5432/dbname). C(postgres://) and
        C(postgresql+psycopg2://) are accepted.
      - Required with O(state=present) and O(state=restored).
    type: str
  state:
    description:
      - V(present) takes a new backup (always C(changed) outside check mode).
      - V(restored) restores the backup in O(path) into the database (always C(changed)).
      - V(pruned) deletes old backups of O(service) in O(dest).
    type: str
    choices: [present, restored, pruned]
    default: present
  dest:
    description:
      - Directory of the backups. Created (mode C(0700)) when missing.
      - An existing directory is refused when another user could swap files in it - writable by group or others,
        owned by a user other than the one running the module (or root), a symlink, or inside a directory others
        can rename. The message says how to fix it (for example C(chmod go-w)).
      - Required with O(state=present) and O(state=pruned).
    type: path
  service:
    description:
      - Name prefix of the backup files, normally the service name. 1-63 characters of C(a-z), C(0-9), C(_) and C(-),
        starting with a letter or digit (so it cannot point outside O(dest)).
      - Required with O(state=present) and O(state=pruned). With O(state=restored) it only names the service in the
        audit record (default, from the backup's file name) and in the server's C(application_name).
    type: str
  format:
    description:
      - C(pg_dump) output format. V(custom) (C(.dump)) is compressed and restored with C(pg_restore); V(plain)
        (C(.sql)) is an SQL script with C(DROP ... IF EXISTS) before each object, restorable with C(psql); V(directory)
        (C(.dir)) can be dumped and restored in parallel with O(jobs).
      - When not set, V(custom) for O(state=present). For O(state=restored) the format is detected from the backup and
        this option, if set, must match it.
    type: str
    choices: [custom, plain, directory]
  path:
    description:
      - The backup to restore, as returned in RV(path) by O(state=present). Its C(.sha256) file must be beside it.
      - The restore opens the file once (a symlink is refused), checks that bytes of that open file (a C(.dump)
        must start with C(PGDMP), a C(.sql) must not; the sha256 must match) and hands the same open file to
        C(pg_restore) / C(psql), so a file swapped in after the check is never read. A directory-format backup is
        copied into a private directory beside it, checked and restored from that copy. Its directory must pass
        the same checks as O(dest).
      - Required with O(state=restored).
    type: path
  keep_days:
    description:
      - With O(state=pruned) (or O(state=present), after the new backup is written and verified), delete backups
        older than this many days (by modification time). With O(keep_count) too, a backup is deleted only when it
        is older than O(keep_days) and not among the newest O(keep_count).
      - The newest backup is never deleted. Only entries named exactly like this module names O(service)'s backups and
        that have their C(.sha256) file are considered; other files are never touched.
    type: int
  keep_count:
    description:
      - With O(state=pruned) (or O(state=present), after the new backup is written and verified), keep the newest
        this many backups of O(service) and delete the older ones (see O(keep_days) for both together). With
        O(state=present) the new backup is one of them. V(0) behaves like V(1).
      - With O(state=present), nothing is pruned (a warning says why) while another session holds the service's
        migration lock - a run of the same service in progress may still restore its own backup.
    type: int
  jobs:
    description:
      - Parallel jobs. With O(state=present) only for O(format=directory) (C(pg_dump --jobs)).
      - With O(state=restored) for custom and directory backups (C(pg_restore --jobs)). A parallel restore cannot run
        in a single transaction, so a failure part way can leave the database partly restored; V(1) restores in one
        transaction.
    type: int
    default: 1
  verify:
    description:
      - Check the new dump before giving it its final name. Custom and directory dumps must be readable by
        C(pg_restore --list); a plain dump must end with C(pg_dump)'s completion marker.
    type: bool
    default: true
  backup:
    description:
      - V(auto) skips C(pg_dump) for Neon hosts (C(*.neon.tech)), which keep their own history, and returns
        RV(skipped=true) with the RV(reason). V(always) dumps anyway. V(never) always skips.
      - Only used by O(state=present).
    type: str
    choices: [auto, always, never]
    default: auto
  clean:
    description:
      - How O(state=restored) makes room for the backup.
      - V(objects) drops and recreates the objects that are in the backup (C(pg_restore --clean --if-exists)). Objects
        created after the backup stay, and the restore fails (changing nothing) when one of them depends on an object
        of the backup.
      - V(database) first drops every schema (with everything in it) and every large object of the database, then
        restores, all in one C(psql) transaction, so the database ends up exactly as it was dumped. Use it only for a
        database that holds nothing but this service's data. Not with O(jobs) above V(1).
      - Either way a restore commits only a complete backup - before anything changes, a custom or directory archive
        must be readable to its end (C(pg_restore --file=/dev/null)) and a plain one must end with pg_dump's
        completion marker, however its C(.sha256) file came about - and only when C(pg_restore)/C(psql) finished
        cleanly; when either is killed midway the transaction is never committed and the database stays as it was.
    type: str
    choices: [objects, database]
    default: objects
  allow_foreign_backup:
    description:
      - With O(state=restored), a backup whose file name is not one of O(service)'s backups
        (C({service}_YYYYmmdd_HHMMSS.*)), or whose archive records another database name than the one in
        O(database_url), is refused before anything changes. Set V(true) to restore it there on purpose.
    type: bool
    default: false
  connect_timeout:
    description:
      - Seconds to wait for the server when connecting.
    type: int
    default: 10
  lock_wait_timeout:
    description:
      - Seconds C(pg_dump) and the restore wait for a table lock another session holds (for example an
        application's C(LOCK TABLE) or a long C(ALTER TABLE)); then they fail instead of waiting on. C(pg_dump) gets
        C(--lock-wait-timeout), the restore sessions C(lock_timeout) (through C(PGOPTIONS)). At least V(1).
    type: int
    default: 30
  pg_dump:
    description:
      - Path of the C(pg_dump) binary. Default is O(pg_bindir)/C(pg_dump), or the newest one found.
    type: path
  pg_restore:
    description:
      - Path of the C(pg_restore) binary. Default is O(pg_bindir)/C(pg_restore), or the newest one found.
    type: path
  psql:
    description:
      - Path of the C(psql) binary. Default is O(pg_bindir)/C(psql), or the newest one found.
    type: path
  pg_bindir:
    description:
      - Directory of the PostgreSQL client binaries to use, for example C(/usr/lib/postgresql/16/bin).
    type: path
  audit_log:
    description:
      - A file that gets one JSON line per run, also a failed or check-mode one (time, host, user, service, action
        V(backup), V(restore) or V(prune), outcome, error, path, sha256, size, pruned files, duration). Created with
        mode C(0640). Never contains a password.
      - The task fails before doing anything when the file cannot be written, is a symlink, belongs to another
        user, or lies in a directory writable by group or others or owned by another user.
    type: path
notes:
  - Needs the PostgreSQL client tools (C(pg_dump), C(pg_restore), C(psql); Debian package C(postgresql-client)) on
    the managed host. The Python library C(psycopg2) is used to check the server when it is installed, C(psql)
    otherwise.
  - A SIGTERM stops the dump and removes its temporary file.
seealso:
  - module: homelab.migrations.homelab_migration_apply
  - name: pg_dump
    description: The PostgreSQL documentation of pg_dump.
    link: https://www.postgresql.org/docs/current/app-pgdump.html
'''

EXAMPLES = r'''
- name: Back up the dashboard database before migrating
  homelab.migrations.homelab_pg_backup:
    database_url: "{{ dashboard_database_url }}"
    service: dashboard
    dest: /var/backups/migrations
    keep_days: 14
    keep_count: 5
  register: dashboard_backup

- name: Plain SQL backup, restorable with psql "$DATABASE_URL" < file
  homelab.migrations.homelab_pg_backup:
    database_url: "{{ stream_bot_database_url }}"
    service: stream-bot
    dest: /var/backups/migrations
    format: plain

- name: Parallel dump of a large database
  homelab.migrations.homelab_pg_backup:
    database_url: "{{ dashboard_database_url }}"
    service: dashboard
    dest: /var/backups/migrations
    format: directory
    jobs: 2

- name: Restore the backup taken above
  homelab.migrations.homelab_pg_backup:
    database_url: "{{ dashboard_database_url }}"
    state: restored
    path: "{{ dashboard_backup.path }}"

- name: Keep two weeks of backups, and at least the last 3
  homelab.migrations.homelab_pg_backup:
    state: pruned
    service: dashboard
    dest: /var/backups/migrations
    keep_days: 14
    keep_count: 3
'''

RETURN = r'''
path:
  description:
    - The backup written (O(state=present)), or that would be written in check mode; the backup restored
      (O(state=restored)). V(null) when skipped and for O(state=pruned).
  returned: always
  type: str
  sample: /var/backups/migrations/dashboard_20250101_120000.dump
size_bytes:
  description: Size of the backup in bytes (sum of the files for the directory format). V(null) in check mode.
  returned: always
  type: int
  sample: 1048576
sha256:
  description:
    - sha256 of the backup file (of the manifest for the directory format), as in its C(.sha256) file.
      V(null) in check mode of O(state=present).
  returned: always
  type: str
  sample: 0b1d6f1c0e1f3e5b7c8d9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d
format:
  description: Format of the backup. V(null) for O(state=pruned).
  returned: always
  type: str
  sample: custom
duration_seconds:
  description: Wall time of the module's work in seconds.
  returned: always
  type: float
  sample: 12.5
skipped:
  description: V(true) when O(backup) made O(state=present) skip the dump.
  returned: always
  type: bool
  sample: false
reason:
  description: Why the dump was skipped; V(null) otherwise.
  returned: always
  type: str
  sample: "db.example.neon.tech is a Neon host (*.neon.tech): backup: auto does not pg_dump it ..."
kept_extensions:
  description:
    - O(state=restored) only, when the database holds extensions owned by another role (a superuser created them);
      their names. The restore left them, and the schema each lives in, as they were instead of dropping and
      re-creating them, which the restoring role may not do.
  returned: when such extensions exist
  type: list
  elements: str
  sample: [citext, pg_stat_statements]
pruned:
  description:
    - Backups deleted (or, in check mode, that would be deleted) by O(keep_days)/O(keep_count), with
      O(state=pruned) or after the new backup of O(state=present). Never the new backup; V([]) when the backup was
      skipped.
  returned: always
  type: list
  elements: str
  sample: [/var/backups/migrations/dashboard_20240101_120000.dump]
error_code:
  description: Why the run failed (V(incomplete_backup), V(foreign_backup), V(restore_failed), V(backup_failed),
    V(interrupted), V(not_restorable) when the service's credentials could not restore the backup, refused before
    any change); null on success. Callers decide on it, never on the message.
  returned: always
  type: str
  sample: incomplete_backup
untouched:
  description: V(true) when the database is as it was before this call - always for backups and prunes, and for a
    restore that was refused or whose single transaction was rolled back.
  returned: always
  type: bool
  sample: true
retryable:
  description: V(true) when a restore failed and no new session to the server could be opened afterwards (server
    down or restarting), so the same call may succeed later.
  returned: always
  type: bool
  sample: false
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.migrations.plugins.module_utils.backup.entry import run
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError
from ansible_collections.homelab.migrations.plugins.module_utils.backup.params import ARGUMENT_SPEC, REQUIRED_IF
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import url_secrets
from ansible_collections.homelab.migrations.plugins.module_utils.secrets import module_result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, required_if=REQUIRED_IF, supports_check_mode=True)
    # the password in every spelling is masked in whatever the module returns (exact fields such as the
    # backup's path stay exact even when a weak password is part of them: module_result)
    secrets = url_secrets(module.params.get('database_url'))
    try:
        result = run(module.params, check_mode=module.check_mode)
    except BackupError as exc:
        module.fail_json(**module_result(module, dict(exc.result, msg=str(exc)), secrets))
    diff = result.pop('diff', None)
    if module._diff and diff is not None:
        result['diff'] = diff
    module.exit_json(**module_result(module, result, secrets))


if __name__ == '__main__':
    main()
