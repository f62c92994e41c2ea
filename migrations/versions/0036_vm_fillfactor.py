"""vm_instances on PostgreSQL: fillfactor 50, so that the monitor's stats updates of every
running VM each sweep stay in their page (HOT: no index touched). Rows already stored move
to roomier pages on their next update; nothing is rewritten here (no table lock held).

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-06 14:20:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0036'
down_revision = '0035'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE vm_instances SET (fillfactor = 50)")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE vm_instances RESET (fillfactor)")
