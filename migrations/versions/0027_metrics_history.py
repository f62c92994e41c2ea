"""metrics history: metric_samples, the monitor's VM and host samples as a time series
(period 0: a sample; 3600: an hour's average), keyed by (kind, resource, period, time).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 04:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0027'
down_revision = '0026'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('metric_samples',
    sa.Column('kind', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('resource_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('period', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('cpu_pct', sa.Float(), nullable=True),
    sa.Column('memory_used', sa.BigInteger(), nullable=True),
    sa.Column('net_rx_bps', sa.Float(), nullable=True),
    sa.Column('net_tx_bps', sa.Float(), nullable=True),
    sa.Column('disk_read_bps', sa.Float(), nullable=True),
    sa.Column('disk_write_bps', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('kind', 'resource_id', 'period', 'at', name=op.f('pk_metric_samples'))
    )
    op.create_index('ix_metric_samples_period_at', 'metric_samples', ['period', 'at'], unique=False)


def downgrade():
    op.drop_index('ix_metric_samples_period_at', table_name='metric_samples')
    op.drop_table('metric_samples')
