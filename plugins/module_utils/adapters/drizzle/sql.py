# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SQL this collection runs for drizzle, and the checks on the transaction it runs in.

The tracking table is drizzle-orm's (0.29.5-0.45.x, ``migrate()`` in ``pg-core/dialect``):
``"<migrationsSchema>"."<migrationsTable>" (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)``,
created with ``CREATE SCHEMA IF NOT EXISTS`` / ``CREATE TABLE IF NOT EXISTS``, one row
``("hash", "created_at") = (hash, folderMillis)`` inserted per applied migration. Reverting a migration
(this collection's, drizzle-orm has no down migrations) deletes its row by id.

drizzle-orm runs a ``migrate()`` inside one transaction; a migration file that ends it (COMMIT, ROLLBACK,
END, ABORT, BEGIN ... COMMIT) breaks that, and :func:`check_transaction` / :func:`ended_before_failure`
tell it from the server's transaction state (psycopg2 ``connection.info.transaction_status``) and id.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils.connection import is_connection_lost, quote_ident

try:
    import psycopg2
    HAS_PSYCOPG2 = True
except ImportError:  # pragma: no cover - the modules report missing_required_lib
    psycopg2 = None
    HAS_PSYCOPG2 = False

STATEMENT_PREVIEW = 200  # characters of a failing statement quoted in an error
SETTINGS = ('lock_timeout', 'statement_timeout')  # set with SET LOCAL at the start of each transaction


# ------------------------------------------------------------------------------------ tracking table
class TrackingTable(object):
    """drizzle-orm's migrations table ``"<schema>"."<table>"`` (``migrationsSchema`` / ``migrationsTable``)."""

    def __init__(self, schema, table):
        self.schema = schema
        self.table = table
        self.qualified = quote_ident(schema) + '.' + quote_ident(table)

    def read(self, cur):
        """(schema_exists, table_exists, rows as [(id, hash, created_at int ms or None)] by id). Read only;
        psycopg2 errors pass through."""
        cur.execute('SELECT n.oid IS NOT NULL, c.oid IS NOT NULL FROM (SELECT 1) AS one '
                    'LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = %s '
                    'LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = %s',
                    (self.schema, self.table))
        schema_exists, table_exists = cur.fetchone()
        if not table_exists:
            return bool(schema_exists), False, []
        cur.execute('SELECT id, hash, created_at FROM ' + self.qualified + ' ORDER BY id')
        return True, True, [(r[0], r[1], None if r[2] is None else int(r[2])) for r in cur.fetchall()]

    def ddl(self, create_schema, create_table):
        """The statements creating the schema and / or the table, as drizzle-orm words them."""
        out = []
        if create_schema or create_table:
            out.append('CREATE SCHEMA IF NOT EXISTS ' + quote_ident(self.schema))
        if create_table:
            out.append('CREATE TABLE IF NOT EXISTS ' + self.qualified
                       + ' (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)')
        return out

    def insert_sql(self):
        """drizzle-orm's insert of an applied migration; parameters (hash, created_at)."""
        return 'INSERT INTO ' + self.qualified + ' ("hash", "created_at") VALUES (%s, %s)'

    def delete_sql(self):
        """The delete of a reverted migration's row; parameter (id,)."""
        return 'DELETE FROM ' + self.qualified + ' WHERE id = %s'

    def insert_text(self, sql_hash, when):
        """:meth:`insert_sql` with its values, for the preview."""
        return 'INSERT INTO ' + self.qualified + ' ("hash", "created_at") VALUES (\'' + sql_hash + "', " \
            + str(int(when)) + ');'

    def delete_text(self, row_id):
        """:meth:`delete_sql` with its value, for the preview."""
        return 'DELETE FROM ' + self.qualified + ' WHERE id = ' + str(int(row_id)) + ';'


# ------------------------------------------------------------------------------------------- text
def display_statement(stmt):
    """A statement as shown in diff.prepared: trimmed and ending with a semicolon."""
    text = stmt.strip()
    if not text.endswith(';'):
        last_line = text.rsplit('\n', 1)[-1]
        text += '\n;' if '--' in last_line else ';'
    return text


def shorten(stmt, limit=STATEMENT_PREVIEW):
    """``stmt`` on one line, at most ``limit`` characters (cut with ``...``)."""
    text = ' '.join(stmt.split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


def settings(opts):
    """[(name, value)] of the SETTINGS given in ``opts`` (values as parse_duration returns them)."""
    return [(name, opts[name]) for name in SETTINGS if opts.get(name) is not None]


def pg_error(exc):
    """A one-line PostgreSQL/psycopg2 error text: primary message, DETAIL, HINT and SQLSTATE."""
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


def is_database_error(exc):
    """True for a psycopg2 error (always True without psycopg2)."""
    return not HAS_PSYCOPG2 or isinstance(exc, psycopg2.Error)


def is_run_error(exc):
    """True for what a failed apply reports as ApplyError: a psycopg2 error, a ValueError (bad parameters)
    or RowGone; anything else (a bug) passes through as it is. Always True without psycopg2."""
    return not HAS_PSYCOPG2 or isinstance(exc, (psycopg2.Error, ValueError, RowGone))


# ------------------------------------------------------------------------------------ transactions
class TransactionEnded(Exception):
    """A migration statement ended the transaction it ran in (``state``: committed | ended)."""

    def __init__(self, statement, state):
        super(TransactionEnded, self).__init__('transaction ended by %r' % statement)
        self.statement = statement
        self.state = state


class RowGone(Exception):
    """The tracking row a revert deletes was no longer there (someone else changed the table)."""

    def __init__(self, row_id):
        super(RowGone, self).__init__('row %s gone' % row_id)
        self.row_id = row_id


def begin(cur):
    """Open the group's transaction and return its id (to see later that it is still the same one)."""
    cur.execute('SELECT pg_catalog.txid_current()')
    return cur.fetchone()[0]


def run(cur, queries, sql, params=None, xid=None):
    """Run ``sql`` (with ``params``) and record it in ``queries`` first: a failing statement is part of what
    was sent. With ``xid``, check afterwards that the transaction ``xid`` is still open (TransactionEnded)."""
    if params is None:
        queries.append(sql)
        cur.execute(sql)
    else:
        text = cur.mogrify(sql, params)
        queries.append(text.decode('utf-8') if isinstance(text, bytes) else text)
        cur.execute(sql, params)
    if xid is not None:
        check_transaction(cur, xid, sql)


def check_transaction(cur, xid, statement):
    """Raise TransactionEnded unless the connection is still inside the transaction ``xid``.

    After a statement, the server reports its transaction state with every answer (psycopg2's
    ``connection.info.transaction_status``): idle means the statement ended the transaction (COMMIT,
    ROLLBACK, END, ABORT, or a BEGIN ... COMMIT block). ``BEGIN`` inside a transaction only warns, and
    ``COMMIT; BEGIN`` leaves a new transaction open: the transaction id tells that one apart.
    """
    status = cur.connection.info.transaction_status
    if status == psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        raise TransactionEnded(statement, 'ended')
    if status != psycopg2.extensions.TRANSACTION_STATUS_INTRANS:
        return  # in error (the statement raised) or unknown: the caller handles the error
    cur.execute('SELECT pg_catalog.txid_current()')
    if cur.fetchone()[0] != xid:
        raise TransactionEnded(statement, 'ended')


def ended_before_failure(conn, exc):
    """Whether a statement that raised had ended the run's transaction first: after an error inside the
    transaction block the server reports it failed (INERROR); idle means the block was over before the error
    (``...; COMMIT; SELECT 1/0`` in one chunk), so what ran before the COMMIT was committed."""
    if not HAS_PSYCOPG2 or not isinstance(exc, psycopg2.Error) or is_connection_lost(exc, conn):
        return False
    try:
        return conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    except Exception:
        return False


def rollback(conn):
    """Roll back, ignoring a connection that is gone (the server rolls back on its own then)."""
    try:
        conn.rollback()
    except Exception:
        pass


def restore_autocommit(conn):
    """Put an open connection back into autocommit (as the modules use it between transactions)."""
    try:
        if not conn.closed:
            conn.autocommit = True
    except Exception:
        pass
