"""Affinity groups and their VMs (and a migrating VM's destination); host tags, offering tags and
sort keys (storage pool tags came with 0012)

Revision ID: 0017
Revises: 0016
"""
from alembic import op
import sqlalchemy as sa

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'affinity_groups',
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('description', sa.String(length=4096), nullable=True),
        sa.Column('type', sa.String(length=64), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('placements', sa.Integer(), nullable=False),
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('uuid', sa.String(length=36), nullable=False),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_affinity_groups_account_id_accounts')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_affinity_groups')),
        sa.UniqueConstraint('account_id', 'name', name=op.f('uq_affinity_groups_account_id')),
        sa.UniqueConstraint('uuid', name=op.f('uq_affinity_groups_uuid')))
    with op.batch_alter_table('affinity_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_affinity_groups_account_id'), ['account_id'], unique=False)

    op.create_table(
        'affinity_group_vm_map',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('affinity_group_id', sa.Integer(), nullable=False),
        sa.Column('vm_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['affinity_group_id'], ['affinity_groups.id'],
                                name=op.f('fk_affinity_group_vm_map_affinity_group_id_affinity_groups'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['vm_id'], ['vm_instances.id'], name=op.f('fk_affinity_group_vm_map_vm_id_vm_instances'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_affinity_group_vm_map')),
        sa.UniqueConstraint('affinity_group_id', 'vm_id', name=op.f('uq_affinity_group_vm_map_affinity_group_id')))
    with op.batch_alter_table('affinity_group_vm_map', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_affinity_group_vm_map_vm_id'), ['vm_id'], unique=False)

    with op.batch_alter_table('disk_offerings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tags', sa.String(length=4096), nullable=True))
        batch_op.add_column(sa.Column('sort_key', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('host_tags', sa.String(length=4096), nullable=True))
    with op.batch_alter_table('service_offerings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('host_tags', sa.String(length=4096), nullable=True))
        batch_op.add_column(sa.Column('storage_tags', sa.String(length=4096), nullable=True))
        batch_op.add_column(sa.Column('sort_key', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('vm_instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('migration_host_id', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('vm_instances', schema=None) as batch_op:
        batch_op.drop_column('migration_host_id')
    with op.batch_alter_table('service_offerings', schema=None) as batch_op:
        batch_op.drop_column('sort_key')
        batch_op.drop_column('storage_tags')
        batch_op.drop_column('host_tags')
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.drop_column('host_tags')
    with op.batch_alter_table('disk_offerings', schema=None) as batch_op:
        batch_op.drop_column('sort_key')
        batch_op.drop_column('tags')
    op.drop_table('affinity_group_vm_map')
    op.drop_table('affinity_groups')
