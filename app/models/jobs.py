"""Async jobs: one row per long action; the API's queryAsyncJobResult reads it."""
from __future__ import annotations

from datetime import datetime
from enum import IntEnum

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import PublicIdMixin


class JobStatus(IntEnum):
    PENDING = 0
    SUCCEEDED = 1
    FAILED = 2
    CANCELLED = 3


class AsyncJob(PublicIdMixin, db.Model):
    __tablename__ = "async_jobs"
    __table_args__ = (Index("ix_async_jobs_status_heartbeat", "status", "heartbeat"),
                      Index("ix_async_jobs_account_queue_status", "account_id", "queue", "status"))

    cmd: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # What the job acts on (CloudStack's jobinstancetype / jobinstanceid).
    instance_type: Mapped[str | None] = mapped_column(String(64))
    instance_id: Mapped[str | None] = mapped_column(String(36), index=True)
    status: Mapped[int] = mapped_column(Integer, default=JobStatus.PENDING)
    progress: Mapped[int] = mapped_column(Integer, default=0)  # percent
    progress_message: Mapped[str | None] = mapped_column(String(1024))
    # Ordered step list for multi-step jobs (zone launch), JSON.
    steps: Mapped[str | None] = mapped_column(Text)
    params: Mapped[str | None] = mapped_column(Text)  # JSON
    result_code: Mapped[int] = mapped_column(Integer, default=0)
    result_type: Mapped[str] = mapped_column(String(16), default="object")
    result: Mapped[str | None] = mapped_column(Text)  # JSON
    started: Mapped[datetime | None] = mapped_column(DateTime)
    completed: Mapped[datetime | None] = mapped_column(DateTime)
    # The worker holding the job refreshes this; the reaper fails stale ones.
    worker: Mapped[str | None] = mapped_column(String(255))
    heartbeat: Mapped[datetime | None] = mapped_column(DateTime)
    # Which huey queue runs it: "jobs" (short work) or "transfers" (downloads, their own pool).
    queue: Mapped[str] = mapped_column(String(16), default="jobs", server_default="jobs")
