"""Accounts own resources; users log in and belong to one account."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from flask_login import UserMixin
from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin, RemovableMixin
from app.models.domains import Domain
from app.models.roles import AccountRole


class Role(StrEnum):
    """CloudStack's account types: root admin (1), domain admin (2), user (0) and the
    account that owns a project's resources (5)."""
    ADMIN = "admin"
    USER = "user"
    DOMAIN_ADMIN = "domainadmin"
    PROJECT = "project"


ACCOUNT_TYPES = {Role.USER: 0, Role.ADMIN: 1, Role.DOMAIN_ADMIN: 2, Role.PROJECT: 5}
ROLE_TYPES = {Role.USER: "User", Role.ADMIN: "Admin", Role.DOMAIN_ADMIN: "DomainAdmin", Role.PROJECT: "User"}


class AccountState(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    LOCKED = "locked"  # lockAccount / disableAccount lock=true: its users cannot log in, its VMs run on


class Account(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "accounts"
    # Account names are unique within a domain, as in CloudStack.
    __table_args__ = (UniqueConstraint("domain_id", "name", name="uq_accounts_domain_name"),)

    name: Mapped[str] = mapped_column(String(255))
    # CloudStack's account type (Role): an admin account's users are root admins.
    role: Mapped[str] = mapped_column(String(16), default=Role.USER)
    state: Mapped[str] = mapped_column(String(16), default=AccountState.ENABLED)
    # The account's dynamic role (app/services/roles.py); None: the default role of its type.
    # `role` above stays "admin" exactly when this role's type is Admin (root admins).
    role_id: Mapped[int | None] = mapped_column(ForeignKey("roles.id"), index=True)
    network_domain: Mapped[str | None] = mapped_column(String(255))  # updateAccount networkdomain
    # Set by deleteAccount before anything is removed: nothing new is made in it from then on.
    cleanup_started: Mapped[datetime | None] = mapped_column(DateTime)

    users: Mapped[list[User]] = relationship(back_populates="account")
    # Joined with the account (itself joined with every loaded user): the API's role check
    # reads the role's rules version from here with no query of its own.
    role_obj: Mapped[AccountRole | None] = relationship(lazy="joined")
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"), index=True)
    domain: Mapped[Domain] = relationship(lazy="joined")

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def role_type(self) -> str:
        """CloudStack's role type (Admin, ResourceAdmin, DomainAdmin, User): what the access
        layer (app/services/access.py) and the API's role checks decide on. It comes from
        the account's role; an account without one has the default role of its `role`."""
        if self.role_obj is not None:
            return self.role_obj.role_type
        return ROLE_TYPES.get(self.role, "User")

    @property
    def account_type(self) -> int:
        """CloudStack's account type, from the role type (5: a project's own account)."""
        if self.role == Role.PROJECT:
            return 5
        return {"Admin": 1, "DomainAdmin": 2, "ResourceAdmin": 3}.get(self.role_type, 0)

    @property
    def is_project(self) -> bool:
        return self.role == Role.PROJECT


class User(UserMixin, PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.USER)
    state: Mapped[str] = mapped_column(String(16), default=AccountState.ENABLED)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    email: Mapped[str | None] = mapped_column(String(255))
    firstname: Mapped[str | None] = mapped_column(String(255))
    lastname: Mapped[str | None] = mapped_column(String(255))
    # API credentials: the key is looked up, the secret is needed in clear to
    # verify HMAC signatures, so it is Fernet-encrypted rather than hashed.
    api_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    secret_key_enc: Mapped[str | None] = mapped_column(Text)
    # Login throttling
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_login: Mapped[datetime | None] = mapped_column(DateTime)
    last_login: Mapped[datetime | None] = mapped_column(DateTime)
    # Raised at a password change and when the user or account is disabled: a session
    # (web cookie or API sessionkey) carries the version it was opened with and ends
    # when it differs. A logout ends only its own session (RevokedSession).
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    account: Mapped[Account] = relationship(back_populates="users", lazy="joined")

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def role_type(self) -> str:
        return self.account.role_type

    @property
    def is_active(self) -> bool:  # Flask-Login: disabled users cannot log in
        return (self.state == AccountState.ENABLED and self.removed is None
                and self.account.state == AccountState.ENABLED and self.account.cleanup_started is None)

    def get_id(self) -> str:  # Flask-Login stores the public id in the session
        return self.uuid


class ResourceLimit(db.Model):
    """Per-account override of a `max.account.*` setting (CloudStack resource limits)."""

    __tablename__ = "resource_limits"
    __table_args__ = (UniqueConstraint("account_id", "resource_type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    resource_type: Mapped[str] = mapped_column(String(32))
    max: Mapped[int] = mapped_column(Integer)  # -1 = unlimited


class ResourceCount(db.Model):
    """What an account uses now, per resource type; changed only by guarded UPDATEs
    (app/services/quotas.py), so concurrent deploys can never pass a limit."""

    __tablename__ = "resource_counts"
    # A count below zero is a bug (something given back twice, or more than was taken):
    # the database refuses it, whatever code or person writes the row.
    __table_args__ = (UniqueConstraint("account_id", "resource_type"),
                      CheckConstraint("count >= 0", name="count_not_negative"))

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    resource_type: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class SSHKeyPair(PublicIdMixin, db.Model):
    __tablename__ = "ssh_keypairs"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    name: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(128))


class RevokedSession(db.Model):
    """A login session ended by its logout: the sha256 of its random id (app/services/sessions.py),
    kept until the session would have ended anyway (its login + session.max.lifetime)."""

    __tablename__ = "revoked_sessions"

    sid_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    expires: Mapped[datetime] = mapped_column(DateTime, index=True)


class LoginThrottle(db.Model):
    """Failed login attempts of one user name (as typed, known or not) from one source
    address (an IPv6 client's /64). An attempt is counted *before* its password is
    checked, by a compare-and-set UPDATE, so parallel guesses cannot pass the limit;
    a successful login deletes the row."""

    __tablename__ = "login_throttles"
    __table_args__ = (UniqueConstraint("username", "source", name="uq_login_throttles_username_source"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # No attempt is checked before this time (set once attempts reach the limit).
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_attempt: Mapped[datetime] = mapped_column(DateTime, index=True)
