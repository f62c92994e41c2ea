"""VM commands: instance groups, registered user data, a VM's HA flag, details, guest OS,
user data object and password; templates' passwordenabled

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('instance_groups',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_instance_groups_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instance_groups')),
    sa.UniqueConstraint('account_id', 'name', name='uq_instance_groups_account_name'),
    sa.UniqueConstraint('uuid', name=op.f('uq_instance_groups_uuid'))
    )
    with op.batch_alter_table('instance_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instance_groups_account_id'), ['account_id'], unique=False)

    op.create_table('user_data',
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('userdata', sa.Text(), nullable=False),
    sa.Column('params', sa.String(length=4096), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_user_data_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_data')),
    sa.UniqueConstraint('account_id', 'name', name='uq_user_data_account_name'),
    sa.UniqueConstraint('uuid', name=op.f('uq_user_data_uuid'))
    )
    with op.batch_alter_table('user_data', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_data_account_id'), ['account_id'], unique=False)

    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('password_enabled', sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table('vm_instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('userdata_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('userdata_details', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('group_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('ha_enable', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('dynamically_scalable', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('os_type_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('details', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('password_secret', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('encrypted_password', sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f('ix_vm_instances_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_vm_instances_userdata_id'), ['userdata_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_vm_instances_os_type_id_os_types'), 'os_types', ['os_type_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_vm_instances_group_id_instance_groups'), 'instance_groups', ['group_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_vm_instances_userdata_id_user_data'), 'user_data', ['userdata_id'], ['id'])
    # The HA flag was the offering's until now: each VM keeps what it showed.
    op.execute(sa.text("UPDATE vm_instances SET ha_enable = (SELECT offer_ha FROM service_offerings "
                       "WHERE service_offerings.id = vm_instances.service_offering_id)"))



def downgrade():
    with op.batch_alter_table('vm_instances', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_vm_instances_userdata_id_user_data'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_vm_instances_group_id_instance_groups'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_vm_instances_os_type_id_os_types'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_vm_instances_userdata_id'))
        batch_op.drop_index(batch_op.f('ix_vm_instances_group_id'))
        batch_op.drop_column('encrypted_password')
        batch_op.drop_column('password_secret')
        batch_op.drop_column('details')
        batch_op.drop_column('os_type_id')
        batch_op.drop_column('dynamically_scalable')
        batch_op.drop_column('ha_enable')
        batch_op.drop_column('group_id')
        batch_op.drop_column('userdata_details')
        batch_op.drop_column('userdata_id')

    with op.batch_alter_table('templates', schema=None) as batch_op:
        batch_op.drop_column('password_enabled')

    op.drop_table('user_data')
    op.drop_table('instance_groups')
