# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The alembic adapter.

Read side (status, plan): never runs env.py or a revision file and never writes. It reads the
alembic config the way alembic 1.20 does (``script_location``, ``version_locations`` with the
``path_separator`` / ``version_path_separator`` rules, ``recursive_version_locations``,
``sourceless``; ``[tool.alembic]`` of ``pyproject.toml`` as the fallback), lists revision files
exactly like ``ScriptDirectory`` does, takes ``revision`` / ``down_revision`` / ``branch_labels`` /
``depends_on`` from each file with :mod:`ast` (literals only), and builds alembic's own
``RevisionMap`` from ``Revision`` objects. Heads, history, pending and downgrade steps come from
that map with the calls ``alembic heads`` / ``history`` / ``upgrade`` / ``downgrade`` make, so
they agree with the CLI. The current revisions come from the version table.

Write side (apply): runs the service's own ``alembic`` (its env.py is service code) with
``DATABASE_URL`` in the environment (never in argv), in a process group of its own that dies with
us (``PR_SET_PDEATHSIG``), then re-reads the version table and reports what really happened.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shlex

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import (
    Adapter, AdapterError, ApplyError, ApplyResult, Plan, PlanError, ServiceState, is_warning, problem)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import lazy
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.config import AlembicConfig
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.files import read_file
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.graph import (
    RELATIVE_RE, RevisionGraph, is_relative)
from ansible_collections.homelab.migrations.plugins.module_utils.child import run_child
from ansible_collections.homelab.migrations.plugins.module_utils.connection import quote_ident
from ansible_collections.homelab.migrations.plugins.module_utils.preflight import api as preflight_mod
from ansible_collections.homelab.migrations.plugins.module_utils.waits import (
    LOCK_NOT_AVAILABLE_CLASS,
    child_application_name,
)
from ansible_collections.homelab.migrations.plugins.module_utils.regular_file import (
    MIGRATION_LIMIT,
    NotRegularFile,
    read_regular,
)

_TIMEOUT_RE = re.compile(r'^\d+(?:\.\d+)?\s*(?:us|ms|s|min|h|d)?$')

STDERR_TAIL_LINES = 30
STDERR_TAIL_CHARS = 4000
PREVIEW_TIMEOUT = 120


# run_child (module_utils.child) runs alembic: own process group, SIGKILL when we die or on timeout/errors


def _not_runnable(path):
    """Why the file at ``path`` cannot be executed, or None."""
    if not os.path.exists(path):
        return 'does not exist'
    if os.path.isdir(path):
        return 'is a directory'
    if not os.access(path, os.X_OK):
        return 'is not executable'
    return None


def find_executable(name, cwd, env=None):
    """``name`` looked up on the PATH of ``env`` the way run_child's exec does it (relative entries from cwd)."""
    for folder in os.get_exec_path(env):
        path = os.path.join(cwd, folder, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def command_problem(argv, cwd, env=None, path_lookups=True):
    """Why ``argv`` cannot be started by run_child in ``cwd`` with ``env``, or None when it can.

    argv[0] is resolved as exec resolves it (a name on PATH, a path relative to cwd) and must be an
    executable file; a script's ``#!`` interpreter must exist and be executable too (a moved or
    rebuilt virtualenv leaves scripts whose interpreter is gone). With ``path_lookups`` False,
    names looked up on PATH (argv[0] without a slash, ``#!/usr/bin/env python3``) are not checked.
    """
    exe = argv[0]
    if '/' in exe:
        path = os.path.join(cwd, exe)
        why = _not_runnable(path)
        if why:
            return '%s %s' % (path, why)
    elif not path_lookups:
        return None
    else:
        path = find_executable(exe, cwd, env)
        if path is None:
            return '%s is not on PATH (%s)' % (exe, os.pathsep.join(os.get_exec_path(env)))
    try:
        head = read_regular(path, 256, head=True)
    except NotRegularFile as exc:
        return '%s %s' % (path, exc.strerror)
    except OSError:
        return None  # exec needs no read access to a binary; a script's interpreter would say so itself
    if not head.startswith(b'#!'):
        return None
    words = head[2:].split(b'\n', 1)[0].decode('utf-8', 'replace').split(None, 1)
    if not words:
        return '%s starts with an empty #! line' % path
    interpreter = os.path.join(cwd, words[0])
    why = _not_runnable(interpreter)
    if why:
        return ('%s is a script whose #! interpreter %s %s (a virtualenv that was moved or rebuilt leaves its '
                'scripts like that: recreate it)' % (path, interpreter, why))
    if path_lookups and os.path.basename(interpreter) == 'env' and len(words) > 1:
        program = words[1].split()[0]
        if not program.startswith('-') and '=' not in program and '/' not in program \
                and find_executable(program, cwd, env) is None:
            return '%s is a script run by `#!%s %s`, and %s is not on PATH (%s)' % (
                path, words[0], program, program, os.pathsep.join(os.get_exec_path(env)))
    return None


def output_tail(text, lines=STDERR_TAIL_LINES, chars=STDERR_TAIL_CHARS):
    """The end of a tool's output. Mask it first (self._scrub): a cut could leave a password's tail."""
    text = '\n'.join((text or '').strip().splitlines()[-lines:])
    return text[-chars:]


def pg_setting(name, value):
    """A PGOPTIONS -c value; numbers are seconds, strings are PostgreSQL durations ('500ms', '5s', '0')."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise PlanError('%s must be a number of seconds or a duration like 5s, got %r' % (name, value))
    if isinstance(value, (int, float)):
        if value < 0:
            raise PlanError('%s must not be negative' % name)
        return '%dms' % int(round(value * 1000))
    text = str(value).strip()
    if not _TIMEOUT_RE.match(text):
        raise PlanError("%s must be a number of seconds or a PostgreSQL duration like '500ms', '5s', '1min'; got %r"
                        % (name, value))
    return text.replace(' ', '')


# ---------------------------------------------------------------------------- adapter
def _alembic_advice(kind, migration, later):
    if kind == 'always':
        return ("Run it inside `with op.get_context().autocommit_block():` in upgrade() of revision %s (alembic "
                'commits the transaction before the block and begins a new one after it), or put it in a revision '
                'of its own that does so' % migration)
    advice = ('Put the ALTER TYPE ... ADD VALUE inside `with op.get_context().autocommit_block():` in revision %s, so '
              'it commits before the statements that use the new label' % migration)
    if kind == 'enum_later':
        advice += (", or give each revision its own transaction (transaction_per_migration=True in env.py's "
                   'context.configure())')
    return advice


# autocommit_block(), or SQL text that ends a transaction, in a revision file
_SELF_COMMIT_RE = re.compile(r"autocommit_block|['\"]\s*(?:COMMIT|ROLLBACK|END|ABORT)"
                             r"(?:\s+(?:WORK|TRANSACTION|AND\s+(?:NO\s+)?CHAIN))?\s*;?\s*['\"]"
                             r"|;\s*(?:COMMIT|ROLLBACK)\b|\.commit\(\)", re.IGNORECASE)


# env.py that connects in autocommit mode: each statement commits by itself
_ENV_AUTOCOMMIT_RE = re.compile(r"autocommit", re.IGNORECASE)

_RUNNING_RE = re.compile(r'Running (upgrade|downgrade) (.*?) -> ([^\s,]*)')


class AlembicAdapter(Adapter):
    tool = 'alembic'

    # -------------------------------------------------------------- helpers
    @property
    def service_path(self):
        return os.path.abspath(self.spec['path'])

    @property
    def config_name(self):
        return self.spec.get('alembic_config') or 'alembic.ini'

    def version_table(self):
        table = self.spec.get('version_table') or 'alembic_version'
        schema = self.spec.get('version_table_schema')
        return (quote_ident(schema) + '.' if schema else '') + quote_ident(table)

    def _scrub(self, text):
        return self.dburl.scrub(text) if self.dburl is not None else text

    def tracking_tables(self):
        return [(self.spec.get('version_table_schema') or 'public',
                 self.spec.get('version_table') or 'alembic_version')]

    def may_commit_itself(self, plan):
        """Planned revisions that use ``autocommit_block()`` or send transaction control (COMMIT, ROLLBACK...).

        alembic commits the open transaction when an ``autocommit_block()`` starts (with it what earlier
        revisions of the run did) and runs the block outside any transaction: a later failure rolls back only
        what came after it. Read from the revision files' text (never executed).
        """
        state = plan.extra.get('state') if plan is not None else None
        graph = state.extra.get('graph') if state is not None else None
        files = getattr(graph, 'files', None) or {}
        if plan is not None and plan.steps and self._env_may_autocommit(state):
            # env.py runs the migrations on an autocommit connection (isolation_level="AUTOCOMMIT"...), or
            # commits itself: every statement of a failed revision may have stayed
            return list(plan.steps)
        out = []
        for rev in plan.steps if plan is not None else []:
            path = files.get(rev)
            if not path:
                continue
            try:
                # read again after the run: it may have become a FIFO or a link to /dev/zero meanwhile
                text = read_regular(path, MIGRATION_LIMIT).decode('utf-8', 'replace')
            except (IOError, OSError):
                out.append(rev)  # cannot tell: assume it may
                continue
            if _SELF_COMMIT_RE.search(text):
                out.append(rev)
        return out

    @staticmethod
    def _env_may_autocommit(state):
        """Whether the service's env.py may run statements outside alembic's transaction: an AUTOCOMMIT
        isolation level, a DBAPI ``autocommit`` switch, a commit of its own (True when it cannot be read)."""
        config = state.extra.get('config') if state is not None else None
        location = getattr(config, 'script_location', None)
        if not location:
            return False
        try:
            text = read_file(os.path.join(location, 'env.py')).decode('utf-8', 'replace')
        except Exception:
            return True
        return bool(_ENV_AUTOCOMMIT_RE.search(text) or _SELF_COMMIT_RE.search(text))

    def read_rows(self, conn):
        """Version table rows in table order; None when the table does not exist."""
        table = self.version_table()
        try:
            with conn.cursor() as cur:
                cur.execute('SELECT pg_catalog.to_regclass(%s)', (table,))
                if cur.fetchone()[0] is None:
                    return None
                cur.execute('SELECT version_num FROM ' + table)
                return [row[0] for row in cur.fetchall()]
        except Exception as exc:
            text = ' '.join(self._scrub(str(exc)).split()) or type(exc).__name__
            lost = (type(exc).__name__ in ('OperationalError', 'InterfaceError')
                    and getattr(exc, 'pgcode', None) is None)
            if lost or getattr(conn, 'closed', 0):
                raise AdapterError('cannot read the alembic version table %s: %s (check that the database is up)'
                                   % (table, text), code='unreachable')
            raise AdapterError('cannot read the alembic version table %s: %s (check version_table / '
                               'version_table_schema and that the user may read it)' % (table, text))

    def other_version_tables(self, conn, known):
        """Other tables shaped like alembic's version table whose rows are all revision ids in ``known``
        (and not none), i.e. where this service's env.py may keep its version table: a list of
        (quoted name, in the session's default schema, rows, schema, table).

        One catalog query (plus a small read of each candidate); a hint only, so errors give [].
        """
        found = []
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT n.nspname, c.relname, n.nspname = pg_catalog.current_schema() "
                    "FROM pg_catalog.pg_attribute a "
                    "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
                    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE a.attname = 'version_num' AND a.attnum > 0 AND NOT a.attisdropped "
                    "AND c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' "
                    "AND c.oid IS DISTINCT FROM pg_catalog.to_regclass(%s) "
                    "AND pg_catalog.has_schema_privilege(n.oid, 'USAGE') "
                    "AND pg_catalog.has_table_privilege(c.oid, 'SELECT') "
                    "ORDER BY 3 DESC, 1, 2 LIMIT 20", (self.version_table(),))
                candidates = cur.fetchall()
                for schema, table, in_default in candidates:
                    name = quote_ident(schema) + '.' + quote_ident(table)
                    cur.execute('SELECT version_num::text FROM ' + name + ' LIMIT 100')
                    rows = [row[0] for row in cur.fetchall()]
                    if rows and all(r in known for r in rows):
                        found.append((name, in_default, rows, schema, table))
        except Exception:
            if not getattr(conn, 'closed', 1) and not getattr(conn, 'autocommit', True):
                try:
                    conn.rollback()
                except Exception:
                    pass
            return []
        return found

    def _settings_hint(self, other):
        """'version_table: x (and ...)' for a table found by other_version_tables."""
        name, in_default, rows, schema, table = other
        if in_default:
            return 'version_table: %s and no version_table_schema' % table
        return 'version_table: %s and version_table_schema: %s' % (table, schema)

    def load_graph(self):
        """(AlembicConfig, RevisionGraph); AdapterError for an unusable config."""
        lazy.require_alembic()
        config = AlembicConfig(self.spec['path'], self.config_name)
        return config, RevisionGraph(config)

    # ------------------------------------------------------------ read side
    def read_state(self, conn):
        lazy.require_alembic()
        problems = []
        try:
            config, graph = self.load_graph()
        except AdapterError as exc:
            config = graph = None
            problems.append(problem('bad_config', self._scrub(str(exc))))
        rows = self.read_rows(conn)
        table_exists = rows is not None
        rows = rows or []
        extra = {'config': config, 'graph': graph, 'rows': list(rows), 'version_table': self.version_table(),
                 'version_table_exists': table_exists}
        # a configured path (alembic_command, .venv) that cannot run is a fact of the host, shown by status;
        # a name looked up on PATH depends on the caller's environment: plan() checks it when something runs
        why = self.command_problem(path_lookups=False)
        if why is not None:
            extra['command_problem'] = problem('bad_config', self._scrub(why))
            problems.append(extra['command_problem'])
        if graph is not None and not graph.ok:
            for text in graph.problems:
                problems.append(problem('bad_config', self._scrub(text)))
        if graph is None or not graph.ok:
            return ServiceState(self.tool, current=rows, problems=problems, extra=extra)
        if not rows:
            # nothing applied as far as the configured table tells: is env.py keeping its table elsewhere?
            others = self.other_version_tables(conn, graph.files)
            if others:
                problems.append(problem('bad_config', self._scrub(
                    'the version table %s %s, but %s; %s most likely where the service\'s env.py keeps its version '
                    'table, and `alembic upgrade` would move that one while this collection reads %s as nothing '
                    'applied. Set %s in the service spec (the version_table / version_table_schema that env.py '
                    'passes to context.configure()), or make env.py use %s'
                    % (self.version_table(), 'is empty' if table_exists else 'does not exist',
                       ', '.join('%s holds %s' % (o[0], ', '.join(o[2])) for o in others),
                       'that is' if len(others) == 1 else 'one of them is', self.version_table(),
                       self._settings_hint(others[0]), self.version_table()))))

        for text in graph.warnings():
            problems.append(problem('bad_config', self._scrub(text), severity='warning'))
        history = graph.history()
        position = dict((rid, i) for i, rid in enumerate(history))
        heads = graph.heads()
        target = self.target()
        if len(heads) > 1 and target == 'head':
            # as alembic: `upgrade head` refuses several heads; `heads`, a label or one revision are fine
            problems.append(problem('multiple_heads', 'the revision files have %d heads (%s) and the target is head, '
                                    'which `alembic upgrade head` refuses; set the service target to heads to apply '
                                    'all of them (expand/contract branches), name one branch (label@head), or join '
                                    'them with `alembic merge heads`' % (len(heads), ', '.join(heads))))
        unreadable = graph.unreadable_target(target)
        if unreadable:
            extra['target_problem'] = problem('bad_config', self._scrub(unreadable))
            problems.append(extra['target_problem'])
        elif target not in ('head', 'heads', 'base') and not is_relative(target):
            try:  # the service's own target must name something, and one head per branch it names
                graph.resolve(target)
            except lazy.MultipleHeads as exc:
                extra['target_problem'] = problem('multiple_heads', self._scrub(
                    'the service target %r names several heads: %s; alembic refuses it. Name one of them (or '
                    '<label>@head of a branch with one head), or use target heads'
                    % (target, ' '.join(str(exc).split()))))
            except lazy.RevisionError as exc:
                extra['target_problem'] = problem('bad_config', self._scrub(
                    'the service target %r is no revision, branch label or head of these revision files: %s; set '
                    'target to heads, head, a revision id or a branch label' % (target, ' '.join(str(exc).split()))))
            if extra.get('target_problem'):
                problems.append(extra['target_problem'])
        current = sorted(rows, key=lambda r: (position.get(r, len(history)), r))
        unknown = [r for r in rows if r not in position]
        applied = []
        pending = []
        if unknown:
            problems.append(problem('unknown_revision', 'the version table %s holds %s, which no revision file under '
                                    '%s defines; deploy the code that matches the database (or `alembic stamp` it '
                                    'if the revision was removed on purpose)'
                                    % (self.version_table(), ', '.join(repr(u) for u in unknown),
                                       ', '.join(config.version_locations))))
        else:
            try:
                applied_set = graph.applied_set(rows)
                applied = [r for r in history if r in applied_set]
                pending = graph.upgrade_steps('heads', rows)
                if target not in ('head', 'heads', 'base') and not extra.get('target_problem') \
                        and not is_relative(target):
                    try:  # a target naming one branch (label, label@head, a revision): what a run would apply
                        pending = graph.upgrade_steps(target, rows)
                    except lazy.RevisionError:
                        pass  # not an upgrade target (below the current revision, unknown): plan() says so
                for text in graph.syntax_problems(pending, 'upgrade'):
                    problems.append(problem('bad_config', self._scrub(text)))
            except lazy.RevisionError as exc:
                problems.append(problem('unknown_revision', 'the version table %s (%s) does not fit the revision '
                                        'files: %s' % (self.version_table(), ', '.join(rows), exc)))
                applied, pending = [], []
        extra['history_position'] = position
        return ServiceState(self.tool, current=current, heads=heads, applied=applied, pending=pending,
                            problems=problems, history=history, extra=extra)

    def target(self):
        """The service's own target (spec ``target``), where a normal run takes it."""
        return str(self.spec.get('target') or 'head').strip() or 'head'

    # ---------------------------------------------------------------- plan
    def plan(self, state, target, options=None):
        lazy.require_alembic()
        options = options or {}
        target = (target if target is not None else 'head')
        target = str(target).strip()
        if not target:
            raise PlanError('target is empty; use head, heads, base, a revision id or -N')
        graph = state.extra.get('graph')
        unreadable = graph.unreadable_target(target) if graph is not None and graph.ok else None
        if unreadable:
            raise PlanError('cannot plan service %r: %s' % (self.name, self._scrub(unreadable)), code='bad_config')
        blocking = [p for p in state.problems if p['code'] in ('bad_config', 'unknown_revision')
                    and p != state.extra.get('command_problem')  # checked below, when alembic has to run
                    and p != state.extra.get('target_problem')  # about the spec's target: checked above
                    and not is_warning(p)]
        if blocking:
            raise PlanError('cannot plan service %r: %s' % (self.name, blocking[0]['message']),
                            code=blocking[0]['code'])
        graph = state.extra.get('graph')
        rows = list(state.extra.get('rows') or [])
        applied_before = set(state.applied)
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
        elif target == 'base':
            direction = 'down'
        elif target in ('head', 'heads'):
            direction = 'up'
            if target == 'head' and len(state.heads) > 1:
                raise PlanError('target head is ambiguous: the revision files have %d heads (%s); use target heads to '
                                'apply all of them, name one head, or merge them with `alembic merge heads`'
                                % (len(state.heads), ', '.join(state.heads)), code='multiple_heads')
        else:
            try:
                wanted = graph.resolve(target)
            except lazy.RevisionError as exc:
                raise PlanError('target %r: %s (known heads: %s)' % (target, exc, ', '.join(state.heads) or 'none'))
            if not all(r in applied_before for r in wanted):
                direction = 'up'
            elif wanted and set(wanted) <= graph.all_current(rows):
                direction = None  # already there
            else:
                direction = 'down'
        try:
            if direction == 'up':
                steps = graph.upgrade_steps(target, rows)
            elif direction == 'down':
                steps = graph.downgrade_steps(target, rows)
            else:
                steps = []
        except lazy.RevisionError as exc:
            raise PlanError('target %r cannot be reached from %s: %s'
                            % (target, state.current_revision or 'base', exc))
        except Exception as exc:  # alembic's own walk fails (an AssertionError for <label>@-N off that branch)
            raise PlanError('target %r cannot be planned from %s: alembic itself fails on it (%s%s), as `alembic %s '
                            '%s` would; give a revision id, or <label>@-N only for a branch the database is on'
                            % (target, state.current_revision or 'base', type(exc).__name__,
                               ': %s' % exc if str(exc) else '', 'upgrade' if direction == 'up' else 'downgrade',
                               target))
        verb = 'upgrade' if direction == 'up' else 'downgrade'
        broken = graph.syntax_problems(steps, verb)
        if broken:
            raise PlanError('cannot %s service %r: %s' % (verb, self.name, '; '.join(broken)))
        why = self.command_problem() if steps else None
        if why is not None:
            raise PlanError('cannot %s service %r: %s' % (verb, self.name, self._scrub(why)))
        notes = []
        position = state.extra.get('history_position') or {}
        try:
            after_rows = graph.rows_after(rows, steps, direction == 'up')
            expected_rows = sorted(after_rows, key=lambda r: (position.get(r, len(position)), r))
        except (AttributeError, TypeError, NameError) as exc:  # an alembic on this host without those internals
            expected_rows = None
            notes.append('the version table after the run cannot be predicted with this alembic version (%s: %s); '
                         'it is read back afterwards' % (type(exc).__name__, exc))
        except Exception as exc:  # alembic's own version table bookkeeping would fail the same way
            if direction == 'up' and any(len(graph.redundant_parents(r)[1]) > 1 and graph.redundant_parents(r)[0]
                                         for r in steps):
                # a merge listing an ancestor of another parent: the pre-flight finding merge_lists_ancestor says
                # so and refuses the run unless the user allows it; then alembic runs and fails as predicted
                expected_rows = None
                notes.append('alembic will fail to update the version table at a merge that lists an ancestor of '
                             'another of its parents (%s: %s)' % (type(exc).__name__, exc))
            else:
                raise PlanError('alembic would fail to update the version table %s going to %r from %s: %s %s'
                                % (self.version_table(), target, state.current_revision or 'base',
                                   type(exc).__name__, exc))
        if steps and options.get('transaction') == 'each':
            notes.append("alembic runs migrations in the transactions the service's env.py sets up "
                         '(transaction_per_migration); transaction=each does not change that')
        if direction == 'up' and len(state.heads) > 1 and target == 'heads':
            notes.append('the revision files have several heads (%s); all of them are applied' % ', '.join(state.heads))
        if not steps:
            direction = None
        to_revision = (','.join(expected_rows) or None) if expected_rows is not None else None
        return Plan(direction, steps, state.current_revision, to_revision, target,
                    notes=notes, extra={'command': 'upgrade' if direction != 'down' else 'downgrade',
                                        'cli_target': target, 'rows_before': rows,
                                        'applied_before': sorted(applied_before),
                                        'expected_rows': expected_rows, 'state': state})

    # ------------------------------------------------------------ pre-flight
    @staticmethod
    def _env_names_transaction_per_migration(state):
        """Whether the service's env.py mentions transaction_per_migration (None when it cannot be read)."""
        config = state.extra.get('config')
        location = getattr(config, 'script_location', None)
        if not location:
            return None
        try:
            text = read_file(os.path.join(location, 'env.py'))
        except Exception:
            return None
        return b'transaction_per_migration' in text

    def version_num_length(self, conn):
        """The declared length of version_num in the existing version table, or None (unbounded / no table)."""
        with conn.cursor() as cur:
            cur.execute("SELECT a.atttypmod, pg_catalog.format_type(a.atttypid, NULL) FROM pg_catalog.pg_attribute a "
                        "WHERE a.attrelid = pg_catalog.to_regclass(%s) AND a.attname = 'version_num' "
                        "AND NOT a.attisdropped", (self.version_table(),))
            row = cur.fetchone()
        if row is None or row[0] is None or row[0] < 0:
            return None
        if row[1] in ('character varying', 'character'):
            return row[0] - 4
        return None

    def preflight(self, conn, state, steps, options=None, lint=False, direction='up'):
        """Findings for upgrading through ``steps``: revision ids longer than version_num, merges listing an
        ancestor of another parent, and statements of upgrade() (op.execute SQL, op.create_index /
        op.drop_index with postgresql_concurrently=True) PostgreSQL refuses in the revision's transaction
        (outside `with op.get_context().autocommit_block():`). Never runs env.py or a revision file, so
        there is no SQL to lint: the ``lint`` result says so. ``direction`` 'down' checks the statements of
        downgrade() only."""
        graph = state.extra.get('graph')
        lint_info = {'linter': preflight_mod.SQUAWK, 'ran': False,
                     'reason': "alembic SQL is only known by running the service's env.py (alembic upgrade --sql), "
                               'which happens only with alembic_sql_preview: true on the service, so squawk does '
                               'not lint its revisions'}
        if graph is None or not graph.ok or not steps:
            return {'findings': [], 'lint': lint_info}
        findings = []
        table = self.version_table()
        length = preflight_mod.ALEMBIC_VERSION_NUM_DEFAULT
        if state.extra.get('version_table_exists') and conn is not None:
            try:
                length = self.version_num_length(conn)
            except Exception:
                length = preflight_mod.ALEMBIC_VERSION_NUM_DEFAULT
        if direction == 'up':
            findings.extend(preflight_mod.revision_id_findings(steps, length, table, graph.files))
        for rev in (steps if direction == 'up' else []):
            redundant, real = graph.redundant_parents(rev)
            if redundant and len(real) > 1:
                findings.append(preflight_mod.finding(
                    rev, None, 'merge_lists_ancestor', preflight_mod.ERROR,
                    'merge revision %s lists %s in down_revision, but %s already an ancestor of %s, which it lists '
                    'too; `alembic upgrade` fails at this merge (KeyError while it updates the version table). '
                    'Remove %s from down_revision in %s, so it reads %r'
                    % (rev, ', '.join(redundant), 'that is' if len(redundant) == 1 else 'those are',
                       ', '.join(real), ', '.join(redundant), graph.files.get(rev), tuple(real))))
        try:
            version = conn.server_version if conn is not None else None
        except Exception:
            version = None
        # alembic runs every revision of one command in one transaction unless env.py asks for one per revision
        # (transaction_per_migration): only when env.py never names that option is one transaction certain
        one_transaction = self._env_names_transaction_per_migration(state) is False
        transactions = []
        for rev in steps:
            path = graph.files.get(rev)
            try:
                calls = preflight_mod.alembic_upgrade_calls(read_file(path),
                                                            'upgrade' if direction == 'up' else 'downgrade')
            except Exception:
                continue  # the plan reports a file it cannot read or parse
            txs = preflight_mod.alembic_transactions(rev, calls)
            if one_transaction and transactions and txs and calls and not calls[0][1]:
                transactions[-1].extend(txs[0])  # continues the transaction the previous revision left open
                txs = txs[1:]
            if one_transaction and calls and calls[-1][1]:
                txs.append([])  # an autocommit block at the end: the next revision starts a new transaction
            transactions.extend(txs if one_transaction else [tx for tx in txs if tx])
        findings.extend(preflight_mod.transaction_findings([tx for tx in transactions if tx], version,
                                                           _alembic_advice, preflight_mod.enum_catalog(conn)))
        if lint and direction == 'up' and self.spec.get('alembic_sql_preview'):
            lint_findings, lint_info = self._lint(conn, state, steps, options or {})
            findings.extend(lint_findings)
        for item in findings:
            item['message'] = self._scrub(item['message'])
            if item['statement']:
                item['statement'] = self._scrub(item['statement'])
        return {'findings': findings, 'lint': lint_info}

    def _lint(self, conn, state, steps, options):
        """squawk over `alembic upgrade <from>:<target> --sql` (the service opted in to running env.py for it),
        each revision's part of the output linted as that revision."""
        skipped = {'linter': preflight_mod.SQUAWK, 'ran': False}
        if preflight_mod.squawk_path() is None:
            return [], dict(skipped, reason='squawk is not installed on the managed host (pip install squawk-cli '
                                            'there to lint pending SQL for lock and rewrite risks)')
        rows = list(state.extra.get('rows') or [])
        if len(rows) > 1:
            return [], dict(skipped, reason='the database is at several heads, which `alembic upgrade --sql` '
                                            'cannot start from')
        target = options.get('target') or self.spec.get('target') or 'heads'
        argv = self.argv('upgrade', '%s:%s' % (rows[0] if rows else 'base', target), sql=True)
        try:
            rc, out, err, timed_out = self._run(argv, {}, PREVIEW_TIMEOUT)
        except ApplyError as exc:
            rc, out, err, timed_out = None, '', str(exc), False
        if rc != 0 or timed_out:
            why = 'timed out after %ss' % PREVIEW_TIMEOUT if timed_out else (output_tail(self._scrub(err), 3)
                                                                             or 'exit %s' % rc)
            return [], dict(skipped, reason='`alembic upgrade --sql` failed: %s' % ' '.join(why.split()))
        parts = []
        for piece in re.split(r'^-- Running upgrade [^\n]*?-> ', out, flags=re.M)[1:]:
            head, dummy, body = piece.partition('\n')
            rev = head.split(',')[0].strip()
            parts.append((rev, body))
        wanted = [(rev, body) for rev, body in parts if rev in steps]
        return preflight_mod.squawk_findings(wanted, conn, options=options)

    # ------------------------------------------------------------ write side
    def command(self):
        command = self.spec.get('alembic_command')
        if command:
            return list(command)
        local = os.path.join(self.service_path, '.venv', 'bin', 'alembic')
        if os.path.isfile(local) and os.access(local, os.X_OK):
            return [local]
        return ['alembic']

    def command_problem(self, path_lookups=True):
        """Why the alembic command cannot be run here (a message that says what to do), or None.

        The same resolution as the run itself: PATH from this process's environment, which the
        child inherits, and relative paths from the service path (its working directory).
        """
        argv = self.command()
        why = command_problem(argv, self.service_path, dict(os.environ), path_lookups=path_lookups)
        if why is None:
            return None
        venv = os.path.join(self.service_path, '.venv')
        if self.spec.get('alembic_command'):
            lead = 'alembic_command %s cannot be run: %s' % (self._display(argv), why)
            fix = ("set alembic_command to the service's own alembic (e.g. ['%s/bin/alembic']), or leave it out to "
                   'use %s/bin/alembic (or, without it, alembic from PATH)' % (venv, venv))
        elif argv[0] == 'alembic':
            lead = 'alembic_command is not set, %s/bin/alembic does not exist (or is not executable) and %s' % (
                venv, why)
            fix = ("set alembic_command to the service's alembic, or create the service's virtualenv %s with alembic "
                   'installed in it' % venv)
        else:
            lead = 'alembic_command is not set, so %s would run, but %s' % (argv[0], why)
            fix = ("recreate the virtualenv %s (with alembic in it), or set alembic_command to the service's alembic"
                   % venv)
        return '%s; %s' % (lead, fix)

    def child_env(self, options=None):
        options = options or {}
        env = dict(os.environ)
        env.pop('ALEMBIC_CONFIG', None)  # we pass -c; the read side assumes the default pyproject.toml too
        # the URL as the service has it: its env.py knows which driver/scheme it needs
        env['DATABASE_URL'] = self.dburl.sqlalchemy_url()
        # its sessions are recognisable (who blocks them, lock holders); a URL's own application_name wins
        env['PGAPPNAME'] = child_application_name(self.name)
        pgopts = []
        for name in ('lock_timeout', 'statement_timeout'):
            value = pg_setting(name, options.get(name))
            if value is not None:
                pgopts.append('-c %s=%s' % (name, value))
        if pgopts:
            env['PGOPTIONS'] = ' '.join(([env['PGOPTIONS']] if env.get('PGOPTIONS') else []) + pgopts)
        return env

    def argv(self, command, target, sql=False):
        argv = self.command() + ['-c', self.config_name, command, target]
        if sql:
            argv.append('--sql')
        return argv

    def _display(self, argv):
        return ' '.join(shlex.quote(a) for a in argv)

    def _run(self, argv, options, timeout):
        env = self.child_env(options)
        try:
            return run_child(argv, self.service_path, env, timeout=timeout)
        except OSError as exc:
            raise ApplyError('cannot run %s in %s: %s; install alembic in the service (.venv/bin/alembic) or set '
                             'alembic_command' % (argv[0], self.service_path, exc.strerror or exc), code='bad_config')

    def preview_sql(self, plan):
        if not plan.steps:
            plan.sql = ''
            return plan.sql
        rows = plan.extra.get('rows_before') or []
        command = plan.extra.get('command', 'upgrade')
        state = plan.extra.get('state')
        graph = state.extra.get('graph') if state is not None and getattr(state, 'extra', None) else None
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
        start = rows[0] if rows else 'base'
        argv = self.argv(command, '%s:%s' % (start, plan.extra.get('cli_target', plan.target)), sql=True)
        try:
            rc, out, err, timed_out = self._run(argv, {}, PREVIEW_TIMEOUT)
        except ApplyError as exc:
            rc, out, err, timed_out = None, '', str(exc), False
        if rc == 0 and not timed_out:
            plan.sql = self._scrub(out)
        else:
            reason = ('timed out after %ss' % PREVIEW_TIMEOUT if timed_out
                      else (output_tail(self._scrub(err), 3) or 'exit %s' % rc))
            plan.sql = header + '-- (no offline SQL: `alembic %s --sql` failed: %s)\n' % (
                command, ' '.join(reason.split()))
        return plan.sql

    def apply(self, conn, plan, options=None):
        options = options or {}
        state = plan.extra.get('state')
        if not plan.steps:
            return ApplyResult(from_revision=plan.from_revision, to_revision=plan.from_revision)
        graph = state.extra['graph']
        argv = self.argv(plan.extra['command'], plan.extra['cli_target'])
        shown = self._display(argv)
        rc, out, err, timed_out = self._run(argv, options, options.get('timeout'))
        try:
            rows_after = self.read_rows(conn) or []
        except AdapterError as exc:
            raise ApplyError('%s exited %s, and then the version table could not be read: %s; check the database '
                             'before retrying' % (shown, rc, exc), code='unreachable',
                             details={'returncode': rc, 'stderr': output_tail(self._scrub(err))})
        before = set(plan.extra.get('applied_before') or [])
        known = [r for r in rows_after if r in graph.files]
        after = graph.applied_set(known) if known else set()
        order_up = list(plan.steps) + [r for r in state.history if r not in plan.steps]
        applied = [r for r in order_up if r in after and r not in before]
        order_down = list(plan.steps) + [r for r in reversed(state.history) if r not in plan.steps]
        reverted = [r for r in order_down if r in before and r not in after]
        position = state.extra.get('history_position') or {}
        to_rows = sorted(rows_after, key=lambda r: (position.get(r, len(position)), r))
        to_revision = ','.join(to_rows) or None
        details = {'applied': applied, 'reverted': reverted, 'from_revision': plan.from_revision,
                   'to_revision': to_revision, 'returncode': rc, 'command': shown}
        if timed_out or rc != 0:
            # the revision alembic was running when it failed: the last "Running upgrade a -> b" it logged
            steps_run = _RUNNING_RE.findall(err or '') + _RUNNING_RE.findall(out or '')
            if steps_run:
                verb, down, up = steps_run[-1]
                details['failed'] = up if verb == 'upgrade' else down.split(',')[0].strip()
            elif plan.steps:
                details['failed'] = plan.steps[0]
            why = ('was killed after %ss (timeout)' % options.get('timeout') if timed_out else 'failed (exit %s)' % rc)
            tail = output_tail(self._scrub(err)) or output_tail(self._scrub(out))
            details['stderr'] = tail
            partial = ''
            if applied or reverted:
                partial = '; it got as far as %s (applied %s%s)' % (
                    to_revision or 'base', ', '.join(applied) or 'nothing',
                    ', reverted ' + ', '.join(reverted) if reverted else '')
            else:
                partial = '; its version table is unchanged at %s' % (to_revision or 'base')
            # the driver's exception class for SQLSTATE 55P03 in alembic's traceback: a statement ran into
            # lock_timeout; the caller may retry when the database shows nothing stayed
            code = 'lock_timeout' if (not timed_out and LOCK_NOT_AVAILABLE_CLASS in (err or '')) else 'apply_failed'
            raise ApplyError('%s %s%s. alembic said:\n%s' % (shown, why, partial, tail), code=code,
                             details=details)
        expected = plan.extra.get('expected_rows')
        if expected is not None and set(rows_after) != set(expected):
            details['stderr'] = output_tail(self._scrub(err))
            head = ('%s succeeded but the version table %s now holds %s, not %s as planned'
                    % (shown, self.version_table(), to_revision or 'nothing', ','.join(expected) or 'nothing'))
            others = self.other_version_tables(conn, graph.files)
            moved = [o for o in others if set(o[2]) == set(expected)]
            if moved:
                why = ("; alembic moved %s instead (it now holds %s): the service's env.py keeps its version table "
                       'there, not in %s. Set %s in the service spec (what env.py passes to context.configure()), '
                       'or make env.py use %s' % (moved[0][0], ', '.join(moved[0][2]), self.version_table(),
                                                  self._settings_hint(moved[0]), self.version_table()))
            else:
                why = ("; check that the service's env.py migrates the database in DATABASE_URL and keeps its "
                       'version table in %s (version_table / version_table_schema in the service spec must name the '
                       'table env.py passes to context.configure())%s'
                       % (self.version_table(), ''.join('; %s holds %s' % (o[0], ', '.join(o[2])) for o in others)))
            raise ApplyError(head + why, code='apply_failed', details=details)
        return ApplyResult(applied=applied, reverted=reverted, from_revision=plan.from_revision,
                           to_revision=to_revision, queries=[shown])
