"""Resource tags (CloudStack's resource_tags)

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('resource_tags',
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('resource_type', sa.String(length=32), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('resource_uuid', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('customer', sa.String(length=255), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_resource_tags_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_resource_tags')),
    sa.UniqueConstraint('resource_type', 'resource_id', 'key', name=op.f('uq_resource_tags_resource_type')),
    sa.UniqueConstraint('uuid', name=op.f('uq_resource_tags_uuid'))
    )
    with op.batch_alter_table('resource_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_resource_tags_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_resource_tags_uuid_type', ['resource_uuid', 'resource_type'], unique=False)


def downgrade():
    op.drop_table('resource_tags')
