"""listCapacity: per zone, a fixed number of grouped queries whatever the size."""
from __future__ import annotations

from sqlalchemy import func, select, update

from app.extensions import db
from app.models import Host, StoragePool, Zone
from app.services import zones
from app.services.inventory import capacity_sums

# CloudStack's capacity types
MEMORY, CPU, STORAGE, STORAGE_ALLOCATED = 0, 1, 2, 3


def list_capacity(zone_uuid: str | None = None, type_: int | None = None) -> list[dict]:
    zq = select(Zone).where(Zone.removed.is_(None)).order_by(Zone.id)
    if zone_uuid:
        zq = zq.where(Zone.id == zones.get_zone(zone_uuid).id)
    zone_rows = {z.id: z for z in db.session.scalars(zq)}
    cpu_capacity, mem_capacity = capacity_sums()  # each host's times its cluster's (zone's) factor
    hosts = {r[0]: r[1:] for r in db.session.execute(
        select(Host.zone_id, mem_capacity, func.coalesce(func.sum(Host.memory_allocated), 0),
               cpu_capacity, func.coalesce(func.sum(Host.cpu_allocated), 0))
        .where(Host.removed.is_(None)).group_by(Host.zone_id))}
    pools = {r[0]: r[1:] for r in db.session.execute(
        select(StoragePool.zone_id, func.coalesce(func.sum(StoragePool.capacity_bytes), 0),
               func.coalesce(func.sum(StoragePool.used_bytes), 0), func.coalesce(func.sum(StoragePool.allocated_bytes), 0))
        .where(StoragePool.removed.is_(None)).group_by(StoragePool.zone_id))}
    out = []
    for zid, zone in zone_rows.items():
        mem_total, mem_alloc, cpu_total, cpu_alloc = (int(v) for v in hosts.get(zid, (0, 0, 0, 0)))
        st_total, st_used, st_alloc = (int(v) for v in pools.get(zid, (0, 0, 0)))
        for t, total, used in ((MEMORY, mem_total, mem_alloc), (CPU, cpu_total, cpu_alloc),
                               (STORAGE, st_total, st_used), (STORAGE_ALLOCATED, st_total, st_alloc)):
            if type_ is not None and t != type_:
                continue
            out.append({"type": t, "zoneid": zone.uuid, "zonename": zone.name, "capacitytotal": total,
                        "capacityused": used, "percentused": f"{100.0 * used / total:.2f}" if total else "0"})
    return out


def _held():
    """Per host: (cpu MHz, memory bytes) held by its VMs (planner.hold), as correlated subqueries."""
    from app.models import VirtualMachine
    mine = (VirtualMachine.host_id == Host.id, VirtualMachine.capacity_reserved.is_(True),
            VirtualMachine.removed.is_(None))
    cpu = select(func.coalesce(func.sum(VirtualMachine.cpu_number * VirtualMachine.cpu_speed), 0)).where(*mine)
    mem = select(func.coalesce(func.sum(VirtualMachine.memory), 0) * 1024 * 1024).where(*mine)
    return cpu.scalar_subquery(), mem.scalar_subquery()


def check_hosts() -> int:
    """Repair drift: each host's recorded allocation becomes the sum over the VMs that hold
    capacity on it, with a WARN event per host that was off. Returns the hosts repaired.

    Skipped while a VM migrates (the destination holds a reservation no VM row shows yet).
    Each repair is a compare-and-set on the values read, so a reservation committed
    meanwhile makes it skip that host until the next check instead of losing the reservation."""
    from app.models import VirtualMachine, VMState
    from app.services import events
    if db.session.scalar(select(VirtualMachine.id).where(VirtualMachine.state == VMState.MIGRATING,
                                                         VirtualMachine.removed.is_(None)).limit(1)):
        db.session.commit()
        return 0
    cpu, mem = _held()
    off = db.session.execute(select(Host.id, Host.uuid, Host.name, Host.cpu_allocated, Host.memory_allocated,
                                    cpu, mem).where(Host.removed.is_(None))).all()
    repaired = 0
    for r in off:
        if (int(r.cpu_allocated), int(r.memory_allocated)) == (int(r[5]), int(r[6])):
            continue
        cpu, mem = _held()
        done = db.session.execute(update(Host).where(
            Host.id == r.id, Host.cpu_allocated == r.cpu_allocated, Host.memory_allocated == r.memory_allocated)
            .values(cpu_allocated=cpu, memory_allocated=mem).execution_options(synchronize_session=False))
        if done.rowcount != 1:
            continue
        db.session.flush()
        now = db.session.execute(select(Host.cpu_allocated, Host.memory_allocated).where(Host.id == r.id)).one()
        repaired += 1
        events.record("CAPACITY.REPAIR", f"Host {r.name}: recorded allocation was {r.cpu_allocated} MHz and "
                      f"{int(r.memory_allocated) >> 20} MiB; its VMs hold {now[0]} MHz and {int(now[1]) >> 20} MiB. "
                      "Corrected.", level="WARN", resource_type="Host", resource_id=r.uuid)
        db.session.commit()
    db.session.commit()
    return repaired
