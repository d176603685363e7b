"""preflight/alembic_calls.py: the op calls of alembic's upgrade() and their transactions. No database needed."""

from ansible_collections.homelab.migrations.plugins.module_utils.preflight import alembic_calls, transaction

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
