"""User data objects (CloudStack 4.18+ registerUserData) and instance groups."""
from __future__ import annotations

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin


class UserData(PublicIdMixin, db.Model):
    """A named, reusable user data of one account (CloudStack's user_data table). Deleted
    rows go (CloudStack expunges them too), so a name is unique per account."""
    __tablename__ = "user_data"
    __table_args__ = (UniqueConstraint("account_id", "name", name="uq_user_data_account_name"),)

    name: Mapped[str] = mapped_column(String(256))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    userdata: Mapped[str] = mapped_column(Text)  # base64, as given
    # The variables the user data declares (comma separated), filled per VM by userdatadetails.
    params: Mapped[str | None] = mapped_column(String(4096))

    account = relationship("Account")


class InstanceGroup(PublicIdMixin, db.Model):
    """A named group of an account's VMs (CloudStack's instance_group); a VM is in at most one."""
    __tablename__ = "instance_groups"
    __table_args__ = (UniqueConstraint("account_id", "name", name="uq_instance_groups_account_name"),)

    name: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)

    account = relationship("Account")
