"""scoped setting values (a setting's value per zone, cluster, account, domain or storage pool,
as CloudStack's *_details rows of a configuration key).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 04:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('setting_values',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('scope', sa.String(length=32), nullable=False),
    sa.Column('scope_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_setting_values')),
    sa.UniqueConstraint('name', 'scope', 'scope_id', name='uq_setting_values_name_scope')
    )
    with op.batch_alter_table('setting_values', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_setting_values_name'), ['name'], unique=False)


def downgrade():
    with op.batch_alter_table('setting_values', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_setting_values_name'))
    op.drop_table('setting_values')
