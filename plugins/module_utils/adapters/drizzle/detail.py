# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the drizzle adapter keeps in ``state.detail`` and ``plan.detail`` (adapters/base.py StateDetail /
PlanDetail): the journal, the tracking rows and their History, and the migrations a plan runs. Only
adapters/drizzle/ reads these."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import PlanDetail, StateDetail


class DrizzleStateDetail(StateDetail):
    """The drizzle part of a ServiceState (DrizzleAdapter.read_state).

    folder         str: the migrations folder (``<path>/<migrations_dir>``)
    journal        str: the path of its ``meta/_journal.json``
    schema, table  str: the tracking table's schema and name (migrations_schema / migrations_table), unquoted
    schema_exists  bool: the tracking table's schema exists
    table_exists   bool: the tracking table exists
    rows           list of (id int, hash str, created_at int ms or None): the tracking rows by id; [] without
                   the table
    entries        list of journal.Entry in journal order (the valid ones, also when others are not)
    valid          bool: the journal is usable (load_journal found no error)
    history        the history.History of ``entries`` and ``rows``; None when the journal is not usable
    """
    __slots__ = ('folder', 'journal', 'schema', 'table', 'schema_exists', 'table_exists', 'rows', 'entries',
                 'valid', 'history')

    def __init__(self, folder=None, journal=None, schema=None, table=None, schema_exists=False, table_exists=False,
                 rows=None, entries=None, valid=False, history=None):
        self.folder = folder
        self.journal = journal
        self.schema = schema
        self.table = table
        self.schema_exists = schema_exists
        self.table_exists = table_exists
        self.rows = rows if rows is not None else []
        self.entries = entries if entries is not None else []
        self.valid = valid
        self.history = history


class DrizzlePlanDetail(PlanDetail):
    """The drizzle part of a Plan (DrizzleAdapter.plan), read by preview_sql, apply and migrate.py.

    migrations     list of dicts, the plan's steps in run order: journal.read_up's {tag, when, file, hash,
                   statements} going up, journal.read_down's {tag, when, file, row_id, statements} going down
    options        dict: the plan's options as DrizzleAdapter._options gives them (transaction 'all' / 'each',
                   lock_timeout / statement_timeout for SET LOCAL or None, allow_out_of_order, allow_modified)
    create_schema  bool: the first transaction creates the tracking table's schema (an up plan, schema missing)
    create_table   bool: the first transaction creates the tracking table (an up plan, table missing)
    """
    __slots__ = ('migrations', 'options', 'create_schema', 'create_table')

    def __init__(self, migrations=None, options=None, create_schema=False, create_table=False):
        self.migrations = migrations if migrations is not None else []
        self.options = options
        self.create_schema = create_schema
        self.create_table = create_table
