# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared option docs: the service spec and the connection options. GENERATED, do not edit.

Written by scripts/gen_options.py from plugins/module_utils/spec.py (the keys every service has,
CONNECTION_DOCS) and each registered tool's adapters/<tool>/options.py (its keys, NOTES, REQUIREMENTS).
SERVICES documents the ``services`` list (homelab_migration_status), SINGLE the single ``service`` dict
(homelab_migration_apply), CONNECTION the connection options and what they need (psycopg2).
tests/unit/plugins/doc_fragments/test_service.py fails when this file is not what the script writes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    SERVICES = r'''
options:
  services:
    description:
      - The services whose migration state is reported, one service spec each.
      - Service names must be unique and every name in O(services[].depends_on) must be in the list; otherwise the
        task fails before any database is contacted.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the service. 1 to 63 characters of V(a-z), V(0-9), V(_) and V(-), starting with a letter or digit.
          - Also names the service's migration lock, its audit records and its backups.
        type: str
        required: true
      tool:
        description:
          - The migration tool the service uses.
        type: str
        required: true
        choices: [alembic, drizzle]
      path:
        description:
          - The service's root directory on the managed host.
        type: path
        required: true
      database_url:
        description:
          - The service's database as a libpq URI, for example V(postgresql://user:password@host:5432/dbname).
          - V(postgres://) and SQLAlchemy-style V(postgresql+psycopg2://) URLs are accepted.
          - The password is masked in every message and is passed to child processes only through the environment or a
            0600 passfile.
        type: str
        required: true
      depends_on:
        description:
          - Names of services that are migrated before this one. The role skips a service whose dependency failed.
        type: list
        elements: str
        default: []
      alembic_config:
        description:
          - Alembic only. The Alembic configuration file, relative to O(services[].path); its C(script_location) (and
            C(version_locations)) say where the revision files are.
        type: str
        default: alembic.ini
      alembic_command:
        description:
          - Alembic only. The command that runs the service's own Alembic (upgrades and downgrades), as a list of
            arguments.
          - Defaults to C(<path>/.venv/bin/alembic) when that exists, else C(alembic) from E(PATH).
          - It runs with the service root as working directory and the database URL in E(DATABASE_URL).
        type: list
        elements: str
      alembic_sql_preview:
        description:
          - Alembic only. In diff mode (C(--diff), also with C(--check)), render the SQL a run sends with C(alembic
            upgrade --sql) (or C(downgrade --sql)).
          - B(This runs the service's own code) (its C(env.py) and revision files), which may do anything, including
            writing to the database, even in check mode. Enable it only for services whose C(env.py) you trust to stay
            offline with C(--sql).
          - When false (the default), the diff lists the revisions the run would apply or revert and their files, and
            no service code runs.
        type: bool
        default: false
      version_table:
        description:
          - Alembic only. The version table, as in Alembic's C(version_table).
        type: str
        default: alembic_version
      version_table_schema:
        description:
          - Alembic only. The schema of the version table; the connection's search path when not set.
        type: str
      migrations_dir:
        description:
          - Drizzle only. The migrations folder (with C(meta/_journal.json)), relative to O(services[].path).
        type: str
        default: migrations
      migrations_table:
        description:
          - Drizzle only. The tracking table, as drizzle-orm's C(migrationsTable).
        type: str
        default: __drizzle_migrations
      migrations_schema:
        description:
          - Drizzle only. The schema of the tracking table, as drizzle-orm's C(migrationsSchema).
        type: str
        default: drizzle
      backup:
        description:
          - Whether the role takes a C(pg_dump) backup before migrating this service (only services with work to do
            get one).
          - V(auto) skips the backup for Neon hosts (C(*.neon.tech)) and says why; V(always) and V(never) do as they
            say.
        type: str
        default: auto
        choices: [auto, always, never]
      target:
        description:
          - Where a normal run takes this service. V(head), V(heads), V(base), a revision id or tag of the service's
            tool, or V(-N) for N steps back.
        type: str
        default: head
      health_check:
        description:
          - An V(http://) or V(https://) URL that must answer 2xx after the service was migrated, or the role rolls
            the service back.
        type: str
notes:
  - "Alembic services (O(services[].tool=alembic)) are read without running service code: the revision files are
    parsed, and the version table is read. Upgrades and downgrades run the service's own C(alembic) command
    (O(services[].alembic_command)), so its C(env.py) is used as the service uses it."
  - "Pre-flight error findings of Alembic services, besides the common ones: V(revision_id_too_long) (a revision id
    longer than the version table's C(version_num) column, which C(alembic) fails to record) and
    V(merge_lists_ancestor) (a merge revision whose C(down_revision) lists an ancestor of another of its parents,
    where C(alembic upgrade) fails)."
  - Drizzle services (O(services[].tool=drizzle)) are migrated natively, the way drizzle-orm's C(migrate) function
    does it (same statements, same tracking rows); going back runs the C(<tag>.down.sql) files.
  - "Pre-flight error findings of Drizzle services, besides the common ones: V(breakpoint_splits_statement) (a C(-->
    statement-breakpoint) inside a string literal, quoted name or /* */ comment, where drizzle-orm cuts the statement
    in two all the same)."
requirements:
  - alembic on the managed host for services with O(services[].tool=alembic)
'''

    SINGLE = r'''
options:
  service:
    description:
      - The service to migrate, as a service spec (the same keys as every module of this collection).
    type: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the service. 1 to 63 characters of V(a-z), V(0-9), V(_) and V(-), starting with a letter or digit.
          - Also names the service's migration lock, its audit records and its backups.
        type: str
        required: true
      tool:
        description:
          - The migration tool the service uses.
        type: str
        required: true
        choices: [alembic, drizzle]
      path:
        description:
          - The service's root directory on the managed host.
        type: path
        required: true
      database_url:
        description:
          - The service's database as a libpq URI, for example V(postgresql://user:password@host:5432/dbname).
          - V(postgres://) and SQLAlchemy-style V(postgresql+psycopg2://) URLs are accepted.
          - The password is masked in every message and is passed to child processes only through the environment or a
            0600 passfile.
        type: str
        required: true
      depends_on:
        description:
          - Names of services that are migrated before this one. The role skips a service whose dependency failed.
          - Not checked by this module.
        type: list
        elements: str
        default: []
      alembic_config:
        description:
          - Alembic only. The Alembic configuration file, relative to O(service.path); its C(script_location) (and
            C(version_locations)) say where the revision files are.
        type: str
        default: alembic.ini
      alembic_command:
        description:
          - Alembic only. The command that runs the service's own Alembic (upgrades and downgrades), as a list of
            arguments.
          - Defaults to C(<path>/.venv/bin/alembic) when that exists, else C(alembic) from E(PATH).
          - It runs with the service root as working directory and the database URL in E(DATABASE_URL).
        type: list
        elements: str
      alembic_sql_preview:
        description:
          - Alembic only. In diff mode (C(--diff), also with C(--check)), render the SQL a run sends with C(alembic
            upgrade --sql) (or C(downgrade --sql)).
          - B(This runs the service's own code) (its C(env.py) and revision files), which may do anything, including
            writing to the database, even in check mode. Enable it only for services whose C(env.py) you trust to stay
            offline with C(--sql).
          - When false (the default), the diff lists the revisions the run would apply or revert and their files, and
            no service code runs.
        type: bool
        default: false
      version_table:
        description:
          - Alembic only. The version table, as in Alembic's C(version_table).
        type: str
        default: alembic_version
      version_table_schema:
        description:
          - Alembic only. The schema of the version table; the connection's search path when not set.
        type: str
      migrations_dir:
        description:
          - Drizzle only. The migrations folder (with C(meta/_journal.json)), relative to O(service.path).
        type: str
        default: migrations
      migrations_table:
        description:
          - Drizzle only. The tracking table, as drizzle-orm's C(migrationsTable).
        type: str
        default: __drizzle_migrations
      migrations_schema:
        description:
          - Drizzle only. The schema of the tracking table, as drizzle-orm's C(migrationsSchema).
        type: str
        default: drizzle
      backup:
        description:
          - Whether the role takes a C(pg_dump) backup before migrating this service (only services with work to do
            get one).
          - V(auto) skips the backup for Neon hosts (C(*.neon.tech)) and says why; V(always) and V(never) do as they
            say.
        type: str
        default: auto
        choices: [auto, always, never]
      target:
        description:
          - Where a normal run takes this service. V(head), V(heads), V(base), a revision id or tag of the service's
            tool, or V(-N) for N steps back.
          - The module option O(target) overrides it.
        type: str
        default: head
      health_check:
        description:
          - An V(http://) or V(https://) URL that must answer 2xx after the service was migrated, or the role rolls
            the service back.
          - Not used by this module.
        type: str
notes:
  - "Alembic services (O(service.tool=alembic)) are read without running service code: the revision files are parsed,
    and the version table is read. Upgrades and downgrades run the service's own C(alembic) command
    (O(service.alembic_command)), so its C(env.py) is used as the service uses it."
  - "Pre-flight error findings of Alembic services, besides the common ones: V(revision_id_too_long) (a revision id
    longer than the version table's C(version_num) column, which C(alembic) fails to record) and
    V(merge_lists_ancestor) (a merge revision whose C(down_revision) lists an ancestor of another of its parents,
    where C(alembic upgrade) fails)."
  - Drizzle services (O(service.tool=drizzle)) are migrated natively, the way drizzle-orm's C(migrate) function does
    it (same statements, same tracking rows); going back runs the C(<tag>.down.sql) files.
  - "Pre-flight error findings of Drizzle services, besides the common ones: V(breakpoint_splits_statement) (a C(-->
    statement-breakpoint) inside a string literal, quoted name or /* */ comment, where drizzle-orm cuts the statement
    in two all the same)."
requirements:
  - alembic on the managed host for services with O(service.tool=alembic)
'''

    CONNECTION = r'''
options:
  connect_timeout:
    description:
      - Seconds to wait for each database connection before the service is reported unreachable.
    type: int
    default: 10
requirements:
  - psycopg2 (or psycopg2-binary) on the managed host
'''
