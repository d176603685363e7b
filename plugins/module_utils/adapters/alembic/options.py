# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alembic's service-spec keys, their checks and docs: the one place they are written down.

The registry (adapters/registry.py) lists this module; spec.py merges OPTIONS into the service spec and runs
the checks; scripts/gen_options.py writes the docs (plugins/doc_fragments/service.py and the role's
meta/argument_specs.yml) from OPTIONS, NOTES and REQUIREMENTS. ``O(SVC.x)`` in a description stands for
the service option ``x`` wherever the spec is documented (O(services[].x), O(service.x), ...).

OPTIONS is in argument-spec form plus ``description`` (and ``version_added`` for keys added after 0.1.0),
which spec.py strips, and ``check``, which spec.py runs for a value that is set (also for a service of
another tool): ``relative_path`` (a path inside the service directory), ``sql_name`` (a non-empty name of
at most 63 characters, PostgreSQL's limit), or a function of the value that returns an error message
(without the service name) or None.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

TOOL = 'alembic'


def _check_command(value):
    if not isinstance(value, list) or not value or not all(isinstance(c, str) and c for c in value):
        return 'alembic_command must be a non-empty list of strings'
    return None


OPTIONS = dict(
    alembic_config=dict(
        type='str', default='alembic.ini', check='relative_path',
        description=['Alembic only. The Alembic configuration file, relative to O(SVC.path); its C(script_location)'
                     ' (and C(version_locations)) say where the revision files are.']),
    alembic_command=dict(
        type='list', elements='str', check=_check_command,
        description=['Alembic only. The command that runs the service\'s own Alembic (upgrades and downgrades), as a'
                     ' list of arguments.',
                     'Defaults to C(<path>/.venv/bin/alembic) when that exists, else C(alembic) from E(PATH).',
                     'It runs with the service root as working directory and the database URL in E(DATABASE_URL).']),
    alembic_sql_preview=dict(
        type='bool', default=False,
        description=['Alembic only. In diff mode (C(--diff), also with C(--check)), render the SQL a run sends with'
                     ' C(alembic upgrade --sql) (or C(downgrade --sql)).',
                     'B(This runs the service\'s own code) (its C(env.py) and revision files), which may do'
                     ' anything, including writing to the database, even in check mode. Enable it only for services'
                     ' whose C(env.py) you trust to stay offline with C(--sql).',
                     'When false (the default), the diff lists the revisions the run would apply or revert and their'
                     ' files, and no service code runs.']),
    version_table=dict(
        type='str', default='alembic_version', check='sql_name',
        description=['Alembic only. The version table, as in Alembic\'s C(version_table).']),
    version_table_schema=dict(
        type='str', check='sql_name',
        description=['Alembic only. The schema of the version table; the connection\'s search path when not set.']),
)

NOTES = [
    'Alembic services (O(SVC.tool=alembic)) are read without running service code: the revision files are parsed,'
    ' and the version table is read. Upgrades and downgrades run the service\'s own C(alembic) command'
    ' (O(SVC.alembic_command)), so its C(env.py) is used as the service uses it.',
    'Pre-flight error findings of Alembic services, besides the common ones: V(revision_id_too_long) (a revision id'
    ' longer than the version table\'s C(version_num) column, which C(alembic) fails to record) and'
    ' V(merge_lists_ancestor) (a merge revision whose C(down_revision) lists an ancestor of another of its parents,'
    ' where C(alembic upgrade) fails).',
]

REQUIREMENTS = ['alembic on the managed host for services with O(SVC.tool=alembic)']


def adapter_class():
    """The adapter class, imported on first use: a drizzle-only run never imports alembic's code."""
    from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.adapter import AlembicAdapter
    return AlembicAdapter


def missing_library():
    """``('alembic', ImportError)`` when the alembic library cannot be imported on this host, else None."""
    from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.lazy import alembic_import_error
    error = alembic_import_error()
    return None if error is None else ('alembic', error)
