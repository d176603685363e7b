# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""alembic's version table of a service: its name from the spec, its rows, its look-alikes.

The spec options ``version_table`` (default ``alembic_version``) and ``version_table_schema`` (default: the
session's search_path, ``public`` for the fingerprint) name the table the service's env.py passes to
``context.configure()``; this collection reads it, alembic writes it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import AdapterError
from ansible_collections.homelab.migrations.plugins.module_utils.connection import is_connection_lost, quote_ident


class VersionTable(object):
    """The version table of one service spec; ``scrub`` masks secrets in error text (str -> str)."""

    def __init__(self, spec, scrub):
        self.table = spec.get('version_table') or 'alembic_version'
        self.schema = spec.get('version_table_schema')
        self.scrub = scrub

    def name(self):
        """The table's quoted, schema-qualified (when a schema is set) name."""
        return (quote_ident(self.schema) + '.' if self.schema else '') + quote_ident(self.table)

    def tracking_tables(self):
        """[(schema, table)] for the schema fingerprint to leave out."""
        return [(self.schema or 'public', self.table)]

    def read_rows(self, conn):
        """Version table rows in table order; None when the table does not exist."""
        table = self.name()
        try:
            with conn.cursor() as cur:
                cur.execute('SELECT pg_catalog.to_regclass(%s)', (table,))
                if cur.fetchone()[0] is None:
                    return None
                cur.execute('SELECT version_num FROM ' + table)
                return [row[0] for row in cur.fetchall()]
        except Exception as exc:
            text = ' '.join(self.scrub(str(exc)).split()) or type(exc).__name__
            if is_connection_lost(exc, conn):
                raise AdapterError('cannot read the alembic version table %s: %s (check that the database is up)'
                                   % (table, text), code='unreachable')
            raise AdapterError('cannot read the alembic version table %s: %s (check version_table / '
                               'version_table_schema and that the user may read it)' % (table, text))

    def others(self, conn, known):
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
                    "ORDER BY 3 DESC, 1, 2 LIMIT 20", (self.name(),))
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

    @staticmethod
    def settings_hint(other):
        """'version_table: x (and ...)' for a table found by others()."""
        _name, in_default, _rows, schema, table = other
        if in_default:
            return 'version_table: %s and no version_table_schema' % table
        return 'version_table: %s and version_table_schema: %s' % (table, schema)

    def num_length(self, conn):
        """The declared length of version_num in the existing version table, or None (unbounded / no table)."""
        with conn.cursor() as cur:
            cur.execute("SELECT a.atttypmod, pg_catalog.format_type(a.atttypid, NULL) FROM pg_catalog.pg_attribute a "
                        "WHERE a.attrelid = pg_catalog.to_regclass(%s) AND a.attname = 'version_num' "
                        "AND NOT a.attisdropped", (self.name(),))
            row = cur.fetchone()
        if row is None or row[0] is None or row[0] < 0:
            return None
        if row[1] in ('character varying', 'character'):
            return row[0] - 4
        return None
