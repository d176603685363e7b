"""Red team 11: "untouched" (the database is provably as before) is said only when it is true.

The schema fingerprint sees the catalogue, not rows: data a failed migration committed is invisible to it.
These are failures after which data stayed committed although the position and the catalogue are as before.
"""

import os

import pytest

from harness import drizzle_gen
from harness.alembic_gen import AlembicProject

from ansible_collections.homelab.migrations.plugins.module_utils.apply import run_apply
from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults, validate_service

from integration.plugins.module_utils.test_apply_never_half_changed import drizzle_service

BP = drizzle_gen.BP


def test_drizzle_commit_then_failure_in_one_chunk_is_not_untouched(fresh_db, tmp_path):
    """COMMIT and a failing statement in one chunk (no breakpoint between): the failure comes before any check
    of the transaction state, and the UPDATE before the COMMIT stayed (data: not in the fingerprint)."""
    fresh_db.execute("CREATE TABLE acct (id int PRIMARY KEY, balance int); INSERT INTO acct VALUES (1, 100)")
    files = [('0000_pay', "UPDATE acct SET balance = 0; COMMIT; SELECT 1/0;")]
    svc = drizzle_service(tmp_path, fresh_db.password_url, files)
    result = run_apply(svc[0], svc[1], {'allow_findings': ['ends_transaction']})
    assert result['failed'] is True
    assert fresh_db.query('SELECT balance FROM acct')[0][0] == 0  # the UPDATE stayed
    assert result['untouched'] is False and result['unrecorded_changes'] is True
    assert result['error_code'] == 'transaction_ended'
    assert 'nothing was committed' not in result['msg'] and 'nothing of this run stayed' not in result['msg']


def test_alembic_env_py_in_autocommit_is_not_untouched(fresh_db, tmp_path):
    """env.py connects with isolation_level="AUTOCOMMIT" (a habit for CREATE INDEX CONCURRENTLY): every
    statement commits by itself, so the UPDATE before the failing statement stayed."""
    fresh_db.execute("CREATE TABLE acct (id int PRIMARY KEY, balance int); INSERT INTO acct VALUES (1, 100)")
    proj = AlembicProject.init(tmp_path / 'svc')
    env = os.path.join(proj.root, proj.script_dir, 'env.py')
    with open(env) as fh:
        text = fh.read()
    with open(env, 'w') as fh:
        fh.write(text.replace('poolclass=pool.NullPool)', 'poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")'))
    proj.revision('one', 'r1')
    proj.revision('two', 'r2')
    proj.edit('r2', upgrade='    op.execute("UPDATE acct SET balance = 0")\n    op.execute("SELECT 1/0")\n')
    spec = service_defaults(dict(name='dash', tool='alembic', path=proj.root, database_url=fresh_db.password_url,
                                 alembic_command=[os.path.join(os.path.dirname(os.sys.executable), 'alembic')]))
    svc = (spec, validate_service(spec))
    assert run_apply(svc[0], svc[1], {'target': 'r1'})['applied'] == ['r1']
    result = run_apply(svc[0], svc[1], {})
    assert result['failed'] is True
    assert fresh_db.query('SELECT balance FROM acct')[0][0] == 0  # the UPDATE stayed
    assert result['untouched'] is False and result['unrecorded_changes'] is True
    assert 'nothing of this run stayed' not in result['msg']


# ----------------------------------------------------------------- going back "verified" by the fingerprint
# The role takes a service back by its down migrations and restores the backup unless the fingerprint re-read
# after going back equals the one taken before the run (migrate_all_back_verified). A down file that forgets
# to undo something the fingerprint does not see passes as "schema verified as before the run".
FORGOTTEN = {
    'policy_dropped': 'DROP POLICY own_rows ON notes;',
    'rls_disabled': 'ALTER TABLE notes DISABLE ROW LEVEL SECURITY;',
    'grant_to_public': 'GRANT ALL ON notes TO PUBLIC;',
    'security_definer': 'ALTER FUNCTION note_count() SECURITY DEFINER;',
    'function_search_path': "ALTER FUNCTION note_count() SET search_path = pg_temp, public;",
    'function_volatility': 'ALTER FUNCTION note_count() IMMUTABLE;',
    'table_owner': 'ALTER TABLE notes OWNER TO red11_other;',
    'sequence_increment': 'ALTER SEQUENCE notes_id_seq INCREMENT BY 1000;',
    'column_collation': 'ALTER TABLE notes ALTER COLUMN body TYPE text COLLATE "C";',
    'table_storage_param': 'ALTER TABLE notes SET (fillfactor = 10);',
    'rule_added': 'CREATE RULE no_delete AS ON DELETE TO notes DO INSTEAD NOTHING;',
    'inheritance': 'CREATE TABLE parent_t (id int); ALTER TABLE notes INHERIT parent_t; '
                   'ALTER TABLE notes NO INHERIT parent_t; DROP TABLE parent_t; ALTER TABLE notes INHERIT other_t;',
    'trigger_disabled': 'ALTER TABLE notes DISABLE TRIGGER notes_touch;',
    'comment': "COMMENT ON TABLE notes IS 'changed';",
    'database_setting': "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = red11_other, public', "
                        "current_database()); END $$;",
    'role_in_database_setting': "DO $$ BEGIN EXECUTE format('ALTER ROLE red11_other IN DATABASE %I SET work_mem "
                                "= ''64MB''', current_database()); END $$;",
    'database_grant': "DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO PUBLIC', current_database()); "
                      "END $$;",
}

BASE = """CREATE TABLE other_t (id int);
CREATE TABLE notes (id serial PRIMARY KEY, owner text, body text);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON notes USING (owner = current_user);
CREATE FUNCTION note_count() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM notes';
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER notes_touch BEFORE UPDATE ON notes FOR EACH ROW EXECUTE FUNCTION touch();
"""


@pytest.mark.parametrize('case', sorted(FORGOTTEN))
def test_going_back_is_verified_only_when_the_schema_is_as_before(fresh_db, tmp_path, case):
    role = 'red11_other_' + fresh_db.name
    fresh_db.execute('CREATE ROLE "%s" NOLOGIN' % role)
    try:
        check_going_back(fresh_db, tmp_path, case, role)
    finally:
        fresh_db.execute('DROP OWNED BY "%s"; DROP ROLE "%s"' % (role, role))


def check_going_back(fresh_db, tmp_path, case, role):
    from ansible_collections.homelab.migrations.plugins.plugin_utils.recovery import migrate_all_back_verified
    fresh_db.execute(BASE)
    forward = FORGOTTEN[case].replace('red11_other', role)
    files = [('0000_base', 'SELECT 1;'), ('0001_change', forward)]
    svc = drizzle_service(tmp_path, fresh_db.password_url, files)
    with open(os.path.join(str(tmp_path), 'migrations', '0001_change.down.sql'), 'w') as fh:
        fh.write('SELECT 1;')  # the down file forgets to undo it
    assert run_apply(svc[0], svc[1], {'target': '0000_base'})['applied'] == ['0000_base']
    up = run_apply(svc[0], svc[1], {})
    assert up['applied'] == ['0001_change'], up.get('msg')
    back = run_apply(svc[0], svc[1], {'target': '0000_base', 'action': 'rollback', 'allow_out_of_order': True,
                                      'allow_modified': True})
    assert back.get('reverted') == ['0001_change'], back.get('msg')
    # the change is still there (the down file did nothing): going back must not count as verified
    assert migrate_all_back_verified(back, up) is False


UNDONE = {
    'grant_revoke': ('GRANT SELECT ON notes TO PUBLIC;', 'REVOKE SELECT ON notes FROM PUBLIC;'),
    'column_grant_revoke': ('GRANT SELECT (body) ON notes TO PUBLIC;', 'REVOKE SELECT (body) ON notes FROM PUBLIC;'),
    'function_revoke_grant': ('REVOKE EXECUTE ON FUNCTION note_count() FROM PUBLIC;',
                              'GRANT EXECUTE ON FUNCTION note_count() TO PUBLIC;'),
    'policy_recreated': ('DROP POLICY own_rows ON notes;',
                         'CREATE POLICY own_rows ON notes USING (owner = current_user);'),
    'comment_removed': ("COMMENT ON TABLE notes IS 'x';", 'COMMENT ON TABLE notes IS NULL;'),
    'database_setting_reset': ("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET work_mem = ''64MB''', "
                               "current_database()); END $$;",
                               "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET work_mem', current_database()); "
                               "END $$;"),
}


@pytest.mark.parametrize('case', sorted(UNDONE))
def test_going_back_that_really_undid_it_is_verified(fresh_db, tmp_path, case):
    """The other side: a down file that restores the same state (GRANT then REVOKE leaves the privileges spelled
    out, not NULL) is verified, so the role does not restore a backup for nothing."""
    from ansible_collections.homelab.migrations.plugins.plugin_utils.recovery import migrate_all_back_verified
    fresh_db.execute(BASE)
    up_sql, down_sql = UNDONE[case]
    svc = drizzle_service(tmp_path, fresh_db.password_url, [('0000_base', 'SELECT 1;'), ('0001_change', up_sql)])
    with open(os.path.join(str(tmp_path), 'migrations', '0001_change.down.sql'), 'w') as fh:
        fh.write(down_sql)
    assert run_apply(svc[0], svc[1], {'target': '0000_base'})['applied'] == ['0000_base']
    up = run_apply(svc[0], svc[1], {})
    assert up['applied'] == ['0001_change'], up.get('msg')
    back = run_apply(svc[0], svc[1], {'target': '0000_base', 'action': 'rollback', 'allow_out_of_order': True,
                                      'allow_modified': True})
    assert back.get('reverted') == ['0001_change'], back.get('msg')
    assert migrate_all_back_verified(back, up) is True


@pytest.mark.parametrize('reset', ["SELECT setval('acct_id_seq', 1);", "SELECT setval('acct_id_seq', 1, false);"])
def test_a_sequence_set_back_by_a_failed_migration_is_not_untouched(fresh_db, tmp_path, reset):
    """setval() is not rolled back: the DELETE is undone, the sequence stays set back, the next insert collides."""
    fresh_db.execute("CREATE TABLE acct (id serial PRIMARY KEY, v int); INSERT INTO acct (v) SELECT 1 FROM "
                     "generate_series(1, 5)")
    files = [('0000_reset', 'DELETE FROM acct;\n' + BP + '\n' + reset + '\n' + BP + '\nSELECT 1/0;')]
    svc = drizzle_service(tmp_path, fresh_db.password_url, files)
    result = run_apply(svc[0], svc[1], {})
    assert result['failed'] is True
    assert fresh_db.query('SELECT count(*) FROM acct')[0][0] == 5  # rolled back...
    assert fresh_db.query("SELECT nextval('acct_id_seq')")[0][0] <= 2  # ...but the sequence stayed set back
    assert result['untouched'] is False and result['unrecorded_changes'] is True
    assert any('acct_id_seq' in c for c in result['schema_changes'])


def test_a_sequence_moved_on_by_the_service_meanwhile_is_still_untouched(fresh_db, tmp_path):
    """The other side: nextval() by the failed migration (or the service's own inserts) moves a sequence on,
    which is no change of the schema: an ordinary failure stays untouched."""
    fresh_db.execute("CREATE TABLE acct (id serial PRIMARY KEY, v int); INSERT INTO acct (v) VALUES (1)")
    files = [('0000_ins', 'INSERT INTO acct (v) VALUES (2);\n' + BP + '\nSELECT 1/0;')]
    svc = drizzle_service(tmp_path, fresh_db.password_url, files)
    result = run_apply(svc[0], svc[1], {})
    assert result['failed'] is True and result['untouched'] is True, result['msg']
