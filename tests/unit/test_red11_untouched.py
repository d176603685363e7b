"""Red team 11: "untouched" (the database is provably as before) is said only when it is true.

The schema fingerprint sees the catalogue, not rows: data a failed migration committed is invisible to it.
These are failures after which data stayed committed although the position and the catalogue are as before.
"""

import os

from harness import drizzle_gen
from harness.alembic_gen import AlembicProject

from ansible_collections.homelab.migrations.plugins.module_utils.apply import run_apply
from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults, validate_service

from test_never_half_changed import drizzle_service

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
