# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The alembic adapter: the Adapter interface (adapters/base.py) over the pieces of this package.

Read side (status, plan): never runs env.py or a revision file and never writes. It reads the
alembic config the way alembic 1.20 does (config.py), lists and reads the revision files without
running them (files.py, values.py, binding.py), and builds alembic's own ``RevisionMap`` (graph.py).
Heads, history, pending and downgrade steps come from that map with the calls ``alembic heads`` /
``history`` / ``upgrade`` / ``downgrade`` make, so they agree with the CLI (state.py, planning.py).
The current revisions come from the version table (version_table.py).

Write side (apply): runs the service's own ``alembic`` (its env.py is service code) with
``DATABASE_URL`` in the child's environment (never in argv), in a process group of its own that dies
with us (command.py), then re-reads the version table and reports what really happened.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import (
    Adapter, AdapterError, ApplyError, ApplyResult, Plan, PlanError, ServiceState, problem)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import checks, lazy, planning
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.command import (
    AlembicCommand, display, failed_revision, output_tail)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.config import AlembicConfig
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.detail import (
    AlembicPlanDetail, AlembicStateDetail)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.graph import RevisionGraph
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.state import (
    after_run, elsewhere_problem, progress, target_problems)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.version_table import VersionTable
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.alembic_calls import (
    ALEMBIC_VERSION_NUM_DEFAULT, revision_id_findings)
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.findings import SQUAWK
from ansible_collections.homelab.migrations.plugins.module_utils.waits import LOCK_NOT_AVAILABLE_CLASS

_NO_LINT = ("alembic SQL is only known by running the service's env.py (alembic upgrade --sql), which happens only "
            'with alembic_sql_preview: true on the service, so squawk does not lint its revisions')


class AlembicAdapter(Adapter):
    """The adapter of a service with ``tool: alembic`` (spec keys: adapters/alembic/options.py)."""
    tool = 'alembic'

    # -------------------------------------------------------------- helpers
    @property
    def service_path(self):
        """The service's directory, absolute: alembic's working directory."""
        return os.path.abspath(self.spec['path'])

    @property
    def config_name(self):
        """``alembic -c`` of the service: ``alembic_config``, default alembic.ini (relative to the service path)."""
        return self.spec.get('alembic_config') or 'alembic.ini'

    @property
    def cli(self):
        """The service's alembic CLI (command.py)."""
        return AlembicCommand(self.spec, self.name, self.dburl, self._scrub)

    @property
    def table(self):
        """The service's version table (version_table.py)."""
        return VersionTable(self.spec, self._scrub)

    def version_table(self):
        """The version table's quoted name."""
        return self.table.name()

    def _scrub(self, text):
        return self.dburl.scrub(text) if self.dburl is not None else text

    def tracking_tables(self):
        """[(schema, table)] of the version table, left out of the schema fingerprint."""
        return self.table.tracking_tables()

    def command(self):
        """argv prefix of the service's alembic (``alembic_command``, .venv/bin/alembic, alembic on PATH)."""
        return self.cli.command()

    def may_commit_itself(self, plan):
        """Planned revisions that use ``autocommit_block()`` or send transaction control (COMMIT, ROLLBACK...).

        alembic commits the open transaction when an ``autocommit_block()`` starts (with it what earlier
        revisions of the run did) and runs the block outside any transaction: a later failure rolls back only
        what came after it. Read from the revision files' text (never executed).
        """
        run_state = plan.detail.state if plan is not None else None
        graph = run_state.detail.graph if run_state is not None else None
        config = run_state.detail.config if run_state is not None else None
        if plan is not None and plan.steps and checks.env_may_autocommit(config):
            # env.py runs the migrations on an autocommit connection (isolation_level="AUTOCOMMIT"...), or
            # commits itself: every statement of a failed revision may have stayed
            return list(plan.steps)
        return checks.self_committing(plan.steps if plan is not None else [], getattr(graph, 'files', None) or {})

    def load_graph(self):
        """(AlembicConfig, RevisionGraph); AdapterError for an unusable config."""
        lazy.require_alembic()
        config = AlembicConfig(self.spec['path'], self.config_name)
        return config, RevisionGraph(config)

    def target(self):
        """The service's own target (spec ``target``), where a normal run takes it."""
        return str(self.spec.get('target') or 'head').strip() or 'head'

    # ------------------------------------------------------------ read side
    def read_state(self, conn):
        """The service's ServiceState: current rows of the version table (history order), heads, applied and
        pending revisions, history, problems; ``detail`` is an AlembicStateDetail (config, graph, rows,
        version_table(_exists), history_position, command_problem, target_problem). Never runs service code.
        AdapterError when alembic is missing or the version table cannot be read (code unreachable: connection).
        Under reread_state the config and graph parsed for the earlier state are reused (no file is read again)."""
        lazy.require_alembic()
        problems = []
        known = self.reusable_detail(AlembicStateDetail)
        try:
            config, graph = (known.config, known.graph) if known is not None and known.graph else self.load_graph()
        except AdapterError as exc:
            config = graph = None
            problems.append(problem('bad_config', self._scrub(str(exc))))
        rows = self.table.read_rows(conn)
        table_exists = rows is not None
        rows = rows or []
        detail = AlembicStateDetail(config=config, graph=graph, rows=rows, version_table=self.version_table(),
                                    version_table_exists=table_exists)
        # a configured path (alembic_command, .venv) that cannot run is a fact of the host, shown by status;
        # a name looked up on PATH depends on the caller's environment: plan() checks it when something runs
        why = self.cli.problem(path_lookups=False)
        if why is not None:
            detail.command_problem = problem('bad_config', self._scrub(why))
            problems.append(detail.command_problem)
        if graph is None or not graph.ok:
            problems.extend(problem('bad_config', self._scrub(text)) for text in (graph.problems if graph else []))
            return ServiceState(self.tool, current=rows, problems=problems, detail=detail)
        if not rows:
            # nothing applied as far as the configured table tells: is env.py keeping its table elsewhere?
            elsewhere = elsewhere_problem(self.table, self.table.others(conn, graph.files), table_exists, self._scrub)
            problems.extend([elsewhere] if elsewhere else [])
        problems.extend(problem('bad_config', self._scrub(text), severity='warning') for text in graph.warnings())
        history = graph.history()
        position = dict((rid, i) for i, rid in enumerate(history))
        heads = graph.heads()
        target = self.target()
        found, target_problem = target_problems(graph, heads, target, self._scrub)
        problems.extend(found)
        if target_problem:
            detail.target_problem = target_problem
        current = sorted(rows, key=lambda r: (position.get(r, len(history)), r))
        applied, pending, found = progress(graph, rows, history, target, self.version_table(), self._scrub,
                                           target_ok=not target_problem)
        problems.extend(found)
        detail.history_position = position
        return ServiceState(self.tool, current=current, heads=heads, applied=applied, pending=pending,
                            problems=problems, history=history, detail=detail)

    # ---------------------------------------------------------------- plan
    def plan(self, state, target, options=None):
        """The Plan going to ``target`` (head, heads, base, a revision id or label, relative -N / label@-N) from
        ``state``: direction, steps in run order, to_revision predicted by alembic's HeadMaintainer (None when
        it cannot be), notes; ``detail`` is an AlembicPlanDetail (command, cli_target, rows_before,
        applied_before, expected_rows and state) for preview_sql / apply. PlanError (codes bad_config,
        multiple_heads, unknown_revision)."""
        lazy.require_alembic()
        options = options or {}
        target = str(target if target is not None else 'head').strip()
        if not target:
            raise PlanError('target is empty; use head, heads, base, a revision id or -N')
        planning.refuse_unplannable(self.name, state, target, self._scrub)
        graph = state.detail.graph
        rows = list(state.detail.rows)
        direction = planning.direction_of(graph, state, target, rows)
        steps = planning.steps_to(graph, state, target, rows, direction)
        verb = 'upgrade' if direction == 'up' else 'downgrade'
        broken = graph.syntax_problems(steps, verb)
        if broken:
            raise PlanError('cannot %s service %r: %s' % (verb, self.name, '; '.join(broken)))
        why = self.cli.problem() if steps else None
        if why is not None:
            raise PlanError('cannot %s service %r: %s' % (verb, self.name, self._scrub(why)))
        expected, notes = planning.expected_rows(graph, state, rows, steps, direction, target, self.version_table())
        if steps and options.get('transaction') == 'each':
            notes.append("alembic runs migrations in the transactions the service's env.py sets up "
                         '(transaction_per_migration); transaction=each does not change that')
        if direction == 'up' and len(state.heads) > 1 and target == 'heads':
            notes.append('the revision files have several heads (%s); all of them are applied' % ', '.join(state.heads))
        if not steps:
            direction = None
        to_revision = (','.join(expected) or None) if expected is not None else None
        detail = AlembicPlanDetail(command='upgrade' if direction != 'down' else 'downgrade', cli_target=target,
                                   rows_before=rows, applied_before=sorted(set(state.applied)),
                                   expected_rows=expected, state=state)
        return Plan(direction, steps, state.current_revision, to_revision, target, notes=notes, detail=detail)

    # ------------------------------------------------------------ pre-flight
    def preflight(self, conn, state, steps, options=None, lint=False, direction='up'):
        """Findings for upgrading through ``steps``: revision ids longer than version_num, merges listing an
        ancestor of another parent, and statements of upgrade() (op.execute SQL, op.create_index /
        op.drop_index with postgresql_concurrently=True) PostgreSQL refuses in the revision's transaction
        (outside `with op.get_context().autocommit_block():`). Never runs env.py or a revision file, so
        there is no SQL to lint: the ``lint`` result says so, unless the service set alembic_sql_preview
        (then squawk lints `alembic upgrade --sql`). ``direction`` 'down' checks the statements of
        downgrade() only."""
        graph = state.detail.graph
        lint_info = {'linter': SQUAWK, 'ran': False, 'reason': _NO_LINT}
        if graph is None or not graph.ok or not steps:
            return {'findings': [], 'lint': lint_info}
        findings = []
        length = self._num_length(conn, state)
        if direction == 'up':
            findings.extend(revision_id_findings(steps, length, self.version_table(), graph.files))
            findings.extend(checks.merge_findings(graph, steps))
        findings.extend(checks.transaction_findings(conn, graph, state.detail.config, steps, direction))
        if lint and direction == 'up' and self.spec.get('alembic_sql_preview'):
            options = options or {}
            target = options.get('target') or self.spec.get('target') or 'heads'
            lint_findings, lint_info = checks.lint_findings(self.cli, conn, list(state.detail.rows),
                                                            steps, options, target)
            findings.extend(lint_findings)
        for item in findings:
            item['message'] = self._scrub(item['message'])
            if item['statement']:
                item['statement'] = self._scrub(item['statement'])
        return {'findings': findings, 'lint': lint_info}

    def _num_length(self, conn, state):
        """The length of version_num revision ids must fit: the table's, else alembic's default."""
        if state.detail.version_table_exists and conn is not None:
            try:
                return self.table.num_length(conn)
            except Exception:
                pass
        return ALEMBIC_VERSION_NUM_DEFAULT

    # ------------------------------------------------------------ write side
    def preview_sql(self, plan):
        """``plan.sql`` (also returned): the revisions the run takes, and with alembic_sql_preview the output of
        `alembic <command> <from>:<target> --sql` (runs the service's env.py), masked."""
        if not plan.steps:
            plan.sql = ''
            return plan.sql
        rows = plan.detail.rows_before
        command = plan.detail.command
        run_state = plan.detail.state
        graph = run_state.detail.graph if run_state is not None else None
        files = getattr(graph, 'files', None) or {}
        root = self.service_path

        def where(rev):
            path = files.get(rev)
            return ' (%s)' % os.path.relpath(path, root) if path else ''
        listing = '\n'.join('--   %s%s' % (s, where(s)) for s in plan.steps)
        header = '-- %s: alembic %s %s runs %d revision(s):\n%s\n' % (self.name, command, plan.target,
                                                                      len(plan.steps), listing)
        if not self.spec.get('alembic_sql_preview'):
            # alembic --sql runs env.py (service code, which may write to the database): only on request
            plan.sql = header + ('-- (no SQL preview: set alembic_sql_preview: true on this service to render it '
                                 'with `alembic %s --sql`, which runs the service\'s env.py)\n' % command)
            return plan.sql
        if len(rows) > 1:
            plan.sql = header + ('-- (no offline SQL: the database is at several heads, which `--sql` cannot '
                                 'start from)\n')
            return plan.sql
        out, why = self.cli.offline_sql(command, rows[0] if rows else 'base', plan.detail.cli_target or plan.target)
        if out is not None:
            plan.sql = self._scrub(out)
        else:
            plan.sql = header + '-- (no offline SQL: `alembic %s --sql` failed: %s)\n' % (command, why)
        return plan.sql

    def apply(self, conn, plan, options=None):
        """Run `alembic <command> <target>` for ``plan`` (``options``: timeout in seconds, SESSION_SETTINGS of
        command.py), then read the version table back: ApplyResult (applied, reverted, from/to_revision,
        queries = [the command]); ApplyError (codes apply_failed, lock_timeout, unreachable, bad_config) with
        details applied, reverted, failed, returncode, stderr (masked tail), command."""
        options = options or {}
        run_state = plan.detail.state
        if not plan.steps:
            return ApplyResult(from_revision=plan.from_revision, to_revision=plan.from_revision)
        graph = run_state.detail.graph
        argv = self.cli.argv(plan.detail.command, plan.detail.cli_target)
        shown = display(argv)
        rc, out, err, timed_out = self.cli.run(argv, options, options.get('timeout'))
        try:
            rows_after = self.table.read_rows(conn) or []
        except AdapterError as exc:
            raise ApplyError('%s exited %s, and then the version table could not be read: %s; check the database '
                             'before retrying' % (shown, rc, exc), code='unreachable',
                             details={'returncode': rc, 'stderr': output_tail(self._scrub(err))})
        applied, reverted, to_revision = after_run(plan, run_state, graph, rows_after)
        details = {'applied': applied, 'reverted': reverted, 'from_revision': plan.from_revision,
                   'to_revision': to_revision, 'returncode': rc, 'command': shown}
        if timed_out or rc != 0:
            failed = failed_revision(out, err, plan.steps)
            if failed is not None:
                details['failed'] = failed
            why = ('was killed after %ss (timeout)' % options.get('timeout') if timed_out else 'failed (exit %s)' % rc)
            raise self._failed(shown, why, out, err, timed_out, details)
        expected = plan.detail.expected_rows
        if expected is not None and set(rows_after) != set(expected):
            details['stderr'] = output_tail(self._scrub(err))
            raise self._not_as_planned(conn, graph, shown, expected, details)
        return ApplyResult(applied=applied, reverted=reverted, from_revision=plan.from_revision,
                           to_revision=to_revision, queries=[shown])

    def _failed(self, shown, why, out, err, timed_out, details):
        """The ApplyError of a run alembic failed (``why``): how far it got, and what alembic said."""
        tail = output_tail(self._scrub(err)) or output_tail(self._scrub(out))
        details['stderr'] = tail
        applied, reverted, to_revision = details['applied'], details['reverted'], details['to_revision']
        if applied or reverted:
            partial = '; it got as far as %s (applied %s%s)' % (
                to_revision or 'base', ', '.join(applied) or 'nothing',
                ', reverted ' + ', '.join(reverted) if reverted else '')
        else:
            partial = '; its version table is unchanged at %s' % (to_revision or 'base')
        # the driver's exception class for SQLSTATE 55P03 in alembic's traceback: a statement ran into
        # lock_timeout; the caller may retry when the database shows nothing stayed
        code = 'lock_timeout' if (not timed_out and LOCK_NOT_AVAILABLE_CLASS in (err or '')) else 'apply_failed'
        return ApplyError('%s %s%s. alembic said:\n%s' % (shown, why, partial, tail), code=code, details=details)

    def _not_as_planned(self, conn, graph, shown, expected, details):
        """The ApplyError of a run alembic says succeeded whose version table is not the planned one."""
        table = self.version_table()
        head = ('%s succeeded but the version table %s now holds %s, not %s as planned'
                % (shown, table, details['to_revision'] or 'nothing', ','.join(expected) or 'nothing'))
        others = self.table.others(conn, graph.files)
        moved = [o for o in others if set(o[2]) == set(expected)]
        if moved:
            why = ("; alembic moved %s instead (it now holds %s): the service's env.py keeps its version table "
                   'there, not in %s. Set %s in the service spec (what env.py passes to context.configure()), '
                   'or make env.py use %s' % (moved[0][0], ', '.join(moved[0][2]), table,
                                              VersionTable.settings_hint(moved[0]), table))
        else:
            why = ("; check that the service's env.py migrates the database in DATABASE_URL and keeps its "
                   'version table in %s (version_table / version_table_schema in the service spec must name the '
                   'table env.py passes to context.configure())%s'
                   % (table, ''.join('; %s holds %s' % (o[0], ', '.join(o[2])) for o in others)))
        return ApplyError(head + why, code='apply_failed', details=details)
