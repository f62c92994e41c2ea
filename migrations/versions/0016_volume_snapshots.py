"""volume snapshots: snapshots (copies on secondary storage) and snapshot_policies (their schedules)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 21:16:16.872713

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('snapshot_policies',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('volume_id', sa.Integer(), nullable=False),
    sa.Column('interval_type', sa.String(length=16), nullable=False),
    sa.Column('schedule', sa.String(length=32), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('max_snaps', sa.Integer(), nullable=False),
    sa.Column('display', sa.Boolean(), nullable=False),
    sa.Column('next_run', sa.DateTime(), nullable=True),
    sa.Column('last_run', sa.DateTime(), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_snapshot_policies_account_id_accounts')),
    sa.ForeignKeyConstraint(['volume_id'], ['volumes.id'], name=op.f('fk_snapshot_policies_volume_id_volumes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_snapshot_policies')),
    sa.UniqueConstraint('uuid', name=op.f('uq_snapshot_policies_uuid'))
    )
    with op.batch_alter_table('snapshot_policies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_snapshot_policies_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_snapshot_policies_next_run', ['next_run'], unique=False)
        batch_op.create_index(batch_op.f('ix_snapshot_policies_volume_id'), ['volume_id'], unique=False)

    op.create_table('snapshots',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('zone_id', sa.Integer(), nullable=False),
    sa.Column('volume_id', sa.Integer(), nullable=False),
    sa.Column('policy_id', sa.Integer(), nullable=True),
    sa.Column('snapshot_type', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('hypervisor_type', sa.String(length=64), nullable=False),
    sa.Column('volume_type', sa.String(length=16), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('physical_size', sa.BigInteger(), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('image_store_id', sa.Integer(), nullable=True),
    sa.Column('install_path', sa.String(length=2048), nullable=True),
    sa.Column('error', sa.String(length=2048), nullable=True),
    sa.Column('quota_counted', sa.Boolean(), nullable=False),
    sa.Column('counted_gib', sa.BigInteger(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('removed', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_snapshots_account_id_accounts')),
    sa.ForeignKeyConstraint(['image_store_id'], ['image_stores.id'], name=op.f('fk_snapshots_image_store_id_image_stores')),
    sa.ForeignKeyConstraint(['policy_id'], ['snapshot_policies.id'], name=op.f('fk_snapshots_policy_id_snapshot_policies'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['volume_id'], ['volumes.id'], name=op.f('fk_snapshots_volume_id_volumes')),
    sa.ForeignKeyConstraint(['zone_id'], ['zones.id'], name=op.f('fk_snapshots_zone_id_zones')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_snapshots')),
    sa.UniqueConstraint('uuid', name=op.f('uq_snapshots_uuid'))
    )
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_snapshots_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_snapshots_policy_id'), ['policy_id'], unique=False)
        batch_op.create_index('ix_snapshots_volume_removed', ['volume_id', 'removed'], unique=False)



def downgrade():
    op.drop_table('snapshots')
    op.drop_table('snapshot_policies')
