# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drizzle adapter: status, plans and applies for drizzle-kit migration folders.

It reads and writes exactly what drizzle-orm 0.29.5-0.45.x (``migrate()`` in
``drizzle-orm/migrator`` + ``pg-core/dialect``) reads and writes:

* the journal ``<migrations_dir>/meta/_journal.json``; only ``entries[].tag`` and ``entries[].when``
  matter, the migration is ``<tag>.sql`` beside ``meta/``;
* statements: the file text split on the literal ``--> statement-breakpoint``. drizzle sends every
  chunk; chunks holding only whitespace, comments and semicolons are skipped here because psycopg2
  refuses an empty query (the server does nothing with them either);
* hash: sha256 hex of the file text as Node's ``Buffer.toString()`` gives it, i.e.
  ``raw.decode('utf-8', 'replace').encode('utf-8')``;
* tracking table ``"<migrations_schema>"."<migrations_table>" (id SERIAL PRIMARY KEY, hash text NOT
  NULL, created_at bigint)``, one row ``(hash, created_at = when)`` per applied migration;
* drizzle-orm runs an entry when ``Number(last.created_at) < when``, where ``last`` is the first row of
  ``ORDER BY created_at DESC`` (PostgreSQL puts NULLs first there, and ``Number(null)`` is 0).

How tracking rows are matched to journal entries (the read side):

1. a row matches an entry when ``row.created_at == entry.when`` and its hash is the entry's file hash;
2. a row whose hash is an unmatched entry's file hash IS that entry, whatever its created_at (a
   hand-written baseline row after ``drizzle-kit push``, a ``when`` edited later);
3. the remaining rows pair with unmatched entries of their ``created_at`` in journal / id order: such an
   entry whose file hash differs from its row's hash is ``modified``; a row that matches no entry is
   ``unknown_migration``;
4. ``applied`` lists matched entries in journal order, ``current`` is the last of them;
5. ``pending`` is exactly what drizzle-orm's next ``migrate()`` inserts (the rule above), in journal
   order; an entry that is not applied but has ``when <= high-water mark`` is ``out_of_order`` (drizzle
   would skip it silently; the message names the row that hides it), and so is an applied entry whose
   ``when`` is above the mark (drizzle would run it again: the plan refuses that).

Down migrations are ``<tag>.down.sql`` beside ``<tag>.sql`` (same breakpoint rules); reverting one
runs it and deletes that migration's row (by id).

Error codes on PlanError: bad_config, missing_file, out_of_order, modified, unknown_migration,
unknown_revision; on ApplyError: apply_failed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import codecs
import os
import re

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import (
    Adapter,
    AdapterError,
    ApplyError,
    ApplyResult,
    Plan,
    PlanError,
    ServiceState,
    problem,
)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle.history import (
    MAX_LISTED,
    History,
)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle.journal import (
    BREAKPOINT,
    JOURNAL_NAME,
    decode_sql,
    load_journal,
    read_down,
    read_up,
    split_statements,
)
from ansible_collections.homelab.migrations.plugins.module_utils.connection import quote_ident
from ansible_collections.homelab.migrations.plugins.module_utils import preflight as preflight_mod
from ansible_collections.homelab.migrations.plugins.module_utils.waits import is_lock_timeout
from ansible_collections.homelab.migrations.plugins.module_utils.regular_file import (
    MIGRATION_LIMIT,
    read_regular,
)

try:
    import psycopg2
    HAS_PSYCOPG2 = True
except ImportError:  # pragma: no cover - the modules report missing_required_lib
    psycopg2 = None
    HAS_PSYCOPG2 = False

TRANSACTION_MODES = ('all', 'each')
STATEMENT_PREVIEW = 200  # characters of a failing statement quoted in an error
_DURATION_RE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*$')


# --------------------------------------------------------------------------------------------- text
def display_statement(stmt):
    """A statement as shown in diff.prepared: trimmed and ending with a semicolon."""
    text = stmt.strip()
    if not text.endswith(';'):
        last_line = text.rsplit('\n', 1)[-1]
        text += '\n;' if '--' in last_line else ';'
    return text


def shorten(stmt, limit=STATEMENT_PREVIEW):
    text = ' '.join(stmt.split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


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
    match = _DURATION_RE.match(str(value))
    if not match:
        raise PlanError('%s must be a duration like 5s, 500ms or 2min, or an integer of milliseconds; got %r'
                        % (name, value), code='bad_config')
    return match.group(1) + (match.group(2) or 'ms')


# -------------------------------------------------------------------------------------------- state
def _pg_error(exc):
    """A one-line PostgreSQL/psycopg2 error text."""
    diag = getattr(exc, 'diag', None)
    primary = getattr(diag, 'message_primary', None) if diag is not None else None
    if primary:
        text = primary
        for attr, label in (('message_detail', 'DETAIL'), ('message_hint', 'HINT')):
            extra = getattr(diag, attr, None)
            if extra:
                text += ' %s: %s' % (label, extra)
        code = getattr(exc, 'pgcode', None)
        return '%s (SQLSTATE %s)' % (text, code) if code else text
    text = ' '.join(str(exc).split()).rstrip('. ')
    return text or exc.__class__.__name__


def _is_connection_error(exc, conn=None):
    """True when ``exc`` means the session is gone (server down, backend terminated, network)."""
    if conn is not None and getattr(conn, 'closed', 0):
        return True
    code = getattr(exc, 'pgcode', None) or ''
    if code.startswith(('08', '57P')):
        return True
    return bool(HAS_PSYCOPG2 and isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and not code)


class DrizzleAdapter(Adapter):
    tool = 'drizzle'

    def __init__(self, spec, dburl):
        super(DrizzleAdapter, self).__init__(spec, dburl)
        self.folder = os.path.join(spec['path'], spec.get('migrations_dir') or 'migrations')
        self.table = spec.get('migrations_table') or '__drizzle_migrations'
        self.schema = spec.get('migrations_schema') or 'drizzle'
        self.qualified = quote_ident(self.schema) + '.' + quote_ident(self.table)

    def tracking_tables(self):
        return [(self.schema, self.table)]

    # ------------------------------------------------------------------------------- helpers
    def _scrub(self, text):
        return self.dburl.scrub(text) if self.dburl is not None else text

    @property
    def journal_path(self):
        return os.path.join(self.folder, JOURNAL_NAME)

    def _read_rows(self, conn):
        """(schema_exists, table_exists, rows as [(id, hash, created_at)] by id). Read only."""
        try:
            with conn.cursor() as cur:
                cur.execute('SELECT n.oid IS NOT NULL, c.oid IS NOT NULL FROM (SELECT 1) AS one '
                            'LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = %s '
                            'LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = %s',
                            (self.schema, self.table))
                schema_exists, table_exists = cur.fetchone()
                if not table_exists:
                    return bool(schema_exists), False, []
                cur.execute('SELECT id, hash, created_at FROM ' + self.qualified + ' ORDER BY id')
                rows = [(r[0], r[1], None if r[2] is None else int(r[2])) for r in cur.fetchall()]
        except Exception as exc:
            if HAS_PSYCOPG2 and not isinstance(exc, psycopg2.Error):
                raise
            if _is_connection_error(exc, conn):
                raise AdapterError('service %r: lost the connection to %s while reading %s: %s'
                                   % (self.name, self.dburl.masked if self.dburl else 'the database',
                                      self.qualified, self._scrub(_pg_error(exc))), code='unreachable')
            reason = self._scrub(_pg_error(exc))
            raise AdapterError(
                'service %r: cannot read the drizzle tracking table %s: %s. Check migrations_schema/'
                'migrations_table and that the user in database_url may read it; it must have the columns '
                'id, hash and created_at as drizzle-orm creates them' % (self.name, self.qualified, reason),
                code='bad_config')
        return True, True, rows

    # ------------------------------------------------------------------------------ read side
    def read_state(self, conn):
        """The service's state: the journal (journal.load_journal), the tracking rows and their History.

        ``extra`` holds folder, journal, schema, table, schema_exists, table_exists, rows, entries, valid (the
        journal is usable) and history (a History, None when the journal is not usable).
        Raises AdapterError ``unreachable`` / ``bad_config`` when the tracking table cannot be read.
        """
        entries, errors = load_journal(self.folder)
        schema_exists, table_exists, rows = self._read_rows(conn)
        extra = {'folder': self.folder, 'journal': self.journal_path, 'schema': self.schema, 'table': self.table,
                 'schema_exists': schema_exists, 'table_exists': table_exists, 'rows': rows,
                 'entries': entries, 'history': None, 'valid': not errors}
        if errors:
            msg = '; '.join(errors[:MAX_LISTED])
            if len(errors) > MAX_LISTED:
                msg += '; and %d more problem(s) in the journal' % (len(errors) - MAX_LISTED)
            if extra['journal'] not in msg:
                msg = '%s (journal %s)' % (msg, self.journal_path)
            return ServiceState(self.tool, problems=[problem('bad_config', msg)], extra=extra)
        history = extra['history'] = History(entries, rows, self.journal_path, self.qualified)
        applied = history.applied
        return ServiceState(
            self.tool,
            current=[applied[-1].tag] if applied else [],
            heads=[entries[-1].tag] if entries else [],
            applied=[e.tag for e in applied],
            pending=[e.tag for e in history.pending],
            problems=history.problems(),
            history=[e.tag for e in entries],
            extra=extra,
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
        history = state.extra.get('history')
        if not state.extra.get('valid', False) or history is None:
            bad = [p['message'] for p in state.problems if p['code'] == 'bad_config'] or ['the journal is unusable']
            raise PlanError('service %r: %s' % (self.name, bad[0]), code='bad_config')
        null_rows = history.null_rows()
        if null_rows:
            raise PlanError('service %r: tracking row id %d in %s has no created_at, so drizzle-orm would run every '
                            'migration again; set created_at to the `when` of its journal entry before migrating'
                            % (self.name, null_rows[0][0], self.qualified), code='unknown_migration')
        return history

    def plan(self, conn, state, target, options=None):
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
            return Plan(None, [], from_rev, from_rev, target, sql='', extra={'migrations': [], 'options': opts})
        extra = {
            'migrations': migrations,
            'options': opts,
            'create_schema': direction == 'up' and not state.extra.get('schema_exists'),
            'create_table': direction == 'up' and not state.extra.get('table_exists'),
        }
        plan = Plan(direction, [m['tag'] for m in migrations], from_rev, goal[-1].tag if goal else None, target,
                    notes=notes, extra=extra)
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
        ``.down.sql`` files a revert runs (one transaction). Returns {findings, lint}."""
        opts = self._options(options)
        by_tag = dict((e.tag, e) for e in state.extra.get('entries') or [])
        findings = []
        loaded = []
        for tag in steps:
            entry = by_tag.get(tag)
            path = entry.path if entry is not None and direction == 'up' else (entry.down_path if entry else None)
            try:
                if direction == 'up':
                    if entry is None or not entry.exists:
                        continue
                    raw = entry.raw()
                else:
                    if path is None or not os.path.isfile(path):
                        continue
                    raw = read_regular(path, MIGRATION_LIMIT)
            except (IOError, OSError):
                continue  # the plan reports an unreadable file
            text = decode_sql(raw)
            if raw.startswith(codecs.BOM_UTF8):
                first = preflight_mod.statement_head(text.lstrip('\ufeff'), lines=1)
                findings.append(preflight_mod.finding(
                    tag, first, 'byte_order_mark', preflight_mod.ERROR,
                    '%s starts with a UTF-8 byte order mark (bytes EF BB BF); drizzle-orm sends it as the first '
                    'character of the first statement and PostgreSQL answers with a syntax error at position 1, so '
                    'the run fails. Save the file as UTF-8 without a BOM%s'
                    % (os.path.basename(path), ' (it is not applied yet, so its hash may change)'
                       if direction == 'up' else '')))
            cuts = preflight_mod.cut_inside(text, BREAKPOINT)
            if cuts:
                before = text[:cuts[0]]
                start = max(before.rfind(';'), 0)
                findings.append(preflight_mod.finding(
                    tag, preflight_mod.statement_head(text[start + 1 if start else 0:cuts[0]], lines=1) or None,
                    'breakpoint_splits_statement', preflight_mod.ERROR,
                    "%s has '%s' inside a string literal, quoted name, dollar-quoted body or /* */ comment (line "
                    '%d); drizzle-orm splits the file on it all the same and sends the two halves as separate '
                    'statements, so PostgreSQL fails (unterminated quoted string or comment). Reword the text so it '
                    'does not contain that marker (for example split it: \'-->\' || \' statement-breakpoint\')'
                    % (os.path.basename(path), BREAKPOINT, text.count('\n', 0, cuts[0]) + 1)))
            statements = []
            for chunk in split_statements(text):
                statements.extend(preflight_mod.split_sql(chunk))
            loaded.append((tag, text, statements))
        if direction != 'up':
            lint = False
            opts = dict(opts, transaction='all')  # a revert runs in one transaction
        if opts['transaction'] == 'each':
            groups = [[item] for item in loaded]
        else:
            groups = [loaded]
        transactions = [[(tag, stmt) for tag, dummy, stmts in group for stmt in stmts] for group in groups]
        try:
            version = conn.server_version if conn is not None else None
        except Exception:
            version = None
        findings.extend(preflight_mod.transaction_findings(transactions, version, self._advice(opts),
                                                           preflight_mod.enum_catalog(conn)))
        lint_info = {'linter': preflight_mod.SQUAWK, 'ran': False, 'reason': 'not asked for'}
        if lint:
            lint_findings, lint_info = preflight_mod.squawk_findings([(tag, text) for tag, text, dummy in loaded],
                                                                     conn, options=opts)
            findings.extend(lint_findings)
        for item in findings:
            item['message'] = self._scrub(item['message'])
            if item['statement']:
                item['statement'] = self._scrub(item['statement'])
        return {'findings': findings, 'lint': lint_info}

    @staticmethod
    def _advice(opts):
        def advice(kind, migration, later):
            if kind == 'always':
                return ('drizzle-orm, and this collection with transaction: all and each alike, runs every migration '
                        'inside a transaction, so this statement can never run there: take it out of %s and run it by '
                        'hand outside a transaction (psql in autocommit mode) before or after the migration, or use '
                        'the form that works in a transaction (without CONCURRENTLY; it takes a stronger lock)'
                        % migration)
            if kind == 'enum_later':
                return ('Run with transaction: each (role variable migrate_all_transaction: each), so that %s commits '
                        'before %s uses the label' % (migration, later))
            return ('Move the statements that use the new label into a migration of their own (drizzle-kit generate '
                    '--custom) and run with transaction: each (role variable migrate_all_transaction: each), so the '
                    'ALTER TYPE commits first')
        return advice

    # ------------------------------------------------------------------------------ SQL text
    def _ddl(self, extra):
        out = []
        if extra.get('create_schema') or extra.get('create_table'):
            out.append('CREATE SCHEMA IF NOT EXISTS ' + quote_ident(self.schema))
        if extra.get('create_table'):
            out.append('CREATE TABLE IF NOT EXISTS ' + self.qualified
                       + ' (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)')
        return out

    def _insert_sql(self):
        return 'INSERT INTO ' + self.qualified + ' ("hash", "created_at") VALUES (%s, %s)'

    def _delete_sql(self):
        return 'DELETE FROM ' + self.qualified + ' WHERE id = %s'

    @staticmethod
    def _settings(opts):
        out = []
        for name in ('lock_timeout', 'statement_timeout'):
            if opts.get(name) is not None:
                out.append((name, opts[name]))
        return out

    def _groups(self, plan, opts):
        migrations = plan.extra['migrations']
        if plan.direction == 'up' and opts['transaction'] == 'each':
            return [[m] for m in migrations]
        return [migrations]

    def preview_sql(self, plan):
        if not plan.steps:
            return ''
        opts = plan.extra.get('options') or self._options(None)
        lines = ['-- homelab.migrations: drizzle %s, service %s, %d migration(s) in %s'
                 % (plan.direction, self.name, len(plan.steps),
                    'one transaction per migration' if plan.direction == 'up' and opts['transaction'] == 'each'
                    else 'one transaction')]
        first = True
        for group in self._groups(plan, opts):
            lines.append('BEGIN;')
            for name, value in self._settings(opts):
                lines.append("SET LOCAL %s = '%s';" % (name, value))
            if first:
                lines.extend(stmt + ';' for stmt in self._ddl(plan.extra))
                first = False
            for m in group:
                lines.append('-- %s %s (%s)' % ('migration' if plan.direction == 'up' else 'revert', m['tag'],
                                                os.path.basename(m['file'])))
                lines.extend(display_statement(s) for s in m['statements'])
                if plan.direction == 'up':
                    lines.append('INSERT INTO ' + self.qualified + ' ("hash", "created_at") VALUES (\''
                                 + m['hash'] + "', " + str(int(m['when'])) + ');')
                else:
                    lines.append('DELETE FROM ' + self.qualified + ' WHERE id = ' + str(int(m['row_id'])) + ';')
            lines.append('COMMIT;')
        return '\n'.join(lines) + '\n'

    # ----------------------------------------------------------------------------- write side
    def _run(self, cur, queries, sql, params=None, xid=None):
        # recorded before it runs: a failing statement is part of what was sent
        if params is None:
            queries.append(sql)
            cur.execute(sql)
        else:
            text = cur.mogrify(sql, params)
            queries.append(text.decode('utf-8') if isinstance(text, bytes) else text)
            cur.execute(sql, params)
        if xid is not None:
            _check_transaction(cur, xid, sql)

    @staticmethod
    def _begin(cur):
        """Open the group's transaction and return its id (to see later that it is still the same one)."""
        cur.execute('SELECT pg_catalog.txid_current()')
        return cur.fetchone()[0]

    def apply(self, conn, plan, options=None):
        if not plan.steps:
            return ApplyResult(from_revision=plan.from_revision, to_revision=plan.to_revision)
        opts = dict(plan.extra.get('options') or {})
        if options:
            override = self._options(options)
            for key in ('transaction', 'lock_timeout', 'statement_timeout'):
                if key in options:
                    opts[key] = override[key]
        if not opts:
            opts = self._options(None)
        queries = []
        done = []  # tags committed
        first = True
        for group in self._groups(plan, opts):
            current = None
            stmt = None
            group_done = []
            committing = False
            try:
                conn.autocommit = False
                with conn.cursor() as cur:
                    xid = self._begin(cur)
                    for name, value in self._settings(opts):
                        stmt = 'SET LOCAL ' + name
                        self._run(cur, queries, 'SET LOCAL ' + name + ' = %s', (value,))
                    if first:
                        for ddl in self._ddl(plan.extra):
                            stmt = ddl
                            self._run(cur, queries, ddl)
                    for m in group:
                        current = m
                        for stmt in m['statements']:
                            # a statement that ends the transaction (COMMIT, ROLLBACK, END, BEGIN...COMMIT) is
                            # caught right after it ran: the server's transaction state and id say so
                            self._run(cur, queries, stmt, xid=xid)
                        if plan.direction == 'up':
                            stmt = self._insert_sql()
                            self._run(cur, queries, stmt, (m['hash'], m['when']))
                        else:
                            stmt = self._delete_sql()
                            self._run(cur, queries, stmt, (m['row_id'],))
                            if cur.rowcount != 1:
                                raise _RowGone(m['row_id'])
                        group_done.append(m['tag'])
                committing = True
                stmt = 'COMMIT'
                conn.commit()
            except Exception as exc:
                if isinstance(exc, _TransactionEnded):
                    self._rollback(conn)
                    error = self._ended_error(plan, done, group_done, current, exc)
                    error.details['queries'] = [self._scrub(q) for q in queries]
                    raise error
                if HAS_PSYCOPG2 and not isinstance(exc, (psycopg2.Error, ValueError, _RowGone)):
                    self._rollback(conn)
                    raise
                if current is not None and not committing and _ended_before_failure(conn, exc):
                    # one chunk ended the transaction (COMMIT; ...) and then failed: what ran before the COMMIT
                    # stayed, and the error came before the state check could see it
                    self._rollback(conn)
                    ended = self._ended_error(plan, done, group_done, current, _TransactionEnded(stmt, 'ended'))
                    error = ApplyError('%s. The statement then failed: %s' % (
                        str(ended).rstrip('. '), self._scrub(_pg_error(exc))), code=ended.code, details=ended.details)
                    error.details['queries'] = [self._scrub(q) for q in queries]
                    raise error
                self._rollback(conn)
                error = self._apply_error(plan, opts, done, current, stmt, exc, conn,
                                          at_commit=group_done if committing else None)
                error.details['queries'] = [self._scrub(q) for q in queries]
                raise error
            except BaseException:  # interrupted (module_utils.interrupt): roll back, never commit after the job ended
                self._rollback(conn)
                raise
            finally:
                self._restore(conn)
            first = False
            done.extend(group_done)
        if plan.direction == 'up':
            return ApplyResult(applied=done, from_revision=plan.from_revision, to_revision=plan.to_revision,
                               queries=queries)
        return ApplyResult(reverted=done, from_revision=plan.from_revision, to_revision=plan.to_revision,
                           queries=queries)

    @staticmethod
    def _rollback(conn):
        try:
            conn.rollback()
        except Exception:  # the connection may be gone; the server rolls back on its own then
            pass

    @staticmethod
    def _restore(conn):
        try:
            if not conn.closed:
                conn.autocommit = True
        except Exception:
            pass

    def _ended_error(self, plan, done, group_done, current, exc):
        """A migration ended the run's transaction itself: stop, and say that part of it may have stayed."""
        verb = 'migration' if plan.direction == 'up' else 'revert of'
        tag = current['tag'] if current else None
        message = (
            'service %r: %s %s (%s) ended the transaction itself at `%s`: drizzle-orm runs migrations inside its own '
            'transaction, so COMMIT, ROLLBACK, END, ABORT or BEGIN ... COMMIT in a migration file break that promise '
            '(whatever ran before that statement was committed or thrown away outside the migration, and drizzle-orm '
            'would still record the migration as applied). The run stopped there and %s is NOT recorded as applied. '
            'Remove the transaction control statements from %s (use one file per transaction, split by '
            '`--> statement-breakpoint`), then check what stayed (below) before running again'
            % (self.name, verb, tag, os.path.basename(current['file']) if current else '?',
               self._scrub(shorten(exc.statement)), tag, current['file'] if current else 'the migration'))
        details = {'applied': list(done) if plan.direction == 'up' else [],
                   'reverted': list(done) if plan.direction == 'down' else [],
                   'failed': tag, 'statement': self._scrub(shorten(exc.statement)),
                   'transaction_ended': [tag] if tag else [], 'in_transaction': list(group_done)}
        return ApplyError(message, code='transaction_ended', details=details)

    def _apply_error(self, plan, opts, done, current, stmt, exc, conn, at_commit=None):
        verb = 'migration' if plan.direction == 'up' else 'revert of'
        if isinstance(exc, _RowGone):
            reason = 'its tracking row id %d was no longer in %s (someone else changed it meanwhile)' % (
                exc.row_id, self.qualified)
        else:
            reason = self._scrub(_pg_error(exc))
        lost = _is_connection_error(exc, conn)
        uncertain = at_commit if (at_commit is not None and lost) else None
        if at_commit is not None:
            where = 'COMMIT of %s failed' % ', '.join(at_commit)
        else:
            where = '%s %s' % (verb, current['tag']) if current else 'preparing the transaction'
            if current and stmt is not None:
                where += ' (%s) failed at `%s`' % (os.path.basename(current['file']), shorten(self._scrub(stmt)))
            else:
                where += ' failed'
        if done:
            kept = ('%s %s committed before the failure and stay%s'
                    % (', '.join(done), 'was' if len(done) == 1 else 'were', 's' if len(done) == 1 else ''))
        elif plan.direction == 'up' and len(plan.steps) > 1 and opts.get('transaction') == 'all':
            kept = 'the transaction of all %d migrations was rolled back, so nothing was committed' % len(plan.steps)
        else:
            kept = 'nothing was committed: the database is as it was before this run'
        if uncertain is not None:
            kept = ('the connection was lost during COMMIT, so whether %s %s committed is unknown%s'
                    % (', '.join(uncertain), 'was' if len(uncertain) == 1 else 'were',
                       '; ' + kept if done else ''))
            advice = 'Check with the status module what is applied before running again'
        elif lost:
            kept += ' (the connection was lost; the server rolled the open transaction back)'
            advice = 'Check that the server is up and run again'
        else:
            advice = 'Fix the %s and run again' % ('migration file' if current else 'settings')
        message = 'service %r: %s: %s. %s. %s' % (self.name, where, reason, kept[0].upper() + kept[1:], advice)
        details = {'applied': list(done) if plan.direction == 'up' else [],
                   'reverted': list(done) if plan.direction == 'down' else [],
                   'failed': current['tag'] if current else None,
                   'statement': shorten(self._scrub(stmt)) if stmt else None}
        if uncertain is not None:
            details['uncertain'] = list(uncertain)
        if lost:
            details['lost'] = True
        # a statement that ran into lock_timeout (SQLSTATE 55P03): the caller may retry when nothing stayed
        code = 'lock_timeout' if is_lock_timeout(exc) and at_commit is None else 'apply_failed'
        return ApplyError(message, code=code, details=details)


class _TransactionEnded(Exception):
    """A migration statement ended the transaction it ran in (``state``: committed | ended)."""

    def __init__(self, statement, state):
        super(_TransactionEnded, self).__init__('transaction ended by %r' % statement)
        self.statement = statement
        self.state = state


def _check_transaction(cur, xid, statement):
    """Raise _TransactionEnded unless the connection is still inside the transaction ``xid``.

    After a statement, the server reports its transaction state with every answer (psycopg2's
    ``connection.info.transaction_status``): idle means the statement ended the transaction (COMMIT,
    ROLLBACK, END, ABORT, or a BEGIN ... COMMIT block). ``BEGIN`` inside a transaction only warns, and
    ``COMMIT; BEGIN`` leaves a new transaction open: the transaction id tells that one apart.
    """
    status = cur.connection.info.transaction_status
    if status == psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        raise _TransactionEnded(statement, 'ended')
    if status != psycopg2.extensions.TRANSACTION_STATUS_INTRANS:
        return  # in error (the statement raised) or unknown: the caller handles the error
    cur.execute('SELECT pg_catalog.txid_current()')
    if cur.fetchone()[0] != xid:
        raise _TransactionEnded(statement, 'ended')


def _ended_before_failure(conn, exc):
    """Whether a statement that raised had ended the run's transaction first: after an error inside the
    transaction block the server reports it failed (INERROR); idle means the block was over before the error
    (``...; COMMIT; SELECT 1/0`` in one chunk), so what ran before the COMMIT was committed."""
    if not HAS_PSYCOPG2 or not isinstance(exc, psycopg2.Error) or _is_connection_error(exc, conn):
        return False
    try:
        return conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    except Exception:
        return False


class _RowGone(Exception):
    def __init__(self, row_id):
        super(_RowGone, self).__init__('row %s gone' % row_id)
        self.row_id = row_id
