# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drizzle adapter: status, plans and applies for drizzle-kit migration folders.

It reads and writes exactly what drizzle-orm 0.29.5-0.45.x (``readMigrationFiles`` in
``drizzle-orm/migrator``, ``migrate()`` in ``pg-core/dialect``) reads and writes. The parts:

* journal.py: ``meta/_journal.json`` and the migration files (hash, statement-breakpoint splitting);
* history.py: the History, tracking rows matched against the journal (applied, pending, out-of-order,
  modified, unknown rows), used by both read_state and plan;
* sql.py: the tracking table's statements and the transaction-state checks;
* migrate.py: running a plan (and its preview) as drizzle-orm's ``migrate()`` runs migrations;
* findings.py: the pre-flight findings.

Targets: ``head`` / ``heads`` (the last journal entry), ``base``, ``-N`` (revert the newest N applied), a
tag or an unambiguous tag prefix. Down migrations are ``<tag>.down.sql`` beside ``<tag>.sql``.

Error codes on PlanError: bad_config, missing_file, out_of_order, modified, unknown_migration,
unknown_revision; on ApplyError: apply_failed, lock_timeout, transaction_ended.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import (
    Adapter,
    AdapterError,
    ApplyResult,
    Plan,
    PlanError,
    ServiceState,
    problem,
)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle import findings as findings_mod
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle import migrate
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle.detail import (
    DrizzlePlanDetail,
    DrizzleStateDetail,
)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle.history import (
    MAX_LISTED,
    History,
)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle.journal import (
    JOURNAL_NAME,
    load_journal,
    read_down,
    read_up,
)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle.sql import (
    TrackingTable,
    is_database_error,
    pg_error,
)
from ansible_collections.homelab.migrations.plugins.module_utils.connection import is_connection_lost
from ansible_collections.homelab.migrations.plugins.module_utils.durations import split as split_duration

TRANSACTION_MODES = ('all', 'each')


def parse_duration(value, name):
    """lock_timeout / statement_timeout: None, an int (ms) or a PostgreSQL duration like '5s'.

    Returns the value for ``SET LOCAL`` as a string, or None when unset.
    """
    if value is None or value == '':
        return None
    if isinstance(value, bool):
        raise PlanError('%s must be a duration like 5s, 500ms or 2min, or an integer of milliseconds; got %r'
                        % (name, value), code='bad_config')
    if isinstance(value, int):
        if value < 0:
            raise PlanError('%s must not be negative, got %r' % (name, value), code='bad_config')
        return '%dms' % value
    parts = split_duration(str(value))
    if not parts:
        raise PlanError('%s must be a duration like 5s, 500ms or 2min, or an integer of milliseconds; got %r'
                        % (name, value), code='bad_config')
    return parts[0] + (parts[1] or 'ms')


class DrizzleAdapter(Adapter):
    """The drizzle adapter of one service spec (migrations_dir, migrations_table, migrations_schema)."""

    tool = 'drizzle'

    def __init__(self, spec, dburl):
        super(DrizzleAdapter, self).__init__(spec, dburl)
        self.folder = os.path.join(spec['path'], spec.get('migrations_dir') or 'migrations')
        self.table = spec.get('migrations_table') or '__drizzle_migrations'
        self.schema = spec.get('migrations_schema') or 'drizzle'
        self.tracking = TrackingTable(self.schema, self.table)
        self.qualified = self.tracking.qualified

    def tracking_tables(self):
        """[(schema, table)] of the tracking table (left out of the schema fingerprint)."""
        return [(self.schema, self.table)]

    # ------------------------------------------------------------------------------- helpers
    def _scrub(self, text):
        return self.dburl.scrub(text) if self.dburl is not None else text

    @property
    def journal_path(self):
        """The path of ``<migrations_dir>/meta/_journal.json``."""
        return os.path.join(self.folder, JOURNAL_NAME)

    def _read_rows(self, conn):
        """(schema_exists, table_exists, rows as [(id, hash, created_at)] by id). Read only.

        Raises AdapterError ``unreachable`` (connection lost) or ``bad_config`` (the table cannot be read).
        """
        try:
            with conn.cursor() as cur:
                return self.tracking.read(cur)
        except Exception as exc:
            if not is_database_error(exc):
                raise
            if is_connection_lost(exc, conn):
                raise AdapterError('service %r: lost the connection to %s while reading %s: %s'
                                   % (self.name, self.dburl.masked if self.dburl else 'the database',
                                      self.qualified, self._scrub(pg_error(exc))), code='unreachable')
            reason = self._scrub(pg_error(exc))
            raise AdapterError(
                'service %r: cannot read the drizzle tracking table %s: %s. Check migrations_schema/'
                'migrations_table and that the user in database_url may read it; it must have the columns '
                'id, hash and created_at as drizzle-orm creates them' % (self.name, self.qualified, reason),
                code='bad_config')

    # ------------------------------------------------------------------------------ read side
    def read_state(self, conn):
        """The service's state: the journal (journal.load_journal), the tracking rows and their History.

        ``detail`` is a DrizzleStateDetail: folder, journal, schema, table, schema_exists, table_exists, rows,
        entries, valid (the journal is usable) and history (a History, None when the journal is not usable).
        Raises AdapterError ``unreachable`` / ``bad_config`` when the tracking table cannot be read.
        Under reread_state the journal entries of the earlier state are reused (their files' text and hashes too).
        """
        known = self.reusable_detail(DrizzleStateDetail)
        entries, errors = (known.entries, []) if known is not None and known.valid else load_journal(self.folder)
        schema_exists, table_exists, rows = self._read_rows(conn)
        detail = DrizzleStateDetail(folder=self.folder, journal=self.journal_path, schema=self.schema,
                                    table=self.table, schema_exists=schema_exists, table_exists=table_exists,
                                    rows=rows, entries=entries, history=None, valid=not errors)
        if errors:
            msg = '; '.join(errors[:MAX_LISTED])
            if len(errors) > MAX_LISTED:
                msg += '; and %d more problem(s) in the journal' % (len(errors) - MAX_LISTED)
            if detail.journal not in msg:
                msg = '%s (journal %s)' % (msg, self.journal_path)
            return ServiceState(self.tool, problems=[problem('bad_config', msg)], detail=detail)
        history = detail.history = History(entries, rows, self.journal_path, self.qualified)
        applied = history.applied
        return ServiceState(
            self.tool,
            current=[applied[-1].tag] if applied else [],
            heads=[entries[-1].tag] if entries else [],
            applied=[e.tag for e in applied],
            pending=[e.tag for e in history.pending],
            problems=history.problems(),
            history=[e.tag for e in entries],
            detail=detail,
        )

    # ------------------------------------------------------------------------------ planning
    def _resolve(self, history, target):
        """The journal index to migrate to (-1: base), or ('revert', [entries to revert]) for ``-N``."""
        entries = history.entries
        applied = history.applied
        text = 'head' if target is None else str(target).strip()
        if text in ('head', 'heads'):
            return len(entries) - 1
        if text == 'base':
            return -1
        if re.match(r'^-\d+$', text):
            steps = int(text[1:])
            if steps <= 0:
                raise PlanError('target %s: give a number of migrations to revert, like -1' % text,
                                code='unknown_revision')
            if steps > len(applied):
                raise PlanError('target %s: only %d migration(s) of service %r are applied; use base to revert '
                                'them all' % (text, len(applied), self.name), code='unknown_revision')
            return ('revert', applied[-steps:])
        for e in entries:
            if e.tag == text:
                return e.index
        hits = [e for e in entries if e.tag.startswith(text + '_')] or [e for e in entries if e.tag.startswith(text)]
        if len(hits) == 1:
            return hits[0].index
        if len(hits) > 1:
            raise PlanError('target %r matches several migrations (%s); give the full tag'
                            % (text, ', '.join(e.tag for e in hits[:5])), code='unknown_revision')
        known = ', '.join(e.tag for e in entries[-5:]) or 'none'
        raise PlanError('target %r is not a tag in %s; use head, base, -N or a tag (the newest are: %s)'
                        % (text, self.journal_path, known), code='unknown_revision')

    @staticmethod
    def _options(options):
        options = dict(options or {})
        mode = options.get('transaction') or 'all'
        if mode not in TRANSACTION_MODES:
            raise PlanError('transaction must be one of %s, got %r' % (', '.join(TRANSACTION_MODES), mode),
                            code='bad_config')
        return {
            'transaction': mode,
            'lock_timeout': parse_duration(options.get('lock_timeout'), 'lock_timeout'),
            'statement_timeout': parse_duration(options.get('statement_timeout'), 'statement_timeout'),
            'allow_out_of_order': bool(options.get('allow_out_of_order')),
            'allow_modified': bool(options.get('allow_modified')),
        }

    def _history(self, state):
        """The state's History; PlanError when the journal is unusable or a row has no created_at."""
        history = state.detail.history
        if not state.detail.valid or history is None:
            bad = [p['message'] for p in state.problems if p['code'] == 'bad_config'] or ['the journal is unusable']
            raise PlanError('service %r: %s' % (self.name, bad[0]), code='bad_config')
        null_rows = history.null_rows()
        if null_rows:
            raise PlanError('service %r: tracking row id %d in %s has no created_at, so drizzle-orm would run every '
                            'migration again; set created_at to the `when` of its journal entry before migrating'
                            % (self.name, null_rows[0][0], self.qualified), code='unknown_migration')
        return history

    def plan(self, state, target, options=None):
        opts = self._options(options)
        history = self._history(state)
        entries = history.entries
        resolved = self._resolve(history, target)
        if isinstance(resolved, tuple):
            to_apply, to_revert = [], resolved[1]
            goal = [e for e in history.applied if e not in to_revert]
        else:
            to_apply = [e for e in entries[:resolved + 1] if not history.is_applied(e)]
            to_revert = [e for e in history.applied if e.index > resolved]
            goal = list(entries[:resolved + 1])
        if to_apply and to_revert:
            raise PlanError(
                'target %s needs %s reverted and %s applied, which is not one direction. Revert first (target %s), '
                'then migrate to %s' % (target, ', '.join(e.tag for e in to_revert),
                                        ', '.join(e.tag for e in to_apply),
                                        '-%d' % len(to_revert), target), code='out_of_order')
        rerun = [e.tag for e in history.rerun if e in goal]
        if rerun and not to_revert and not opts['allow_out_of_order']:
            raise PlanError(
                'service %r: %s %s applied, yet drizzle-orm would run %s again (the `when` in %s is newer than '
                'every created_at in %s); see the status problems for how to fix it, or set allow_out_of_order=true '
                'to migrate anyway' % (self.name, ', '.join(rerun), 'is' if len(rerun) == 1 else 'are',
                                       'it' if len(rerun) == 1 else 'them', self.journal_path, self.qualified),
                code='out_of_order')
        from_rev = state.current_revision
        notes = []
        if to_apply:
            direction = 'up'
            later = entries[resolved + 1:] if not isinstance(resolved, tuple) else []
            migrations = self._plan_up(history, opts, to_apply, goal, later, notes)
        elif to_revert:
            direction = 'down'
            migrations = self._plan_down(history, to_revert)
        else:
            return Plan(None, [], from_rev, from_rev, target, sql='',
                        detail=DrizzlePlanDetail(migrations=[], options=opts))
        detail = DrizzlePlanDetail(
            migrations=migrations,
            options=opts,
            create_schema=direction == 'up' and not state.detail.schema_exists,
            create_table=direction == 'up' and not state.detail.table_exists,
        )
        plan = Plan(direction, [m['tag'] for m in migrations], from_rev, goal[-1].tag if goal else None, target,
                    notes=notes, detail=detail)
        plan.sql = self.preview_sql(plan)
        return plan

    def _plan_up(self, history, opts, to_apply, goal, later, notes):
        """The steps applying ``to_apply`` (reading their files); ``notes`` gets what to know.

        ``later``: the entries after the target. Raises PlanError out_of_order (drizzle-orm would skip one of
        them and allow_out_of_order is off), modified (allow_modified is off), missing_file, bad_config.
        """
        skipped = history.would_skip(to_apply)
        if skipped and not opts['allow_out_of_order']:
            them = 'it' if len(skipped) == 1 else 'them'
            hints = sorted(set(history.skip_hint(e) for e in skipped) - {None})
            raise PlanError(
                'service %r: %s %s not applied but older than the newest applied migration (created_at %d); '
                'drizzle-orm would skip %s silently. Set allow_out_of_order=true to apply %s (rows get '
                'created_at = their `when`, so drizzle-orm stays consistent), or give %s a newer `when` in %s'
                % (self.name, ', '.join(e.tag for e in skipped), 'is' if len(skipped) == 1 else 'are',
                   history.high_water, them, them, them, self.journal_path)
                + ''.join('; %s' % h for h in hints), code='out_of_order')
        modified = [e.tag for e in history.modified()]
        if modified and not opts['allow_modified']:
            raise PlanError('service %r: applied migration file(s) %s changed after they were applied (their '
                            'sha256 differs from the tracking rows). Restore them from version control, or set '
                            'allow_modified=true to migrate anyway' % (self.name, ', '.join(modified)),
                            code='modified')
        if skipped:
            notes.append('applying out-of-order migrations: %s' % ', '.join(e.tag for e in skipped))
        migrations = [read_up(e, self.journal_path) for e in to_apply]
        high_water = history.high_water
        new_high = max([e.when for e in goal] + ([high_water] if high_water is not None else []))
        hidden = [e.tag for e in history.would_skip(later, new_high) if not history.is_applied(e)]
        if hidden:
            notes.append('after this, drizzle-orm would skip %s (their `when` is not newer than %d)'
                         % (', '.join(hidden), new_high))
        return migrations

    def _plan_down(self, history, to_revert):
        """The steps reverting ``to_revert`` (newest first) from their ``.down.sql`` files.

        Raises PlanError missing_file when one has no down migration, bad_config when one is not UTF-8.
        """
        migrations = []
        missing = []
        for e in reversed(to_revert):
            loaded = read_down(e, history.row_of(e)[0])
            if loaded is None:
                missing.append(e.down_path)
            else:
                migrations.append(loaded)
        if missing:
            pronoun = 'them' if len(missing) > 1 else 'it'
            raise PlanError('cannot revert service %r: no down migration %s. Write %s, or restore the backup '
                            'taken before the migration' % (self.name, ', '.join(missing), pronoun),
                            code='missing_file')
        return migrations

    # ----------------------------------------------------------------------------- pre-flight
    def preflight(self, conn, state, steps, options=None, lint=True, direction='up'):
        """Findings for applying ``steps`` (tags, run order) with ``options['transaction']``: a file starting
        with a byte order mark, statements PostgreSQL refuses inside the transaction drizzle-orm (and this
        collection) runs them in, and with ``lint`` squawk's warnings. ``direction`` 'down' checks the
        ``.down.sql`` files a revert runs (one transaction). Returns {findings, lint} (see findings.py)."""
        opts = self._options(options)
        result = findings_mod.preflight(conn, state.detail.entries, steps, opts, lint, direction)
        for item in result['findings']:
            item['message'] = self._scrub(item['message'])
            if item['statement']:
                item['statement'] = self._scrub(item['statement'])
        return result

    # ----------------------------------------------------------------------------- write side
    def preview_sql(self, plan):
        """The SQL ``apply(plan)`` runs, as text ('' for an empty plan); see migrate.preview."""
        if not plan.steps:
            return ''
        opts = plan.detail.options or self._options(None)
        return migrate.preview(self.name, self.tracking, plan, opts)

    def apply(self, conn, plan, options=None):
        """Run ``plan`` on ``conn``; ``options`` (transaction, lock_timeout, statement_timeout) override the
        plan's. Returns ApplyResult (applied or reverted tags, queries); raises ApplyError (migrate.py)."""
        if not plan.steps:
            return ApplyResult(from_revision=plan.from_revision, to_revision=plan.to_revision)
        opts = dict(plan.detail.options or {})
        if options:
            override = self._options(options)
            for key in ('transaction', 'lock_timeout', 'statement_timeout'):
                if key in options:
                    opts[key] = override[key]
        if not opts:
            opts = self._options(None)
        return migrate.Runner(self.name, self.tracking, self._scrub, plan, opts).run(conn)
