"""Global settings (CloudStack's configuration table). Definitions live in
app/services/settings.py; rows hold the current values."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import utcnow


class Setting(db.Model):
    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    default: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(64), default="Advanced")
    description: Mapped[str] = mapped_column(Text, default="")
    is_dynamic: Mapped[bool] = mapped_column(Boolean, default=True)
    scope: Mapped[str] = mapped_column(String(32), default="global")
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
