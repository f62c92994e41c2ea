"""The audit log (CloudStack's events)."""
from __future__ import annotations

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin


class Event(PublicIdMixin, db.Model):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_account_id", "account_id", "id"),)

    type: Mapped[str] = mapped_column(String(64), index=True)  # e.g. VM.START, USER.LOGIN
    level: Mapped[str] = mapped_column(String(16), default="INFO")  # INFO, WARN, ERROR
    state: Mapped[str] = mapped_column(String(16), default="Completed")
    description: Mapped[str] = mapped_column(Text)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resource_type: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(36), index=True)
    source_address: Mapped[str | None] = mapped_column(String(64))

    user = relationship("User")
    account = relationship("Account")
