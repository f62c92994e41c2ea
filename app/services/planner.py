"""Deployment planner: which host gets a VM, and the atomic capacity reservation.

Capacity lives on the host row (cpu_allocated MHz, memory_allocated bytes) and is
changed only by single guarded UPDATE statements, so two concurrent deploys can
never overbook a host on SQLite, PostgreSQL or MariaDB alike: the guard in the
WHERE clause is re-checked under the row lock, and a reservation that lost the
race simply moves on to the next candidate.

Each attempt is its own short transaction (UPDATE, then COMMIT): a transaction
never holds more than one host row lock, so concurrent planners cannot deadlock
(InnoDB locks the rows an UPDATE scans even when its guard fails).

A VM's share is held by the VM row itself (capacity_reserved on host_id): `hold` and
`unhold` change the VM row and the host row in one transaction, and each is guarded
on the VM row (a VM already holding, or no longer holding, changes nothing), so two
processes working from stale objects (the reaper and the monitor) cannot count or
give back the same VM twice. A host's allocation is thus the sum over its holding VMs
(plus a migration's destination while it runs), which `capacity.check_hosts` repairs to.

Affinity groups (app/services/affinity.py) narrow the candidates (anti-affinity: not where a
sibling runs; affinity: only where the siblings run), and each reservation of a VM in groups
first takes its groups' row locks and checks again where the siblings are now, in the same
short transaction as the hold: two deploys into one anti-affinity group are serialised there
and the second sees the first's host (CloudStack's processor `check` after `process`).
Tags: an offering's host tags and storage tags keep only the hosts (and pools) that have them all.
"""
from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, case, func, or_, select, update

from app.extensions import db
from app.models import (AllocationState, Cluster, Host, HostState, HypervisorCapability, Pod, PoolState,
                        ResourceState, StoragePool, StorageScope, VirtualMachine, VMState, Zone)
from app.services import affinity
from app.services import hypervisors as hv
from app.services import placement_tags, settings
from app.services.dbutil import is_retryable
from app.services.errors import InsufficientCapacity, InvalidParameter
from app.services.settings import Definition, define

MIB = 1024 * 1024

define(Definition("cpu.overprovisioning.factor", "1.0",
                  "Used for CPU overprovisioning: the CPU capacity of a host counts this many times.",
                  category="Capacity", type="float", min=1.0, max=100.0, scopes=("cluster", "zone")))
define(Definition("mem.overprovisioning.factor", "1.0",
                  "Used for memory overprovisioning: the memory of a host counts this many times.",
                  category="Capacity", type="float", min=1.0, max=10.0, scopes=("cluster", "zone")))
define(Definition("vm.allocation.algorithm", "random",
                  "How the planner orders suitable hosts: random, firstfit, userdispersing "
                  "(fewest VMs of the same account first), firstfitleastconsumed (least allocated first).",
                  category="Capacity",
                  choices=("random", "firstfit", "userdispersing", "firstfitleastconsumed")))

# VMs that count against a host's guest limit.
_ACTIVE = (VMState.STARTING, VMState.RUNNING, VMState.STOPPING, VMState.MIGRATING)


@dataclass(frozen=True)
class Need:
    """What one VM needs from a host."""
    cpu_mhz: int  # cpu_number * cpu_speed
    memory_bytes: int

    @classmethod
    def of(cls, cpu_number: int, cpu_speed: int, memory_mib: int) -> Need:
        return cls(cpu_number * cpu_speed, memory_mib * MIB)


_CPU_FACTOR, _MEM_FACTOR = "cpu.overprovisioning.factor", "mem.overprovisioning.factor"


def _factors() -> tuple[tuple, tuple]:
    """The overprovisioning factors' values now (global and scoped): what the capacity
    expressions are built from, and the key of the statements built once from them."""
    return settings.sql_snapshot(_CPU_FACTOR), settings.sql_snapshot(_MEM_FACTOR)


def _cpu_capacity(snapshot: tuple | None = None):
    return Host.cpu_number * Host.cpu_speed * settings.sql_value(
        _CPU_FACTOR, cluster_col=Host.cluster_id, zone_col=Host.zone_id, snapshot=snapshot)


def _mem_capacity(snapshot: tuple | None = None):
    return Host.memory_total * settings.sql_value(
        _MEM_FACTOR, cluster_col=Host.cluster_id, zone_col=Host.zone_id, snapshot=snapshot)


def _orchestrated():
    """Hosts an extension drives report no CPU or memory: their capacity is the orchestrator's
    business (CloudStack's External hosts), and they need no primary storage."""
    return and_(Host.hypervisor_type.in_(("External", "Custom")), Host.cpu_number == 0, Host.memory_total == 0)


def _fits(cpu_mhz, memory_bytes, factors: tuple[tuple, tuple]):
    """SQL: the host has room for cpu_mhz and memory_bytes (values or bound parameters)."""
    return or_(_orchestrated(), and_(Host.cpu_allocated + cpu_mhz <= _cpu_capacity(factors[0]),
                                     Host.memory_allocated + memory_bytes <= _mem_capacity(factors[1])))


# Statements built once per shape (and factor values): building the planner's statements took
# more of a deploy's CPU than running them. Their values are bound at each run.
@functools.lru_cache(maxsize=64)
def _reserve_stmt(factors: tuple[tuple, tuple]):
    cpu, mem = bindparam("cpu"), bindparam("mem")
    return (update(Host).where(Host.id == bindparam("host_id"), _usable(), _fits(cpu, mem, factors))
            .values(cpu_allocated=Host.cpu_allocated + cpu, memory_allocated=Host.memory_allocated + mem)
            .execution_options(synchronize_session=False))


def _usable():
    return and_(Host.removed.is_(None), Host.state == HostState.UP,
                Host.resource_state == ResourceState.ENABLED)


def reserve(host_id: int, need: Need) -> bool:
    """Take capacity on one host if it still fits. Atomic; commits nothing itself."""
    res = db.session.execute(_reserve_stmt(_factors()),
                             {"host_id": host_id, "cpu": need.cpu_mhz, "mem": need.memory_bytes})
    return res.rowcount == 1


def release(host_id: int, need: Need) -> None:
    """Give capacity back (never below zero)."""
    db.session.execute(
        update(Host).where(Host.id == host_id)
        .values(cpu_allocated=case((Host.cpu_allocated > need.cpu_mhz, Host.cpu_allocated - need.cpu_mhz), else_=0),
                memory_allocated=case((Host.memory_allocated > need.memory_bytes,
                                       Host.memory_allocated - need.memory_bytes), else_=0))
        .execution_options(synchronize_session=False))


def hold(vm_id: int, host_id: int, need: Need, *, force: bool = False) -> bool:
    """Mark the VM as holding `need` on `host_id` and add it to the host, in the caller's
    transaction (VM row first, then the host row: the order every holder uses). Refused
    (False) when the VM already holds capacity, or (unless force) when it does not fit;
    after a refusal by the host roll the transaction back. force: counted even past the
    host's capacity (a VM found running there)."""
    from app.services import changes
    if changes.update_row(VirtualMachine, vm_id, VirtualMachine.capacity_reserved.is_(False),
                          capacity_reserved=True, host_id=host_id) != 1:
        return False
    if force:
        db.session.execute(update(Host).where(Host.id == host_id).values(
            cpu_allocated=Host.cpu_allocated + need.cpu_mhz, memory_allocated=Host.memory_allocated + need.memory_bytes)
            .execution_options(synchronize_session=False))
        return True
    return reserve(host_id, need)


def unhold(vm_id: int, host_id: int, need: Need) -> bool:
    """Give back what the VM holds on `host_id`, once: only if the VM row still says it holds
    it there (an answer from a stale object changes nothing). In the caller's transaction."""
    marked = db.session.execute(
        update(VirtualMachine).where(VirtualMachine.id == vm_id, VirtualMachine.capacity_reserved.is_(True),
                                     VirtualMachine.host_id == host_id)
        .values(capacity_reserved=False).execution_options(synchronize_session=False))
    if marked.rowcount != 1:
        return False
    release(host_id, need)
    return True


def _pool_exists(zone_id: int, storage_type: str, storage_tags: str | None):
    """SQL: the host can reach a primary pool of the kind (and with the storage tags) asked for."""
    pools = select(StoragePool.id).where(StoragePool.removed.is_(None), StoragePool.state == PoolState.UP,
                                         placement_tags.has_all(StoragePool.tags, storage_tags))
    if storage_type == "local":
        return pools.where(StoragePool.host_id == Host.id, StoragePool.scope == StorageScope.HOST).exists()
    return pools.where(
        StoragePool.zone_id == zone_id,
        ((StoragePool.scope == StorageScope.ZONE)
         | ((StoragePool.scope == StorageScope.CLUSTER) & (StoragePool.cluster_id == Host.cluster_id)))).exists()


def _candidates(zone: Zone, hypervisor_type: str, need: Need, storage_type: str,
                avoid: set[int], cluster_id: int | None, host_tags: str | None = None,
                storage_tags: str | None = None, only: set[int] | None = None):
    stmt = _candidates_stmt(storage_type, cluster_id is not None, bool(avoid), only is not None,
                            host_tags or "", storage_tags or "", _factors())
    params = {"zone_id": zone.id, "hypervisor_type": hypervisor_type, "cpu": need.cpu_mhz,
              "mem": need.memory_bytes,
              "declared_limit": _declared_guest_limit(hypervisor_type)}
    if cluster_id is not None:
        params["cluster_id"] = cluster_id
    if avoid:
        params["avoid"] = sorted(avoid)
    if only is not None:
        params["only"] = sorted(only) or [-1]
    return db.session.execute(stmt, params).all()


def _declared_guest_limit(hypervisor_type: str) -> int:
    try:
        return hv.resolve(hypervisor_type).capabilities.max_guests_per_host
    except InvalidParameter:  # a type no longer installed: its hosts take no guest
        return 0


@functools.lru_cache(maxsize=256)
def _candidates_stmt(storage_type: str, in_cluster: bool, avoiding: bool, only: bool, host_tags: str,
                     storage_tags: str, factors: tuple[tuple, tuple]):
    """The candidates' SELECT for one shape, its values bound at each run. The type's guest limit
    is the admin's (hypervisor_capability), else the type's declared one (before bootstrap)."""
    zone_id, hypervisor_type = bindparam("zone_id"), bindparam("hypervisor_type")
    limit = func.coalesce(
        select(HypervisorCapability.max_guests_limit)
        .where(HypervisorCapability.hypervisor_type == hypervisor_type,
               HypervisorCapability.hypervisor_version == "default").scalar_subquery(),
        bindparam("declared_limit"))
    guests = (select(func.count()).select_from(VirtualMachine)
              .where(VirtualMachine.host_id == Host.id, VirtualMachine.state.in_(_ACTIVE))
              .scalar_subquery())
    q = (select(Host.id, Host.cpu_allocated, Host.memory_allocated, _cpu_capacity(factors[0]),
                _mem_capacity(factors[1]))
         .join(Cluster, Cluster.id == Host.cluster_id).join(Pod, Pod.id == Host.pod_id)
         .where(Host.zone_id == zone_id, Host.hypervisor_type == hypervisor_type, _usable(),
                _fits(bindparam("cpu"), bindparam("mem"), factors),
                Cluster.allocation_state == AllocationState.ENABLED, Cluster.removed.is_(None),
                Pod.allocation_state == AllocationState.ENABLED, guests < limit))
    if in_cluster:
        q = q.where(Host.cluster_id == bindparam("cluster_id"))
    if avoiding:
        q = q.where(Host.id.not_in(bindparam("avoid", expanding=True)))
    if only:
        q = q.where(Host.id.in_(bindparam("only", expanding=True)))
    q = q.where(placement_tags.has_all(Host.host_tags, host_tags or None),
                or_(_orchestrated(), _pool_exists(zone_id, storage_type, storage_tags or None)))
    return q.order_by(Host.id)


def _order(rows, account_id: int | None) -> list[int]:
    algo = settings.get("vm.allocation.algorithm")
    ids = [r[0] for r in rows]
    if algo == "random":
        random.shuffle(ids)
    elif algo == "firstfitleastconsumed":
        def used(r):
            cpu = r[1] / r[3] if r[3] else 1
            mem = r[2] / r[4] if r[4] else 1
            return (max(cpu, mem), r[0])
        ids = [r[0] for r in sorted(rows, key=used)]
    elif algo == "userdispersing" and account_id is not None and ids:
        mine = dict(db.session.execute(
            select(VirtualMachine.host_id, func.count()).where(
                VirtualMachine.account_id == account_id, VirtualMachine.host_id.in_(ids),
                VirtualMachine.state.in_(_ACTIVE)).group_by(VirtualMachine.host_id)).all())
        ids.sort(key=lambda i: (mine.get(i, 0), i))
    return ids  # firstfit: by id


def _attempt(host_id: int, need: Need, vm_id: int | None = None, placement: affinity.Placement | None = None,
             on_hold: Callable[[Host], None] | None = None) -> Host | None:
    """One reservation in its own transaction (with vm_id: held by that VM's row, atomically);
    the host, read in it, or None if it was taken. placement: the VM's affinity groups, locked
    first and checked again against where their other VMs are now (a sibling placed meanwhile
    makes this host wrong: None). on_hold: run with the host in the reservation's transaction,
    before it commits (a job's progress step); what it raises rolls the reservation back."""
    try:
        if placement is not None and placement.group_ids:
            db.session.commit()  # a fresh transaction: the check below reads after the locks
            affinity.lock_groups(placement.group_ids)
            if affinity.conflict(placement.vm_id, host_id) is not None:
                db.session.rollback()
                return None
        ok = hold(vm_id, host_id, need) if vm_id is not None else reserve(host_id, need)
        if not ok:
            db.session.rollback()
            return None
        if vm_id is None and placement is not None and placement.group_ids:
            # A migration's destination, recorded under the groups' locks with the reservation.
            db.session.execute(update(VirtualMachine).where(VirtualMachine.id == placement.vm_id)
                               .values(migration_host_id=host_id).execution_options(synchronize_session=False))
        host = db.session.get(Host, host_id)
        if on_hold is not None:
            on_hold(host)
        db.session.commit()
        return host
    except BaseException as e:  # a job reaped meanwhile (JobLost) too: nothing stays held
        db.session.rollback()
        if isinstance(e, Exception) and is_retryable(e):
            return None  # the database aborted us in a race: as if the host were taken
        raise


def plan_and_reserve(zone: Zone, hypervisor_type: str, need: Need, *, storage_type: str = "shared",
                     account_id: int | None = None, preferred_host_id: int | None = None,
                     avoid: set[int] | None = None, cluster_id: int | None = None,
                     vm_id: int | None = None, placing_vm_id: int | None = None,
                     host_tags: str | None = None, storage_tags: str | None = None,
                     on_hold: Callable[[Host], None] | None = None) -> Host:
    """Pick a host and reserve `need` on it; raise InsufficientCapacity with the
    reason when no host fits. The reservation is committed here (call this with no
    pending changes in the session); undo it with release() if the deploy fails.
    vm_id: the reservation is held by that VM (hold/unhold), committed with its row.
    placing_vm_id (default vm_id): the VM whose affinity groups the host must satisfy
    (a migration reserves for a VM that already holds its source).
    host_tags / storage_tags: the offering's; hosts (and a pool they reach) must have them all.
    on_hold: run with the chosen host in the reservation's transaction (see _attempt)."""
    avoid = set(avoid or ())
    zone_id = zone.id
    placing = placing_vm_id if placing_vm_id is not None else vm_id
    placement = affinity.placement(placing) if placing is not None else None
    if preferred_host_id is not None and preferred_host_id not in avoid:
        host = db.session.get(Host, preferred_host_id)
        if host and host.zone_id == zone_id and host.hypervisor_type == hypervisor_type \
                and (not placement_tags.split(host_tags) or db.session.scalar(select(Host.id).where(
                    Host.id == host.id, placement_tags.has_all(Host.host_tags, host_tags)))) \
                and _attempt(host.id, need, vm_id, placement, on_hold) is not None:
            return host
    only = placement.only if placement is not None else None
    narrowed = avoid | (placement.avoid if placement is not None else set())
    rows = _candidates(zone, hypervisor_type, need, storage_type, narrowed, cluster_id, host_tags, storage_tags, only)
    order = _order(rows, account_id)
    # The first attempt's hold goes in this read transaction (a COMMIT and a BEGIN fewer): its
    # plain reads took no locks, and the hold's guarded UPDATEs read the rows as they are now,
    # under any snapshot (MariaDB's REPEATABLE READ too). Both callers committed just before.
    for host_id in order:
        held = _attempt(host_id, need, vm_id, placement, on_hold)  # may lose a race: then the next one
        if held is not None:
            return held
    zone = db.session.get(Zone, zone_id)
    if placement is not None and placement.group_ids and _candidates(
            zone, hypervisor_type, need, storage_type, avoid, cluster_id, host_tags, storage_tags):
        # Hosts fit, but none the affinity groups allow: CloudStack's 533, naming the groups.
        raise InsufficientCapacity(affinity.refusal(placement))
    raise InsufficientCapacity(explain(zone, hypervisor_type, need, storage_type, host_tags, storage_tags))


def explain(zone: Zone, hypervisor_type: str, need: Need, storage_type: str, host_tags: str | None = None,
            storage_tags: str | None = None) -> str:
    """Why no host fits, in the admin's words (the narrowest reason found)."""
    name = hv.display_name(hypervisor_type)
    base = select(func.count()).select_from(Host).where(
        Host.zone_id == zone.id, Host.hypervisor_type == hypervisor_type, Host.removed.is_(None))
    if not db.session.scalar(base):
        return f"no host of type {name} in zone {zone.name}"
    if not db.session.scalar(base.where(_usable())):
        return f"no Up and Enabled host of type {name} in zone {zone.name}"
    mem_mib = need.memory_bytes // MIB
    if not db.session.scalar(base.where(_usable(), Host.memory_allocated + need.memory_bytes <= _mem_capacity())):
        return f"no Up host of type {name} with {mem_mib} MiB free in zone {zone.name}"
    if not db.session.scalar(base.where(_usable(), Host.cpu_allocated + need.cpu_mhz <= _cpu_capacity())):
        return f"no Up host of type {name} with {need.cpu_mhz} MHz of CPU free in zone {zone.name}"
    if host_tags and not db.session.scalar(base.where(_usable(), placement_tags.has_all(Host.host_tags, host_tags))):
        return f"no Up and Enabled host of type {name} with the host tags {host_tags} in zone {zone.name}"
    if storage_tags and not db.session.scalar(base.where(_usable(), _pool_exists(zone.id, storage_type,
                                                                                   storage_tags))):
        return (f"no Up host of type {name} reaches {storage_type} primary storage with the storage tags "
                f"{storage_tags} in zone {zone.name}")
    if storage_type == "local":
        return f"no Up host of type {name} with local storage and {mem_mib} MiB free in zone {zone.name}"
    return (f"no Up host of type {name} with {mem_mib} MiB and {need.cpu_mhz} MHz free, shared primary "
            f"storage and room for another guest in an enabled pod and cluster of zone {zone.name}")
