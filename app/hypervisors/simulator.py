"""The Simulator hypervisor: a real, selectable driver whose hosts and VMs are
rows in Nubo's database (app/models/simulator.py), so the web, worker and
monitor processes all see one simulated data centre.

Like every driver it never touches Flask or Flask-SQLAlchemy's session: it opens
its own SQLAlchemy engine from DriverContext.database_url (one per URL and
process) and works on the model tables with a plain Session.

Host URL: ``simulator://NAME?cpus=16&cpuspeed=2400&memory=65536&localstorage=2048``
(cores, MHz per core, MiB, GiB; each optional). check_host creates the sim host
or refreshes its capacity from the URL.

Behaviour, for demos and tests:
- VMs pass through STARTING / STOPPING for the host's `step_seconds`; the
  transition is stored with the time it completes, so any process reading the
  row sees the same state at the same moment (and a crashed worker cannot
  leave a VM stuck half-way).
- Faults (armed by app/services/simulator.py): a down host raises
  HostUnreachable on every call; `delay_seconds` slows every call on the host;
  SimFault rows make the next N actions on a host or a VM raise OperationFailed.
  Read-only calls (list_vms, vm_info, stats, pool_info, console_target) consume a
  fault only when it names them, so the monitor's polling never eats a fault
  meant for the next start.

Pattern: OpenStack nova's nova/virt/fake.py (a fake that is a real driver).
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import threading
import time
import uuid as uuidlib
import zlib
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlsplit

import sqlalchemy as sa
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.config import engine_options
from app.engine import keep_prepared_statements, reads
from app.hypervisors.base import (
    Capabilities, ConsoleKind, ConsoleTarget, DiskSpec, Driver, DriverError, HostConnection, HostFacts,
    HostField, HostStats, HostUnreachable, HypervisorType, MigrationSpec, OperationFailed, OperationNotSupported,
    PoolInfo, PowerState,
    StoragePoolSpec, TemplateSource, VMInfo, VMNotFound, VMSnapshotInfo, VMSnapshotSpec, VMSpec, VMStats,
    VolumeInfo, VolumeSpec,
)
from app.models.simulator import SimFault, SimHost, SimPool, SimRouter, SimSegment, SimVM, SimVMSnapshot, SimVolume
from app.network.host.specs import RouterFacts, RouterSpec, SegmentSpec, VmRuleset
from app.services.dbutil import is_retryable

VERSION = "1.0"
MIB = 1 << 20
GIB = 1 << 30
# Capacity of a shared (NFS / shared mount point) pool: the simulated filer.
SHARED_POOL_BYTES = 16 << 40
FIRST_CONSOLE_PORT = 5900
LOCAL_STORAGE_ROOT = "/var/lib/nubo/simulator"

# URL parameter: (column, default, min, max, unit for messages)
URL_PARAMS = {
    "cpus": ("cpus", 16, 1, 4096, "cores"),
    "cpuspeed": ("cpu_speed", 2400, 100, 10_000, "MHz"),
    "memory": ("memory_mib", 65536, 256, 64 << 20, "MiB"),
    "localstorage": ("local_storage_gib", 2048, 1, 1 << 20, "GiB"),
}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# Calls that change something: an armed fault without an operation list hits these.
ACTIONS = frozenset({
    "check_host", "prepare_storage_pool", "delete_storage_pool", "create_volume", "delete_volume",
    "resize_volume", "start_vm", "stop_vm", "force_stop_vm", "reboot_vm", "destroy_vm", "migrate_vm",
    "scale_vm", "attach_iso", "detach_iso", "attach_volume", "detach_volume", "import_template",
    "create_vm_snapshot", "revert_vm_snapshot", "delete_vm_snapshot",
})
QUERIES = frozenset({"host_stats", "pool_info", "vm_info", "list_vms", "vm_stats", "console_target",
                     "list_vm_snapshots", "heartbeat_age"})
# Network steps: like queries, a fault hits them only when it names them (so a fault armed for
# the next start is not eaten by the router or segment work done before it).
NETWORK = frozenset({"check_labels", "ensure_segment", "set_segment_peers", "release_segment", "router_apply", "router_destroy",
                     "router_status", "router_restart", "sg_apply", "sg_remove"})
OPERATIONS = ACTIONS | QUERIES | NETWORK
# States in which a guest holds memory on its host.
ACTIVE = frozenset({PowerState.RUNNING, PowerState.STARTING, PowerState.STOPPING, PowerState.PAUSED})


LABEL_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")  # a Linux device name


class InvalidHostUrl(DriverError, ValueError):
    """A simulator:// URL that cannot be understood (message says why)."""


@dataclass(frozen=True)
class SimHostSpec:
    name: str
    cpus: int = 16
    cpu_speed: int = 2400
    memory_mib: int = 65536
    local_storage_gib: int = 2048
    # The traffic labels the host has (None: every label): labels=cloudbr0,cloudbr1
    labels: tuple[str, ...] | None = None


def parse_url(url: str) -> SimHostSpec:
    """`simulator://NAME?cpus=16&cpuspeed=2400&memory=65536&localstorage=2048[&labels=cloudbr0,...]`."""
    raw = (url or "").strip()
    parts = urlsplit(raw)
    if parts.scheme.lower() != "simulator":
        raise InvalidHostUrl(f"A Simulator host URL starts with simulator://, not {raw!r}")
    name = parts.netloc
    if not NAME_RE.match(name):
        raise InvalidHostUrl("A Simulator host name is 1-128 letters, digits, '.', '_' or '-' "
                             f"(got {name!r}), e.g. simulator://sim-host-1")
    if parts.path not in ("", "/") or parts.fragment:
        raise InvalidHostUrl(f"Unexpected path in Simulator host URL {raw!r}")
    values: dict[str, int] = {}
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise InvalidHostUrl(f"Cannot read the parameters of {raw!r}") from None
    labels = None
    for key, value in pairs:
        key = key.lower()
        if key == "labels":
            if labels is not None:
                raise InvalidHostUrl("Parameter labels is given twice")
            labels = tuple(part.strip() for part in value.split(",") if part.strip())
            if not labels or not all(LABEL_RE.match(part) for part in labels):
                raise InvalidHostUrl("labels is a comma-separated list of device names, e.g. cloudbr0,cloudbr1")
            continue
        if key not in URL_PARAMS:
            raise InvalidHostUrl(f"Unknown Simulator host parameter {key!r}; "
                                 f"known: {', '.join(URL_PARAMS)}, labels")
        column, _default, lo, hi, unit = URL_PARAMS[key]
        if column in values:
            raise InvalidHostUrl(f"Parameter {key} is given twice")
        try:
            number = int(value)
        except ValueError:
            raise InvalidHostUrl(f"{key} must be a whole number of {unit}, not {value!r}") from None
        if not lo <= number <= hi:
            raise InvalidHostUrl(f"{key} must be between {lo} and {hi} {unit} (got {number})")
        values[column] = number
    return SimHostSpec(name=name, labels=labels, **values)


def _validate_url_field(value: str) -> str | None:
    try:
        parse_url(value)
    except InvalidHostUrl as e:
        return str(e)
    return None


# --- Engines: one per database URL and process -------------------------------

_engines: dict[tuple[int, str], Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str) -> Engine:
    key = (os.getpid(), url)  # a forked worker must not reuse its parent's connections
    eng = _engines.get(key)
    if eng is None:
        with _engines_lock:
            eng = _engines.get(key)
            if eng is None:
                eng = _engines[key] = sa.create_engine(url, **engine_options(url))
                keep_prepared_statements(eng)  # as Nubo's own engine (app/engine.py)
    return eng


def dispose_engines() -> None:
    with _engines_lock:
        for eng in _engines.values():
            eng.dispose()
        _engines.clear()


# --- Helpers -----------------------------------------------------------------

_POWER = {s.value: s for s in PowerState}  # a dict lookup: PowerState(x) costs ~10 times more per VM


def effective_state(state: str, pending_state: str | None, pending_at: float | None,
                    now: float | None = None) -> PowerState:
    """A VM's state now: the pending one once its time has come."""
    if pending_state and pending_at is not None and pending_at <= (time.time() if now is None else now):
        state = pending_state
    return _POWER.get(state) or PowerState(state)


def _settle(vm: SimVM, now: float) -> None:
    """Write a completed transition into the row before changing it further."""
    if vm.pending_state and vm.pending_at is not None and vm.pending_at <= now:
        vm.state, vm.pending_state, vm.pending_at = vm.pending_state, None, None


@functools.lru_cache(maxsize=1 << 12)
def _crc(seed: str) -> int:
    """Per object and figure, fixed (the sweep's figures are cached whole by _guest_rates)."""
    return zlib.crc32(seed.encode())


def _phase(seed: str) -> float:
    return (_crc(seed) % 1000) / 1000.0


def _wobble(now: float, phase: float, period: float = 300.0) -> float:
    """0..1, smooth in time and different per object (its phase, _phase of a seed): plausible
    varying load."""
    return 0.5 + 0.5 * math.sin(2 * math.pi * (now / period + phase))


def _rate(seed: str, lo: float, hi: float) -> float:
    return lo + (hi - lo) * ((_crc(seed) >> 8) % 1000) / 1000.0


@functools.lru_cache(maxsize=1 << 17)  # ~0.4 KB each: the bench's 50,000 guests take ~20 MB
def _guest_rates(name: str) -> tuple[float, ...]:
    """A guest's fixed figures, worked out once per name: its CPU busyness, disk read/write and
    network rx/tx rates (bytes per second), and the phases of its CPU and memory wobble."""
    return (_rate(name, 0.1, 1.0), _rate(name + "dr", 2e4, 2e6), _rate(name + "dw", 1e4, 1e6),
            _rate(name + "rx", 1e3, 5e5), _rate(name + "tx", 1e3, 2e5), _phase(name), _phase(name + "m"))


@dataclass(frozen=True)
class _HostRow:
    """A sim host's row as snapshot_reads read it (what _usable and the stats need)."""
    id: int
    name: str
    up: bool
    delay_seconds: float
    cpus: int
    memory_mib: int


@dataclass(frozen=True)
class _Look:
    """One read of a host for snapshot_reads: its row (None: no such host), whether a fault
    is armed for the host itself, and its VMs' rows (the columns of _VM_COLUMNS)."""
    host: Any
    armed: bool
    vms: list


# What host_stats, list_vms and vm_stats read of a host's VMs.
_VM_COLUMNS = (SimVM.name, SimVM.uuid, SimVM.state, SimVM.pending_state, SimVM.pending_at, SimVM.cpus,
               SimVM.memory_mib, SimVM.console_port, SimVM.console_password, SimVM.started_at)


@functools.cache
def _look_query():
    """snapshot_reads' one query (built once: making the statement cost more than running it)."""
    h = SimHost.__table__
    armed = select(SimFault.id).where(*SimulatorDriver._faults_for(h.c.id, None)).exists()
    return (select(h.c.id.label("host_id"), h.c.name.label("host_name"), h.c.up, h.c.delay_seconds,
                   h.c.cpus.label("host_cpus"), h.c.memory_mib.label("host_memory_mib"), armed.label("armed"),
                   *_VM_COLUMNS)
            .select_from(h.outerjoin(SimVM.__table__, SimVM.host_id == h.c.id))
            .where(h.c.name == sa.bindparam("host_name")))


@functools.cache
def _enter_queries():
    """_enter's two statements, built once (every call of the driver runs them): the host with
    whether a fault is armed for it (or the VM), and those faults. A VM name of NULL matches no
    VM's fault (NULL = NULL is not true), as a call about no VM should."""
    h, vm_name = SimHost.__table__, sa.bindparam("vm_name")

    def armed_for(host_id):
        return (SimFault.remaining > 0,
                sa.or_(sa.and_(SimFault.host_id == host_id, SimFault.vm_name.is_(None)), SimFault.vm_name == vm_name))
    armed = select(SimFault.id).where(*armed_for(h.c.id)).exists().label("armed")
    return (select(h, armed).where(h.c.name == sa.bindparam("host_name")),
            select(SimFault.id, SimFault.operations, SimFault.message)
            .where(*armed_for(sa.bindparam("host_id"))).order_by(SimFault.id))


@functools.cache
def _committed_query():
    """_committed_mib's aggregate, built once: the memory of a host's guests in an ACTIVE state at
    :now (effective_state in SQL), but for the VM :exclude (0: none)."""
    return select(func.coalesce(func.sum(SimVM.memory_mib), 0)).where(
        SimVM.host_id == sa.bindparam("host_id"), *_active_at_now_but_excluded())


def _active_at_now_but_excluded():
    """A guest ACTIVE at :now (effective_state in SQL), and not the VM :exclude."""
    now = sa.bindparam("now")
    due = sa.and_(SimVM.pending_state.is_not(None), SimVM.pending_state != "", SimVM.pending_at.is_not(None),
                  SimVM.pending_at <= now)
    state_now = sa.case((due, SimVM.pending_state), else_=SimVM.state)
    return state_now.in_(sorted(p.value for p in ACTIVE)), SimVM.id != sa.bindparam("exclude")


@functools.cache
def _start_query():
    """A start's one read of the host's guests: the memory of those ACTIVE at :now but :exclude
    (_committed_query's sum, as a conditional one) and the highest console port of them all."""
    counted = sa.and_(*_active_at_now_but_excluded())
    return select(func.coalesce(func.sum(sa.case((counted, SimVM.memory_mib), else_=0)), 0),
                  func.max(SimVM.console_port)).where(SimVM.host_id == sa.bindparam("host_id"))


def _next_console_port(top: int | None) -> int:
    return max(FIRST_CONSOLE_PORT, (top or FIRST_CONSOLE_PORT - 1) + 1)


@functools.cache
def _small_queries():
    """The driver's other statements run at every deploy, built once."""
    host_id = sa.bindparam("host_id")
    return {
        "host": select(SimHost).where(SimHost.name == sa.bindparam("name")),
        "host_locked": select(SimHost).where(SimHost.name == sa.bindparam("name")).with_for_update(),
        "pool_allocated": select(func.coalesce(func.sum(SimVolume.size_bytes), 0))
        .where(SimVolume.pool_id == sa.bindparam("pool_id")),
        "top_console_port": select(func.max(SimVM.console_port)).where(SimVM.host_id == host_id),
    }


class SimulatorDriver(Driver):
    """One instance per sim host; state lives in the database."""

    def __init__(self, conn: HostConnection, context=None):
        super().__init__(conn, context)
        self._spec: SimHostSpec | None = None
        self._snapshot = False  # inside snapshot_reads
        self._look: _Look | None = None

    # --- plumbing ------------------------------------------------------------

    @property
    def spec(self) -> SimHostSpec:
        if self._spec is None:
            self._spec = parse_url(self.conn.url)
        return self._spec

    @property
    def host_name(self) -> str:
        return self.spec.name

    @property
    def engine(self) -> Engine:
        url = self.context.database_url
        if not url:
            raise OperationFailed("The Simulator keeps its hosts in Nubo's database, "
                                  "but the driver was given no database URL")
        return engine_for(url)

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def snapshot_reads(self) -> Iterator[SimulatorDriver]:
        self._snapshot, self._look = True, None
        try:
            yield self
        finally:
            self._snapshot, self._look = False, None

    def _looked(self) -> _Look | None:
        """For host_stats and vm_stats: the look, unless a fault is armed for the host (then
        they go their usual way, through _enter, which consumes it)."""
        look = self._take_look()
        return None if look is None or look.armed else look

    def _host_and_vms(self, call: str):
        """host_stats' and vm_stats' start: the host (its fault and delay applied) and its VM rows,
        from the look inside snapshot_reads, else read now."""
        look = self._looked()
        if look is None:
            host = self._enter(call)
            with reads(self.engine) as c:
                return host, c.execute(select(*_VM_COLUMNS).where(SimVM.host_id == host.id)).all()
        host = self._usable(look.host)
        if host.delay_seconds > 0:
            time.sleep(host.delay_seconds)
        return host, look.vms

    def _take_look(self) -> _Look | None:
        """Inside snapshot_reads: the host, its armed flag and its VMs in one query (taken once,
        until a call that changes something). None outside it."""
        if not self._snapshot:
            return None
        if self._look is None:
            with reads(self.engine) as c:
                rows = c.execute(_look_query(), {"host_name": self.host_name}).all()
            first = rows[0] if rows else None
            host = None if first is None else _HostRow(first.host_id, first.host_name, first.up,
                                                       first.delay_seconds, first.host_cpus,
                                                       first.host_memory_mib)
            self._look = _Look(host, bool(first and first.armed), [r for r in rows if r.name is not None])
        return self._look

    @staticmethod
    def local_path(name: str) -> str:
        return f"{LOCAL_STORAGE_ROOT}/{name}"

    def _host_row(self, s: Session, lock: bool = False, name: str | None = None) -> SimHost:
        q = _small_queries()["host_locked" if lock else "host"]
        return self._usable(s.scalar(q, {"name": name or self.host_name}), name)

    def _usable(self, host, name: str | None = None):
        """The host (a SimHost or a row of its table), if it exists and is up."""
        if host is None:
            raise HostUnreachable(f"Simulator host {name or self.host_name} does not exist "
                                  "(add it first: check_host creates it)")
        if not host.up:
            raise HostUnreachable(f"Simulator host {host.name} is down")
        return host

    @staticmethod
    def _faults_for(host_id, vm_name: str | None):
        return (SimFault.remaining > 0,
                sa.or_(sa.and_(SimFault.host_id == host_id, SimFault.vm_name.is_(None)),
                       SimFault.vm_name == vm_name if vm_name else sa.false()))

    def _enter(self, op: str, vm_name: str | None = None, *, sleep: bool = True) -> SimHost:
        """Every call starts here: the host must exist and be up; its delay is
        slept; an armed fault for this host/VM and operation is consumed and raised.
        (One query when no fault is armed.) Any other call than the snapshot's reads
        may change the host: a look taken by snapshot_reads is dropped."""
        if op not in ("host_stats", "vm_stats"):
            self._look = None
        host_q, faults_q = _enter_queries()
        with reads(self.engine) as c:  # plain rows: this runs before every call
            host = self._usable(c.execute(host_q, {"host_name": self.host_name, "vm_name": vm_name}).first())
            faults = c.execute(faults_q, {"host_id": host.id, "vm_name": vm_name}).all() if host.armed else []
        if sleep and host.delay_seconds > 0:
            time.sleep(host.delay_seconds)
        for fault_id, operations, message in faults:
            ops = {o.strip() for o in (operations or "").split(",") if o.strip()}
            if (ops and op not in ops) or (not ops and op not in ACTIONS):
                continue
            with self._session() as s, s.begin():
                # Atomic across processes: only one caller gets each remaining count.
                taken = s.execute(update(SimFault).where(SimFault.id == fault_id, SimFault.remaining > 0)
                                  .values(remaining=SimFault.remaining - 1)).rowcount
                s.execute(delete(SimFault).where(SimFault.id == fault_id, SimFault.remaining <= 0))
            if taken:
                raise OperationFailed(message)
        return host

    def _vm(self, s: Session, host: SimHost, name: str, lock: bool = False) -> SimVM:
        q = select(SimVM).where(SimVM.host_id == host.id, SimVM.name == name)
        if lock:
            q = q.with_for_update()
        vm = s.scalar(q)
        if vm is None:
            raise VMNotFound(f"No VM named {name} on Simulator host {host.name}")
        return vm

    @staticmethod
    def _committed_mib(s: Session, host_id: int, now: float, exclude: int | None = None) -> int:
        """Memory of the host's guests in an ACTIVE state now (effective_state, in SQL: one
        aggregate row, not a row per guest of the host read on every start)."""
        return int(s.scalar(_committed_query(), {"host_id": host_id, "now": now, "exclude": exclude or 0}) or 0)

    @staticmethod
    def _check_fits(host: SimHost, cpus: int, memory_mib: int, used_mib: int) -> None:
        if cpus > host.cpus:
            raise OperationFailed(f"Simulator host {host.name} has {host.cpus} cores; "
                                  f"a VM with {cpus} vCPUs cannot run there")
        if used_mib + memory_mib > host.memory_mib:
            raise OperationFailed(f"Not enough memory on Simulator host {host.name}: "
                                  f"{host.memory_mib - used_mib} MiB free, {memory_mib} MiB needed")

    def _console(self, vm_port: int, password: str | None) -> ConsoleTarget:
        return ConsoleTarget(kind=ConsoleKind.VNC, host="127.0.0.1", port=vm_port, password=password)

    def _info(self, vm: SimVM, now: float | None = None) -> VMInfo:
        st = effective_state(vm.state, vm.pending_state, vm.pending_at, now)
        console = self._console(vm.console_port, vm.console_password) if st == PowerState.RUNNING else None
        return VMInfo(name=vm.name, state=st, uuid=vm.uuid, cpus=vm.cpus, memory_mib=vm.memory_mib,
                      console=console)

    # --- host ----------------------------------------------------------------

    def check_host(self) -> HostFacts:
        spec = self.spec
        self._look = None
        with self._session() as s:
            exists = s.scalar(select(SimHost.id).where(SimHost.name == spec.name)) is not None
        if exists:  # a down host stays down; armed faults and delays apply
            self._enter("check_host")
        with self._session() as s, s.begin():
            host = s.scalar(select(SimHost).where(SimHost.name == spec.name).with_for_update())
            if host is None:
                host = SimHost(name=spec.name, up=True, delay_seconds=0.0, step_seconds=0.05)
                s.add(host)
            elif not host.up:
                raise HostUnreachable(f"Simulator host {host.name} is down")
            # The URL is the truth about declared capacity: refresh it.
            host.cpus, host.cpu_speed = spec.cpus, spec.cpu_speed
            host.memory_mib, host.local_storage_gib = spec.memory_mib, spec.local_storage_gib
        with self._session() as s:
            used = s.scalar(select(func.coalesce(func.sum(SimVolume.size_bytes), 0))
                            .join(SimPool, SimPool.id == SimVolume.pool_id)
                            .where(SimPool.host_id == host.id)) or 0
        total = spec.local_storage_gib * GIB
        return HostFacts(hypervisor="Simulator", version=VERSION, arch="x86_64",
                         cpu_sockets=max(1, spec.cpus // 16), cpu_cores=spec.cpus, cpu_mhz=spec.cpu_speed,
                         memory_bytes=spec.memory_mib * MIB, hostname=spec.name,
                         local_storage_path=self.local_path(spec.name), local_storage_bytes=total,
                         local_storage_free=max(0, total - int(used)))

    def host_stats(self) -> HostStats:
        host, rows = self._host_and_vms("host_stats")
        now = time.time()
        running = [r for r in rows if effective_state(r.state, r.pending_state, r.pending_at, now) in ACTIVE]
        vcpu_load = sum(r.cpus * (0.1 + 0.6 * _wobble(now, _guest_rates(r.name)[5])) for r in running)
        cpu_pct = min(100.0, round(1.5 + 100.0 * vcpu_load / host.cpus, 2))
        total = host.memory_mib * MIB
        # The hypervisor itself keeps ~2% (at least 512 MiB) for its own use.
        used = sum(r.memory_mib for r in running) * MIB + max(512 * MIB, total // 50)
        return HostStats(cpu_pct=cpu_pct, memory_total_bytes=total, memory_free_bytes=max(0, total - used))

    # --- storage (bookkeeping) ------------------------------------------------

    def _pool_row(self, s: Session, pool: StoragePoolSpec) -> SimPool:
        row = s.scalar(select(SimPool).where(SimPool.uuid == pool.uuid))
        if row is None:
            raise OperationFailed(f"Storage pool {pool.name} is not prepared on Simulator host {self.host_name}")
        return row

    @staticmethod
    def _pool_info(s: Session | sa.Connection, row: SimPool) -> PoolInfo:
        allocated = int(s.scalar(_small_queries()["pool_allocated"], {"pool_id": row.id}) or 0)
        return PoolInfo(capacity_bytes=row.capacity_bytes, allocated_bytes=allocated,
                        available_bytes=max(0, row.capacity_bytes - allocated))

    def prepare_storage_pool(self, pool: StoragePoolSpec) -> PoolInfo:
        host = self._enter("prepare_storage_pool")
        if pool.kind not in ("NFS", "SMB", "Filesystem"):
            raise OperationFailed(f"The Simulator cannot use {pool.kind} storage")
        local = pool.kind == "Filesystem" and pool.path.rstrip("/") == self.local_path(host.name)
        with reads(self.engine) as c:  # every VM start asks: a pool prepared already is only read
            row = c.execute(select(SimPool.__table__).where(SimPool.uuid == pool.uuid)).first()
            if row is not None and row.host_id in (None, host.id):  # as below, without the write lock
                return self._pool_info(c, row)
        with self._session() as s, s.begin():
            row = s.scalar(select(SimPool).where(SimPool.uuid == pool.uuid).with_for_update())
            if row is None:
                row = SimPool(uuid=pool.uuid, name=pool.name, kind=pool.kind, path=pool.path,
                              host_id=host.id if local else None,
                              capacity_bytes=host.local_storage_gib * GIB if local else SHARED_POOL_BYTES)
                s.add(row)
                s.flush()
            elif row.host_id is not None and row.host_id != host.id:
                raise OperationFailed(f"Pool {pool.name} is local storage of another Simulator host")
            return self._pool_info(s, row)

    def pool_info(self, pool: StoragePoolSpec) -> PoolInfo:
        self._enter("pool_info")
        with self._session() as s:
            return self._pool_info(s, self._pool_row(s, pool))

    def delete_storage_pool(self, pool: StoragePoolSpec) -> None:
        self._enter("delete_storage_pool")
        with self._session() as s, s.begin():
            row = s.scalar(select(SimPool).where(SimPool.uuid == pool.uuid).with_for_update())
            if row is None:
                return
            count = s.scalar(select(func.count()).select_from(SimVolume).where(SimVolume.pool_id == row.id))
            if count:
                raise OperationFailed(f"Storage pool {pool.name} still holds {count} volume(s)")
            s.delete(row)

    def _volume_info(self, pool: StoragePoolSpec, vol: SimVolume) -> VolumeInfo:
        thin = vol.base_path is not None
        physical = min(vol.size_bytes, 256 * MIB) if thin else vol.size_bytes
        return VolumeInfo(path=f"{pool.path.rstrip('/')}/{vol.name}", size_bytes=vol.size_bytes,
                          format=vol.format, physical_bytes=physical)

    def create_volume(self, vol: VolumeSpec) -> VolumeInfo:
        self._enter("create_volume")
        if vol.size_bytes <= 0:
            raise OperationFailed("A volume needs a size above zero")
        with self._session() as s, s.begin():
            row = s.scalar(select(SimPool).where(SimPool.uuid == vol.pool.uuid).with_for_update())
            if row is None:
                raise OperationFailed(f"Storage pool {vol.pool.name} is not prepared on "
                                      f"Simulator host {self.host_name}")
            # The name taken already? And a copy is at least as large as its base image: both
            # looked up in this pool at once, by its unique index (the base in any other sim pool
            # only if not here, rather than a scan of every pool's volumes).
            base_name = vol.base_path.rstrip("/").rsplit("/", 1)[-1] if vol.base_path else None
            here = dict(s.execute(select(SimVolume.name, SimVolume.size_bytes).where(
                SimVolume.pool_id == row.id, SimVolume.name.in_([vol.name, base_name] if base_name else [vol.name]))).all())
            if vol.name in here:
                raise OperationFailed(f"A volume named {vol.name} already exists in pool {vol.pool.name}")
            size = vol.size_bytes
            if base_name:
                base = here.get(base_name)
                if base is None:
                    base = s.scalar(select(SimVolume.size_bytes).where(SimVolume.name == base_name))
                size = max(size, base or 0)
            info = self._pool_info(s, row)
            if size > info.available_bytes:
                raise OperationFailed(f"Not enough space in pool {vol.pool.name}: "
                                      f"{info.available_bytes} bytes free, {size} needed")
            v = SimVolume(pool_id=row.id, name=vol.name, size_bytes=size,
                          format=vol.format, base_path=vol.base_path)
            s.add(v)
        return self._volume_info(vol.pool, v)

    def delete_volume(self, pool: StoragePoolSpec, name: str) -> None:
        self._enter("delete_volume")
        with self._session() as s, s.begin():
            row = s.scalar(select(SimPool.id).where(SimPool.uuid == pool.uuid))
            if row is not None:
                s.execute(delete(SimVolume).where(SimVolume.pool_id == row, SimVolume.name == name))

    def resize_volume(self, pool: StoragePoolSpec, name: str, size_bytes: int) -> VolumeInfo:
        self._enter("resize_volume")
        with self._session() as s, s.begin():
            prow = self._pool_row(s, pool)
            v = s.scalar(select(SimVolume).where(SimVolume.pool_id == prow.id, SimVolume.name == name)
                         .with_for_update())
            if v is None:
                raise OperationFailed(f"No volume named {name} in pool {pool.name}")
            if size_bytes < v.size_bytes:
                raise OperationFailed("Shrinking a volume is not supported")
            if size_bytes - v.size_bytes > self._pool_info(s, prow).available_bytes:
                raise OperationFailed(f"Not enough space in pool {pool.name}")
            v.size_bytes = size_bytes
        return self._volume_info(pool, v)

    def import_template(self, pool: StoragePoolSpec, name: str, source: TemplateSource) -> VolumeInfo:
        """Bookkeeping only: a file on the management server is read to verify its checksum
        (without one, only its size is read); a URL (direct download) is not fetched, the volume gets the announced size."""
        self._enter("import_template")
        size = source.size_bytes or 2 * GIB
        if source.local_path and not source.checksum:  # nothing to verify: the file must exist
            try:
                size = os.path.getsize(source.local_path)
            except OSError as e:
                raise OperationFailed(f"Cannot read the image {source.local_path}: {e.strerror}") from None
        elif source.local_path:
            from app.hypervisors.sources import Verifier, open_source
            chunks, size = open_source(source)
            verifier = Verifier(source.checksum)
            for chunk in chunks:
                verifier.update(chunk)
            verifier.check()
        with self._session() as s, s.begin():
            prow = self._pool_row(s, pool)
            v = s.scalar(select(SimVolume).where(SimVolume.pool_id == prow.id, SimVolume.name == name))
            if v is None:
                if size > self._pool_info(s, prow).available_bytes:
                    raise OperationFailed(f"Not enough space in pool {pool.name}")
                v = SimVolume(pool_id=prow.id, name=name, size_bytes=size, format=source.format.upper())
                s.add(v)
        return self._volume_info(pool, v)

    # --- Volume snapshots ------------------------------------------------------

    def _volume_at(self, s: Session, pool: StoragePoolSpec, path: str) -> SimVolume:
        prow = self._pool_row(s, pool)
        v = s.scalar(select(SimVolume).where(SimVolume.pool_id == prow.id,
                                             SimVolume.name == path.rstrip("/").rsplit("/", 1)[-1]))
        if v is None:
            raise OperationFailed(f"No volume {path} in pool {pool.name}")
        return v

    def backup_volume(self, pool: StoragePoolSpec, volume_path: str, dest_path: str,
                      vm_name: str | None = None) -> VolumeInfo:
        """Simulated: the copy is a sparse file of the volume's size (no bytes written); its
        physical size is the volume's simulated one."""
        self._enter("backup_volume", vm_name)
        with self._session() as s:
            v = self._volume_at(s, pool, volume_path)
            info = self._volume_info(pool, v)
        os.makedirs(os.path.dirname(dest_path), exist_ok=True)
        with open(dest_path + ".part", "wb") as f:
            f.truncate(info.size_bytes)
        os.replace(dest_path + ".part", dest_path)
        return VolumeInfo(path=dest_path, size_bytes=info.size_bytes, format="QCOW2",
                          physical_bytes=info.physical_bytes)

    def restore_volume(self, pool: StoragePoolSpec, name: str, source: TemplateSource) -> VolumeInfo:
        self._enter("restore_volume")
        size = source.size_bytes or (os.path.getsize(source.local_path) if source.local_path else 0)
        with self._session() as s, s.begin():
            v = self._volume_at(s, pool, name)
            v.size_bytes, v.base_path, v.format = max(size, 1), None, "QCOW2"
        with self._session() as s:
            return self._volume_info(pool, self._volume_at(s, pool, name))

    # --- VM lifecycle ----------------------------------------------------------

    def start_vm(self, spec: VMSpec) -> VMInfo:
        self._enter("start_vm", spec.name)
        if spec.cpus < 1 or spec.memory_mib < 16:
            raise OperationFailed("A VM needs at least 1 vCPU and 16 MiB of memory")
        # The fake hypervisor keeps its state in a database: InnoDB may abort one of two starts on
        # one host with a deadlock (host row lock + insert); a real host would simply serialise them.
        for attempt in range(5):
            try:
                return self._start_once(spec)
            except DBAPIError as e:
                if attempt == 4 or not is_retryable(e):
                    raise OperationFailed(f"The Simulator could not record the start: {e.orig}") from None
        raise AssertionError("unreachable")

    def _start_once(self, spec: VMSpec) -> VMInfo:
        now = time.time()
        with self._session() as s, s.begin():
            host = self._host_row(s, lock=True)
            vm = s.scalar(select(SimVM).where(SimVM.host_id == host.id, SimVM.name == spec.name)
                          .with_for_update())
            if vm is not None:
                _settle(vm, now)
                if vm.state in (PowerState.RUNNING, PowerState.STARTING):
                    return self._info(vm, now)  # already running: starting again changes nothing
                if vm.state == PowerState.STOPPING:
                    raise OperationFailed(f"VM {spec.name} is shutting down; try again when it has stopped")
            used_mib, top_port = s.execute(_start_query(), {"host_id": host.id, "now": now,
                                                            "exclude": vm.id if vm else 0}).one()
            self._check_fits(host, spec.cpus, spec.memory_mib, int(used_mib or 0))
            # The NICs' segments are made on this host as the start makes them on a real one.
            bridges = json.dumps(sorted({self._ensure_segment(s, host.id, n.segment)
                                         for n in spec.nics if n.segment is not None}))
            if vm is None:
                vm = SimVM(host_id=host.id, name=spec.name, uuid=spec.uuid or str(uuidlib.uuid4()),
                           console_port=spec.console.port or _next_console_port(top_port))
                s.add(vm)
            elif spec.console.port:
                vm.console_port = spec.console.port
            # (Re)define from the spec, then power on.
            vm.cpus, vm.cpu_mhz, vm.memory_mib = spec.cpus, spec.cpu_mhz, spec.memory_mib
            vm.console_password = spec.console.password
            vm.iso_path = spec.iso_path
            vm.disks = json.dumps([d.path for d in spec.disks])
            vm.bridges = bridges
            done = now + host.step_seconds
            vm.state, vm.pending_state, vm.pending_at, vm.started_at = (
                PowerState.STARTING.value, PowerState.RUNNING.value, done, done)
        if host.step_seconds > 0:
            time.sleep(host.step_seconds)
        return self._info(vm)

    @staticmethod
    def _free_console_port(s: Session, host_id: int) -> int:
        return _next_console_port(s.scalar(_small_queries()["top_console_port"], {"host_id": host_id}))

    def stop_vm(self, name: str, timeout: float) -> bool:
        # The host's delay slows the guest's shutdown rather than the call, so
        # a slow guest is what makes a graceful stop run out of time.
        host = self._enter("stop_vm", name, sleep=False)
        now = time.time()
        with self._session() as s, s.begin():
            vm = self._vm(s, host, name, lock=True)
            _settle(vm, now)
            if vm.state == PowerState.STOPPED:
                return True
            if vm.state == PowerState.STOPPING:
                done = vm.pending_at or now
            else:
                done = now + host.step_seconds + host.delay_seconds
                vm.state, vm.pending_state, vm.pending_at = (
                    PowerState.STOPPING.value, PowerState.STOPPED.value, done)
        wait = done - time.time()
        if wait > timeout:
            time.sleep(max(0.0, timeout))
            return False  # the guest is still shutting down; it will stop later
        if wait > 0:
            time.sleep(wait)
        return True

    def force_stop_vm(self, name: str) -> None:
        host = self._enter("force_stop_vm", name)
        with self._session() as s, s.begin():
            vm = self._vm(s, host, name, lock=True)
            vm.state, vm.pending_state, vm.pending_at, vm.started_at = PowerState.STOPPED.value, None, None, None

    def reboot_vm(self, name: str) -> None:
        host = self._enter("reboot_vm", name)
        now = time.time()
        with self._session() as s, s.begin():
            vm = self._vm(s, host, name, lock=True)
            _settle(vm, now)
            if vm.state != PowerState.RUNNING:
                raise OperationFailed(f"VM {name} is {vm.state}, not running: it cannot reboot")
            done = now + host.step_seconds
            vm.state, vm.pending_state, vm.pending_at = PowerState.STARTING.value, PowerState.RUNNING.value, done
        if host.step_seconds > 0:
            time.sleep(host.step_seconds)

    def destroy_vm(self, name: str) -> None:
        host = self._enter("destroy_vm", name)
        with self._session() as s, s.begin():
            s.execute(delete(SimVM).where(SimVM.host_id == host.id, SimVM.name == name))

    def vm_info(self, name: str) -> VMInfo:
        host = self._enter("vm_info", name)
        with self._session() as s:
            return self._info(self._vm(s, host, name))

    def list_vms(self) -> list[VMInfo]:
        """One query: the host row joined to its VMs (fast enough for a sweep of
        thousands of hosts); none inside snapshot_reads once the host was looked at."""
        look = self._take_look()  # list_vms consumes no fault: armed or not
        if look is None:
            h, v = SimHost.__table__, SimVM.__table__
            q = (select(h.c.id, h.c.up, h.c.delay_seconds, *_VM_COLUMNS)
                 .select_from(h.outerjoin(v, v.c.host_id == h.c.id)).where(h.c.name == self.host_name))
            with reads(self.engine) as c:
                rows = c.execute(q).all()
            host = rows[0] if rows else None
            rows = [r for r in rows if r.name is not None]
        else:
            host, rows = look.host, look.vms
        if host is None:
            raise HostUnreachable(f"Simulator host {self.host_name} does not exist")
        if not host.up:
            raise HostUnreachable(f"Simulator host {self.host_name} is down")
        if host.delay_seconds:
            time.sleep(host.delay_seconds)
        now = time.time()
        out = []
        for r in rows:
            st = effective_state(r.state, r.pending_state, r.pending_at, now)
            out.append(VMInfo(name=r.name, state=st, uuid=r.uuid, cpus=r.cpus, memory_mib=r.memory_mib,
                              console=self._console(r.console_port, r.console_password)
                              if st == PowerState.RUNNING else None))
        return out

    def vm_stats(self) -> dict[str, VMStats]:
        """Cumulative counters since the guest started, growing at a per-VM rate
        that wanders with time: diffs of two samples look like real load."""
        host, rows = self._host_and_vms("vm_stats")
        now = time.time()
        out: dict[str, VMStats] = {}
        for r in rows:
            if effective_state(r.state, r.pending_state, r.pending_at, now) != PowerState.RUNNING:
                continue
            up = max(0.0, now - (r.started_at or now))
            cpu, read, write, rx, tx, phase, memory_phase = _guest_rates(r.name)
            busy = 0.05 + 0.5 * cpu * (0.6 + 0.4 * _wobble(now, phase))
            out[r.name] = VMStats(
                timestamp=now,
                cpu_time_ns=int(up * r.cpus * busy * 1e9),
                memory_kib=int(r.memory_mib * 1024 * (0.35 + 0.4 * _wobble(now, memory_phase, 900))),
                disk_read_bytes=int(up * read), disk_write_bytes=int(up * write),
                net_rx_bytes=int(up * rx), net_tx_bytes=int(up * tx))
        return out

    def console_target(self, name: str) -> ConsoleTarget:
        host = self._enter("console_target", name)
        with self._session() as s:
            vm = self._vm(s, host, name)
        if effective_state(vm.state, vm.pending_state, vm.pending_at) != PowerState.RUNNING:
            raise OperationFailed(f"VM {name} is not running: it has no console")
        return self._console(vm.console_port, vm.console_password)

    def migrate_vm(self, name: str, dest: HostConnection, live: bool = True, *,
                   spec: MigrationSpec | None = None, progress=None) -> None:
        if spec is not None:
            live = spec.live
            if spec.disks:
                raise OperationNotSupported("Simulator VMs migrate with shared storage only")
        host = self._enter("migrate_vm", name)
        try:
            target = parse_url(dest.url).name
        except InvalidHostUrl as e:
            raise OperationFailed(f"Cannot migrate to {dest.url!r}: {e}") from None
        if target == host.name:
            raise OperationFailed(f"VM {name} is already on Simulator host {target}")
        now = time.time()
        with self._session() as s, s.begin():
            # Lock both hosts in a fixed order so two crossing migrations cannot deadlock.
            rows = {h.name: h for h in s.scalars(select(SimHost).where(SimHost.name.in_([host.name, target]))
                                                 .order_by(SimHost.id).with_for_update())}
            src, dst = rows.get(host.name), rows.get(target)
            if src is None or not src.up:
                raise HostUnreachable(f"Simulator host {host.name} is down")
            if dst is None:
                raise OperationFailed(f"Cannot migrate to Simulator host {target}: no such host")
            if not dst.up:
                raise OperationFailed(f"Cannot migrate to Simulator host {target}: it is down")
            vm = self._vm(s, src, name, lock=True)
            _settle(vm, now)
            if live and vm.state != PowerState.RUNNING:
                raise OperationFailed(f"VM {name} is {vm.state}: only a running VM migrates live")
            if vm.state not in (PowerState.RUNNING, PowerState.STOPPED):
                raise OperationFailed(f"VM {name} is {vm.state}: wait until it settles")
            if s.scalar(select(SimVM.id).where(SimVM.host_id == dst.id, SimVM.name == name)):
                raise OperationFailed(f"Simulator host {target} already has a VM named {name}")
            if vm.state == PowerState.RUNNING:
                self._check_fits(dst, vm.cpus, vm.memory_mib, self._committed_mib(s, dst.id, now))
            port = self._free_console_port(s, dst.id)
            vm.host_id, vm.console_port = dst.id, port
            pause = host.step_seconds + dst.delay_seconds
        if pause > 0:
            time.sleep(pause)

    def scale_vm(self, name: str, cpus: int, memory_mib: int) -> None:
        host = self._enter("scale_vm", name)
        if cpus < 1 or memory_mib < 16:
            raise OperationFailed("A VM needs at least 1 vCPU and 16 MiB of memory")
        with self._session() as s, s.begin():
            vm = self._vm(s, host, name, lock=True)
            _settle(vm, time.time())
            if vm.state != PowerState.STOPPED:
                raise OperationFailed(f"VM {name} is {vm.state}: stop it before changing CPU or memory")
            self._check_fits(host, cpus, memory_mib, 0)
            vm.cpus, vm.memory_mib = cpus, memory_mib

    def attach_iso(self, name: str, iso_path: str) -> None:
        host = self._enter("attach_iso", name)
        with self._session() as s, s.begin():
            self._vm(s, host, name, lock=True).iso_path = iso_path

    def detach_iso(self, name: str) -> None:
        host = self._enter("detach_iso", name)
        with self._session() as s, s.begin():
            self._vm(s, host, name, lock=True).iso_path = None

    def attach_volume(self, name: str, disk: DiskSpec) -> None:
        host = self._enter("attach_volume", name)
        with self._session() as s, s.begin():
            vm = self._vm(s, host, name, lock=True)
            disks = json.loads(vm.disks or "[]")
            if disk.path in disks:
                raise OperationFailed(f"{disk.path} is already attached to VM {name}")
            vm.disks = json.dumps([*disks, disk.path])

    def detach_volume(self, name: str, disk: DiskSpec) -> None:
        host = self._enter("detach_volume", name)
        with self._session() as s, s.begin():
            vm = self._vm(s, host, name, lock=True)
            disks = json.loads(vm.disks or "[]")
            if disk.path not in disks:
                raise OperationFailed(f"{disk.path} is not attached to VM {name}")
            vm.disks = json.dumps([d for d in disks if d != disk.path])

    # Simulator-only helpers (tests, demos): what the hypervisor holds right now.
    # --- guest networking (bookkeeping: rows in sim_routers / sim_segments) -------

    def check_labels(self, labels: list[str]) -> list[str]:
        self._enter("check_labels")
        # A sim host has every label, unless its URL lists them (simulator://h?labels=cloudbr0,cloudbr1);
        # a fault on check_labels fails the check itself.
        have = parse_url(self.conn.url).labels
        return [] if have is None else [label for label in labels if label not in have]

    @staticmethod
    def segment_bridge(segment: SegmentSpec) -> str:
        """The bridge a real KVM host would use (CloudStack's modifyvxlan/modifyvlan names)."""
        if segment.isolation == "VXLAN":
            return f"brvx-{segment.vnet}"
        if segment.isolation == "VLAN" and segment.vnet is not None:
            return f"br{segment.label}-{segment.vnet}"
        return segment.label

    def _ensure_segment(self, s: Session, host_id: int, segment: SegmentSpec) -> str:
        bridge = self.segment_bridge(segment)
        if bridge != segment.label and s.scalar(select(SimSegment.id).where(
                SimSegment.host_id == host_id, SimSegment.bridge == bridge)) is None:
            s.add(SimSegment(host_id=host_id, bridge=bridge))
        return bridge

    def ensure_segment(self, segment: SegmentSpec) -> str:
        host = self._enter("ensure_segment")
        with self._session() as s, s.begin():
            return self._ensure_segment(s, host.id, segment)

    def set_segment_peers(self, segment: SegmentSpec) -> bool:
        """Bookkeeping only (a sim host sends no packets): True when the host has the segment."""
        host = self._enter("set_segment_peers")
        bridge = self.segment_bridge(segment)
        if bridge == segment.label:
            return True
        with self._session() as s:
            return s.scalar(select(SimSegment.id).where(SimSegment.host_id == host.id,
                                                        SimSegment.bridge == bridge)) is not None

    def release_segment(self, segment: SegmentSpec) -> None:
        """Removed unless a VM of this host or a router still uses it (known from the specs)."""
        host = self._enter("release_segment")
        bridge = self.segment_bridge(segment)
        with self._session() as s, s.begin():
            for spec in s.scalars(select(SimRouter.spec).where(SimRouter.host_id == host.id)):
                if json.loads(spec or "{}").get("bridge") == bridge:
                    return
            now = time.time()
            for r in s.execute(select(SimVM.bridges, SimVM.state, SimVM.pending_state, SimVM.pending_at)
                               .where(SimVM.host_id == host.id)):
                if bridge in json.loads(r.bridges or "[]") and \
                        effective_state(r.state, r.pending_state, r.pending_at, now) in ACTIVE:
                    return
            s.execute(delete(SimSegment).where(SimSegment.host_id == host.id, SimSegment.bridge == bridge))

    @staticmethod
    def spec_hash(spec: RouterSpec) -> str:
        import hashlib
        from dataclasses import asdict
        return hashlib.sha256(json.dumps(asdict(spec), sort_keys=True, default=str).encode()).hexdigest()

    def router_apply(self, spec: RouterSpec) -> RouterFacts:
        host = self._enter("router_apply")
        from dataclasses import asdict
        digest = self.spec_hash(spec)
        with self._session() as s, s.begin():
            bridge = self._ensure_segment(s, host.id, spec.guest)
            row = s.scalar(select(SimRouter).where(SimRouter.host_id == host.id, SimRouter.key == spec.key))
            if row is None:
                row = SimRouter(host_id=host.id, key=spec.key)
                s.add(row)
            row.hash, row.state = digest, "Running"
            row.spec = json.dumps({**asdict(spec), "bridge": bridge}, default=str)
        return RouterFacts(exists=True, dnsmasq=True, metadata=True, config_hash=digest)

    def router_destroy(self, key: str) -> None:
        host = self._enter("router_destroy")
        with self._session() as s, s.begin():
            row = s.scalar(select(SimRouter).where(SimRouter.host_id == host.id, SimRouter.key == key))
            if row is None:
                return
            bridge = json.loads(row.spec or "{}").get("bridge")
            s.delete(row)
            s.flush()
            now = time.time()
            in_use = bridge and any(
                bridge in json.loads(r.bridges or "[]")
                and effective_state(r.state, r.pending_state, r.pending_at, now) in ACTIVE
                for r in s.execute(select(SimVM.bridges, SimVM.state, SimVM.pending_state, SimVM.pending_at)
                                   .where(SimVM.host_id == host.id)))
            if bridge and not in_use:
                s.execute(delete(SimSegment).where(SimSegment.host_id == host.id, SimSegment.bridge == bridge))

    def router_status(self, key: str) -> RouterFacts:
        host = self._enter("router_status")
        with reads(self.engine) as c:
            row = c.execute(select(SimRouter.hash, SimRouter.state).where(
                SimRouter.host_id == host.id, SimRouter.key == key)).first()
        if row is None:
            return RouterFacts(exists=False, dnsmasq=False, metadata=False, detail="no such router")
        ok = row.state == "Running"
        return RouterFacts(exists=True, dnsmasq=ok, metadata=ok, config_hash=row.hash,
                           detail="" if ok else "router processes are not running")

    def router_restart(self, key: str) -> RouterFacts:
        host = self._enter("router_restart")
        with self._session() as s, s.begin():
            row = s.scalar(select(SimRouter).where(SimRouter.host_id == host.id, SimRouter.key == key))
            if row is None:
                raise OperationFailed(f"No router {key} on Simulator host {host.name}")
            row.state = "Running"
            return RouterFacts(exists=True, dnsmasq=True, metadata=True, config_hash=row.hash)

    def sg_apply(self, rulesets: list[VmRuleset]) -> None:
        self._enter("sg_apply")

    def sg_remove(self, taps: list[str]) -> None:
        self._enter("sg_remove")

    # --- VM snapshots: what the guest was, kept with it; a revert puts exactly that back -------

    def create_vm_snapshot(self, name: str, snap: VMSnapshotSpec) -> VMSnapshotInfo:
        host = self._enter("create_vm_snapshot", name)
        now = time.time()
        with self._session() as s, s.begin():
            vm = self._vm(s, host, name, lock=True)
            _settle(vm, now)
            have = s.scalar(select(SimVMSnapshot).where(SimVMSnapshot.vm_id == vm.id, SimVMSnapshot.name == snap.name))
            if have is not None:
                return VMSnapshotInfo(name=have.name, memory=have.memory)
            if vm.state not in (PowerState.RUNNING, PowerState.STOPPED):
                raise OperationFailed(f"VM {name} is {vm.state}: wait until it settles")
            if snap.memory and vm.state != PowerState.RUNNING:
                raise OperationFailed(f"VM {name} is not running: it has no memory to snapshot")
            s.add(SimVMSnapshot(vm_id=vm.id, name=snap.name, memory=snap.memory, state=vm.state, cpus=vm.cpus,
                                memory_mib=vm.memory_mib, disks=vm.disks))
            size = sum(1 << 20 for _ in json.loads(vm.disks or "[]")) + (vm.memory_mib << 20 if snap.memory else 0)
        if host.step_seconds > 0:
            time.sleep(host.step_seconds)
        return VMSnapshotInfo(name=snap.name, memory=snap.memory, size_bytes=size)

    def revert_vm_snapshot(self, name: str, snap: VMSnapshotSpec) -> VMInfo:
        host = self._enter("revert_vm_snapshot", name)
        now = time.time()
        with self._session() as s, s.begin():
            vm = self._vm(s, host, name, lock=True)
            _settle(vm, now)
            row = s.scalar(select(SimVMSnapshot).where(SimVMSnapshot.vm_id == vm.id, SimVMSnapshot.name == snap.name))
            if row is None:
                raise OperationFailed(f"VM {name} has no snapshot {snap.name} on Simulator host {host.name}")
            if row.memory:  # running again from the saved memory, as it was then
                if vm.state != PowerState.RUNNING:
                    self._check_fits(host, row.cpus, row.memory_mib, self._committed_mib(s, host.id, now, exclude=vm.id))
                    vm.started_at = now
                vm.state, vm.pending_state, vm.pending_at = PowerState.RUNNING.value, None, None
            else:  # the disks as they were; a disk-only snapshot holds no running guest
                vm.state, vm.pending_state, vm.pending_at, vm.started_at = PowerState.STOPPED.value, None, None, None
            vm.cpus, vm.memory_mib, vm.disks = row.cpus, row.memory_mib, row.disks
        return self._info(vm, now)

    def delete_vm_snapshot(self, name: str, snap: VMSnapshotSpec) -> None:
        host = self._enter("delete_vm_snapshot", name)
        with self._session() as s, s.begin():
            vm = s.scalar(select(SimVM).where(SimVM.host_id == host.id, SimVM.name == name))
            if vm is not None:
                s.execute(delete(SimVMSnapshot).where(SimVMSnapshot.vm_id == vm.id, SimVMSnapshot.name == snap.name))

    def list_vm_snapshots(self, name: str) -> list[str]:
        host = self._enter("list_vm_snapshots", name)
        with self._session() as s:
            vm = s.scalar(select(SimVM).where(SimVM.host_id == host.id, SimVM.name == name))
            if vm is None:
                return []
            return list(s.scalars(select(SimVMSnapshot.name).where(SimVMSnapshot.vm_id == vm.id)
                                  .order_by(SimVMSnapshot.id)))

    def heartbeat_age(self, pool: StoragePoolSpec, host_key: str) -> float | None:
        """The heartbeat of sim host `host_key` as this (up) host sees the shared pool: written
        continuously while that host runs (age 0, also when it is cut off from the management
        network only), then as old as the time since its power was cut."""
        self._enter("heartbeat_age")
        with reads(self.engine) as c:
            row = c.execute(select(SimHost.heartbeat_stopped_at).where(SimHost.name == host_key)).first()
        if row is None:
            return None
        return 0.0 if row.heartbeat_stopped_at is None else max(0.0, time.time() - row.heartbeat_stopped_at)

    def vm_disks(self, name: str) -> list[str]:
        host = self._enter("vm_info", name)
        with self._session() as s:
            return json.loads(self._vm(s, host, name).disks or "[]")


class SimulatorType(HypervisorType):
    name = "Simulator"
    default_display_name = "Simulator"
    description = "Simulated hosts and VMs kept in Nubo's database: demos, training and scale tests."
    capabilities = Capabilities(
        direct_download=True, local_storage=True, storage_kinds=("NFS", "Filesystem"),
        template_formats=("RAW", "QCOW2"), iso=True, live_migration=True, storage_migration=False,
        vm_snapshots=True, vm_snapshot_disk_running=True, volume_snapshots=True, scale_stopped_vm=True, console=ConsoleKind.VNC, lifecycle_events=False,
        config_drive=True, virtual_router=True, security_groups=True, isolation_methods=("VLAN", "VXLAN"),
        storage_heartbeat=True, max_guests_per_host=100, max_hosts_per_cluster=128, max_data_volumes=6)
    host_fields = (
        HostField("url", "Host URL", required=True,
                  default="simulator://sim-host-1?cpus=16&cpuspeed=2400&memory=65536&localstorage=2048",
                  help="simulator://NAME with optional cpus (cores), cpuspeed (MHz), memory (MiB) "
                       "and localstorage (GiB).",
                  validate=_validate_url_field),
    )
    driver_class = SimulatorDriver
    default_traffic_label = "simbr0"
    # Its calls are queries and arithmetic in Nubo's process: 16 threads made the 2,000-host
    # sweep 20 s, 2 threads 11 s (bench/monitor_bench.py).
    max_parallel_calls = 2

    def connection(self, url: str, fields: dict[str, str]) -> HostConnection:
        url = (url or "").strip()
        try:
            address = parse_url(url).name
        except InvalidHostUrl:
            address = url  # the caller validates through host_fields
        return HostConnection(url=url, address=address, fields=dict(fields))


SIMULATOR = SimulatorType()
