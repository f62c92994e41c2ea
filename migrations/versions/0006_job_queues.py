"""Async jobs name their queue: "jobs" (short work) or "transfers" (long downloads on
a consumer of their own), so a transfer's account limit is counted from the rows.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('async_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queue', sa.String(length=16), server_default='jobs', nullable=False))
        batch_op.create_index('ix_async_jobs_account_queue_status', ['account_id', 'queue', 'status'], unique=False)


def downgrade():
    with op.batch_alter_table('async_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_async_jobs_account_queue_status')
        batch_op.drop_column('queue')
