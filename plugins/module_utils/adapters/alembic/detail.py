# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the alembic adapter keeps in ``state.detail`` and ``plan.detail`` (adapters/base.py StateDetail /
PlanDetail): the parsed config and revision graph, the version table as read, and how plan() will run
``alembic``. Only adapters/alembic/ reads these."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import PlanDetail, StateDetail


class AlembicStateDetail(StateDetail):
    """The alembic part of a ServiceState (AlembicAdapter.read_state).

    config                the service's AlembicConfig (config.py); None when it cannot be read
    graph                 the RevisionGraph of the revision files (graph.py; check ``graph.ok``); None when the
                          config cannot be read
    rows                  list of str: the version table's revision ids as read (table order); [] when the table
                          is empty or does not exist
    version_table         str: the version table's quoted name (``"schema"."table"``)
    version_table_exists  bool: the version table exists
    history_position      dict revision id -> its index in ``state.history`` (oldest 0); {} when the revision
                          files are unusable
    command_problem       the {code, message} problem about the service's alembic command (a configured path
                          that cannot run), also in ``state.problems``; None when there is none
    target_problem        the {code, message} problem about the spec's own ``target``, also in
                          ``state.problems``; None when there is none
    """
    __slots__ = ('config', 'graph', 'rows', 'version_table', 'version_table_exists', 'history_position',
                 'command_problem', 'target_problem')

    def __init__(self, config=None, graph=None, rows=None, version_table=None, version_table_exists=False,
                 history_position=None, command_problem=None, target_problem=None):
        self.config = config
        self.graph = graph
        self.rows = list(rows or [])
        self.version_table = version_table
        self.version_table_exists = version_table_exists
        self.history_position = dict(history_position or {})
        self.command_problem = command_problem
        self.target_problem = target_problem


class AlembicPlanDetail(PlanDetail):
    """The alembic part of a Plan (AlembicAdapter.plan), read by preview_sql, apply and may_commit_itself.

    command         str: the alembic command that runs, ``upgrade`` (also for an empty plan) or ``downgrade``
    cli_target      str: the target passed to that command (the plan's target, as given)
    rows_before     list of str: the version table's rows the plan starts from (table order)
    applied_before  list of str: the revisions applied before the run, sorted
    expected_rows   list of str: the version table's rows after the run, in history order, as alembic's
                    HeadMaintainer predicts them; None when they cannot be predicted (then read back only)
    state           the ServiceState the plan was made from (its detail holds the graph and config)
    """
    __slots__ = ('command', 'cli_target', 'rows_before', 'applied_before', 'expected_rows', 'state')

    def __init__(self, command='upgrade', cli_target=None, rows_before=None, applied_before=None,
                 expected_rows=None, state=None):
        self.command = command
        self.cli_target = cli_target
        self.rows_before = list(rows_before or [])
        self.applied_before = list(applied_before or [])
        self.expected_rows = expected_rows
        self.state = state
