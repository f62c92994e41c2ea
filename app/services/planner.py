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
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from sqlalchemy import and_, case, func, select, update

from app.extensions import db
from app.models import (AllocationState, Cluster, Host, HostState, Pod, PoolState, ResourceState, StoragePool,
                        StorageScope, VirtualMachine, VMState, Zone)
from app.services import hypervisors as hv
from app.services import settings
from app.services.dbutil import is_retryable
from app.services.errors import InsufficientCapacity
from app.services.settings import Definition, define

MIB = 1024 * 1024

define(Definition("cpu.overprovisioning.factor", "1.0",
                  "Used for CPU overprovisioning: the CPU capacity of a host counts this many times.",
                  category="Capacity", type="float", min=1.0, max=100.0))
define(Definition("mem.overprovisioning.factor", "1.0",
                  "Used for memory overprovisioning: the memory of a host counts this many times.",
                  category="Capacity", type="float", min=1.0, max=10.0))
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


def _cpu_capacity():
    return Host.cpu_number * Host.cpu_speed * settings.get("cpu.overprovisioning.factor")


def _mem_capacity():
    return Host.memory_total * settings.get("mem.overprovisioning.factor")


def _fits(need: Need):
    return and_(Host.cpu_allocated + need.cpu_mhz <= _cpu_capacity(),
                Host.memory_allocated + need.memory_bytes <= _mem_capacity())


def _usable():
    return and_(Host.removed.is_(None), Host.state == HostState.UP,
                Host.resource_state == ResourceState.ENABLED)


def reserve(host_id: int, need: Need) -> bool:
    """Take capacity on one host if it still fits. Atomic; commits nothing itself."""
    res = db.session.execute(
        update(Host).where(Host.id == host_id, _usable(), _fits(need))
        .values(cpu_allocated=Host.cpu_allocated + need.cpu_mhz,
                memory_allocated=Host.memory_allocated + need.memory_bytes)
        .execution_options(synchronize_session=False))
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
    marked = db.session.execute(
        update(VirtualMachine).where(VirtualMachine.id == vm_id, VirtualMachine.capacity_reserved.is_(False))
        .values(capacity_reserved=True, host_id=host_id).execution_options(synchronize_session=False))
    if marked.rowcount != 1:
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


def _candidates(zone: Zone, hypervisor_type: str, need: Need, storage_type: str,
                avoid: set[int], cluster_id: int | None):
    limit = hv.limits(hypervisor_type).max_guests_limit
    guests = (select(func.count()).select_from(VirtualMachine)
              .where(VirtualMachine.host_id == Host.id, VirtualMachine.state.in_(_ACTIVE))
              .scalar_subquery())
    q = (select(Host.id, Host.cpu_allocated, Host.memory_allocated, _cpu_capacity(), _mem_capacity())
         .join(Cluster, Cluster.id == Host.cluster_id).join(Pod, Pod.id == Host.pod_id)
         .where(Host.zone_id == zone.id, Host.hypervisor_type == hypervisor_type, _usable(), _fits(need),
                Cluster.allocation_state == AllocationState.ENABLED, Cluster.removed.is_(None),
                Pod.allocation_state == AllocationState.ENABLED, guests < limit))
    if cluster_id is not None:
        q = q.where(Host.cluster_id == cluster_id)
    if avoid:
        q = q.where(Host.id.not_in(avoid))
    if storage_type == "local":
        q = q.where(select(StoragePool.id).where(
            StoragePool.host_id == Host.id, StoragePool.scope == StorageScope.HOST,
            StoragePool.removed.is_(None), StoragePool.state == PoolState.UP).exists())
    else:
        q = q.where(select(StoragePool.id).where(
            StoragePool.zone_id == zone.id, StoragePool.removed.is_(None), StoragePool.state == PoolState.UP,
            ((StoragePool.scope == StorageScope.ZONE)
             | ((StoragePool.scope == StorageScope.CLUSTER) & (StoragePool.cluster_id == Host.cluster_id)))
        ).exists())
    return db.session.execute(q.order_by(Host.id)).all()


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


def _attempt(host_id: int, need: Need, vm_id: int | None = None) -> bool:
    """One reservation in its own transaction (with vm_id: held by that VM's row, atomically)."""
    try:
        ok = hold(vm_id, host_id, need) if vm_id is not None else reserve(host_id, need)
        if ok:
            db.session.commit()
        else:
            db.session.rollback()
        return ok
    except Exception as e:
        db.session.rollback()
        if is_retryable(e):
            return False  # the database aborted us in a race: as if the host were taken
        raise


def plan_and_reserve(zone: Zone, hypervisor_type: str, need: Need, *, storage_type: str = "shared",
                     account_id: int | None = None, preferred_host_id: int | None = None,
                     avoid: set[int] | None = None, cluster_id: int | None = None,
                     vm_id: int | None = None) -> Host:
    """Pick a host and reserve `need` on it; raise InsufficientCapacity with the
    reason when no host fits. The reservation is committed here (call this with no
    pending changes in the session); undo it with release() if the deploy fails.
    vm_id: the reservation is held by that VM (hold/unhold), committed with its row."""
    avoid = set(avoid or ())
    zone_id, zone_name = zone.id, zone.name
    if preferred_host_id is not None and preferred_host_id not in avoid:
        host = db.session.get(Host, preferred_host_id)
        if host and host.zone_id == zone_id and host.hypervisor_type == hypervisor_type \
                and _attempt(host.id, need, vm_id):
            return db.session.get(Host, preferred_host_id)
    order = _order(_candidates(zone, hypervisor_type, need, storage_type, avoid, cluster_id), account_id)
    db.session.commit()  # end the read transaction: no snapshot or locks held while reserving
    for host_id in order:
        if _attempt(host_id, need, vm_id):  # may lose a race: then try the next one
            return db.session.get(Host, host_id)
    zone = db.session.get(Zone, zone_id)
    raise InsufficientCapacity(explain(zone, hypervisor_type, need, storage_type))


def explain(zone: Zone, hypervisor_type: str, need: Need, storage_type: str) -> str:
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
    if storage_type == "local":
        return f"no Up host of type {name} with local storage and {mem_mib} MiB free in zone {zone.name}"
    return (f"no Up host of type {name} with {mem_mib} MiB and {need.cpu_mhz} MHz free, shared primary "
            f"storage and room for another guest in an enabled pod and cluster of zone {zone.name}")
