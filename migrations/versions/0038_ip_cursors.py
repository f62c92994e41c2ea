"""ip_cursors: where each network's next guest address is tried, handed out by one atomic
upsert (issue 21: concurrent deploys no longer race for the same address, and no deploy
counts the network's addresses). Networks start without a row; their first NIC makes it.

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-07 06:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0038'
down_revision = '0037'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('ip_cursors',
    sa.Column('network_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('next_offset', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['network_id'], ['networks.id'], name=op.f('fk_ip_cursors_network_id_networks'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('network_id', name=op.f('pk_ip_cursors'))
    )


def downgrade():
    op.drop_table('ip_cursors')
