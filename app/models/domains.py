"""Domains (a tree of account groups) and projects (an account of type PROJECT whose
members share its resources), as CloudStack has them."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin, RemovableMixin, utcnow

class DomainState(StrEnum):
    ACTIVE = "Active"
    INACTIVE = "Inactive"


class Domain(PublicIdMixin, RemovableMixin, db.Model):
    """`path` is CloudStack's: "/" for ROOT, "/child/grandchild/" below it, so a subtree is
    every domain whose path starts with its root's path."""

    __tablename__ = "domains"
    __table_args__ = (UniqueConstraint("parent_id", "name", "removed_key", name="uq_domains_parent_name"),)

    name: Mapped[str] = mapped_column(String(255))
    # ON DELETE CASCADE only so that emptying the table works on MariaDB (it checks a
    # self-reference row by row); Nubo never deletes a domain row (removed is set).
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(1024))
    level: Mapped[int] = mapped_column(Integer, default=0)
    network_domain: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default=DomainState.ACTIVE)
    # 0 while the domain lives, its id once removed: live names are unique under a parent,
    # removed ones may repeat (a NULL would not be compared by the unique key on every database).
    removed_key: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    parent: Mapped[Domain | None] = relationship(remote_side="Domain.id", lazy="joined", join_depth=1)


class ProjectState(StrEnum):
    ACTIVE = "Active"
    SUSPENDED = "Suspended"
    DISABLED = "Disabled"


class Project(PublicIdMixin, RemovableMixin, db.Model):
    """A project: its resources belong to its own account (role "project"), which
    `account_id` names; its members are ProjectAccount rows."""

    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(255))
    display_text: Mapped[str | None] = mapped_column(Text)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=ProjectState.ACTIVE)

    domain: Mapped[Domain] = relationship(lazy="joined")
    account = relationship("Account", lazy="joined", foreign_keys=[account_id])
    members: Mapped[list[ProjectAccount]] = relationship(back_populates="project", cascade="all, delete-orphan")


class ProjectRole(StrEnum):
    ADMIN = "Admin"
    REGULAR = "Regular"


class ProjectAccount(db.Model):
    """An account's membership of a project, Admin (may manage the project) or Regular."""

    __tablename__ = "project_accounts"
    __table_args__ = (UniqueConstraint("project_id", "account_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    role: Mapped[str] = mapped_column(String(16), default=ProjectRole.REGULAR)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    project: Mapped[Project] = relationship(back_populates="members")
    account = relationship("Account", lazy="joined", foreign_keys=[account_id])


class InvitationState(StrEnum):
    PENDING = "Pending"
    COMPLETED = "Completed"
    DECLINED = "Declined"
    EXPIRED = "Expired"


class ProjectInvitation(PublicIdMixin, db.Model):
    """An invitation to join a project (when project.invite.required is on): to an account
    (account_id), or to an email address with a token the invitee gives back. Pending until
    accepted (Completed), declined (Declined) or older than project.invite.timeout (Expired)."""

    __tablename__ = "project_invitations"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    email: Mapped[str | None] = mapped_column(String(255))
    token: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16), default=ProjectRole.REGULAR)
    state: Mapped[str] = mapped_column(String(16), default=InvitationState.PENDING)

    project: Mapped[Project] = relationship(lazy="joined")
    domain: Mapped[Domain] = relationship(lazy="joined")
    account = relationship("Account", lazy="joined", foreign_keys=[account_id])


class DomainResourceLimit(db.Model):
    """A domain's limit of one resource type (CloudStack's resource_limits row with a
    domain_id); without one the nearest ancestor's applies, else the `max.domain.*` setting.
    ROOT has none: it is never limited."""

    __tablename__ = "domain_resource_limits"
    __table_args__ = (UniqueConstraint("domain_id", "resource_type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    resource_type: Mapped[str] = mapped_column(String(32))
    max: Mapped[int] = mapped_column(Integer)  # -1 = unlimited


class DomainResourceCount(db.Model):
    """What the accounts of a domain and of every domain below it use, per resource type;
    changed only with the accounts' counts, by guarded UPDATEs (app/services/quotas.py).
    ROOT has no rows: it is never limited, and one row every create updates would serialise
    every account's creates."""

    __tablename__ = "domain_resource_counts"
    __table_args__ = (UniqueConstraint("domain_id", "resource_type"),
                      CheckConstraint("count >= 0", name="count_not_negative"))

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    resource_type: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(BigInteger, default=0)
