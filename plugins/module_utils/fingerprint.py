# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fingerprint of a database's schemas: the catalogue rows that a migration changes.

    fp = take(conn, exclude=[('drizzle', '__drizzle_migrations')])
    fp.digest                      # sha256 hex of the sorted rows
    differences(before, after)     # ['added table public.users', ...] (short, readable)

Rows (one tuple each, no OIDs, order of columns ignored): schemas (owner, privileges), relations (tables,
views, materialized views, sequences, foreign tables, composite types; owner, privileges, row level security,
storage parameters, partition bounds), inheritance, sequence parameters (not their current value), row level
security policies, rules, comments on relations and columns, columns (type, collation, not null, default,
identity, generated, privileges), indexes (their definition), constraints (their definition), types (enums
with their labels, domains, ranges), functions and procedures (signature, result, a hash of the body,
security definer, volatility, strictness, leakproof, parallel safety, SET options, owner, privileges,
comment), triggers (with enabled/disabled), view definitions, extensions, and the database's owner, privileges
and settings (ALTER DATABASE / ALTER ROLE ... IN DATABASE ... SET). A down migration that forgets
to restore a policy, a grant or a function's SECURITY DEFINER is a change, not "as before".
System schemas (pg_catalog, information_schema, pg_toast, temporary schemas) are left out, and so is the
migration tool's own tracking table (its rows are the *position*, compared separately): a failed run that
created only the tracking table, or a go-back that leaves it empty, is no change of the service's schema.

The apply takes one before it changes anything and, after any failure, one on a fresh connection; "nothing
changed" is said only when both the position and this fingerprint are as before. Data is not in it: a
migration that committed data changes by itself is caught by the transaction-state check instead.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json

_USER_NS = ("n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' "
            "AND n.nspname NOT LIKE 'pg\\_temp\\_%'")


def _acl(column, kind, owner):
    """Privileges as sorted text, NULL (the defaults) spelled out: GRANT then REVOKE is as before."""
    return ("coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM pg_catalog.unnest(coalesce(%s, "
            "pg_catalog.acldefault(%s, %s))) x), '')" % (column, kind, owner))


QUERIES = (
    ('schema', 'SELECT n.nspname, pg_catalog.pg_get_userbyid(n.nspowner), ' + _acl('n.nspacl', "'n'", 'n.nspowner')
               + ' FROM pg_catalog.pg_namespace n WHERE ' + _USER_NS),
    # owner, privileges, row level security, storage parameters: a go-back that leaves them changed is a change
    ('relation', "SELECT n.nspname, c.relname, c.relkind::text, c.relpersistence::text, "
                 "pg_catalog.pg_get_userbyid(c.relowner), "
                 + _acl('c.relacl', "(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::\"char\"", 'c.relowner')
                 + ", c.relrowsecurity::text, "
                 "c.relforcerowsecurity::text, coalesce(c.reloptions::text, ''), "
                 "coalesce(pg_catalog.pg_get_expr(c.relpartbound, c.oid), '') FROM pg_catalog.pg_class c "
                 "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND " + _USER_NS),
    ('inherits', "SELECT n.nspname, c.relname, pn.nspname || '.' || p.relname FROM pg_catalog.pg_inherits i "
                 "JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid "
                 "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                 "JOIN pg_catalog.pg_class p ON p.oid = i.inhparent "
                 "JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace WHERE " + _USER_NS),
    ('sequence', "SELECT n.nspname, c.relname, pg_catalog.format_type(s.seqtypid, NULL), s.seqstart::text, "
                 "s.seqincrement::text, s.seqmin::text, s.seqmax::text, s.seqcache::text, s.seqcycle::text "
                 "FROM pg_catalog.pg_sequence s JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid "
                 "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE " + _USER_NS),
    ('policy', "SELECT n.nspname, c.relname, p.polname, p.polcmd::text, p.polpermissive::text, "
               "coalesce((SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE pg_catalog.pg_get_userbyid(r) END, ',' "
               "ORDER BY 1) FROM unnest(p.polroles) r), ''), "
               "coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), ''), "
               "coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '') FROM pg_catalog.pg_policy p "
               "JOIN pg_catalog.pg_class c ON c.oid = p.polrelid "
               "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE " + _USER_NS),
    ('rule', "SELECT n.nspname, c.relname, r.rulename, pg_catalog.pg_get_ruledef(r.oid), r.ev_enabled::text "
             "FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class "
             "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE r.rulename <> '_RETURN' AND " + _USER_NS),
    ('comment', "SELECT n.nspname, c.relname, d.objsubid::text, d.description FROM pg_catalog.pg_description d "
                "JOIN pg_catalog.pg_class c ON d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass "
                "AND c.oid = d.objoid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE " + _USER_NS),
    ('column', "SELECT n.nspname, c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), "
               "a.attnotnull::text, coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), ''), a.attidentity::text, "
               "a.attgenerated::text, CASE WHEN a.attcollation <> (SELECT t.typcollation FROM pg_catalog.pg_type t "
               "WHERE t.oid = a.atttypid) THEN (SELECT co.collname FROM pg_catalog.pg_collation co "
               "WHERE co.oid = a.attcollation) ELSE '' END, "
               "coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM pg_catalog.unnest(a.attacl) x), '') "
               "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
               "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
               "LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
               "WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') AND "
               + _USER_NS),
    ('index', "SELECT n.nspname, c.relname, pg_catalog.pg_get_indexdef(i.indexrelid), i.indisvalid::text "
              "FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
              "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE " + _USER_NS),
    ('constraint', "SELECT n.nspname, coalesce(r.relname, ''), co.conname, co.contype::text, "
                   "pg_catalog.pg_get_constraintdef(co.oid) FROM pg_catalog.pg_constraint co "
                   "JOIN pg_catalog.pg_namespace n ON n.oid = co.connamespace "
                   "LEFT JOIN pg_catalog.pg_class r ON r.oid = co.conrelid WHERE " + _USER_NS),
    ('type', "SELECT n.nspname, t.typname, t.typtype::text, coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY "
             "e.enumsortorder) FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid), ''), "
             "pg_catalog.format_type(t.typbasetype, t.typtypmod) FROM pg_catalog.pg_type t "
             "JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
             "WHERE (t.typrelid = 0 OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c') "
             "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type a WHERE a.typarray = t.oid) AND " + _USER_NS),
    ('function', "SELECT n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid), "
                 "coalesce(pg_catalog.pg_get_function_result(p.oid), ''), p.prokind::text, "
                 "md5(coalesce(p.prosrc, '')), p.prosecdef::text, p.provolatile::text, p.proisstrict::text, "
                 "p.proleakproof::text, p.proparallel::text, coalesce(p.proconfig::text, ''), "
                 "pg_catalog.pg_get_userbyid(p.proowner), " + _acl('p.proacl', "'f'", 'p.proowner') + ", "
                 "coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') FROM pg_catalog.pg_proc p "
                 "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE " + _USER_NS),
    ('trigger', "SELECT n.nspname, c.relname, t.tgname, pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled::text "
                "FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND " + _USER_NS),
    ('view', "SELECT n.nspname, c.relname, md5(pg_catalog.pg_get_viewdef(c.oid)) FROM pg_catalog.pg_class c "
             "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') AND " + _USER_NS),
    ('extension', 'SELECT e.extname, e.extversion FROM pg_catalog.pg_extension e'),
    # the database's own settings (ALTER DATABASE ... SET search_path, ALTER ROLE ... IN DATABASE ... SET),
    # owner and privileges: a migration may change them, and a down file may forget them
    ('database', "SELECT d.datname::text, pg_catalog.pg_get_userbyid(d.datdba), "
                 + _acl('d.datacl', "'d'", 'd.datdba') + ", "
                 "coalesce((SELECT string_agg(coalesce(pg_catalog.pg_get_userbyid(NULLIF(s.setrole, 0)), '*') || ':' "
                 "|| s.setconfig::text, ';' ORDER BY 1) FROM pg_catalog.pg_db_role_setting s "
                 "WHERE s.setdatabase = d.oid), '') FROM pg_catalog.pg_database d "
                 "WHERE d.datname = pg_catalog.current_database()"),
)

_KIND_WORDS = {'r': 'table', 'p': 'table', 'v': 'view', 'm': 'materialized view', 'S': 'sequence',
               'f': 'foreign table', 'c': 'composite type'}


# the current value of each sequence: not part of the digest (the service's own inserts move it on while a
# migration runs), but setval() is not transactional: a failed migration that set a sequence BACK left a change
# (the next inserts collide with existing keys) although its transaction was rolled back
SEQUENCE_VALUES = ("SELECT s.schemaname::text, s.sequencename::text, s.last_value, s.increment_by "
                   "FROM pg_catalog.pg_sequences s "
                   "WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema') "
                   "AND s.schemaname NOT LIKE 'pg\\_temp\\_%'")


class Fingerprint(object):
    """The sorted catalogue rows and their sha256 ``digest``; ``sequences``: {(schema, name): last value}
    (not in the digest)."""

    def __init__(self, rows, sequences=None):
        self.rows = sorted(set(rows))
        self.digest = hashlib.sha256(json.dumps(self.rows).encode('utf-8')).hexdigest()
        self.sequences = dict(sequences or {})

    def __eq__(self, other):
        return isinstance(other, Fingerprint) and self.digest == other.digest

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self.digest)


def _excluded(kind, row, exclude):
    """The tracking table of the tool (its schema when that holds nothing else, its sequence, key, index)."""
    for schema, table in exclude or ():
        if kind == 'schema':
            if row[0] == schema and schema != 'public':
                return True
            continue
        if kind == 'extension' or row[0] != schema:
            continue
        if row[1] == table or row[1].startswith(table + '_'):
            return True
    return False


def take(conn, exclude=None):
    """The fingerprint of every non-system schema of ``conn``'s database (autocommit or not: read only).

    ``exclude``: (schema, table) pairs of tracking tables to leave out. Raises the driver's error when the
    catalogue cannot be read (the caller then cannot prove anything).
    """
    rows = []
    with conn.cursor() as cur:
        for kind, sql in QUERIES:
            cur.execute(sql)
            for row in cur.fetchall():
                row = tuple('' if v is None else str(v) for v in row)
                if not _excluded(kind, row, exclude):
                    rows.append((kind,) + row)
        sequences = {}
        cur.execute(SEQUENCE_VALUES)
        for schema, name, value, increment in cur.fetchall():
            if not _excluded('relation', (schema, name), exclude):
                sequences[(schema, name)] = None if value is None else int(value)
                sequences[('increment', schema, name)] = int(increment)
    return Fingerprint(rows, sequences)


def old_sign(fp, key):
    """1 for an ascending sequence, -1 for a descending one."""
    return -1 if (fp.sequences.get(('increment',) + tuple(key)) or 1) < 0 else 1


def sequences_set_back(before, after):
    """Lines for each sequence whose value is lower after than before (setval() is not rolled back)."""
    if before is None or after is None:
        return []
    out = []
    for key in sorted(k for k in before.sequences if len(k) == 2):
        if key not in after.sequences or before.sequences[key] is None:
            continue
        old, new = before.sequences[key], after.sequences[key]
        # None: set back before its first value (setval(..., false))
        if new is None or (new - old) * old_sign(before, key) < 0:
            out.append('sequence %s.%s was set back from %d to %s (setval() is not undone by a rollback)'
                       % (key[0], key[1], old, 'its start' if new is None else new))
    return out


def _describe(row):
    kind = row[0]
    if kind == 'schema':
        return 'schema %s' % row[1]
    if kind == 'relation':
        return '%s %s.%s' % (_KIND_WORDS.get(row[3], 'relation'), row[1], row[2])
    if kind == 'column':
        return 'column %s.%s.%s (%s)' % (row[1], row[2], row[3], row[4])
    if kind in ('index', 'trigger', 'view'):
        return '%s %s.%s' % (kind, row[1], row[2] if kind != 'trigger' else row[3])
    if kind == 'constraint':
        return 'constraint %s on %s.%s' % (row[3], row[1], row[2]) if row[2] else 'constraint %s.%s' % (row[1], row[3])
    if kind == 'type':
        return 'type %s.%s' % (row[1], row[2])
    if kind == 'function':
        return 'function %s.%s(%s)' % (row[1], row[2], row[3])
    if kind == 'extension':
        return 'extension %s %s' % (row[1], row[2])
    if kind in ('policy', 'rule'):
        return '%s %s on %s.%s' % (kind, row[3], row[1], row[2])
    if kind == 'database':
        return 'owner, privileges or settings of database %s' % row[1]
    if kind in ('sequence', 'inherits', 'comment'):
        return '%s of %s.%s' % ({'sequence': 'parameters', 'inherits': 'inheritance',
                                 'comment': 'comment'}[kind], row[1], row[2])
    return ' '.join(row)


def differences(before, after, limit=8):
    """Readable lines of what differs between two fingerprints (empty when they are equal)."""
    if before is None or after is None or before == after:
        return []
    old, new = set(before.rows), set(after.rows)
    lines = ['added %s' % _describe(r) for r in sorted(new - old)]
    lines += ['removed or changed %s' % _describe(r) for r in sorted(old - new)]
    if len(lines) > limit:
        lines = lines[:limit] + ['... %d more' % (len(lines) - limit)]
    return lines
