"""image store state: what the monitor's sweep last found of each store's directory (Ready,
ReadOnly, Unreachable), why, and when.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-06 04:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0028'
down_revision = '0027'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('image_stores', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state', sa.String(length=16), server_default='Ready', nullable=False))
        batch_op.add_column(sa.Column('state_reason', sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column('last_checked', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('image_stores', schema=None) as batch_op:
        batch_op.drop_column('last_checked')
        batch_op.drop_column('state_reason')
        batch_op.drop_column('state')
