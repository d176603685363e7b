"""create service_status

The dashboard's cache of each service's migration status (what /api/migrations/status serves).

Revision ID: 006
Revises: 005
Create Date: 2025-11-14 08:31:19.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '006'
down_revision: Union[str, Sequence[str], None] = '005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'service_status',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('service_name', sa.String(63), nullable=False),
        sa.Column('status', sa.String(20), nullable=False, server_default='unknown'),
        sa.Column('current_revision', sa.String(128)),
        sa.Column('pending_migrations', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('checked_at', sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint('service_name', name='uq_service_status_service_name'),
        sa.CheckConstraint("status IN ('up_to_date', 'pending', 'error', 'unknown')", name='ck_service_status_status'),
    )


def downgrade() -> None:
    op.drop_table('service_status')
