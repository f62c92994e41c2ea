"""Shared column helpers for every model."""
from __future__ import annotations

import uuid as uuidlib
from datetime import datetime, timezone

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column


def utcnow() -> datetime:
    """Naive UTC: the same on SQLite, PostgreSQL and MariaDB."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_uuid() -> str:
    return str(uuidlib.uuid4())


# Shared by the API's serializers and the job rows' CloudStack shape (both import from here).
DOMAIN_ID = "00000000-0000-0000-0000-000000000001"  # the one ROOT domain
DOMAIN_NAME = "ROOT"


def cs_date(value: datetime | None) -> str | None:
    """CloudStack's date format: 2024-05-01T10:20:30+0000 (stored values are UTC)."""
    if not value:
        return None
    if value.tzinfo is None:  # isoformat: half strftime's time, and years of four digits as Java's
        return value.isoformat(timespec="seconds") + "+0000"
    return value.strftime("%Y-%m-%dT%H:%M:%S+0000")


class PublicIdMixin:
    """Integer primary key for joins; a UUID string is what users and the API see."""

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RemovableMixin:
    """CloudStack keeps removed rows with a `removed` timestamp for the audit trail."""

    removed: Mapped[datetime | None] = mapped_column(DateTime, default=None)
