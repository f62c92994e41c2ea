"""listCapacity: per zone, a fixed number of grouped queries whatever the size."""
from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import Host, StoragePool, Zone
from app.services import settings, zones

# CloudStack's capacity types
MEMORY, CPU, STORAGE, STORAGE_ALLOCATED = 0, 1, 2, 3


def list_capacity(zone_uuid: str | None = None, type_: int | None = None) -> list[dict]:
    zq = select(Zone).where(Zone.removed.is_(None)).order_by(Zone.id)
    if zone_uuid:
        zq = zq.where(Zone.id == zones.get_zone(zone_uuid).id)
    zone_rows = {z.id: z for z in db.session.scalars(zq)}
    hosts = {r[0]: r[1:] for r in db.session.execute(
        select(Host.zone_id, func.coalesce(func.sum(Host.memory_total), 0), func.coalesce(func.sum(Host.memory_allocated), 0),
               func.coalesce(func.sum(Host.cpu_number * Host.cpu_speed), 0), func.coalesce(func.sum(Host.cpu_allocated), 0))
        .where(Host.removed.is_(None)).group_by(Host.zone_id))}
    pools = {r[0]: r[1:] for r in db.session.execute(
        select(StoragePool.zone_id, func.coalesce(func.sum(StoragePool.capacity_bytes), 0),
               func.coalesce(func.sum(StoragePool.used_bytes), 0), func.coalesce(func.sum(StoragePool.allocated_bytes), 0))
        .where(StoragePool.removed.is_(None)).group_by(StoragePool.zone_id))}
    mem_f, cpu_f = settings.get("mem.overprovisioning.factor"), settings.get("cpu.overprovisioning.factor")
    out = []
    for zid, zone in zone_rows.items():
        mem_total, mem_alloc, cpu_total, cpu_alloc = (int(v) for v in hosts.get(zid, (0, 0, 0, 0)))
        st_total, st_used, st_alloc = (int(v) for v in pools.get(zid, (0, 0, 0)))
        for t, total, used in ((MEMORY, int(mem_total * mem_f), mem_alloc), (CPU, int(cpu_total * cpu_f), cpu_alloc),
                               (STORAGE, st_total, st_used), (STORAGE_ALLOCATED, st_total, st_alloc)):
            if type_ is not None and t != type_:
                continue
            out.append({"type": t, "zoneid": zone.uuid, "zonename": zone.name, "capacitytotal": total,
                        "capacityused": used, "percentused": f"{100.0 * used / total:.2f}" if total else "0"})
    return out
