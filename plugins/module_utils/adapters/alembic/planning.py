# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a plan reads an alembic target: which direction, which revisions, and the version table afterwards.

The same rules as alembic's commands: ``head`` / ``heads`` / ``base``, relative targets (``-1``,
``label@-1``, ``rev+2``), revision ids and branch labels; steps from ``ScriptDirectory._upgrade_revs`` /
``_downgrade_revs`` (RevisionGraph), the rows after from alembic's ``HeadMaintainer``. Errors are PlanError.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import PlanError, is_warning
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import lazy
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.graph import RELATIVE_RE


def refuse_unplannable(name, state, target, scrub):
    """PlanError when service ``name`` cannot be planned to ``target``: a target naming a label status could
    not read, or a blocking problem of the state (the command's and the spec target's are checked elsewhere)."""
    graph = state.detail.graph
    unreadable = graph.unreadable_target(target) if graph is not None and graph.ok else None
    if unreadable:
        raise PlanError('cannot plan service %r: %s' % (name, scrub(unreadable)), code='bad_config')
    blocking = [p for p in state.problems if p['code'] in ('bad_config', 'unknown_revision')
                and p != state.detail.command_problem  # checked when alembic has to run
                and p != state.detail.target_problem  # about the spec's target: checked above
                and not is_warning(p)]
    if blocking:
        raise PlanError('cannot plan service %r: %s' % (name, blocking[0]['message']), code=blocking[0]['code'])


def direction_of(graph, state, target, rows):
    """'up', 'down' or None (already there) for going to ``target`` from version table ``rows``."""
    relative = RELATIVE_RE.match(target)
    if target.startswith('-') and not re.match(r'^-\d+$', target):
        raise PlanError('target %r is not valid; use head, heads, base, a revision id or -N' % target)
    if relative and relative.end() == len(target):
        direction = 'down' if int(relative.group(3)) < 0 else 'up'
        if direction == 'down' and relative.group(1) is None and relative.group(2) is None and len(rows) > 1:
            raise PlanError('target %s is ambiguous: the database is at several heads (%s); give a revision id '
                            'or branch@-N instead' % (target, ', '.join(state.current)))
        if direction == 'down' and not rows and relative.group(2) is None:
            raise PlanError('target %s: nothing is applied, there is nothing to go back from' % target)
        return direction
    if target == 'base':
        return 'down'
    if target in ('head', 'heads'):
        if target == 'head' and len(state.heads) > 1:
            raise PlanError('target head is ambiguous: the revision files have %d heads (%s); use target heads to '
                            'apply all of them, name one head, or merge them with `alembic merge heads`'
                            % (len(state.heads), ', '.join(state.heads)), code='multiple_heads')
        return 'up'
    try:
        wanted = graph.resolve(target)
    except lazy.RevisionError as exc:
        raise PlanError('target %r: %s (known heads: %s)' % (target, exc, ', '.join(state.heads) or 'none'))
    applied_before = set(state.applied)
    if not all(r in applied_before for r in wanted):
        return 'up'
    if wanted and set(wanted) <= graph.all_current(rows):
        return None  # already there
    return 'down'


def steps_to(graph, state, target, rows, direction):
    """The revisions alembic runs going ``direction`` to ``target``, in run order."""
    try:
        if direction == 'up':
            return graph.upgrade_steps(target, rows)
        if direction == 'down':
            return graph.downgrade_steps(target, rows)
        return []
    except lazy.RevisionError as exc:
        raise PlanError('target %r cannot be reached from %s: %s'
                        % (target, state.current_revision or 'base', exc))
    except Exception as exc:  # alembic's own walk fails (an AssertionError for <label>@-N off that branch)
        raise PlanError('target %r cannot be planned from %s: alembic itself fails on it (%s%s), as `alembic %s '
                        '%s` would; give a revision id, or <label>@-N only for a branch the database is on'
                        % (target, state.current_revision or 'base', type(exc).__name__,
                           ': %s' % exc if str(exc) else '', 'upgrade' if direction == 'up' else 'downgrade',
                           target))


def expected_rows(graph, state, rows, steps, direction, target, table_name):
    """(the version table rows after the run in history order, or None when it cannot be predicted; notes)."""
    position = state.detail.history_position
    try:
        after_rows = graph.rows_after(rows, steps, direction == 'up')
        return sorted(after_rows, key=lambda r: (position.get(r, len(position)), r)), []
    except (AttributeError, TypeError, NameError) as exc:  # an alembic on this host without those internals
        return None, ['the version table after the run cannot be predicted with this alembic version (%s: %s); '
                      'it is read back afterwards' % (type(exc).__name__, exc)]
    except Exception as exc:  # alembic's own version table bookkeeping would fail the same way
        if direction == 'up' and any(len(graph.redundant_parents(r)[1]) > 1 and graph.redundant_parents(r)[0]
                                     for r in steps):
            # a merge listing an ancestor of another parent: the pre-flight finding merge_lists_ancestor says
            # so and refuses the run unless the user allows it; then alembic runs and fails as predicted
            return None, ['alembic will fail to update the version table at a merge that lists an ancestor of '
                          'another of its parents (%s: %s)' % (type(exc).__name__, exc)]
        raise PlanError('alembic would fail to update the version table %s going to %r from %s: %s %s'
                        % (table_name, target, state.current_revision or 'base', type(exc).__name__, exc))
