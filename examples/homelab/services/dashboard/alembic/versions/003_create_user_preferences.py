"""create user_preferences

Revision ID: 003
Revises: 002
Create Date: 2025-06-09 09:02:55.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '003'
down_revision: Union[str, Sequence[str], None] = '002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """One row of display settings per user."""
    op.create_table(
        'user_preferences',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('theme', sa.String(20), nullable=False, server_default='dark'),
        sa.Column('timezone', sa.String(64), nullable=False, server_default='UTC'),
        sa.Column('notifications_enabled', sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name='fk_user_preferences_user_id_users',
                                ondelete='CASCADE'),
        sa.UniqueConstraint('user_id', name='uq_user_preferences_user_id'),
    )


def downgrade() -> None:
    op.drop_table('user_preferences')
