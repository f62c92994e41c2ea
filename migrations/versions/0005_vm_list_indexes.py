"""Indexes for the VM lists at scale: the count and a deep page's ids as index-only
scans (also per zone, host and account), a keyword search over names without reading
the table's rows, and on PostgreSQL a trigram index for keywords where pg_trgm can
be created.

Revision ID: 0005
Revises: 0004
"""
from alembic import op

from app.models.vms import create_trigram_index

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# (old name, new name, column): the new one is made first, as MariaDB keeps an index on a
# foreign key's column at all times.
_WIDENED = [("ix_vm_zone_id", "ix_vm_zone_removed_id", "zone_id"),
            ("ix_vm_host_id", "ix_vm_host_removed_id", "host_id"),
            ("ix_vm_account_id", "ix_vm_account_removed_id", "account_id")]


def upgrade():
    with op.batch_alter_table('vm_instances', schema=None) as batch_op:
        batch_op.create_index('ix_vm_removed_id', ['removed', 'id'], unique=False)
        batch_op.create_index('ix_vm_removed_state_id', ['removed', 'state', 'id'], unique=False)
        batch_op.create_index('ix_vm_removed_names', ['removed', 'name', 'display_name', 'id'], unique=False)
        for old, new, column in _WIDENED:
            batch_op.create_index(new, [column, 'removed', 'id'], unique=False)
            batch_op.drop_index(old)
    create_trigram_index(op.get_bind())


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_vm_names_trgm")
    with op.batch_alter_table('vm_instances', schema=None) as batch_op:
        for old, new, column in _WIDENED:
            batch_op.create_index(old, [column, 'id'], unique=False)
            batch_op.drop_index(new)
        batch_op.drop_index('ix_vm_removed_names')
        batch_op.drop_index('ix_vm_removed_state_id')
        batch_op.drop_index('ix_vm_removed_id')
