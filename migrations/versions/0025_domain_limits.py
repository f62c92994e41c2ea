"""domain resource limits and counts (max.domain.*): a domain's counts are what the accounts of
the domain and of every domain below it use; filled here from the accounts' counts (ROOT has
no rows: it is never limited).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 01:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('domain_resource_limits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('domain_id', sa.Integer(), nullable=False),
    sa.Column('resource_type', sa.String(length=32), nullable=False),
    sa.Column('max', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], name=op.f('fk_domain_resource_limits_domain_id_domains'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_domain_resource_limits')),
    sa.UniqueConstraint('domain_id', 'resource_type', name=op.f('uq_domain_resource_limits_domain_id'))
    )
    op.create_table('domain_resource_counts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('domain_id', sa.Integer(), nullable=False),
    sa.Column('resource_type', sa.String(length=32), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('count >= 0', name=op.f('ck_domain_resource_counts_count_not_negative')),
    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], name=op.f('fk_domain_resource_counts_domain_id_domains'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_domain_resource_counts')),
    sa.UniqueConstraint('domain_id', 'resource_type', name=op.f('uq_domain_resource_counts_domain_id'))
    )
    # Each non-ROOT domain counts what the accounts of its subtree count.
    bind = op.get_bind()
    domains = bind.execute(sa.text("SELECT id, path, parent_id FROM domains WHERE removed IS NULL")).all()
    account_path = {a: p for a, p in bind.execute(sa.text(
        "SELECT a.id, d.path FROM accounts a JOIN domains d ON d.id = a.domain_id"))}
    totals = {}
    for account_id, resource, count in bind.execute(sa.text(
            "SELECT account_id, resource_type, count FROM resource_counts")):
        path = account_path.get(account_id)
        for d in domains:
            if d.parent_id is not None and path is not None and path.startswith(d.path):
                totals[(d.id, resource)] = totals.get((d.id, resource), 0) + int(count)
    rows = [{'domain_id': d, 'resource_type': r, 'count': n} for (d, r), n in sorted(totals.items())]
    if rows:
        op.bulk_insert(sa.table('domain_resource_counts', sa.column('domain_id', sa.Integer),
                                sa.column('resource_type', sa.String), sa.column('count', sa.BigInteger)), rows)


def downgrade():
    op.drop_table('domain_resource_counts')
    op.drop_table('domain_resource_limits')
