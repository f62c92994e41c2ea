"""Resource tags (CloudStack's resource_tags): key/value pairs on a user's objects, made
with createTags and shown in every taggable object's `tags`."""
from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import PublicIdMixin


class ResourceTag(PublicIdMixin, db.Model):
    __tablename__ = "resource_tags"
    # One value per key on a resource; the key's prefix also serves "this resource's tags"
    # (the responses) and the list filters' EXISTS.
    __table_args__ = (UniqueConstraint("resource_type", "resource_id", "key"),
                      Index("ix_resource_tags_uuid_type", "resource_uuid", "resource_type"))

    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(String(255))
    # CloudStack's ResourceObjectType name (UserVm, Volume, Template, ISO, Network, ...)
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[int] = mapped_column(Integer)  # the object's internal id
    resource_uuid: Mapped[str] = mapped_column(String(40))
    # The object's owner when it was tagged (None: no owner, e.g. a shared network: admins only)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    customer: Mapped[str | None] = mapped_column(String(255))
