"""linkUserDataToTemplate: a template's linked user data and its override policy.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 01:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('userdata_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('userdata_policy', sa.String(length=16), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_templates_userdata_id_user_data'), 'user_data', ['userdata_id'],
                                    ['id'])


def downgrade():
    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_templates_userdata_id_user_data'), type_='foreignkey')
        batch_op.drop_column('userdata_policy')
        batch_op.drop_column('userdata_id')
