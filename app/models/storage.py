"""Primary storage pools (where volumes live) and image stores (secondary storage)."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin, RemovableMixin


class StorageScope(StrEnum):
    HOST = "HOST"  # local storage of one host
    CLUSTER = "CLUSTER"
    ZONE = "ZONE"


class PoolType(StrEnum):
    NFS = "NetworkFilesystem"
    SMB = "SMB"
    FILESYSTEM = "Filesystem"  # a directory (local storage or a shared mount point)


class StoragePool(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "storage_pools"

    name: Mapped[str] = mapped_column(String(255))
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"), index=True)
    pod_id: Mapped[int | None] = mapped_column(ForeignKey("pods.id"))
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("clusters.id"), index=True)
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"), index=True)
    scope: Mapped[str] = mapped_column(String(16), default=StorageScope.CLUSTER)
    pool_type: Mapped[str] = mapped_column(String(32))
    # The hypervisor type the pool serves (its cluster's, or the one given for a zone-wide pool).
    hypervisor_type: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(1024))
    server: Mapped[str | None] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(1024))
    credentials_enc: Mapped[str | None] = mapped_column(Text)  # SMB user/password
    state: Mapped[str] = mapped_column(String(32), default="Up")  # PoolState
    capacity_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    allocated_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    capacity_iops: Mapped[int | None] = mapped_column(BigInteger)  # what the admin says the pool can give
    tags: Mapped[str | None] = mapped_column(String(4096))  # storage tags, comma-separated as CloudStack shows them

    zone = relationship("Zone")
    cluster = relationship("Cluster")
    host = relationship("Host")


class PoolState(StrEnum):
    """CloudStack's StoragePoolStatus values Nubo uses."""
    UP = "Up"
    DISABLED = "Disabled"
    PREPARE_FOR_MAINTENANCE = "PrepareForMaintenance"
    MAINTENANCE = "Maintenance"
    ERROR_IN_MAINTENANCE = "ErrorInMaintenance"
    CANCEL_MAINTENANCE = "CancelMaintenance"


class StoragePoolWork(db.Model):
    """CloudStack's storage_pool_work: a VM that a pool's maintenance stopped, so that cancelling
    the maintenance starts it again (and a killed job finds what it already did)."""
    __tablename__ = "storage_pool_work"
    __table_args__ = (UniqueConstraint("pool_id", "vm_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("storage_pools.id"), index=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vm_instances.id"), index=True)
    stopped_for_maintenance: Mapped[bool] = mapped_column(Boolean, default=False)
    started_after_maintenance: Mapped[bool] = mapped_column(Boolean, default=False)


class ImageStore(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "image_stores"

    name: Mapped[str] = mapped_column(String(255))
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id"), index=True)
    provider: Mapped[str] = mapped_column(String(16))  # NFS, SMB, Local
    url: Mapped[str] = mapped_column(String(1024))
    path: Mapped[str] = mapped_column(String(1024))
    credentials_enc: Mapped[str | None] = mapped_column(Text)
    capacity_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # What the monitor last found (ImageStoreState): the store's directory read and written.
    state: Mapped[str] = mapped_column(String(16), default="Ready", server_default="Ready")
    state_reason: Mapped[str | None] = mapped_column(String(1024))
    last_checked: Mapped[datetime | None] = mapped_column(DateTime)

    zone = relationship("Zone")


class ImageStoreState(StrEnum):
    READY = "Ready"  # its directory answers, is read and written
    READ_ONLY = "ReadOnly"  # read, not written (CloudStack's read-only image store: no new copies there)
    UNREACHABLE = "Unreachable"  # not mounted, missing, unreadable, or it did not answer in time
