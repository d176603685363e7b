# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drizzle's service-spec keys, their checks and docs: the one place they are written down.

The form is the one adapters/alembic/options.py describes (OPTIONS in argument-spec form plus ``description``
and ``check``; NOTES and REQUIREMENTS for the module docs; ``O(SVC.x)`` for a service option). The defaults
are drizzle-orm's own (0.29.5 to 0.45.x): C(migrationsTable) V(__drizzle_migrations) in the schema V(drizzle).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

TOOL = 'drizzle'

OPTIONS = dict(
    migrations_dir=dict(
        type='str', default='migrations', check='relative_path',
        description=['Drizzle only. The migrations folder (with C(meta/_journal.json)), relative to O(SVC.path).']),
    migrations_table=dict(
        type='str', default='__drizzle_migrations', check='sql_name',
        description=['Drizzle only. The tracking table, as drizzle-orm\'s C(migrationsTable).']),
    migrations_schema=dict(
        type='str', default='drizzle', check='sql_name',
        description=['Drizzle only. The schema of the tracking table, as drizzle-orm\'s C(migrationsSchema).']),
)

NOTES = [
    'Drizzle services (O(SVC.tool=drizzle)) are migrated natively, the way drizzle-orm\'s C(migrate) function does'
    ' it (same statements, same tracking rows); going back runs the C(<tag>.down.sql) files.',
    'Pre-flight error findings of Drizzle services, besides the common ones: V(breakpoint_splits_statement) (a'
    ' C(--> statement-breakpoint) inside a string literal, quoted name or /* */ comment, where drizzle-orm cuts the'
    ' statement in two all the same).',
]

REQUIREMENTS = []


def adapter_class():
    """The adapter class, imported on first use."""
    from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle.adapter import DrizzleAdapter
    return DrizzleAdapter
