"""Alerts (CloudStack's `alert` table): what an operator must look at, raised by the
monitor, the jobs and the services; one open alert per condition until it clears."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin


class Alert(PublicIdMixin, db.Model):
    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_archived_resolved", "archived", "resolved"),
                      Index("ix_alerts_type", "type"))

    # AlertService.AlertType id (HOST = 7, ...); not named `type` in Python (that name would shadow
    # the builtin where SQLAlchemy evaluates the annotations of the class)
    alert_type: Mapped[int] = mapped_column("type", SmallInteger)
    name: Mapped[str] = mapped_column(String(255))  # its name (ALERT.COMPUTE.HOST, ...)
    subject: Mapped[str] = mapped_column(String(999))  # listAlerts' "description"
    content: Mapped[str | None] = mapped_column(Text)
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id", ondelete="SET NULL"))
    pod_id: Mapped[int | None] = mapped_column(ForeignKey("pods.id", ondelete="SET NULL"))
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("clusters.id", ondelete="SET NULL"))
    # What it is about (Nubo: CloudStack keys an alert by type, zone, pod and cluster only, so
    # two hosts of one pod could not both have an open alert): "Host" + its uuid, ...
    resource_type: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(255))
    # Set while the alert is open (not resolved, not archived): the same condition cannot
    # open a second one, whichever process raises it (a unique index allows many NULLs).
    open_key: Mapped[str | None] = mapped_column(String(512), unique=True)
    sent_count: Mapped[int] = mapped_column(Integer, default=0)
    last_sent: Mapped[datetime | None] = mapped_column(DateTime)
    delivery_error: Mapped[str | None] = mapped_column(String(1024))
    resolved: Mapped[datetime | None] = mapped_column(DateTime)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)

    zone = relationship("Zone")
    pod = relationship("Pod")
    cluster = relationship("Cluster")
