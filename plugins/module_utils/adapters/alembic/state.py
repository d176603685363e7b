# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the version table rows mean against the revision graph: the problems, applied and pending revisions
of a service's state, and what a run of alembic changed.

Every message is a ``problem()`` dict (adapters/base.py); ``scrub`` (str -> str) masks secrets in the
texts that quote the service's files or alembic's errors.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import problem
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import lazy
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.graph import is_relative
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.version_table import VersionTable

NAMED_TARGETS = ('head', 'heads', 'base')


def elsewhere_problem(table, others, table_exists, scrub):
    """A bad_config problem when the configured version table is empty or missing but ``others`` (from
    VersionTable.others) hold this service's revisions: env.py most likely keeps its table there. None without
    others."""
    if not others:
        return None
    name = table.name()
    return problem('bad_config', scrub(
        'the version table %s %s, but %s; %s most likely where the service\'s env.py keeps its version '
        'table, and `alembic upgrade` would move that one while this collection reads %s as nothing '
        'applied. Set %s in the service spec (the version_table / version_table_schema that env.py '
        'passes to context.configure()), or make env.py use %s'
        % (name, 'is empty' if table_exists else 'does not exist',
           ', '.join('%s holds %s' % (o[0], ', '.join(o[2])) for o in others),
           'that is' if len(others) == 1 else 'one of them is', name,
           VersionTable.settings_hint(others[0]), name)))


def target_problems(graph, heads, target, scrub):
    """(problems, the one about the target or None) for the service's own ``target``: several heads for
    ``head`` (as `alembic upgrade head` refuses), a label status could not read, a name that is no
    revision, branch label or head (alembic's RevisionError), one naming several heads (MultipleHeads)."""
    problems = []
    if len(heads) > 1 and target == 'head':
        # as alembic: `upgrade head` refuses several heads; `heads`, a label or one revision are fine
        problems.append(problem('multiple_heads', 'the revision files have %d heads (%s) and the target is head, '
                                'which `alembic upgrade head` refuses; set the service target to heads to apply '
                                'all of them (expand/contract branches), name one branch (label@head), or join '
                                'them with `alembic merge heads`' % (len(heads), ', '.join(heads))))
    found = None
    unreadable = graph.unreadable_target(target)
    if unreadable:
        found = problem('bad_config', scrub(unreadable))
    elif target not in NAMED_TARGETS and not is_relative(target):
        try:  # the service's own target must name something, and one head per branch it names
            graph.resolve(target)
        except lazy.MultipleHeads as exc:
            found = problem('multiple_heads', scrub(
                'the service target %r names several heads: %s; alembic refuses it. Name one of them (or '
                '<label>@head of a branch with one head), or use target heads'
                % (target, ' '.join(str(exc).split()))))
        except lazy.RevisionError as exc:
            found = problem('bad_config', scrub(
                'the service target %r is no revision, branch label or head of these revision files: %s; set '
                'target to heads, head, a revision id or a branch label' % (target, ' '.join(str(exc).split()))))
    if found:
        problems.append(found)
    return problems, found


def progress(graph, rows, history, target, table_name, scrub, target_ok=True):
    """(applied, pending, problems) for version table ``rows``: applied in ``history`` order, pending what
    `alembic upgrade heads` (or the service's own branch ``target`` when ``target_ok``) runs; unknown rows or
    rows that do not fit the graph give an unknown_revision problem and nothing applied or pending."""
    position = set(history)
    unknown = [r for r in rows if r not in position]
    if unknown:
        return [], [], [problem('unknown_revision', 'the version table %s holds %s, which no revision file under '
                                '%s defines; deploy the code that matches the database (or `alembic stamp` it '
                                'if the revision was removed on purpose)'
                                % (table_name, ', '.join(repr(u) for u in unknown),
                                   ', '.join(graph.config.version_locations)))]
    try:
        applied_set = graph.applied_set(rows)
        applied = [r for r in history if r in applied_set]
        pending = graph.upgrade_steps('heads', rows)
        if target not in NAMED_TARGETS and target_ok and not is_relative(target):
            try:  # a target naming one branch (label, label@head, a revision): what a run would apply
                pending = graph.upgrade_steps(target, rows)
            except lazy.RevisionError:
                pass  # not an upgrade target (below the current revision, unknown): plan() says so
        return applied, pending, [problem('bad_config', scrub(text))
                                  for text in graph.syntax_problems(pending, 'upgrade')]
    except lazy.RevisionError as exc:
        return [], [], [problem('unknown_revision', 'the version table %s (%s) does not fit the revision '
                                'files: %s' % (table_name, ', '.join(rows), exc))]


def after_run(plan, state, graph, rows_after):
    """(applied, reverted, to_revision) once alembic ran ``plan``: the revisions the version table ``rows_after``
    shows applied (in run order, then history order) or reverted, and its rows joined by ',' (None: empty)."""
    before = set(plan.detail.applied_before)
    known = [r for r in rows_after if r in graph.files]
    after = graph.applied_set(known) if known else set()
    order_up = list(plan.steps) + [r for r in state.history if r not in plan.steps]
    applied = [r for r in order_up if r in after and r not in before]
    order_down = list(plan.steps) + [r for r in reversed(state.history) if r not in plan.steps]
    reverted = [r for r in order_down if r in before and r not in after]
    position = state.detail.history_position
    to_rows = sorted(rows_after, key=lambda r: (position.get(r, len(position)), r))
    return applied, reverted, ','.join(to_rows) or None
