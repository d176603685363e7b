"""preflight/lexer.py: the PostgreSQL lexer (kinds; comments, literals and dollar quotes are not statements) and the
rules read from its statements. No database needed."""

import pytest

from ansible_collections.homelab.migrations.plugins.module_utils.preflight import transaction
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.lexer import split_sql


def kinds(sql):
    return [transaction.no_transaction_kind(s) for s in split_sql(sql)]


@pytest.mark.parametrize('sql, kind', [
    ('create index concurrently i on t (c)', 'CREATE INDEX CONCURRENTLY'),
    ('CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (c)', 'CREATE INDEX CONCURRENTLY'),
    ('DROP INDEX CONCURRENTLY IF EXISTS i', 'DROP INDEX CONCURRENTLY'),
    ('REINDEX (VERBOSE) TABLE CONCURRENTLY t', 'REINDEX TABLE CONCURRENTLY'),
    ('REINDEX DATABASE d', 'REINDEX DATABASE'),
    ('vacuum full t', 'VACUUM'),
    ("ALTER SYSTEM SET work_mem = '8MB'", 'ALTER SYSTEM'),
    ('CREATE DATABASE x', 'CREATE DATABASE'),
    ('DROP DATABASE IF EXISTS x', 'DROP DATABASE'),
    ("CREATE TABLESPACE s LOCATION '/x'", 'CREATE TABLESPACE'),
    ('DROP TABLESPACE s', 'DROP TABLESPACE'),
    ('ALTER DATABASE d SET TABLESPACE s', 'ALTER DATABASE ... SET TABLESPACE'),
    ('ALTER TABLE p DETACH PARTITION c CONCURRENTLY', 'ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY'),
    ('CLUSTER', 'CLUSTER (without a table)'),
    ('CLUSTER t USING i', None),
    ('CREATE INDEX i ON t (c)', None),
    ('REINDEX TABLE t', None),
    ("ALTER DATABASE d SET work_mem = '1MB'", None),
])
def test_kinds(sql, kind):
    assert kinds(sql) == [kind]


def test_comments_literals_and_dollar_quotes_are_not_statements():
    sql = ("-- VACUUM;\n/* CREATE DATABASE x; /* nested; */ VACUUM; */\nSELECT 'VACUUM; ALTER SYSTEM', "
           "E'it\\'s; VACUUM', \"VACUUM;\";\nDO $do$ BEGIN EXECUTE 'VACUUM'; END $do$;\n"
           "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\nSELECT $1::text")
    assert kinds(sql) == [None, None, None, None]
    assert [s.text.split()[0] for s in split_sql(sql)] == ['SELECT', 'DO', 'CREATE', 'SELECT']


def test_enum_rules():
    def advice(kind, migration, later):
        return '[%s %s %s]' % (kind, migration, later)
    tx = [('m1', s) for s in split_sql("ALTER TYPE \"s\".\"Mood\" ADD VALUE IF NOT EXISTS 'ok'; "
                                       "SELECT 'ok ' || 'x'")]
    tx += [('m2', s) for s in split_sql("UPDATE t SET m = 'ok'")]
    found = transaction.transaction_findings([tx], 150000, advice)
    assert [(f['migration'], f['message'].endswith('[enum_later m1 m2]')) for f in found] == [('m2', True)]
    # one transaction per migration: nothing to say
    assert transaction.transaction_findings([tx[:2], tx[2:]], 150000, advice) == []
    # before PostgreSQL 12 ADD VALUE itself is refused in a transaction
    old = transaction.transaction_findings([tx[:1]], 110005, advice)
    assert [f['code'] for f in old] == ['not_in_transaction'] and 'PostgreSQL 11.0' in old[0]['message']
