"""resource details and regions: one resource_details table (a VM's details move into it from
vm_instances.details), and the regions table (region 1, this management server, is made at start by bootstrap).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 01:10:00

"""
import json

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade():
    details = op.create_table('resource_details',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('resource_type', sa.String(length=32), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('display', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_resource_details')),
    sa.UniqueConstraint('resource_type', 'resource_id', 'name', name=op.f('uq_resource_details_resource_type'))
    )
    op.create_table('regions',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('endpoint', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_regions')),
    sa.UniqueConstraint('name', name=op.f('uq_regions_name'))
    )
    # The VMs' details (JSON {name: value}) become rows; then the column goes.
    bind = op.get_bind()
    vms = sa.table('vm_instances', sa.column('id', sa.Integer), sa.column('details', sa.Text))
    rows = []
    for vm_id, text in bind.execute(sa.select(vms.c.id, vms.c.details).where(vms.c.details.is_not(None))):
        try:
            values = json.loads(text) or {}
        except ValueError:
            continue
        rows += [{"resource_type": "UserVm", "resource_id": vm_id, "name": str(k)[:255], "value": str(v),
                  "display": True} for k, v in values.items()]
    if rows:
        op.bulk_insert(details, rows)
    with op.batch_alter_table('vm_instances', schema=None) as batch_op:
        batch_op.drop_column('details')


def downgrade():
    with op.batch_alter_table('vm_instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('details', sa.Text(), nullable=True))
    op.drop_table('regions')
    op.drop_table('resource_details')
