# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a restore meets in the database and in the backup: extensions, schemas, and the SQL of ``clean: database``.

Read-only catalog queries (psycopg2; without it nothing is known and the lists are empty), the
extensions a backup creates (from ``pg_restore --list`` or a plain dump's text), a restore list without
the extensions another role owns, and the SQL that empties a database (every schema and large object)
before a ``clean: database`` restore (PostgreSQL 15+ recreates ``public`` owned by pg_database_owner).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.homelab.migrations.plugins.module_utils import connection
from ansible_collections.homelab.migrations.plugins.module_utils.backup.tools import connect, major_of

_WIPE_SQL = """DO $homelab$
DECLARE r record;
BEGIN
  FOR r IN SELECT nspname FROM pg_catalog.pg_namespace
           WHERE nspname NOT IN ('pg_catalog', 'information_schema')
             AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp\\_%' LOOP
    EXECUTE pg_catalog.format('DROP SCHEMA %I CASCADE', r.nspname);
  END LOOP;
  PERFORM pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;
END
$homelab$;
"""
# the public schema as initdb makes it (PostgreSQL 15+ / older)
_PUBLIC_SQL_15 = """CREATE SCHEMA public AUTHORIZATION pg_database_owner;
COMMENT ON SCHEMA public IS 'standard public schema';
GRANT USAGE ON SCHEMA public TO PUBLIC;
"""
_PUBLIC_SQL_OLD = """CREATE SCHEMA public;
COMMENT ON SCHEMA public IS 'standard public schema';
GRANT ALL ON SCHEMA public TO PUBLIC;
"""


def wipe_sql(server_num):
    """SQL that drops every schema and large object of the database, then recreates an empty public schema."""
    return _WIPE_SQL + (_PUBLIC_SQL_15 if major_of(server_num) >= 1500 else _PUBLIC_SQL_OLD)


_EXTENSIONS_SQL = """
SELECT e.extname, n.nspname, pg_catalog.pg_has_role(e.extowner, 'USAGE')
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
"""
_CAN_CREATE_SQL = """
SELECT r.rolsuper, pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'), current_user
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""
# pg_restore --list lines: "<id>; <tableoid> <oid> <DESC> <namespace> <tag> <owner>"
_TOC_RE = re.compile(r'^\d+; \d+ \d+ (EXTENSION|SCHEMA|COMMENT|ACL) - (.*?) ?$')


def extension_facts(dburl, params, names):
    """What the restoring role can do about the extensions ``names`` a backup holds (read only; None: all
    the database has).

    Returns {'kept': {name: schema}, 'missing': [names it cannot create], 'user': name}: ``kept`` are
    installed extensions the role does not own (a superuser created them): a restore with this role
    can neither drop nor re-create them, so it leaves them as they are; ``missing`` are extensions
    the backup needs that are not installed and that this role may not create (not a superuser, and
    the extension is not trusted or the role lacks CREATE on the database). Nothing is known
    without psycopg2 (then both are empty).
    """
    facts = {'kept': {}, 'missing': [], 'user': None}
    if names == [] or not connection.HAS_PSYCOPG2:
        return facts
    conn = connect(dburl, params)
    try:
        with conn.cursor() as cur:
            cur.execute(_CAN_CREATE_SQL)
            superuser, may_create, facts['user'] = cur.fetchone()
            cur.execute(_EXTENSIONS_SQL)
            installed = dict((name, (schema, own)) for name, schema, own in cur.fetchall())
            if names is None:  # every extension pg_dump dumps (not the built-in ones in pg_catalog)
                names = sorted(n for n, (schema, _own) in installed.items() if schema != 'pg_catalog')
            absent = [n for n in names if n not in installed]
            trusted = {}
            if absent and not superuser:
                cur.execute('SELECT name, bool_or(trusted) FROM pg_catalog.pg_available_extension_versions '
                            'WHERE name = ANY(%s) GROUP BY name', (absent,))
                trusted = dict(cur.fetchall())
    finally:
        conn.close()
    for name in names:
        if name in installed:
            if not superuser and not installed[name][1]:
                facts['kept'][name] = installed[name][0]
        elif not superuser and not (trusted.get(name) and may_create):
            facts['missing'].append(name)
    return facts


_UNOWNED_SCHEMAS_SQL = """
SELECT n.nspname, pg_catalog.pg_get_userbyid(n.nspowner)
FROM pg_catalog.pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND NOT (n.nspname = ANY(%s))
  AND NOT pg_catalog.pg_has_role(current_user, n.nspowner, 'USAGE')
  AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
ORDER BY 1
"""


def unowned_schemas(dburl, params, kept_schemas):
    """[(schema, owner)] that ``clean: database`` would drop but the restoring role may not (it neither owns
    them nor is a member of their owner, and is no superuser): the public schema of a database another role
    owns (PostgreSQL 15+: owned by pg_database_owner), a schema a superuser made. Read only; [] without
    psycopg2."""
    if not connection.HAS_PSYCOPG2:
        return []
    conn = connect(dburl, params)
    try:
        with conn.cursor() as cur:
            cur.execute(_UNOWNED_SCHEMAS_SQL, (sorted(kept_schemas),))
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def _toc_entry(line):
    """(DESC, tag and owner words) of a ``pg_restore --list`` line about a database-level object, or None."""
    match = _TOC_RE.match(line)
    return (match.group(1), match.group(2).split(' ')) if match else None


def toc_extensions(toc):
    """Extension names a backup's ``pg_restore --list`` output creates."""
    out = []
    for line in toc.splitlines():
        entry = _toc_entry(line)
        if entry and entry[0] == 'EXTENSION':
            out.append(entry[1][0])
    return out


def filtered_toc(toc, kept):
    """``pg_restore --list`` output without the entries a role that does not own the ``kept`` extensions
    ({name: schema}) cannot restore: the extensions, their comments, and the schema each lives in
    (created/dropped with it), with that schema's comment and grants (commented out: pg_restore -L skips them)."""
    schemas = set(kept.values())
    out = []
    for line in toc.splitlines():
        entry = _toc_entry(line)
        if entry:
            desc, words = entry
            target = tuple(words[:2]) if desc in ('COMMENT', 'ACL') else (desc, words[0])
            if target[0] == 'EXTENSION' and target[1] in kept or target[0] == 'SCHEMA' and target[1] in schemas:
                out.append(';' + line)
                continue
        out.append(line)
    return '\n'.join(out) + '\n'


# one loop per kind of object in a schema that holds an extension this role does not own: drop it unless it is
# one of the extensions' members (pg_depend deptype 'e'), and unless an earlier CASCADE took it already
_DROP_NON_MEMBERS = """  FOR r IN SELECT {a}.oid, {drop} AS sql
           FROM pg_catalog.{table} {a}
           WHERE {where}
             AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.{table}'::regclass
                             AND d.objid = {a}.oid AND d.deptype = 'e') LOOP
    IF EXISTS (SELECT 1 FROM pg_catalog.{table} WHERE oid = r.oid) THEN EXECUTE r.sql; END IF;
  END LOOP;
"""
_WIPE_KEEPING_SQL = """DO $homelab$
DECLARE r record; keep oid[];
BEGIN
  keep := ARRAY(SELECT e.extnamespace FROM pg_catalog.pg_extension e WHERE e.extname = ANY(%s));
  FOR r IN SELECT oid, nspname FROM pg_catalog.pg_namespace
           WHERE nspname NOT IN ('pg_catalog', 'information_schema')
             AND nspname NOT LIKE 'pg\\_toast%%' AND nspname NOT LIKE 'pg\\_temp\\_%%' LOOP
    IF r.oid <> ALL(keep) THEN
      EXECUTE pg_catalog.format('DROP SCHEMA %%I CASCADE', r.nspname);
    END IF;
  END LOOP;
  -- the schemas that hold an extension this role does not own: everything in them but the extensions' members
""" + ''.join(_DROP_NON_MEMBERS.format(**kind) for kind in (
    dict(a='c', table='pg_class', where="c.relnamespace = ANY(keep) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')",
         drop="""pg_catalog.format('%%s %%s CASCADE', CASE c.relkind WHEN 'v' THEN 'DROP VIEW IF EXISTS'
             WHEN 'm' THEN 'DROP MATERIALIZED VIEW IF EXISTS' WHEN 'S' THEN 'DROP SEQUENCE IF EXISTS'
             WHEN 'f' THEN 'DROP FOREIGN TABLE IF EXISTS' ELSE 'DROP TABLE IF EXISTS' END, c.oid::regclass)"""),
    dict(a='p', table='pg_proc', where='p.pronamespace = ANY(keep)',
         drop="pg_catalog.format('DROP ROUTINE IF EXISTS %%s CASCADE', p.oid::regprocedure)"),
    dict(a='t', table='pg_type',
         where="t.typnamespace = ANY(keep) AND t.typtype IN ('c', 'd', 'e', 'r', 'm') AND t.typrelid = 0",
         drop="pg_catalog.format('DROP TYPE IF EXISTS %%s CASCADE', t.oid::regtype)"),
)) + """  PERFORM pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;
END
$homelab$;
"""


def wipe_keeping_sql(server_num, kept):
    """wipe_sql that leaves the ``kept`` extensions ({name: schema}) and the schemas they live in standing."""
    names = 'ARRAY[%s]::name[]' % ', '.join("'%s'" % n.replace("'", "''") for n in sorted(kept))
    sql = _WIPE_KEEPING_SQL % names
    if 'public' not in kept.values():
        sql += _PUBLIC_SQL_15 if major_of(server_num) >= 1500 else _PUBLIC_SQL_OLD
    return sql


_PLAIN_EXTENSION_RE = re.compile(r'^CREATE EXTENSION IF NOT EXISTS ("(?:[^"]|"")+"|[\w$]+)', re.M)


def plain_extensions(path):
    """Extension names a plain-format backup creates (pg_dump writes each CREATE EXTENSION on a line of its own)."""
    names = []
    try:
        with open(path, 'rb') as fh:
            for raw in fh:
                if raw.startswith(b'CREATE EXTENSION IF NOT EXISTS '):
                    match = _PLAIN_EXTENSION_RE.match(raw.decode('utf-8', 'replace'))
                    if match:
                        name = match.group(1)
                        names.append(name[1:-1].replace('""', '"') if name.startswith('"') else name)
    except OSError:
        return []
    return names


def archive_dbname(listing):
    """The database name pg_dump recorded in an archive (``; Dbname: x`` in ``pg_restore --list``), or None."""
    for line in (listing or '').splitlines():
        match = re.match(r'^;\s+dbname:\s*(.*?)\s*$', line, re.I)
        if match:
            return match.group(1)
    return None
