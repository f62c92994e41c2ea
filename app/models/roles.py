"""Dynamic roles (CloudStack 4.9+): a role has a type and an ordered list of rules, each an
API name or a wildcard ("list*") allowed or denied; an account has one role."""
from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin, RemovableMixin


class RoleType(StrEnum):
    ADMIN = "Admin"
    RESOURCE_ADMIN = "ResourceAdmin"
    DOMAIN_ADMIN = "DomainAdmin"
    USER = "User"


class Permission(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class AccountRole(PublicIdMixin, RemovableMixin, db.Model):
    """CloudStack's `roles` row (named AccountRole here: `Role` is the account-type enum)."""

    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(255), index=True)
    role_type: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    state: Mapped[str] = mapped_column(String(16), default="enabled", server_default="enabled")
    # Raised by every change of the role or its rules: each process caches the compiled rules
    # by (role id, version), and the role row comes with the caller's user row, so the cache
    # costs no query per call and a change made by any process is seen by all at once.
    rules_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    permissions: Mapped[list[RolePermission]] = relationship(
        back_populates="role", order_by="RolePermission.sort_order", cascade="all, delete-orphan",
        passive_deletes=True)


class RolePermission(PublicIdMixin, db.Model):
    __tablename__ = "role_permissions"

    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), index=True)
    rule: Mapped[str] = mapped_column(String(255))
    permission: Mapped[str] = mapped_column(String(8), default=Permission.ALLOW)
    description: Mapped[str | None] = mapped_column(Text)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)

    role: Mapped[AccountRole] = relationship(back_populates="permissions")
