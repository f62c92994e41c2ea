"""The one driver interface every hypervisor type implements.

A driver is CloudStack's "resource": a dumb executor of commands. It takes value
objects (a host connection, a VM spec) and returns value objects (host facts, VM
info, a console target). It never touches Flask or Nubo's database and raises
only the exceptions defined here; backend errors (libvirtError, WinRM faults)
are translated at the driver boundary. Services decide; drivers execute.

Pattern: OpenStack nova's nova/virt/driver.py (documented base class,
capabilities as data, false by default) and nova/virt/fake.py.
"""
from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

from app.network.host.specs import RouterFacts, RouterSpec, SegmentSpec, VmRuleset


# --- Errors ------------------------------------------------------------------

class DriverError(Exception):
    """Base of every driver error. `str(e)` is a message fit for an admin."""


class HostUnreachable(DriverError):
    """The host did not answer (network, daemon down, connection refused)."""


class AuthenticationFailed(DriverError):
    """The host refused the credentials."""


class UntrustedCertificate(DriverError):
    """The host's TLS certificate is not the one its settings trust (CA or pinned
    fingerprint). `field`: the host field that holds that trust, for the form."""

    def __init__(self, message: str, field: str = "url"):
        super().__init__(message)
        self.field = field


class WrongHypervisor(DriverError):
    """The host runs another hypervisor than the one it is being added as."""


class VMNotFound(DriverError):
    """No such VM on this host."""


class OperationNotSupported(DriverError):
    """The type cannot do this (its capabilities say so too)."""


class OperationFailed(DriverError):
    """The hypervisor tried and failed."""


class OperationTimedOut(DriverError):
    """The operation did not finish within its time limit."""


# --- Declarations ------------------------------------------------------------

class ConsoleKind(enum.StrEnum):
    VNC = "vnc"
    RDP = "rdp"
    TEXT = "text"
    NONE = "none"


@dataclass(frozen=True)
class Capabilities:
    """What a type can do, as data. Everything is off unless a type says so."""
    direct_download: bool = False
    local_storage: bool = False
    storage_kinds: tuple[str, ...] = ()  # of "NFS", "SMB", "Filesystem"
    template_formats: tuple[str, ...] = ()  # of RAW, QCOW2, VHD, VHDX, TAR, OVA
    iso: bool = False  # can boot / attach ISOs
    live_migration: bool = False
    storage_migration: bool = False
    # Volume snapshots: a consistent copy of a volume to secondary storage (backup_volume),
    # put back with restore_volume; volumes and templates are made from the copy.
    volume_snapshots: bool = False
    vm_snapshots: bool = False  # createVMSnapshot: disk-only of a stopped VM, disk and memory of a running one
    # A disk-only VM snapshot of a *running* VM (KVM's internal qcow2 snapshots cannot: there a
    # running VM's snapshot includes its memory, as CloudStack's KVM rule says).
    vm_snapshot_disk_running: bool = False
    scale_stopped_vm: bool = False
    console: ConsoleKind = ConsoleKind.NONE
    lifecycle_events: bool = False  # pushes VM state changes (else polled)
    config_drive: bool = False  # user data / SSH keys through a config drive ISO
    # A host reads another host's heartbeat on shared primary storage (heartbeat_age): the HA
    # investigation asks a neighbour before a silent host is judged Down.
    storage_heartbeat: bool = False
    # Guest networking (docs/networking.md)
    virtual_router: bool = False  # can run a network's virtual router on its hosts
    security_groups: bool = False  # enforces security groups on its hosts
    isolation_methods: tuple[str, ...] = ()  # of "VLAN", "VXLAN": the segments its hosts can make
    # The VMs are an extension's (the External type, or Custom bound to one): no primary storage,
    # volumes, segments or routers in Nubo, no host capacity (the orchestrator's business).
    external_orchestrator: bool = False
    max_guests_per_host: int = 50
    max_hosts_per_cluster: int = 16
    max_data_volumes: int = 6

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class HostField:
    """One field of a type's add-host form (and the matching API parameter)."""
    name: str  # key in HostConnection.fields; API parameter where one exists
    label: str
    kind: str = "text"  # text | password | textarea | select | checkbox
    required: bool = False
    secret: bool = False  # stored encrypted, never shown back
    choices: tuple[str, ...] = ()
    default: str = ""
    help: str = ""
    # Extra validation: returns an error message or None.
    validate: Callable[[str], str | None] | None = field(default=None, compare=False)


# --- Value objects -----------------------------------------------------------

@dataclass
class HostConnection:
    """How to reach one host: its URL/address plus the type's form fields
    (secrets included, decrypted by the service just before the call)."""
    url: str  # libvirt URI, simulator://name?..., or the Hyper-V address
    address: str  # host name or IP (management address)
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class HostFacts:
    hypervisor: str  # the type the host really runs (internal name)
    version: str
    arch: str
    cpu_sockets: int
    cpu_cores: int  # logical CPUs usable by guests
    cpu_mhz: int
    memory_bytes: int
    hostname: str = ""
    local_storage_path: str | None = None
    local_storage_bytes: int = 0
    local_storage_free: int = 0


@dataclass
class StoragePoolSpec:
    uuid: str
    name: str
    kind: str  # "NFS", "SMB", "Filesystem"
    path: str  # export path / share / local directory
    server: str | None = None
    username: str | None = None  # SMB
    password: str | None = None


@dataclass
class PoolInfo:
    capacity_bytes: int
    available_bytes: int
    allocated_bytes: int = 0


@dataclass
class VolumeSpec:
    name: str  # file / volume name (a UUID where the type keys volumes by it)
    pool: StoragePoolSpec
    size_bytes: int
    format: str = "QCOW2"
    base_path: str | None = None  # template image to clone (thin where the format allows)
    thin: bool = True


@dataclass
class TemplateSource:
    """Where a template image comes from when it is put into a primary pool."""
    format: str
    size_bytes: int = 0  # the file's size in bytes, when known
    local_path: str | None = None  # a file the management server reads (a Local image store)
    share_path: str | None = None  # the same file as the hosts see it (e.g. \\server\share\...)
    url: str | None = None  # direct download: fetched from here, never kept on secondary storage
    checksum: str | None = None  # "{SHA-256}hex" (or {MD5}, ...): verified as the bytes arrive
    # How the URL may be fetched (app.net.outbound.FetchPolicy: addresses, size, deadline, rate);
    # None: the strict defaults.
    fetch: Any = None


@dataclass
class VolumeInfo:
    path: str
    size_bytes: int
    format: str
    physical_bytes: int = 0


@dataclass
class DiskSpec:
    path: str
    format: str = "QCOW2"
    device: str = "disk"  # disk | cdrom
    device_id: int = 0  # order on the bus (0 = root)


@dataclass
class NicSpec:
    mac: str
    bridge: str  # libvirt bridge, Hyper-V virtual switch
    vlan: int | None = None
    ip: str | None = None
    # The segment the NIC joins: the driver makes it on the host (ensure_segment) and uses its
    # bridge; None: `bridge` must already exist (the old, hand-made way).
    segment: SegmentSpec | None = None
    # The NIC's device on the host (security groups match on it): specs.nic_device(nic uuid)
    target_dev: str | None = None


@dataclass
class ConsoleSpec:
    listen: str = "127.0.0.1"  # the host's management address, never 0.0.0.0
    port: int | None = None  # None: let the hypervisor pick
    password: str | None = None


@dataclass
class VMSpec:
    name: str  # instance name on the hypervisor
    uuid: str
    cpus: int
    cpu_mhz: int
    memory_mib: int
    display_name: str = ""
    disks: list[DiskSpec] = field(default_factory=list)
    nics: list[NicSpec] = field(default_factory=list)
    iso_path: str | None = None
    boot_order: tuple[str, ...] = ("hd", "cdrom")
    console: ConsoleSpec = field(default_factory=ConsoleSpec)
    config_drive_path: str | None = None  # NoCloud cidata ISO
    root_fs_path: str | None = None  # LXC/OpenVZ: directory holding the root filesystem
    # Direct kernel boot (test guests, appliances)
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    os_type: str = ""


class PowerState(enum.StrEnum):
    """What the hypervisor says; services map it to CloudStack's VM states."""
    RUNNING = "running"
    STOPPED = "stopped"  # defined or known, not running
    PAUSED = "paused"
    STARTING = "starting"
    STOPPING = "stopping"
    CRASHED = "crashed"
    UNKNOWN = "unknown"


@dataclass
class ConsoleTarget:
    kind: ConsoleKind
    host: str
    port: int
    password: str | None = None  # for the proxy only; never sent to a browser
    vm_guid: str | None = None  # RDP pre-connection blob (Hyper-V)


@dataclass
class VMInfo:
    name: str
    state: PowerState
    uuid: str | None = None
    cpus: int | None = None
    memory_mib: int | None = None
    console: ConsoleTarget | None = None


@dataclass
class MigrationSpec:
    """How a running VM moves (decided by the service; the driver executes it)."""
    live: bool = True
    # The VNC listen address on the destination (its management address): a VM listening
    # on the source's address could not start there. None: left as it is.
    console_listen: str | None = None
    # Storage migration: source path -> destination path. Disks listed are copied while
    # the VM runs (their destination volumes already exist, empty, in the destination
    # pool); read-only ones (config drive, ISO) are only pointed at the new path, the
    # service having put a copy there. Disks not listed stay where they are: on shared storage.
    disks: dict[str, str] = field(default_factory=dict)
    # The disks that stay are on storage the admin declared shared by the cluster (a
    # Filesystem pool, CloudStack's SharedMountPoint) that the hypervisor cannot recognise
    # as shared (libvirt refuses "unsafe" migrations off a plain local filesystem).
    declared_shared: bool = False


@dataclass
class MigrationProgress:
    """One sample of a running migration (libvirt's job stats), bytes."""
    processed: int = 0
    remaining: int = 0
    total: int = 0
    memory_remaining: int = 0
    disk_remaining: int = 0


@dataclass
class HostStats:
    cpu_pct: float
    memory_total_bytes: int
    memory_free_bytes: int


@dataclass
class VMStats:
    """Cumulative counters at `timestamp`; services diff two samples for rates."""
    timestamp: float
    cpu_time_ns: int = 0
    memory_kib: int = 0
    disk_read_bytes: int = 0
    disk_write_bytes: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0


@dataclass
class VMSnapshotSpec:
    """One VM snapshot on the hypervisor (CloudStack's VMSnapshotTO)."""
    name: str  # unique per VM (CloudStack's <instance name>_VS_<timestamp>)
    description: str = ""
    memory: bool = False  # DiskAndMemory (the VM runs) or Disk
    quiesce: bool = False
    # What create_vm_snapshot returned as `metadata` (libvirt: the snapshot's XML): lets a host
    # that does not know the snapshot yet (the VM started elsewhere) learn it again.
    metadata: str | None = None


@dataclass
class VMSnapshotInfo:
    name: str
    memory: bool
    metadata: str | None = None
    size_bytes: int = 0


@dataclass
class DriverContext:
    """What a driver may know of Nubo: plain values, no Flask, no sessions."""
    # Where a driver may keep private files (SSH keys). None: a private temporary directory,
    # never the working directory (a key once landed in a checkout that way).
    instance_path: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # e.g. {"xen.guest.boot.mode": "pv"}
    database_url: str | None = None  # the Simulator keeps its fake hosts there
    testing: bool = False
    # The External type's prepared call (app.hypervisors.external.driver.ExternalSpec).
    external: Any = None


# --- The driver --------------------------------------------------------------

class Driver:
    """Base class of all drivers. One instance talks to one host.

    Methods raise NotImplementedError where a subclass has not implemented them;
    callers check the type's Capabilities first, so that only happens for bugs.
    """

    def __init__(self, conn: HostConnection, context: DriverContext | None = None):
        self.conn = conn
        self.context = context or DriverContext()

    def close(self) -> None:
        """Release connections. Safe to call twice."""

    @contextlib.contextmanager
    def snapshot_reads(self) -> Iterator[Driver]:
        """Inside the block, host_stats, list_vms and vm_stats may answer from one look at the
        host, taken by the first of them (the monitor's sweep asks all three of every host).
        A type whose answers cost it a read of stored state each time (the Simulator) reads it
        once; a call that changes something, made through this driver inside the block, ends
        that look. Nothing by default: a real host answers each call afresh."""
        yield self

    # Host
    def check_host(self) -> HostFacts:
        """Connect, verify the host runs this type, and read its facts.
        Raises HostUnreachable, AuthenticationFailed or WrongHypervisor."""
        raise NotImplementedError

    def host_stats(self) -> HostStats:
        raise NotImplementedError

    # Storage
    def prepare_storage_pool(self, pool: StoragePoolSpec) -> PoolInfo:
        """Make the pool usable on this host (mount / define / create dir); idempotent."""
        raise NotImplementedError

    def delete_storage_pool(self, pool: StoragePoolSpec) -> None:
        raise NotImplementedError

    def pool_info(self, pool: StoragePoolSpec) -> PoolInfo:
        raise NotImplementedError

    def create_volume(self, vol: VolumeSpec) -> VolumeInfo:
        """A blank volume, or a copy of vol.base_path (thin where the format allows)."""
        raise NotImplementedError

    def delete_volume(self, pool: StoragePoolSpec, name: str) -> None:
        """Remove a volume; a missing one is not an error."""
        raise NotImplementedError

    def resize_volume(self, pool: StoragePoolSpec, name: str, size_bytes: int) -> VolumeInfo:
        raise NotImplementedError

    def import_template(self, pool: StoragePoolSpec, name: str, source: TemplateSource) -> VolumeInfo:
        """Put a template image into the pool as volume `name`, the base that root volumes are
        copied (or thinly cloned) from. Idempotent: an existing volume of that name is returned.
        A checksum that does not match leaves no volume and raises OperationFailed."""
        raise NotImplementedError

    def backup_volume(self, pool: StoragePoolSpec, volume_path: str, dest_path: str,
                      vm_name: str | None = None) -> VolumeInfo:
        """Write a consistent, self-contained QCOW2 copy of the volume at volume_path (its
        backing chain flattened) to dest_path, a file the management server reaches (the
        image store). vm_name: a running VM uses the volume; its writes go on while the copy
        is made (KVM: an external disk-only snapshot, committed back afterwards). Returns the
        copy's virtual and physical sizes; a failure leaves no file at dest_path and the
        volume as it was. (Capabilities.volume_snapshots)"""
        raise OperationNotSupported("this type takes no volume snapshots")

    def restore_volume(self, pool: StoragePoolSpec, name: str, source: TemplateSource) -> VolumeInfo:
        """Replace volume `name`'s content with the image (a snapshot's copy on the image
        store); the VM using it is stopped. (Capabilities.volume_snapshots)"""
        raise OperationNotSupported("this type takes no volume snapshots")

    # VM lifecycle
    def start_vm(self, spec: VMSpec) -> VMInfo:
        """Define (or redefine) and start the VM; returns its info with the console target."""
        raise NotImplementedError

    def stop_vm(self, name: str, timeout: float) -> bool:
        """Ask the guest to shut down; True if it stopped within timeout seconds."""
        raise NotImplementedError

    def force_stop_vm(self, name: str) -> None:
        """Power off at once."""
        raise NotImplementedError

    def reboot_vm(self, name: str) -> None:
        raise NotImplementedError

    def destroy_vm(self, name: str) -> None:
        """Power off if needed and remove the VM's definition (not its volumes).
        A VM that does not exist is not an error."""
        raise NotImplementedError

    def vm_info(self, name: str) -> VMInfo:
        """Raises VMNotFound."""
        raise NotImplementedError

    def list_vms(self) -> list[VMInfo]:
        """Every VM the host knows (running or defined), for reconcile."""
        raise NotImplementedError

    def vm_stats(self) -> dict[str, VMStats]:
        raise NotImplementedError

    def console_target(self, name: str) -> ConsoleTarget:
        raise NotImplementedError

    def migrate_vm(self, name: str, dest: HostConnection, live: bool = True, *,
                   spec: MigrationSpec | None = None,
                   progress: Callable[[MigrationProgress], None] | None = None) -> None:
        """Move the running VM to dest (its definition too); returns when it runs there.
        spec.live wins over `live` when a spec is given. progress: called in the caller's
        thread with samples while the migration runs; if it raises, the migration is
        cancelled (the VM keeps running here) and the exception propagates.
        Storage migration (spec.disks) needs Capabilities.storage_migration."""
        raise NotImplementedError

    def scale_vm(self, name: str, cpus: int, memory_mib: int) -> None:
        """Change CPU/memory of a stopped VM (libvirt: the persistent definition)."""
        raise NotImplementedError

    def attach_iso(self, name: str, iso_path: str) -> None:
        raise NotImplementedError

    def detach_iso(self, name: str) -> None:
        raise NotImplementedError

    def attach_volume(self, name: str, disk: DiskSpec) -> None:
        raise NotImplementedError

    def detach_volume(self, name: str, disk: DiskSpec) -> None:
        raise NotImplementedError

    # VM snapshots (Capabilities.vm_snapshots)
    def create_vm_snapshot(self, name: str, snap: VMSnapshotSpec) -> VMSnapshotInfo:
        """Snapshot the VM's disks (and its memory when snap.memory; the VM must run then).
        A snapshot of that name that already exists is returned as it is (idempotent)."""
        raise OperationNotSupported("this type takes no VM snapshots")

    def revert_vm_snapshot(self, name: str, snap: VMSnapshotSpec) -> VMInfo:
        """Put the VM back to the snapshot: running from the saved memory for a memory
        snapshot, stopped for a disk-only one (a running VM is powered off first)."""
        raise OperationNotSupported("this type takes no VM snapshots")

    def delete_vm_snapshot(self, name: str, snap: VMSnapshotSpec) -> None:
        """Remove the snapshot; one that does not exist is not an error."""
        raise OperationNotSupported("this type takes no VM snapshots")

    def heartbeat_age(self, pool: StoragePoolSpec, host_key: str) -> float | None:
        """Seconds since the host `host_key` (its address as Nubo knows it) last wrote its
        heartbeat on the shared pool, as THIS host sees the pool now (types with
        Capabilities.storage_heartbeat). None: that host has never written one there.
        Raises DriverError when this host cannot read the pool."""
        raise OperationNotSupported(f"{type(self).__name__} cannot read storage heartbeats")

    def list_vm_snapshots(self, name: str) -> list[str]:
        """The names of the VM's snapshots on the host (none for a VM the host does not know)."""
        raise OperationNotSupported("this type takes no VM snapshots")

    # Guest networking on the host (Capabilities.isolation_methods / virtual_router /
    # security_groups); every step is idempotent.
    def check_labels(self, labels: list[str]) -> list[str]:
        """The traffic labels (devices or bridges) missing on the host."""
        raise NotImplementedError

    def ensure_segment(self, segment: SegmentSpec) -> str:
        """Make the segment's bridge (and VXLAN/VLAN device) if missing; return the bridge."""
        raise NotImplementedError

    def release_segment(self, segment: SegmentSpec) -> None:
        """Remove the segment's bridge and device when nothing is plugged into it any more
        (no VM port, no router veth); keep the label's own bridge."""
        raise NotImplementedError

    def set_segment_peers(self, segment: SegmentSpec) -> bool:
        """A VXLAN segment's head-end replication peers become exactly segment.peers when the
        host has the segment; False (nothing made) when it has not."""
        raise OperationNotSupported("this type makes no VXLAN segments")

    def underlay_address(self, label: str) -> str | None:
        """The IPv4 address the traffic label's device holds on the host (VXLAN peers send
        to it); None when unknown."""
        return None

    def router_apply(self, spec: RouterSpec) -> RouterFacts:
        raise OperationNotSupported("this type runs no virtual router")

    def router_destroy(self, key: str) -> None:
        raise OperationNotSupported("this type runs no virtual router")

    def router_status(self, key: str) -> RouterFacts:
        raise OperationNotSupported("this type runs no virtual router")

    def router_restart(self, key: str) -> RouterFacts:
        """Restart the router's processes (rebootRouter); the configuration stays."""
        raise OperationNotSupported("this type runs no virtual router")

    def sg_apply(self, rulesets: list[VmRuleset]) -> None:
        """Replace the rules of these NICs on the host (one table per NIC, each replaced whole)."""
        raise OperationNotSupported("this type enforces no security groups")

    def sg_remove(self, taps: list[str]) -> None:
        """Remove the rules of these NICs (their VM stopped or left the host)."""
        raise OperationNotSupported("this type enforces no security groups")

    # Events (types with Capabilities.lifecycle_events)
    def register_events(self, callback: Callable[[str, PowerState], None]) -> None:
        """Call callback(vm_name, new_state) on lifecycle changes. Runs on a driver
        thread: the callback must only hand the event to a queue."""
        raise OperationNotSupported("this type does not push events")


# --- The type declaration ----------------------------------------------------

class HypervisorType:
    """A registered hypervisor type: its names, capabilities, add-host form and
    driver. Subclass (or instantiate) and point an entry point of the
    `nubo.hypervisors` group at the instance."""

    name: ClassVar[str] = ""  # internal name stored in rows ("KVM", "Custom", ...)
    default_display_name: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities] = Capabilities()
    host_fields: ClassVar[tuple[HostField, ...]] = ()
    driver_class: ClassVar[type[Driver]] = Driver
    # Default host-side bridge or switch name offered by the zone wizard.
    default_traffic_label: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # How many of this type's hosts the monitor may ask at once (None: monitor.threads).
    # Drivers that wait on the network gain from many; one that computes in Nubo's own
    # process (the Simulator) only adds contention for the interpreter lock.
    max_parallel_calls: ClassVar[int | None] = None

    def check_fields(self, values: dict[str, str]) -> tuple[str, str] | None:
        """Rules across host fields (each field's own rules are its HostField.validate):
        (field name, message) of the first one broken, or None."""
        return None

    def connection(self, url: str, fields: dict[str, str]) -> HostConnection:
        """Turn what the admin typed into a HostConnection (validated by the caller
        through host_fields). Override where the URL needs normalising."""
        from urllib.parse import urlsplit
        host = urlsplit(url).hostname if "://" in url else url
        return HostConnection(url=url, address=host or "localhost", fields=dict(fields))

    def make_driver(self, conn: HostConnection, context: DriverContext | None = None) -> Driver:
        return self.driver_class(conn, context)
