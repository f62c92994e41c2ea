"""customized service offerings: vCPUs and memory chosen at deploy within bounds

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-06 05:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0030'
down_revision = '0029'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('service_offerings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_customized', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('min_cpu_number', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('max_cpu_number', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('min_memory', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('max_memory', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('service_offerings', schema=None) as batch_op:
        batch_op.drop_column('max_memory')
        batch_op.drop_column('min_memory')
        batch_op.drop_column('max_cpu_number')
        batch_op.drop_column('min_cpu_number')
        batch_op.drop_column('is_customized')
