"""VM snapshots (CloudStack's vm_snapshots): a point in time of a VM's disks, and of its
memory for a DiskAndMemory snapshot, kept by the hypervisor (internal qcow2 snapshots on
KVM). One per row; `current` marks the one the VM last came from (taken or reverted to),
`parent_id` the one that was current when it was taken (CloudStack's snapshot tree)."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin, RemovableMixin, utcnow


class VMSnapshotState(StrEnum):
    ALLOCATED = "Allocated"  # the row exists, its job has not started
    CREATING = "Creating"
    READY = "Ready"
    REVERTING = "Reverting"
    EXPUNGING = "Expunging"
    REMOVED = "Removed"
    ERROR = "Error"


class VMSnapshotType(StrEnum):
    DISK = "Disk"
    DISK_AND_MEMORY = "DiskAndMemory"


class VMSnapshot(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "vm_snapshots"
    __table_args__ = (Index("ix_vm_snapshots_vm_removed", "vm_id", "removed"),)

    # The snapshot's name on the hypervisor: <instance name>_VS_<yyyyMMddHHmmss>, as CloudStack names it.
    name: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255))
    vm_id: Mapped[int] = mapped_column(ForeignKey("vm_instances.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    # The VM's offering when it was taken (CloudStack keeps it to restore it on revert).
    service_offering_id: Mapped[int | None] = mapped_column(ForeignKey("service_offerings.id"))
    snapshot_type: Mapped[str] = mapped_column(String(16), default=VMSnapshotType.DISK)
    state: Mapped[str] = mapped_column(String(16), default=VMSnapshotState.ALLOCATED)
    current: Mapped[bool] = mapped_column(Boolean, default=False)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("vm_snapshots.id", ondelete="SET NULL"))
    quiesce: Mapped[bool] = mapped_column(Boolean, default=False)
    # What the hypervisor said of it (libvirt: the snapshot's XML) to teach it to another host.
    hypervisor_metadata: Mapped[str | None] = mapped_column(db.Text)
    updated: Mapped[datetime | None] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    vm = relationship("VirtualMachine")
    account = relationship("Account")
    parent: Mapped[VMSnapshot | None] = relationship(remote_side="VMSnapshot.id")
