"""offering_zones: the zones a service or disk offering is restricted to (CloudStack's offering
details "zoneid"); an offering without rows serves every zone.

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-06 05:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0033'
down_revision = '0032'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('offering_zones',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('offering_type', sa.String(length=16), nullable=False),
    sa.Column('offering_id', sa.Integer(), nullable=False),
    sa.Column('zone_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['zone_id'], ['zones.id'], name=op.f('fk_offering_zones_zone_id_zones'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offering_zones')),
    sa.UniqueConstraint('offering_type', 'offering_id', 'zone_id', name=op.f('uq_offering_zones_offering_type'))
    )
    with op.batch_alter_table('offering_zones', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_offering_zones_zone_id'), ['zone_id'], unique=False)


def downgrade():
    # The table's index goes with it (MariaDB refuses to drop it alone: the foreign key needs it).
    op.drop_table('offering_zones')
