"""Volume snapshots (copies of a volume kept on secondary storage) and the snapshot
policies that take them on a schedule. (VM snapshots are a model of their own.)"""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin, RemovableMixin


class SnapshotState(StrEnum):
    """CloudStack's Snapshot.State values that Nubo passes through."""
    ALLOCATED = "Allocated"  # the row (and its quota) exists, the copy is not made yet
    BACKING_UP = "BackingUp"  # the copy is being made to secondary storage
    BACKED_UP = "BackedUp"  # the copy is on secondary storage: usable
    ERROR = "Error"
    DESTROYED = "Destroyed"


class IntervalType(StrEnum):
    """Snapshot.Type: MANUAL for createSnapshot, the policy's interval for scheduled ones.
    Policies report the interval as its number (HOURLY 0 ... MONTHLY 3), as CloudStack does."""
    MANUAL = "MANUAL"
    HOURLY = "HOURLY"
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"


INTERVAL_NUMBERS = {IntervalType.HOURLY: 0, IntervalType.DAILY: 1, IntervalType.WEEKLY: 2, IntervalType.MONTHLY: 3}


class Snapshot(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "snapshots"
    __table_args__ = (Index("ix_snapshots_volume_removed", "volume_id", "removed"),)

    name: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"))
    volume_id: Mapped[int] = mapped_column(ForeignKey("volumes.id"))
    # The policy that took it (None: createSnapshot by hand); kept when the policy is deleted.
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("snapshot_policies.id", ondelete="SET NULL"),
                                                  index=True)
    snapshot_type: Mapped[str] = mapped_column(String(16), default=IntervalType.MANUAL)
    state: Mapped[str] = mapped_column(String(16), default=SnapshotState.ALLOCATED)
    hypervisor_type: Mapped[str] = mapped_column(String(64))
    volume_type: Mapped[str] = mapped_column(String(16))  # the volume's (ROOT / DATADISK) when taken
    size: Mapped[int] = mapped_column(BigInteger)  # virtual size in bytes (the volume's)
    physical_size: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes on secondary storage
    format: Mapped[str] = mapped_column(String(16), default="QCOW2")
    image_store_id: Mapped[int | None] = mapped_column(ForeignKey("image_stores.id"))
    install_path: Mapped[str | None] = mapped_column(String(2048))  # relative to the store's root
    error: Mapped[str | None] = mapped_column(String(2048))
    # The account's counts include this snapshot (resource type 3) and counted_gib GiB of
    # secondary storage (type 11), from its creation until it is deleted: what is given back.
    quota_counted: Mapped[bool] = mapped_column(default=False)
    counted_gib: Mapped[int] = mapped_column(BigInteger, default=0)

    volume = relationship("Volume")
    zone = relationship("Zone")
    account = relationship("Account")
    policy = relationship("SnapshotPolicy")
    image_store = relationship("ImageStore")


class SnapshotPolicy(PublicIdMixin, db.Model):
    """One schedule of one volume: CloudStack keeps at most one per interval type per volume
    (createSnapshotPolicy with the same interval type replaces its schedule)."""

    __tablename__ = "snapshot_policies"
    __table_args__ = (Index("ix_snapshot_policies_next_run", "next_run"),)

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    volume_id: Mapped[int] = mapped_column(ForeignKey("volumes.id"), index=True)
    interval_type: Mapped[str] = mapped_column(String(16))  # HOURLY, DAILY, WEEKLY, MONTHLY
    schedule: Mapped[str] = mapped_column(String(32))  # "MM", "MM:HH", "MM:HH:DD"
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    max_snaps: Mapped[int] = mapped_column(Integer)
    display: Mapped[bool] = mapped_column(default=True)
    # The next time (naive UTC) the scheduler takes a snapshot; a missed time is taken once.
    next_run: Mapped[datetime | None] = mapped_column(DateTime)
    last_run: Mapped[datetime | None] = mapped_column(DateTime)

    volume = relationship("Volume")
    account = relationship("Account")
