"""Server-side state of a multi-step wizard (the zone wizard): one row per draft.

Kept in the database, not the cookie, so any web process can serve the next
step; the data is Fernet-encrypted because it holds host passwords until launch.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import PublicIdMixin, utcnow


class WizardDraft(PublicIdMixin, db.Model):
    __tablename__ = "wizard_drafts"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # "zone"
    step: Mapped[str] = mapped_column(String(32))  # the furthest step reached
    data_enc: Mapped[str | None] = mapped_column(Text)  # encrypted JSON {step: {field: value}}
    # The launch job, once launched (a failed launch keeps the draft to fix and relaunch).
    job_uuid: Mapped[str | None] = mapped_column(String(36))
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
