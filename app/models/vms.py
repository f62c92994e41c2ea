"""Virtual machines, their volumes and NICs."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin, RemovableMixin


class VMState(StrEnum):
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    DESTROYED = "Destroyed"
    EXPUNGING = "Expunging"
    MIGRATING = "Migrating"
    ERROR = "Error"
    UNKNOWN = "Unknown"


class VirtualMachine(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "vm_instances"
    __table_args__ = (
        # The list pages filter by these and order by id (keyset pagination).
        Index("ix_vm_state_id", "state", "id"),
        # Every list and count is of the VMs not removed: these two make the count and a
        # deep page's ids index-only scans (no table rows read).
        Index("ix_vm_removed_id", "removed", "id"),
        Index("ix_vm_removed_state_id", "removed", "state", "id"),
        # A keyword search (LIKE '%…%', which no index can seek) scans this instead of
        # the table's wide rows: 27 → 17 ms at 100,000 VMs on SQLite.
        Index("ix_vm_removed_names", "removed", "name", "display_name", "id"),
        # (removed between: the count of a zone's live VMs is an index-only scan too)
        Index("ix_vm_zone_removed_id", "zone_id", "removed", "id"),
        Index("ix_vm_host_removed_id", "host_id", "removed", "id"),
        Index("ix_vm_account_removed_id", "account_id", "removed", "id"),
        # On PostgreSQL also a trigram index for keywords: see create_trigram_index below.
        # PostgreSQL: pages half empty, so that the monitor's sweep, which writes every running
        # VM's stats, makes in-page (HOT) row versions that touch none of the 13 indexes
        # (a 2,000-host sweep's 50,000 updates: ~3 s of server time -> ~1 s; migration 0036).
        {"postgresql_with": {"fillfactor": 50}},
    )

    name: Mapped[str] = mapped_column(String(255), index=True)
    display_name: Mapped[str | None] = mapped_column(String(255))
    # The name on the hypervisor (CloudStack's i-<account>-<id>-VM).
    instance_name: Mapped[str] = mapped_column(String(255), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=VMState.STOPPED)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"))
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"))
    last_host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"))
    template_id: Mapped[int | None] = mapped_column(ForeignKey("templates.id"))
    iso_id: Mapped[int | None] = mapped_column(ForeignKey("templates.id"))
    service_offering_id: Mapped[int] = mapped_column(ForeignKey("service_offerings.id"))
    hypervisor_type: Mapped[str] = mapped_column(String(64))
    cpu_number: Mapped[int] = mapped_column(Integer)
    cpu_speed: Mapped[int] = mapped_column(Integer)
    memory: Mapped[int] = mapped_column(Integer)  # MiB
    keypair_id: Mapped[int | None] = mapped_column(ForeignKey("ssh_keypairs.id", ondelete="SET NULL"))
    userdata: Mapped[str | None] = mapped_column(Text)
    # A registered user data (registerUserData) and the values of its params, as JSON {name: value}.
    userdata_id: Mapped[int | None] = mapped_column(ForeignKey("user_data.id"), index=True)
    userdata_details: Mapped[str | None] = mapped_column(Text)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("instance_groups.id", ondelete="SET NULL"), index=True)
    ha_enable: Mapped[bool] = mapped_column(default=False)
    dynamically_scalable: Mapped[bool] = mapped_column(default=False)
    # The guest OS when it differs from the template's (updateVirtualMachine ostypeid).
    os_type_id: Mapped[int | None] = mapped_column(ForeignKey("os_types.id"))
    # Free-form details (updateVirtualMachine details) are resource_details rows of type UserVm.
    # A password for password-enabled templates: the router's password server hands it to the
    # guest (encrypted here with the credentials key); getVMPassword answers it encrypted with
    # the VM's RSA SSH key (CloudStack's encrypted.password detail).
    password_secret: Mapped[str | None] = mapped_column(Text)
    encrypted_password: Mapped[str | None] = mapped_column(Text)
    # The hypervisor's own id for the VM (libvirt UUID, Hyper-V GUID).
    hypervisor_vm_id: Mapped[str | None] = mapped_column(String(64))
    # Console target reported by the driver at start (e.g. VNC host/port).
    console_host: Mapped[str | None] = mapped_column(String(255))
    console_port: Mapped[int | None] = mapped_column(Integer)
    # Per-VM action lock: the running job's id; set atomically (one action at a time).
    active_job_id: Mapped[int | None] = mapped_column(Integer)
    # Capacity held on host_id (released on stop/destroy/failed deploy).
    capacity_reserved: Mapped[bool] = mapped_column(default=False)
    # While Migrating: the destination reserved for it (the affinity check counts it there too,
    # so two migrations into one anti-affinity group never pick the same host). A plain id, no
    # foreign key: read only while the VM is Migrating.
    migration_host_id: Mapped[int | None] = mapped_column(Integer)
    # The account's counts include this VM's instance, vCPUs and memory (from deploy until expunge
    # or a failed deploy); its ROOT volume counts through its own row (Volume.quota_counted).
    quota_counted: Mapped[bool] = mapped_column(default=False)
    state_updated: Mapped[datetime | None] = mapped_column(DateTime)
    # Stats sampled by the monitor (rates over its last sweep)
    cpu_used_pct: Mapped[float | None] = mapped_column(db.Float)
    memory_used_kib: Mapped[int | None] = mapped_column(BigInteger)
    disk_read_bps: Mapped[float | None] = mapped_column(db.Float)
    disk_write_bps: Mapped[float | None] = mapped_column(db.Float)
    net_rx_bps: Mapped[float | None] = mapped_column(db.Float)
    net_tx_bps: Mapped[float | None] = mapped_column(db.Float)

    account = relationship("Account")
    user = relationship("User")
    zone = relationship("Zone")
    host = relationship("Host", foreign_keys=[host_id])
    template = relationship("Template", foreign_keys=[template_id])
    iso = relationship("Template", foreign_keys=[iso_id])
    service_offering = relationship("ServiceOffering")
    group = relationship("InstanceGroup")
    userdata_obj = relationship("UserData")
    os_type = relationship("OsType")
    nics: Mapped[list[Nic]] = relationship(back_populates="vm", order_by="Nic.device_id")
    volumes: Mapped[list[Volume]] = relationship(back_populates="vm", order_by="Volume.device_id")


# Indexes kept out of the models because only some databases can have them; the
# migrations make them and the schema comparison (migrations/env.py) skips them.
DATABASE_ONLY_INDEXES = {"ix_vm_names_trgm"}


def in_schema_comparison(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic's include_object: everything but DATABASE_ONLY_INDEXES."""
    return not (type_ == "index" and name in DATABASE_ONLY_INDEXES)


def create_trigram_index(connection) -> bool:
    """On PostgreSQL with pg_trgm: a GIN trigram index on the VM names, so a keyword
    search (LIKE '%…%' of 3 characters or more) is an index scan instead of reading
    every row (26 → 2.4 ms at 100,000 VMs). Where the extension cannot be created
    (no rights on a managed server) nothing changes but the speed; returns whether
    the index exists."""
    from sqlalchemy import text
    if connection.dialect.name != "postgresql":
        return False
    try:
        with connection.begin_nested():
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except Exception:  # noqa: BLE001 - any refusal means: no trigram index
        return False
    connection.execute(text("CREATE INDEX IF NOT EXISTS ix_vm_names_trgm ON vm_instances "
                            "USING gin (name gin_trgm_ops, display_name gin_trgm_ops)"))
    return True


class VolumeType(StrEnum):
    ROOT = "ROOT"
    DATADISK = "DATADISK"


class VolumeState(StrEnum):
    ALLOCATED = "Allocated"  # no storage yet
    CREATING = "Creating"
    READY = "Ready"
    RESIZING = "Resizing"
    DESTROY = "Destroy"
    EXPUNGED = "Expunged"
    ERROR = "Error"
    # uploadVolume / getUploadParamsForVolume (CloudStack's names): the image is on the image
    # store until the first attach moves it into primary storage.
    NOT_UPLOADED = "NotUploaded"  # a browser upload URL was issued; nothing arrived yet
    UPLOAD_IN_PROGRESS = "UploadInProgress"  # a browser upload is arriving
    UPLOAD_OP = "UploadOp"  # uploadVolume's download job is fetching the URL
    UPLOADED = "Uploaded"  # checked and on the image store: attach moves it into primary storage
    UPLOAD_ERROR = "UploadError"


class Volume(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "volumes"

    name: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"))
    vm_id: Mapped[int | None] = mapped_column(ForeignKey("vm_instances.id"), index=True)
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("storage_pools.id"), index=True)
    disk_offering_id: Mapped[int | None] = mapped_column(ForeignKey("disk_offerings.id"))
    template_id: Mapped[int | None] = mapped_column(ForeignKey("templates.id"))
    volume_type: Mapped[str] = mapped_column(String(16))
    device_id: Mapped[int | None] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)  # bytes
    format: Mapped[str] = mapped_column(String(16), default="QCOW2")
    state: Mapped[str] = mapped_column(String(16), default=VolumeState.ALLOCATED)
    path: Mapped[str | None] = mapped_column(String(2048))
    # When a data volume was last attached to its VM (CloudStack's `attached`); None while detached.
    attached: Mapped[datetime | None] = mapped_column(DateTime)
    # The account's resource counts include this volume, ROOT or DATADISK (until it is deleted
    # or expunged), with exactly counted_gib GiB of primary storage: what is given back.
    quota_counted: Mapped[bool] = mapped_column(default=False)
    counted_gib: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    vm: Mapped[VirtualMachine | None] = relationship(back_populates="volumes")
    pool = relationship("StoragePool")
    zone = relationship("Zone")
    account = relationship("Account")
    disk_offering = relationship("DiskOffering")


class Nic(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "nics"

    vm_id: Mapped[int] = mapped_column(ForeignKey("vm_instances.id"), index=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    mac_address: Mapped[str] = mapped_column(String(17), unique=True)
    ip_address: Mapped[str | None] = mapped_column(String(64))
    is_default: Mapped[bool] = mapped_column(default=True)
    device_id: Mapped[int] = mapped_column(Integer, default=0)

    vm: Mapped[VirtualMachine] = relationship(back_populates="nics")
    network = relationship("Network")
