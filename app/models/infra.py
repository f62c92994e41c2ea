"""Zones, pods, clusters, hosts: the physical layout an admin builds."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin, RemovableMixin


class AllocationState(StrEnum):
    ENABLED = "Enabled"
    DISABLED = "Disabled"


class NetworkType(StrEnum):
    BASIC = "Basic"
    ADVANCED = "Advanced"


class HostState(StrEnum):
    """What the monitor last saw (CloudStack's Status)."""
    CREATING = "Creating"
    CONNECTING = "Connecting"
    UP = "Up"
    DOWN = "Down"
    DISCONNECTED = "Disconnected"
    ALERT = "Alert"
    REMOVED = "Removed"
    ERROR = "Error"
    UNKNOWN = "Unknown"


class ResourceState(StrEnum):
    """What the admin asked for (CloudStack's ResourceState)."""
    ENABLED = "Enabled"
    DISABLED = "Disabled"
    PREPARE_FOR_MAINTENANCE = "PrepareForMaintenance"
    MAINTENANCE = "Maintenance"
    ERROR_IN_MAINTENANCE = "ErrorInMaintenance"


class Zone(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "zones"

    # Unique among live zones (checked by the service): a removed zone keeps its row and name.
    name: Mapped[str] = mapped_column(String(255), index=True)
    description: Mapped[str | None] = mapped_column(String(1024))
    network_type: Mapped[str] = mapped_column(String(16), default=NetworkType.ADVANCED)
    dns1: Mapped[str | None] = mapped_column(String(64))
    dns2: Mapped[str | None] = mapped_column(String(64))
    internal_dns1: Mapped[str | None] = mapped_column(String(64))
    internal_dns2: Mapped[str | None] = mapped_column(String(64))
    guest_cidr: Mapped[str | None] = mapped_column(String(64))
    local_storage_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    security_groups_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # The hypervisor type chosen in the zone wizard (internal name); may be None
    # for zones created through the API that mix clusters of several types.
    hypervisor_type: Mapped[str | None] = mapped_column(String(64))
    allocation_state: Mapped[str] = mapped_column(String(16), default=AllocationState.DISABLED)

    pods: Mapped[list[Pod]] = relationship(back_populates="zone")


class Pod(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "pods"
    __table_args__ = (UniqueConstraint("zone_id", "name"),)

    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    gateway: Mapped[str | None] = mapped_column(String(64))
    netmask: Mapped[str | None] = mapped_column(String(64))
    start_ip: Mapped[str | None] = mapped_column(String(64))
    end_ip: Mapped[str | None] = mapped_column(String(64))
    allocation_state: Mapped[str] = mapped_column(String(16), default=AllocationState.ENABLED)

    zone: Mapped[Zone] = relationship(back_populates="pods")


class Cluster(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "clusters"
    __table_args__ = (UniqueConstraint("pod_id", "name"),)

    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"), index=True)
    pod_id: Mapped[int] = mapped_column(ForeignKey("pods.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    # Internal type name ("KVM", "Custom", ...); shown by its display name.
    hypervisor_type: Mapped[str] = mapped_column(String(64), index=True)
    cluster_type: Mapped[str] = mapped_column(String(32), default="CloudManaged")
    allocation_state: Mapped[str] = mapped_column(String(16), default=AllocationState.ENABLED)
    managed_state: Mapped[str] = mapped_column(String(16), default="Managed")

    pod: Mapped[Pod] = relationship()
    zone: Mapped[Zone] = relationship()


class Host(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "hosts"
    __table_args__ = (
        Index("ix_hosts_planner", "zone_id", "hypervisor_type", "state", "resource_state"),
    )

    name: Mapped[str] = mapped_column(String(255), index=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"))
    pod_id: Mapped[int] = mapped_column(ForeignKey("pods.id"), index=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"), index=True)
    hypervisor_type: Mapped[str] = mapped_column(String(64))
    # What the admin typed (libvirt URI, simulator://..., WinRM address); unique
    # among live hosts so an address is added once.
    url: Mapped[str] = mapped_column(String(1024))
    address: Mapped[str] = mapped_column(String(255), index=True)
    # Fernet-encrypted JSON of the type's secret fields (password, SSH key, ...).
    credentials_enc: Mapped[str | None] = mapped_column(Text)
    # Non-secret per-type options (transport, cert validation, ...), JSON.
    details: Mapped[str] = mapped_column(Text, default="{}")

    state: Mapped[str] = mapped_column(String(16), default=HostState.CREATING)
    resource_state: Mapped[str] = mapped_column(String(32), default=ResourceState.ENABLED)
    state_reason: Mapped[str | None] = mapped_column(String(1024))
    last_pinged: Mapped[datetime | None] = mapped_column(DateTime)

    # Facts from discovery
    hypervisor_version: Mapped[str | None] = mapped_column(String(64))
    arch: Mapped[str | None] = mapped_column(String(32))
    cpu_sockets: Mapped[int] = mapped_column(Integer, default=0)
    cpu_number: Mapped[int] = mapped_column(Integer, default=0)  # cores (threads) total
    cpu_speed: Mapped[int] = mapped_column(Integer, default=0)  # MHz per core
    memory_total: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes
    local_storage_path: Mapped[str | None] = mapped_column(String(1024))
    local_storage_total: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes
    # CloudStack's host tags, comma separated ("ssd,gpu"): a service offering with host tags
    # runs only on hosts that have every one of them.
    host_tags: Mapped[str | None] = mapped_column(String(4096))

    # Capacity bookkeeping, updated atomically by the planner (CloudStack's op_host_capacity).
    cpu_allocated: Mapped[int] = mapped_column(BigInteger, default=0)  # MHz
    memory_allocated: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes
    # Last sampled usage, from the monitor.
    cpu_used_pct: Mapped[float | None] = mapped_column(db.Float)
    memory_used: Mapped[int | None] = mapped_column(BigInteger)

    cluster: Mapped[Cluster] = relationship()
    pod: Mapped[Pod] = relationship()
    zone: Mapped[Zone] = relationship()
