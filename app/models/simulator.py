"""The Simulator hypervisor's own state: its fake hosts, VMs, pools, volumes and
armed faults. These rows are what the *hypervisor* knows, not Nubo's records
(hosts, vm_instances, ...); keeping them in Nubo's database lets every process
(web, worker, monitor) see one simulated data centre.

Written by the Simulator driver (app/hypervisors/simulator.py) through its own
SQLAlchemy session, and by the fault-injection service (app/services/simulator.py).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Double, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import utcnow


class SimHost(db.Model):
    """A fake hypervisor host, created or refreshed by check_host from its URL
    `simulator://NAME?cpus=..&cpuspeed=..&memory=..&localstorage=..`."""

    __tablename__ = "sim_hosts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    cpus: Mapped[int] = mapped_column(Integer)
    cpu_speed: Mapped[int] = mapped_column(Integer)  # MHz per core
    memory_mib: Mapped[int] = mapped_column(Integer)
    local_storage_gib: Mapped[int] = mapped_column(Integer)
    # Fault injection: a down host raises HostUnreachable for every call.
    up: Mapped[bool] = mapped_column(Boolean, default=True)
    # Fault injection: every call on this host (and its VMs) sleeps this long first.
    delay_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    # How long a VM spends in a transitional state (starting, stopping, migrating).
    step_seconds: Mapped[float] = mapped_column(Float, default=0.05)
    # Its heartbeat on shared storage (HA investigation): written while this is None; epoch
    # seconds of the last beat once its power was cut (a host cut off from the management
    # network only keeps writing it).
    heartbeat_stopped_at: Mapped[float | None] = mapped_column(Double)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class SimVM(db.Model):
    """A fake guest on a sim host. Transitions are lazy: `state` holds until
    `pending_at` (epoch seconds), after which `pending_state` is what it is."""

    __tablename__ = "sim_vms"
    __table_args__ = (UniqueConstraint("host_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("sim_hosts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    uuid: Mapped[str] = mapped_column(String(36))
    state: Mapped[str] = mapped_column(String(16))  # app.hypervisors.base.PowerState values
    pending_state: Mapped[str | None] = mapped_column(String(16))
    pending_at: Mapped[float | None] = mapped_column(Double)  # Double: MariaDB's FLOAT is 32-bit
    cpus: Mapped[int] = mapped_column(Integer)
    cpu_mhz: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(Integer)
    console_port: Mapped[int] = mapped_column(Integer)
    console_password: Mapped[str | None] = mapped_column(String(255))
    iso_path: Mapped[str | None] = mapped_column(String(2048))
    # JSON list of disk paths (bookkeeping only).
    disks: Mapped[str] = mapped_column(Text, default="[]")
    # JSON list of the guest segments' bridges its NICs are on (bookkeeping for release_segment).
    bridges: Mapped[str] = mapped_column(Text, default="[]")
    # Epoch seconds the guest last started (cumulative stats count from here).
    started_at: Mapped[float | None] = mapped_column(Double)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SimPool(db.Model):
    """A storage pool some sim host prepared (bookkeeping: capacity only)."""

    __tablename__ = "sim_pools"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # NFS, SMB, Filesystem
    path: Mapped[str] = mapped_column(String(1024))
    # Set for a host's local storage; shared pools have none.
    host_id: Mapped[int | None] = mapped_column(ForeignKey("sim_hosts.id", ondelete="CASCADE"), index=True)
    capacity_bytes: Mapped[int] = mapped_column(BigInteger)


class SimVolume(db.Model):
    __tablename__ = "sim_volumes"
    __table_args__ = (UniqueConstraint("pool_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("sim_pools.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(16))
    base_path: Mapped[str | None] = mapped_column(String(2048))


class SimFault(db.Model):
    """An armed fault: the next `remaining` operations on a host (host_id) or on
    a VM (vm_name, on whichever host it is) fail with `message`. `operations`
    limits it to some driver methods (comma separated; empty = every action)."""

    __tablename__ = "sim_faults"

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int | None] = mapped_column(ForeignKey("sim_hosts.id", ondelete="CASCADE"), index=True)
    vm_name: Mapped[str | None] = mapped_column(String(255), index=True)
    operations: Mapped[str] = mapped_column(String(512), default="")
    remaining: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(String(1024))
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SimRouter(db.Model):
    """A virtual router on a sim host (bookkeeping): its key, the configuration hash applied
    and the spec itself (JSON, so tests can read what a real router would serve)."""

    __tablename__ = "sim_routers"
    __table_args__ = (UniqueConstraint("host_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("sim_hosts.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(32), index=True)
    hash: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="Running")  # Running | Broken
    spec: Mapped[str] = mapped_column(Text, default="{}")


class SimSegment(db.Model):
    """A guest segment's bridge on a sim host (bookkeeping)."""

    __tablename__ = "sim_segments"
    __table_args__ = (UniqueConstraint("host_id", "bridge"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("sim_hosts.id", ondelete="CASCADE"), index=True)
    bridge: Mapped[str] = mapped_column(String(64))


class SimVMSnapshot(db.Model):
    """A VM snapshot the fake hypervisor keeps with its VM: what the guest was (power state,
    CPU, memory, disks) when it was taken, so a revert can put exactly that back."""

    __tablename__ = "sim_vm_snapshots"
    __table_args__ = (UniqueConstraint("vm_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("sim_vms.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    memory: Mapped[bool] = mapped_column(Boolean, default=False)  # the guest's memory is in it
    state: Mapped[str] = mapped_column(String(16))  # the guest's power state when taken
    cpus: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(Integer)
    disks: Mapped[str] = mapped_column(Text, default="[]")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
