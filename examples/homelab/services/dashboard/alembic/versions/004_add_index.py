"""add indexes on users.created_at and users.email

Revision ID: 004
Revises: 003
Create Date: 2025-08-21 14:27:12.000000

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '004'
down_revision: Union[str, Sequence[str], None] = '003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Sign-up reports filter on created_at; log-in looks users up by email."""
    op.create_index('ix_users_created_at', 'users', ['created_at'])
    op.create_index('ix_users_email', 'users', ['email'])


def downgrade() -> None:
    op.drop_index('ix_users_email', table_name='users')
    op.drop_index('ix_users_created_at', table_name='users')
