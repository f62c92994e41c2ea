"""Quota accounting from the rows: ROOT volumes count, each volume says how many GiB
it counted, counts never go below zero.

0003 added quota_counted as false for every row and no count for them, so an install
upgraded past 0003 stopped counting the VMs and volumes it already had (and a VM
expunged later gave back what it had never taken). 0003 is left as it was, for the
installs that already ran it; this revision repairs both kinds of install the same
way: every live row is marked counted (a VM that is not removed and not in Error, a
volume that is not removed: ROOT and DATADISK, as CloudStack counts primary storage),
then every account's counts are rebuilt from those rows. Only then is the CHECK
(count >= 0) added, so earlier negative counts cannot stop the upgrade.

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

GIB = 1 << 30

vm = sa.table("vm_instances", sa.column("id", sa.Integer), sa.column("account_id", sa.Integer),
              sa.column("state", sa.String), sa.column("removed", sa.DateTime), sa.column("cpu_number", sa.Integer),
              sa.column("memory", sa.Integer), sa.column("quota_counted", sa.Boolean))
volume = sa.table("volumes", sa.column("id", sa.Integer), sa.column("account_id", sa.Integer),
                  sa.column("vm_id", sa.Integer), sa.column("volume_type", sa.String), sa.column("size", sa.BigInteger),
                  sa.column("removed", sa.DateTime), sa.column("quota_counted", sa.Boolean),
                  sa.column("counted_gib", sa.BigInteger))
counts = sa.table("resource_counts", sa.column("account_id", sa.Integer), sa.column("resource_type", sa.String),
                  sa.column("count", sa.BigInteger))


def recount(bind) -> None:
    """Mark the live rows counted and set every count from them."""
    bind.execute(vm.update().where(vm.c.removed.is_(None), vm.c.state != "Error").values(quota_counted=sa.true()))
    bind.execute(vm.update().where(sa.or_(vm.c.removed.isnot(None), vm.c.state == "Error"))
                 .values(quota_counted=sa.false()))
    # GiB rounded up, in integer arithmetic on every database ("//": MariaDB's DIV, "/" elsewhere).
    ceil_gib = (volume.c.size + (GIB - 1)) // GIB
    live_vm = sa.select(vm.c.id).where(vm.c.quota_counted.is_(True))
    live = sa.and_(volume.c.removed.is_(None),
                   sa.or_(volume.c.volume_type != "ROOT", volume.c.vm_id.is_(None), volume.c.vm_id.in_(live_vm)))
    bind.execute(volume.update().where(live).values(quota_counted=sa.true(), counted_gib=ceil_gib))
    bind.execute(volume.update().where(sa.not_(live)).values(quota_counted=sa.false(), counted_gib=0))
    bind.execute(counts.delete())
    counted_vm = vm.c.quota_counted.is_(True)
    counted_volume = volume.c.quota_counted.is_(True)
    for resource, value, table, where in (
            ("user_vm", sa.func.count(), vm, counted_vm),
            ("cpu", sa.func.sum(vm.c.cpu_number), vm, counted_vm),
            ("memory", sa.func.sum(vm.c.memory), vm, counted_vm),
            ("volume", sa.func.count(), volume, counted_volume),
            ("primary_storage", sa.func.sum(volume.c.counted_gib), volume, counted_volume)):
        bind.execute(counts.insert().from_select(
            ["account_id", "resource_type", "count"],
            sa.select(table.c.account_id, sa.literal(resource, sa.String), sa.cast(sa.func.coalesce(value, 0),
                                                                                   sa.BigInteger))
            .where(where).group_by(table.c.account_id)))


def upgrade():
    with op.batch_alter_table('volumes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('counted_gib', sa.BigInteger(), server_default='0', nullable=False))
    recount(op.get_bind())
    with op.batch_alter_table('resource_counts', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_resource_counts_count_not_negative'), 'count >= 0')


def downgrade():
    with op.batch_alter_table('resource_counts', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_resource_counts_count_not_negative'), type_='check')
    with op.batch_alter_table('volumes', schema=None) as batch_op:
        batch_op.drop_column('counted_gib')
