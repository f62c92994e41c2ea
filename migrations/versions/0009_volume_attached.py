"""When a volume was attached to its VM (listVolumes' `attached`)

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('volumes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attached', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('volumes', schema=None) as batch_op:
        batch_op.drop_column('attached')
