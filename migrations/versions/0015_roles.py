"""Dynamic roles: roles and their ordered rules; an account's role, network domain and the
mark deleteAccount sets before removing anything. The default roles are made (and existing
accounts given their type's) by `flask bootstrap` (app/services/roles.ensure_defaults), whose
rules come from the command registry.

Revision ID: 0015
Revises: 0014
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('roles',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('role_type', sa.String(length=16), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('is_default', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('state', sa.String(length=16), server_default='enabled', nullable=False),
    sa.Column('rules_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('removed', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_roles')),
    sa.UniqueConstraint('uuid', name=op.f('uq_roles_uuid'))
    )
    with op.batch_alter_table('roles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_roles_name'), ['name'], unique=False)

    op.create_table('role_permissions',
    sa.Column('role_id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=255), nullable=False),
    sa.Column('permission', sa.String(length=8), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('sort_order', sa.Integer(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['role_id'], ['roles.id'], name=op.f('fk_role_permissions_role_id_roles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_role_permissions')),
    sa.UniqueConstraint('uuid', name=op.f('uq_role_permissions_uuid'))
    )
    with op.batch_alter_table('role_permissions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_role_permissions_role_id'), ['role_id'], unique=False)

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('role_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('network_domain', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('cleanup_started', sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_accounts_role_id'), ['role_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_accounts_role_id_roles'), 'roles', ['role_id'], ['id'])



def downgrade():
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_accounts_role_id_roles'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_accounts_role_id'))
        batch_op.drop_column('cleanup_started')
        batch_op.drop_column('network_domain')
        batch_op.drop_column('role_id')
    op.drop_table('role_permissions')
    op.drop_table('roles')
