"""infra: storage pool IOPS and tags (updateStoragePool), the VMs a pool's maintenance stopped

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 21:13:49.993504

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('storage_pool_work',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pool_id', sa.Integer(), nullable=False),
    sa.Column('vm_id', sa.Integer(), nullable=False),
    sa.Column('stopped_for_maintenance', sa.Boolean(), nullable=False),
    sa.Column('started_after_maintenance', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['pool_id'], ['storage_pools.id'], name=op.f('fk_storage_pool_work_pool_id_storage_pools')),
    sa.ForeignKeyConstraint(['vm_id'], ['vm_instances.id'], name=op.f('fk_storage_pool_work_vm_id_vm_instances')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_storage_pool_work')),
    sa.UniqueConstraint('pool_id', 'vm_id', name=op.f('uq_storage_pool_work_pool_id'))
    )
    with op.batch_alter_table('storage_pool_work', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_storage_pool_work_pool_id'), ['pool_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_storage_pool_work_vm_id'), ['vm_id'], unique=False)

    with op.batch_alter_table('storage_pools', schema=None) as batch_op:
        batch_op.add_column(sa.Column('capacity_iops', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('tags', sa.String(length=4096), nullable=True))
        # CloudStack's pool states (PrepareForMaintenance, ErrorInMaintenance) are longer than 16.
        batch_op.alter_column('state', existing_type=sa.String(length=16), type_=sa.String(length=32),
                              existing_nullable=False)


def downgrade():
    op.execute("UPDATE storage_pools SET state = 'Up' WHERE state NOT IN ('Up', 'Disabled')")
    with op.batch_alter_table('storage_pools', schema=None) as batch_op:
        batch_op.alter_column('state', existing_type=sa.String(length=32), type_=sa.String(length=16),
                              existing_nullable=False)
        batch_op.drop_column('tags')
        batch_op.drop_column('capacity_iops')
    op.drop_table('storage_pool_work')  # directly: MariaDB refuses dropping FK indexes first
