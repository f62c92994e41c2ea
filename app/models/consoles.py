"""Console sessions: a single-use token (hash only) and, once used, the live session."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import PublicIdMixin


class ConsoleSession(PublicIdMixin, db.Model):
    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    vm_id: Mapped[int] = mapped_column(ForeignKey("vm_instances.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # vnc, rdp, text
    expires: Mapped[datetime] = mapped_column(DateTime)
    used: Mapped[datetime | None] = mapped_column(DateTime)
    closed: Mapped[datetime | None] = mapped_column(DateTime)
    client_address: Mapped[str | None] = mapped_column(String(64))
    # Binds reconnects within the window to the browser session that made the token.
    browser_session: Mapped[str | None] = mapped_column(String(64))
    target_host: Mapped[str | None] = mapped_column(String(255))
    target_port: Mapped[int | None] = mapped_column(Integer)
