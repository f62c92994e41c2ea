"""extensions: CloudStack 4.21's extensions framework (the External hypervisor type's
executables, the clusters they serve, their custom actions) and external details.

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-06 08:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0034'
down_revision = '0033'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('extensions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('removed', sa.DateTime(), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=4096), nullable=True),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('relative_path', sa.String(length=1024), nullable=False),
    sa.Column('checksum', sa.String(length=64), nullable=True),
    sa.Column('path_ready', sa.Boolean(), nullable=False),
    sa.Column('path_reason', sa.String(length=1024), nullable=True),
    sa.Column('orchestrator_requires_prepare_vm', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('user_defined', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_extensions')),
    sa.UniqueConstraint('name', name=op.f('uq_extensions_name')),
    sa.UniqueConstraint('uuid', name=op.f('uq_extensions_uuid'))
    )
    op.create_table('extension_resource_maps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('extension_id', sa.Integer(), nullable=False),
    sa.Column('resource_type', sa.String(length=32), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['extension_id'], ['extensions.id'], name=op.f('fk_extension_resource_maps_extension_id_extensions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_extension_resource_maps')),
    sa.UniqueConstraint('resource_type', 'resource_id', name=op.f('uq_extension_resource_maps_resource_type'))
    )
    with op.batch_alter_table('extension_resource_maps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_extension_resource_maps_extension_id'), ['extension_id'], unique=False)
    op.create_table('extension_custom_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('removed', sa.DateTime(), nullable=True),
    sa.Column('extension_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=4096), nullable=True),
    sa.Column('resource_type', sa.String(length=32), nullable=True),
    sa.Column('allowed_role_types', sa.String(length=255), nullable=False),
    sa.Column('success_message', sa.String(length=4096), nullable=True),
    sa.Column('error_message', sa.String(length=4096), nullable=True),
    sa.Column('timeout', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('parameters', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['extension_id'], ['extensions.id'], name=op.f('fk_extension_custom_actions_extension_id_extensions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_extension_custom_actions')),
    sa.UniqueConstraint('extension_id', 'name', name=op.f('uq_extension_custom_actions_extension_id')),
    sa.UniqueConstraint('uuid', name=op.f('uq_extension_custom_actions_uuid'))
    )
    with op.batch_alter_table('extension_custom_actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_extension_custom_actions_extension_id'), ['extension_id'], unique=False)
    op.create_table('external_details',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner_type', sa.String(length=32), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('secret', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_external_details')),
    sa.UniqueConstraint('owner_type', 'owner_id', 'name', name=op.f('uq_external_details_owner_type'))
    )


def downgrade():
    op.drop_table('external_details')
    op.drop_table('extension_custom_actions')
    op.drop_table('extension_resource_maps')
    op.drop_table('extensions')
