"""Pre-flight pieces without a database: the PostgreSQL lexer and rules, alembic's upgrade() calls,
the status table, the status report and the Prometheus textfile."""

import pytest

from ansible_collections.homelab.migrations.plugins.module_utils import report
from ansible_collections.homelab.migrations.plugins.module_utils.preflight import alembic_calls, findings, transaction
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.lexer import split_sql
from ansible_collections.homelab.migrations.plugins.plugin_utils.text import migrate_all_status_table


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


def test_statement_head_drops_comments_and_masks_password_literals():
    text = "-- make the role\n\nCREATE ROLE r LOGIN PASSWORD 's3cr3t-pw'\n  VALID UNTIL 'infinity'\n  IN ROLE x"
    head = findings.statement_head(text)
    assert head == "CREATE ROLE r LOGIN PASSWORD '********'\n  VALID UNTIL 'infinity'"
    assert 's3cr3t' not in head


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


ALEMBIC_REV = b'''
from alembic import op
import sqlalchemy as sa

revision = "r2"


def upgrade():
    op.execute("SELECT 'VACUUM'")
    op.create_index("i", "t", ["c"], postgresql_concurrently=True)
    with op.get_context().autocommit_block():
        op.execute(sa.text("VACUUM t"))
        op.drop_index("j", postgresql_concurrently=True)
    op.get_bind().execute(sa.text("ALTER TYPE mood ADD VALUE 'x'; UPDATE t SET m = 'x'"))
    op.execute(some_variable)


def downgrade():
    op.execute("VACUUM")
'''


def test_alembic_upgrade_calls_and_transactions():
    calls = alembic_calls.alembic_upgrade_calls(ALEMBIC_REV)
    assert [(c[1], c[2]) for c in calls] == [(False, 9), (False, 10), (True, 12), (True, 13), (False, 14)]
    txs = alembic_calls.alembic_transactions('r2', calls)
    assert len(txs) == 2
    found = transaction.transaction_findings(txs, 160000, lambda *a: 'advice')
    assert [(f['code'], f['statement']) for f in found] == [
        ('not_in_transaction', 'op.create_index("i", "t", ["c"], postgresql_concurrently=True)'),
        ('not_in_transaction', "UPDATE t SET m = 'x'")]


def test_blocking_and_allow():
    found = [findings.finding('m', None, 'byte_order_mark', 'error', 'x'),
             findings.finding('m', None, 'changing-column-type', 'warning', 'y', source='squawk')]
    assert [f['code'] for f in findings.blocking(found)] == ['byte_order_mark']
    assert findings.blocking(found, ['byte_order_mark']) == []
    assert findings.blocking(found, ['all']) == []


STATUS = {'success': True, 'overall_status': 'pending', 'total_pending': 1, 'services': {
    'bot': {'status': 'pending', 'tool': 'drizzle', 'current_revision': '0001_a', 'latest_revision': '0002_b',
            'applied': 2, 'pending': 1, 'pending_migrations': ['0002_b'], 'problems': [],
            'lock': {'held': False, 'holder': None},
            'findings': [
                {'migration': '0002_b', 'statement': 'CREATE INDEX CONCURRENTLY "i"\n  ON "users" ("c")',
                 'code': 'not_in_transaction', 'severity': 'error', 'message': 'PostgreSQL refuses it',
                 'source': 'homelab.migrations'},
                {'migration': '0002_b', 'statement': 'ALTER TABLE users ALTER COLUMN c TYPE text',
                 'code': 'changing-column-type', 'severity': 'warning', 'message': 'rewrites (table users: 2.3 GB)',
                 'source': 'squawk'}],
            'lint': {'linter': 'squawk', 'ran': True, 'reason': None}},
    'dash': {'status': 'pending', 'tool': 'alembic', 'pending': 1, 'pending_migrations': ['r2'], 'problems': [],
             'findings': [], 'lint': {'linter': 'squawk', 'ran': False, 'reason': 'alembic SQL needs env.py'}}}}


def test_status_table_shows_findings_under_the_service():
    lines = migrate_all_status_table(STATUS, ['dash', 'bot'])
    text = '\n'.join(lines)
    bot = lines.index(next(line for line in lines if line.startswith('bot')))
    assert lines[bot + 2] == '    error    [not_in_transaction] 0002_b: PostgreSQL refuses it'
    assert lines[bot + 3] == '             > CREATE INDEX CONCURRENTLY "i" ON "users" ("c")'
    assert '    warning  [changing-column-type] 0002_b: rewrites (table users: 2.3 GB)' in lines
    assert '    lint     skipped: alembic SQL needs env.py' in text


def test_status_report_and_prometheus_carry_findings():
    rep = report.status_report(STATUS, generated_at='t')
    assert rep['services']['bot']['findings'] == STATUS['services']['bot']['findings']
    assert rep['services']['dash']['findings'] == []
    text = report.prometheus_text(STATUS, now=1.0)
    assert 'homelab_migration_findings{service="bot",severity="error"} 1' in text
    assert 'homelab_migration_findings{service="bot",severity="warning"} 1' in text
    assert 'homelab_migration_findings{service="bot",severity="info"} 0' in text
    assert 'homelab_migration_findings{service="dash",severity="error"} 0' in text
    assert text.count('# TYPE homelab_migration_findings gauge') == 1
