"""project invitations (project.invite.required): to an account or to an email with a token.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 00:55:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('project_invitations',
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('domain_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('email', sa.String(length=255), nullable=True),
    sa.Column('token', sa.String(length=64), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_project_invitations_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], name=op.f('fk_project_invitations_domain_id_domains')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_project_invitations_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_project_invitations')),
    sa.UniqueConstraint('uuid', name=op.f('uq_project_invitations_uuid'))
    )
    with op.batch_alter_table('project_invitations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_project_invitations_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_project_invitations_project_id'), ['project_id'], unique=False)


def downgrade():
    op.drop_table('project_invitations')
