# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running a drizzle plan, and its preview (diff.prepared), as drizzle-orm's ``migrate()`` runs migrations.

drizzle-orm 0.29.5-0.45.x runs all pending migrations in one transaction: each statement chunk, then
``insert into <table> ("hash", "created_at")``. This collection does the same with ``transaction: all``,
or commits each migration on its own with ``transaction: each`` (up only; a revert is one transaction),
after ``SET LOCAL lock_timeout / statement_timeout`` and, in the first transaction, the DDL creating the
tracking table. A revert runs ``<tag>.down.sql`` and deletes the migration's row by id.

Plan steps (``plan.detail.migrations``, see detail.DrizzlePlanDetail) are dicts from journal.read_up /
read_down. Errors: ApplyError with code ``apply_failed``, ``lock_timeout`` (SQLSTATE 55P03, nothing stayed)
or ``transaction_ended`` (a migration ended the transaction itself); ``details`` hold applied / reverted /
failed / statement / queries and, as they apply, uncertain, lost, transaction_ended, in_transaction.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.homelab.migrations.plugins.module_utils import interrupt
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import ApplyError, ApplyResult
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle.sql import (
    RowGone,
    TransactionEnded,
    begin,
    display_statement,
    ended_before_failure,
    is_run_error,
    pg_error,
    restore_autocommit,
    rollback,
    run,
    settings,
    shorten,
)
from ansible_collections.homelab.migrations.plugins.module_utils.connection import is_connection_lost
from ansible_collections.homelab.migrations.plugins.module_utils.waits import is_lock_timeout


def groups(plan, opts):
    """The plan's steps in transactions: one per migration for an up plan with ``transaction: each``, else one."""
    migrations = plan.detail.migrations
    if plan.direction == 'up' and opts['transaction'] == 'each':
        return [[m] for m in migrations]
    return [migrations]


def ddl(table, plan):
    """The DDL the plan's first transaction starts with (plan.detail create_schema / create_table)."""
    return table.ddl(plan.detail.create_schema, plan.detail.create_table)


def preview(name, table, plan, opts):
    """The SQL an apply of ``plan`` runs, as text (``--`` comments name the migrations and files)."""
    lines = ['-- homelab.migrations: drizzle %s, service %s, %d migration(s) in %s'
             % (plan.direction, name, len(plan.steps),
                'one transaction per migration' if plan.direction == 'up' and opts['transaction'] == 'each'
                else 'one transaction')]
    first = True
    for group in groups(plan, opts):
        lines.append('BEGIN;')
        for setting, value in settings(opts):
            lines.append("SET LOCAL %s = '%s';" % (setting, value))
        if first:
            lines.extend(stmt + ';' for stmt in ddl(table, plan))
            first = False
        for m in group:
            lines.append('-- %s %s (%s)' % ('migration' if plan.direction == 'up' else 'revert', m['tag'],
                                            os.path.basename(m['file'])))
            lines.extend(display_statement(s) for s in m['statements'])
            if plan.direction == 'up':
                lines.append(table.insert_text(m['hash'], m['when']))
            else:
                lines.append(table.delete_text(m['row_id']))
        lines.append('COMMIT;')
    return '\n'.join(lines) + '\n'


class Runner(object):
    """One apply of a plan: ``name`` of the service, its TrackingTable ``table``, ``scrub`` (text -> text
    without the password), the Plan and its options ``opts`` (transaction, lock_timeout, statement_timeout)."""

    def __init__(self, name, table, scrub, plan, opts):
        self.name = name
        self.table = table
        self.scrub = scrub
        self.plan = plan
        self.opts = opts
        self.queries = []  # every statement sent, in order
        self.done = []  # tags committed
        self.current = None  # the step running
        self.stmt = None  # the statement running
        self.group_done = []  # tags run in the open transaction
        self.committing = False

    def run(self, conn):
        """Apply the plan on ``conn`` (left in autocommit). Returns ApplyResult; raises ApplyError."""
        first = True
        for group in groups(self.plan, self.opts):
            self._group(conn, group, first)
            first = False
        plan = self.plan
        if plan.direction == 'up':
            return ApplyResult(applied=self.done, from_revision=plan.from_revision, to_revision=plan.to_revision,
                               queries=self.queries)
        return ApplyResult(reverted=self.done, from_revision=plan.from_revision, to_revision=plan.to_revision,
                           queries=self.queries)

    def _group(self, conn, group, first):
        self.current = None
        self.stmt = None
        self.group_done = []
        self.committing = False
        try:
            conn.autocommit = False
            with conn.cursor() as cur:
                self._statements(cur, group, first)
            interrupt.checkpoint()  # a controller that died meanwhile: roll back instead (below)
            self.committing = True
            self.stmt = 'COMMIT'
            conn.commit()
        except Exception as exc:
            # one chunk may have ended the transaction (COMMIT; ...) and then failed: what ran before the COMMIT
            # stayed, and the error came before the state check could see it (read before the rollback)
            ended = self.current is not None and not self.committing and ended_before_failure(conn, exc)
            rollback(conn)
            error = self._error(conn, exc, ended)
            if error is None:
                raise
            raise error
        except BaseException:  # interrupted (module_utils.interrupt): roll back, never commit after the job ended
            rollback(conn)
            raise
        finally:
            restore_autocommit(conn)
        self.done.extend(self.group_done)

    def _statements(self, cur, group, first):
        queries = self.queries
        xid = begin(cur)
        for setting, value in settings(self.opts):
            self.stmt = 'SET LOCAL ' + setting
            run(cur, queries, 'SET LOCAL ' + setting + ' = %s', (value,))
        if first:
            for stmt in ddl(self.table, self.plan):
                self.stmt = stmt
                run(cur, queries, stmt)
        for m in group:
            self.current = m
            for stmt in m['statements']:
                self.stmt = stmt
                # a statement that ends the transaction (COMMIT, ROLLBACK, END, BEGIN...COMMIT) is caught right
                # after it ran: the server's transaction state and id say so
                run(cur, queries, stmt, xid=xid)
            if self.plan.direction == 'up':
                self.stmt = self.table.insert_sql()
                run(cur, queries, self.stmt, (m['hash'], m['when']))
            else:
                self.stmt = self.table.delete_sql()
                run(cur, queries, self.stmt, (m['row_id'],))
                if cur.rowcount != 1:
                    raise RowGone(m['row_id'])
            self.group_done.append(m['tag'])

    # ------------------------------------------------------------------------------------ failures
    def _error(self, conn, exc, ended):
        """The ApplyError for ``exc`` (None: not a database error, re-raise it as it is)."""
        if isinstance(exc, TransactionEnded):
            error = self._ended_error(exc)
        elif not is_run_error(exc):
            return None
        elif ended:
            first = self._ended_error(TransactionEnded(self.stmt, 'ended'))
            error = ApplyError('%s. The statement then failed: %s' % (
                str(first).rstrip('. '), self.scrub(pg_error(exc))), code=first.code, details=first.details)
        else:
            error = self._apply_error(exc, conn)
        error.details['queries'] = [self.scrub(q) for q in self.queries]
        return error

    def _outcome(self):
        up = self.plan.direction == 'up'
        return {'applied': list(self.done) if up else [], 'reverted': [] if up else list(self.done),
                'failed': self.current['tag'] if self.current else None}

    def _ended_error(self, exc):
        """A migration ended the run's transaction itself: stop, and say that part of it may have stayed."""
        current = self.current
        verb = 'migration' if self.plan.direction == 'up' else 'revert of'
        tag = current['tag'] if current else None
        message = (
            'service %r: %s %s (%s) ended the transaction itself at `%s`: drizzle-orm runs migrations inside its own '
            'transaction, so COMMIT, ROLLBACK, END, ABORT or BEGIN ... COMMIT in a migration file break that promise '
            '(whatever ran before that statement was committed or thrown away outside the migration, and drizzle-orm '
            'would still record the migration as applied). The run stopped there and %s is NOT recorded as applied. '
            'Remove the transaction control statements from %s (use one file per transaction, split by '
            '`--> statement-breakpoint`), then check what stayed (below) before running again'
            % (self.name, verb, tag, os.path.basename(current['file']) if current else '?',
               self.scrub(shorten(exc.statement)), tag, current['file'] if current else 'the migration'))
        details = self._outcome()
        details.update({'statement': self.scrub(shorten(exc.statement)),
                        'transaction_ended': [tag] if tag else [], 'in_transaction': list(self.group_done)})
        return ApplyError(message, code='transaction_ended', details=details)

    def _where(self):
        """Where the run failed, for the message."""
        if self.committing:
            return 'COMMIT of %s failed' % ', '.join(self.group_done)
        current = self.current
        verb = 'migration' if self.plan.direction == 'up' else 'revert of'
        where = '%s %s' % (verb, current['tag']) if current else 'preparing the transaction'
        if current and self.stmt is not None:
            return where + ' (%s) failed at `%s`' % (os.path.basename(current['file']), shorten(self.scrub(self.stmt)))
        return where + ' failed'

    def _kept(self):
        """What stayed committed, for the message."""
        done = self.done
        if done:
            return ('%s %s committed before the failure and stay%s'
                    % (', '.join(done), 'was' if len(done) == 1 else 'were', 's' if len(done) == 1 else ''))
        steps = self.plan.steps
        if self.plan.direction == 'up' and len(steps) > 1 and self.opts.get('transaction') == 'all':
            return 'the transaction of all %d migrations was rolled back, so nothing was committed' % len(steps)
        return 'nothing was committed: the database is as it was before this run'

    def _apply_error(self, exc, conn):
        if isinstance(exc, RowGone):
            reason = 'its tracking row id %d was no longer in %s (someone else changed it meanwhile)' % (
                exc.row_id, self.table.qualified)
        else:
            reason = self.scrub(pg_error(exc))
        lost = is_connection_lost(exc, conn)
        uncertain = self.group_done if (self.committing and lost) else None
        kept = self._kept()
        if uncertain is not None:
            kept = ('the connection was lost during COMMIT, so whether %s %s committed is unknown%s'
                    % (', '.join(uncertain), 'was' if len(uncertain) == 1 else 'were',
                       '; ' + kept if self.done else ''))
            advice = 'Check with the status module what is applied before running again'
        elif lost:
            kept += ' (the connection was lost; the server rolled the open transaction back)'
            advice = 'Check that the server is up and run again'
        else:
            advice = 'Fix the %s and run again' % ('migration file' if self.current else 'settings')
        message = 'service %r: %s: %s. %s. %s' % (self.name, self._where(), reason, kept[0].upper() + kept[1:],
                                                  advice)
        details = self._outcome()
        details['statement'] = shorten(self.scrub(self.stmt)) if self.stmt else None
        if uncertain is not None:
            details['uncertain'] = list(uncertain)
        if lost:
            details['lost'] = True
        # a statement that ran into lock_timeout (SQLSTATE 55P03): the caller may retry when nothing stayed
        code = 'lock_timeout' if is_lock_timeout(exc) and not self.committing else 'apply_failed'
        return ApplyError(message, code=code, details=details)
