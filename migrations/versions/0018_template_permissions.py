"""Template permissions (CloudStack's launch_permission) and templates.extractable

Revision ID: 0018
Revises: 0017
"""
from alembic import op
import sqlalchemy as sa

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('template_permissions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_template_permissions_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['template_id'], ['templates.id'], name=op.f('fk_template_permissions_template_id_templates'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_template_permissions')),
    sa.UniqueConstraint('template_id', 'account_id', name=op.f('uq_template_permissions_template_id'))
    )
    with op.batch_alter_table('template_permissions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_template_permissions_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_template_permissions_template_id'), ['template_id'], unique=False)

    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('extractable', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.drop_column('extractable')
    op.drop_table('template_permissions')
