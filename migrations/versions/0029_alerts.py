"""alerts (CloudStack's alert table), one open alert per condition (open_key)

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-06 04:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0029'
down_revision = '0028'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('type', sa.SmallInteger(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('subject', sa.String(length=999), nullable=False),
    sa.Column('content', sa.Text(), nullable=True),
    sa.Column('zone_id', sa.Integer(), nullable=True),
    sa.Column('pod_id', sa.Integer(), nullable=True),
    sa.Column('cluster_id', sa.Integer(), nullable=True),
    sa.Column('resource_type', sa.String(length=64), nullable=True),
    sa.Column('resource_id', sa.String(length=255), nullable=True),
    sa.Column('open_key', sa.String(length=512), nullable=True),
    sa.Column('sent_count', sa.Integer(), nullable=False),
    sa.Column('last_sent', sa.DateTime(), nullable=True),
    sa.Column('delivery_error', sa.String(length=1024), nullable=True),
    sa.Column('resolved', sa.DateTime(), nullable=True),
    sa.Column('archived', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], name=op.f('fk_alerts_cluster_id_clusters'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['pod_id'], ['pods.id'], name=op.f('fk_alerts_pod_id_pods'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['zone_id'], ['zones.id'], name=op.f('fk_alerts_zone_id_zones'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('open_key', name=op.f('uq_alerts_open_key')),
    sa.UniqueConstraint('uuid', name=op.f('uq_alerts_uuid'))
    )
    op.create_index('ix_alerts_archived_resolved', 'alerts', ['archived', 'resolved'], unique=False)
    op.create_index('ix_alerts_type', 'alerts', ['type'], unique=False)


def downgrade():
    op.drop_index('ix_alerts_type', table_name='alerts')
    op.drop_index('ix_alerts_archived_resolved', table_name='alerts')
    op.drop_table('alerts')
