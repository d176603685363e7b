"""Issue 11: after a failure, every claim of the apply comes from what the database really holds.

Real PostgreSQL, the real drizzle adapter and the real alembic CLI: a migration that ends its transaction
itself (COMMIT, ROLLBACK, BEGIN ... COMMIT, END, COMMIT AND CHAIN), an alembic revision with
autocommit_block() followed by a failing statement; the result fields (error_code, untouched, committed,
failed_migration, unrecorded_changes) and the audit record say what stayed.
"""

import json
import os

import pytest

from harness import drizzle_gen
from harness.alembic_gen import AlembicProject

from ansible_collections.homelab.migrations.plugins.module_utils import fingerprint
from ansible_collections.homelab.migrations.plugins.module_utils.apply import run_apply
from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults, validate_service

BP = drizzle_gen.BP
WHEN = drizzle_gen.BASE_WHEN


def drizzle_service(root, url, files):
    """A drizzle service whose migrations are ``files`` [(tag, sql)], in journal order."""
    folder = os.path.join(str(root), 'migrations')
    os.makedirs(folder, exist_ok=True)
    entries = []
    for i, (tag, sql) in enumerate(files):
        with open(os.path.join(folder, tag + '.sql'), 'w') as fh:
            fh.write(sql)
        entries.append(drizzle_gen.journal_entry(i, tag, WHEN + i * 1000))
    drizzle_gen.write_journal(folder, entries)
    spec = service_defaults(dict(name='svc', tool='drizzle', path=str(root), database_url=url))
    return spec, validate_service(spec)


def records(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def tables(db):
    return sorted(r[0] for r in db.query("SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace "
                                         "WHERE nspname = 'public' AND relkind = 'r'"))


ENDING = {
    'commit_then_failure': 'CREATE TABLE a (id int);\n' + BP + '\nCOMMIT;\n' + BP + '\nSELECT no_such_function();',
    'begin_commit_block': 'BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n' + BP + '\nSELECT no_such_function();',
    'end_then_failure': 'CREATE TABLE a (id int);\nEND;\n' + BP + '\nCREATE TABLE b (id int);\n' + BP + '\nSELECT 1/0;',
    'commit_begin_one_chunk': 'CREATE TABLE a (id int); COMMIT; BEGIN; CREATE TABLE b (id int);',
    'commit_and_chain': 'CREATE TABLE a (id int);\n' + BP + '\nCOMMIT AND CHAIN;\n' + BP + '\nCREATE TABLE b (id int);',
}


@pytest.mark.parametrize('case', sorted(ENDING))
def test_a_migration_that_commits_itself_is_a_change(fresh_db, tmp_path, case):
    log = str(tmp_path / 'audit.jsonl')
    files = [('0000_ok', 'CREATE TABLE first_one (id int);'), ('0001_commits', ENDING[case])]
    svc = drizzle_service(tmp_path, fresh_db.password_url, files)
    # the pre-flight check refuses such SQL before anything is touched...
    refused = run_apply(svc[0], svc[1], {'audit_log': log})
    assert refused['failed'] is True and refused['error_code'] == 'preflight' and refused['untouched'] is True
    assert [f['code'] for f in refused['findings']] == ['ends_transaction']
    assert tables(fresh_db) == [] and drizzle_gen.tracking_rows(fresh_db) is None
    # ...and when it is allowed anyway, the run stops right after the statement and says what stayed
    result = run_apply(svc[0], svc[1], {'audit_log': log, 'allow_findings': ['ends_transaction']})
    assert result['failed'] is True
    assert result['error_code'] == 'transaction_ended'
    assert result['untouched'] is False and result['unrecorded_changes'] is True
    assert result['failed_migration'] == '0001_commits'
    assert 'ended the transaction itself' in result['msg'] and 'NOT recorded' in result['msg']
    # the COMMIT committed 0000 and its tracking row with it: the result says so, from the re-read
    rows = drizzle_gen.tracking_rows(fresh_db)
    assert [r[2] for r in rows] == [WHEN]
    assert result['committed'] == ['0000_ok'] and result['applied'] == ['0000_ok']
    assert 'a' in tables(fresh_db) and 'first_one' in tables(fresh_db)
    assert any('table public.a' in c for c in result['schema_changes'])
    assert 'b' not in tables(fresh_db)  # what came after the end was rolled back
    rec = records(log)[-1]
    assert rec['outcome'] == 'failed' and rec['untouched'] is False and rec['committed'] == ['0000_ok']
    assert rec['error_code'] == 'transaction_ended' and rec['unrecorded_changes'] is True


def test_rollback_in_a_migration_is_never_recorded_as_applied(fresh_db, tmp_path):
    """ROLLBACK throws away what ran before it; the migration used to be recorded as applied anyway."""
    svc = drizzle_service(tmp_path, fresh_db.password_url,
                          [('0000_rollback', 'CREATE TABLE a (id int);\n' + BP + '\nROLLBACK;\n' + BP
                            + '\nCREATE TABLE b (id int);')])
    result = run_apply(svc[0], svc[1], {'allow_findings': ['ends_transaction']})
    assert result['failed'] is True and result['error_code'] == 'transaction_ended'
    assert result['failed_migration'] == '0000_rollback'
    assert drizzle_gen.tracking_rows(fresh_db) in (None, [])
    assert tables(fresh_db) == []
    assert result['committed'] == [] and result['untouched'] is False


def test_an_ordinary_failure_is_proved_untouched(fresh_db, tmp_path):
    log = str(tmp_path / 'audit.jsonl')
    files = [('0000_ok', 'CREATE TABLE a (id int);'),
             ('0001_bad', 'CREATE TABLE b (id int);\n' + BP + '\nSELECT no_such_function();')]
    svc = drizzle_service(tmp_path, fresh_db.password_url, files)
    before = fresh_db.snapshot()
    result = run_apply(svc[0], svc[1], {'audit_log': log})
    assert result['failed'] is True and result['error_code'] == 'apply_failed'
    assert result['untouched'] is True and result['committed'] == [] and result['unrecorded_changes'] is False
    assert result['failed_migration'] == '0001_bad' and result['retryable'] is False
    assert result['fingerprint']['before'] is not None
    assert result['fingerprint']['before'] == result['fingerprint']['after']
    assert 'its schemas are as before the run' in result['msg']
    assert fresh_db.snapshot() == before
    assert records(log)[-1]['untouched'] is True


def test_each_mode_commits_the_earlier_migrations(fresh_db, tmp_path):
    files = [('0000_ok', 'CREATE TABLE a (id int);'), ('0001_bad', 'SELECT no_such_function();')]
    svc = drizzle_service(tmp_path, fresh_db.password_url, files)
    result = run_apply(svc[0], svc[1], {'transaction': 'each'})
    assert result['failed'] is True and result['untouched'] is False
    assert result['committed'] == ['0000_ok'] and result['unrecorded_changes'] is False
    assert result['to_revision'] == '0000_ok' and result['from_revision'] is None


def test_fingerprint_sees_schema_objects_but_not_the_tracking_table(fresh_db):
    conn = fresh_db.conn()
    try:
        conn.autocommit = True
        exclude = [('drizzle', '__drizzle_migrations')]
        empty = fingerprint.take(conn, exclude)
        with conn.cursor() as cur:
            cur.execute('CREATE SCHEMA drizzle; CREATE TABLE drizzle.__drizzle_migrations '
                        '(id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)')
        assert fingerprint.take(conn, exclude) == empty
        steps = ["CREATE TYPE mood AS ENUM ('a', 'b')", "ALTER TYPE mood ADD VALUE 'c'", 'CREATE TABLE t (id int)',
                 'ALTER TABLE t ADD COLUMN n text', 'CREATE INDEX t_n ON t (n)', 'ALTER TABLE t ADD PRIMARY KEY (id)',
                 'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$',
                 'CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$',
                 'CREATE VIEW v AS SELECT id FROM t', 'ALTER TABLE t ALTER COLUMN n SET NOT NULL',
                 'CREATE SCHEMA other', 'CREATE SEQUENCE other.s']
        seen = [empty]
        for sql in steps:
            with conn.cursor() as cur:
                cur.execute(sql)
            now = fingerprint.take(conn, exclude)
            assert now not in seen, sql
            assert fingerprint.differences(seen[-1], now), sql
            seen.append(now)
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------- alembic
AUTOCOMMIT_UP = '''    op.create_table("t_r2", sa.Column("id", sa.Integer, primary_key=True))
    with op.get_context().autocommit_block():
        op.execute("CREATE INDEX CONCURRENTLY ix_r1_note ON t_r1 (note)")
    op.execute("SELECT no_such_function_r2()")
'''


def alembic_service(tmp_path, url):
    proj = AlembicProject.init(tmp_path / 'svc')
    proj.revision('one', 'r1')
    proj.revision('two', 'r2')
    proj.edit('r2', upgrade=AUTOCOMMIT_UP)
    spec = service_defaults(dict(name='dash', tool='alembic', path=proj.root, database_url=url,
                                 alembic_command=[os.path.join(os.path.dirname(os.sys.executable), 'alembic')]))
    return proj, (spec, validate_service(spec))


@pytest.mark.parametrize('start', ['base', 'r1'])
def test_alembic_autocommit_block_then_failure_is_not_nothing_changed(fresh_db, tmp_path, start):
    proj, svc = alembic_service(tmp_path, fresh_db.password_url)
    if start == 'r1':
        assert run_apply(svc[0], svc[1], {'target': 'r1'})['applied'] == ['r1']
    log = str(tmp_path / 'audit.jsonl')
    result = run_apply(svc[0], svc[1], {'audit_log': log})
    assert result['failed'] is True
    # alembic committed r1 (and its version row) when the autocommit block began
    assert proj.current(fresh_db.url) == ['r1']
    assert result['to_revision'] == 'r1'
    assert result['committed'] == ([] if start == 'r1' else ['r1'])
    assert result['untouched'] is False and result['unrecorded_changes'] is True
    assert any('ix_r1_note' in c for c in result['schema_changes'])
    assert 'nothing of this run stayed' not in result['msg'] and 'database is unchanged' not in result['msg']
    assert 'restore the backup' in result['msg']
    assert fresh_db.query("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_r1_note'")[0][0] == 1
    rec = records(log)[-1]
    assert rec['untouched'] is False and rec['unrecorded_changes'] is True


def test_alembic_plain_failure_is_proved_untouched(fresh_db, tmp_path):
    proj = AlembicProject.init(tmp_path / 'svc')
    proj.revision('one', 'r1')
    proj.revision('two', 'r2')
    proj.edit('r2', upgrade='    op.create_table("x", sa.Column("id", sa.Integer))\n    op.execute("SELECT 1/0")\n')
    spec = service_defaults(dict(name='dash', tool='alembic', path=proj.root, database_url=fresh_db.password_url,
                                 alembic_command=[os.path.join(os.path.dirname(os.sys.executable), 'alembic')]))
    svc = (spec, validate_service(spec))
    assert run_apply(svc[0], svc[1], {'target': 'r1'})['applied'] == ['r1']
    result = run_apply(svc[0], svc[1], {})
    assert result['failed'] is True and result['untouched'] is True and result['committed'] == []
    assert result['failed_migration'] == 'r2' and result['error_code'] == 'apply_failed'


@pytest.mark.parametrize('sql', [
    'SAVEPOINT s; CREATE TABLE a (id int); ROLLBACK TO SAVEPOINT s; CREATE TABLE b (id int);',
    "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;",
    'CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;',
    "DO $$ BEGIN PERFORM 1; END $$;",
    "CREATE TABLE c (v text DEFAULT 'COMMIT; END');",
])
def test_no_finding_and_no_stop_for_statements_that_keep_the_transaction(fresh_db, tmp_path, sql):
    svc = drizzle_service(tmp_path, fresh_db.password_url, [('0000_fine', sql)])
    result = run_apply(svc[0], svc[1], {})
    assert 'failed' not in result, result.get('msg')
    assert result['findings'] == [] and result['applied'] == ['0000_fine']


def test_a_pinned_apply_finds_another_run_already_did_the_same(fresh_db, tmp_path):
    """Four runs confirmed the same plan: the later ones find it done, nothing conflicting is left to do."""
    files = [('0000_a', 'CREATE TABLE a (id int);'), ('0001_b', 'CREATE TABLE b (id int);')]
    svc = drizzle_service(tmp_path, fresh_db.password_url, files)
    assert run_apply(svc[0], svc[1], {'target': '0001_b', 'expect_from': 'base'})['applied'] == ['0000_a', '0001_b']
    again = run_apply(svc[0], svc[1], {'target': '0001_b', 'expect_from': 'base'})
    assert 'failed' not in again and again['conflict'] is False and again['outcome'] == 'unchanged'
    # elsewhere than the plan's start and its target: refused, naming both revisions
    moved = run_apply(svc[0], svc[1], {'target': '0000_a', 'expect_from': 'base'})
    assert moved['failed'] is True and moved['conflict'] is True and moved['error_code'] == 'conflict'
    assert '0001_b' in moved['msg'] and 'not at base' in moved['msg'] and tables(fresh_db) == ['a', 'b']
