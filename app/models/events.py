"""The audit log (CloudStack's events)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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


class EventBucket(db.Model):
    """Events caused by unauthenticated requests (failed logins, refused console
    connections) are aggregated: one event row per (kind, source, window) whose
    description carries the count, so an anonymous flood adds bounded rows."""

    __tablename__ = "event_buckets"
    __table_args__ = (UniqueConstraint("kind", "source", "window_start", name="uq_event_buckets_kind_source_window"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))  # "*" collects the sources past the per-window cap
    window_start: Mapped[datetime] = mapped_column(DateTime, index=True)
    count: Mapped[int] = mapped_column(Integer, default=1)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id", ondelete="SET NULL"))
