"""Counts and capacity for the admin dashboard: a fixed number of grouped queries."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, Host, VirtualMachine, Zone
from app.services.inventory import HostSums, PoolSums, Usage, host_sums, pool_sums


def counts() -> dict[str, int]:
    def count(model, *where):
        return db.session.scalar(select(func.count()).select_from(model).where(model.removed.is_(None), *where))
    vm_states = dict(db.session.execute(
        select(VirtualMachine.state, func.count()).where(VirtualMachine.removed.is_(None))
        .group_by(VirtualMachine.state)).all())
    return {
        "zones": count(Zone),
        "hosts": count(Host),
        "vms": sum(vm_states.values()),
        "vms_running": vm_states.get("Running", 0),
        "accounts": count(Account),
    }


@dataclass
class ZoneCapacity:
    zone: Zone
    cpu: Usage  # MHz allocated of cores × MHz × cpu.overprovisioning.factor
    memory: Usage  # bytes allocated of memory × mem.overprovisioning.factor
    storage: Usage  # primary storage bytes used of its size


def capacity_by_zone() -> list[ZoneCapacity]:
    """CPU, memory and primary storage of every zone: three queries."""
    items = db.session.scalars(select(Zone).where(Zone.removed.is_(None)).order_by(Zone.name)).all()
    sums, pools = host_sums(Host.zone_id), pool_sums()
    return [ZoneCapacity(z, sums.get(z.id, HostSums()).cpu, sums.get(z.id, HostSums()).memory,
                         pools.get(z.id, PoolSums()).used) for z in items]
