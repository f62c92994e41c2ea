"""domains and projects: the domains tree (ROOT made here, uuid 00000000-0000-0000-0000-000000000001),
accounts in domains (existing ones in ROOT; names unique per domain), projects and their members.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 21:16:37.088629

"""
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa

ROOT_UUID = "00000000-0000-0000-0000-000000000001"


# revision identifiers, used by Alembic.
revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('domains',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('network_domain', sa.String(length=255), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('removed_key', sa.Integer(), server_default='0', nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('removed', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['parent_id'], ['domains.id'], name=op.f('fk_domains_parent_id_domains'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_domains')),
    sa.UniqueConstraint('parent_id', 'name', 'removed_key', name='uq_domains_parent_name'),
    sa.UniqueConstraint('uuid', name=op.f('uq_domains_uuid'))
    )
    with op.batch_alter_table('domains', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_domains_parent_id'), ['parent_id'], unique=False)
    domains = sa.table('domains', sa.column('uuid', sa.String), sa.column('name', sa.String),
                       sa.column('path', sa.String), sa.column('level', sa.Integer), sa.column('state', sa.String),
                       sa.column('removed_key', sa.Integer), sa.column('created', sa.DateTime))
    op.bulk_insert(domains, [{'uuid': ROOT_UUID, 'name': 'ROOT', 'path': '/', 'level': 0, 'state': 'Active',
                              'removed_key': 0, 'created': datetime.now(timezone.utc).replace(tzinfo=None)}])

    op.create_table('projects',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('display_text', sa.Text(), nullable=True),
    sa.Column('domain_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('removed', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_projects_account_id_accounts')),
    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], name=op.f('fk_projects_domain_id_domains')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_projects')),
    sa.UniqueConstraint('account_id', name=op.f('uq_projects_account_id')),
    sa.UniqueConstraint('uuid', name=op.f('uq_projects_uuid'))
    )
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_projects_domain_id'), ['domain_id'], unique=False)

    op.create_table('project_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_project_accounts_account_id_accounts')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_project_accounts_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_project_accounts')),
    sa.UniqueConstraint('project_id', 'account_id', name=op.f('uq_project_accounts_project_id'))
    )
    with op.batch_alter_table('project_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_project_accounts_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_project_accounts_project_id'), ['project_id'], unique=False)

    # Every existing account is in ROOT.
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('domain_id', sa.Integer(), nullable=True))
    op.execute(sa.text("UPDATE accounts SET domain_id = (SELECT id FROM domains WHERE uuid = :u)")
               .bindparams(u=ROOT_UUID))
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.alter_column('domain_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint(batch_op.f('uq_accounts_name'), type_='unique')
        batch_op.create_index(batch_op.f('ix_accounts_domain_id'), ['domain_id'], unique=False)
        batch_op.create_unique_constraint('uq_accounts_domain_name', ['domain_id', 'name'])
        batch_op.create_foreign_key(batch_op.f('fk_accounts_domain_id_domains'), 'domains', ['domain_id'], ['id'])



def downgrade():
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_accounts_domain_id_domains'), type_='foreignkey')
        batch_op.drop_constraint('uq_accounts_domain_name', type_='unique')
        batch_op.drop_index(batch_op.f('ix_accounts_domain_id'))
        batch_op.create_unique_constraint(batch_op.f('uq_accounts_name'), ['name'])
        batch_op.drop_column('domain_id')

    op.drop_table('project_accounts')
    op.drop_table('projects')
    op.drop_table('domains')
