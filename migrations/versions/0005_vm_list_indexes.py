"""Indexes for the VM lists at scale: the count and a deep page's ids as index-only
scans, and a keyword search over names without reading the table's rows.

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('vm_instances', schema=None) as batch_op:
        batch_op.create_index('ix_vm_removed_id', ['removed', 'id'], unique=False)
        batch_op.create_index('ix_vm_removed_state_id', ['removed', 'state', 'id'], unique=False)
        batch_op.create_index('ix_vm_removed_names', ['removed', 'name', 'display_name', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('vm_instances', schema=None) as batch_op:
        batch_op.drop_index('ix_vm_removed_names')
        batch_op.drop_index('ix_vm_removed_state_id')
        batch_op.drop_index('ix_vm_removed_id')
