"""offering_domains: the domains a service or disk offering is restricted to (CloudStack's
offering details "domainid"); an offering without rows is public.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-06 05:24:59.901079

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0032'
down_revision = '0031'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('offering_domains',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('offering_type', sa.String(length=16), nullable=False),
    sa.Column('offering_id', sa.Integer(), nullable=False),
    sa.Column('domain_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], name=op.f('fk_offering_domains_domain_id_domains'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offering_domains')),
    sa.UniqueConstraint('offering_type', 'offering_id', 'domain_id', name=op.f('uq_offering_domains_offering_type'))
    )
    with op.batch_alter_table('offering_domains', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_offering_domains_domain_id'), ['domain_id'], unique=False)



def downgrade():
    # The table's index goes with it (MariaDB refuses to drop it alone: the foreign key needs it).
    op.drop_table('offering_domains')
