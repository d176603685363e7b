"""verify legacy emails (data migration)

Accounts created before 2025 were verified by hand before email_verified existed; mark them
verified. The rows this revision changes, and the value each one had, are kept in
email_verification_backfill_005 so that the downgrade puts back exactly what was there: rows
that were already verified stay verified, and users created since are not touched. Drop that
table in a later revision once a downgrade past 005 is no longer wanted.

Revision ID: 005
Revises: 004
Create Date: 2025-10-02 11:55:40.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '005'
down_revision: Union[str, Sequence[str], None] = '004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BACKUP = 'email_verification_backfill_005'


def upgrade() -> None:
    op.create_table(
        BACKUP,
        sa.Column('user_id', sa.Integer(), primary_key=True),
        sa.Column('previous_value', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name='fk_email_verification_backfill_005_user_id_users',
                                ondelete='CASCADE'),
    )
    # remember the rows the UPDATE below changes, with their value before it
    op.execute(
        "INSERT INTO email_verification_backfill_005 (user_id, previous_value) "
        "SELECT id, email_verified FROM users "
        "WHERE created_at < '2025-01-01' AND email_verified IS DISTINCT FROM true"
    )
    op.execute("UPDATE users SET email_verified = true WHERE created_at < '2025-01-01'")


def downgrade() -> None:
    # restore the remembered values of exactly the rows the upgrade changed
    op.execute(
        "UPDATE users SET email_verified = b.previous_value "
        "FROM email_verification_backfill_005 AS b WHERE users.id = b.user_id"
    )
    op.drop_table(BACKUP)
