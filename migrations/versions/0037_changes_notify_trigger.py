"""changes on PostgreSQL: a statement trigger sends the NOTIFY that wakes the change stream's
readers, instead of each writer sending it (one round trip less per change written).

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-07 03:30:00

"""
from alembic import op

from app.models.changes import NOTIFY_FUNCTION, NOTIFY_TRIGGER

# revision identifiers, used by Alembic.
revision = '0037'
down_revision = '0036'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)


def downgrade():
    # Before 0037 the writers sent the NOTIFY themselves: code of that age needs no trigger.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS changes_notify ON changes")
        op.execute("DROP FUNCTION IF EXISTS nubo_changes_notify()")
