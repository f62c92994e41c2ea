"""ha_work: VMs taken from a host judged Down, worked off by the monitor (CloudStack's
op_ha_work); sim_hosts.heartbeat_stopped_at: a Simulator host's storage heartbeat.

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-06 08:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0035'
down_revision = '0034'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('ha_work',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('vm_id', sa.Integer(), nullable=False),
    sa.Column('host_id', sa.Integer(), nullable=False),
    sa.Column('work_type', sa.String(length=16), nullable=False),
    sa.Column('step', sa.String(length=16), nullable=False),
    sa.Column('previous_state', sa.String(length=16), nullable=False),
    sa.Column('times_tried', sa.Integer(), nullable=False),
    sa.Column('time_to_try', sa.DateTime(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('taken', sa.DateTime(), nullable=True),
    sa.Column('reason', sa.String(length=1024), nullable=True),
    sa.Column('host_cleared', sa.Boolean(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('updated', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], name=op.f('fk_ha_work_host_id_hosts')),
    sa.ForeignKeyConstraint(['vm_id'], ['vm_instances.id'], name=op.f('fk_ha_work_vm_id_vm_instances'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ha_work'))
    )
    with op.batch_alter_table('ha_work', schema=None) as batch_op:
        batch_op.create_index('ix_ha_work_host_cleared', ['host_id', 'host_cleared'], unique=False)
        batch_op.create_index('ix_ha_work_step_time', ['step', 'time_to_try'], unique=False)
        batch_op.create_index(batch_op.f('ix_ha_work_vm_id'), ['vm_id'], unique=False)
    with op.batch_alter_table('sim_hosts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('heartbeat_stopped_at', sa.Double(), nullable=True))


def downgrade():
    with op.batch_alter_table('sim_hosts', schema=None) as batch_op:
        batch_op.drop_column('heartbeat_stopped_at')
    # The table's indexes go with it (MariaDB refuses to drop one alone: a foreign key needs it).
    op.drop_table('ha_work')
