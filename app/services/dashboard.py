"""Counts and capacity for the admin dashboard: a fixed number of grouped queries."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, Host, VirtualMachine, Zone


@dataclass
class ZoneCapacity:
    zone: str
    cpu_total: int  # MHz
    cpu_allocated: int
    memory_total: int  # bytes
    memory_allocated: int

    @property
    def cpu_pct(self) -> float:
        return 100.0 * self.cpu_allocated / self.cpu_total if self.cpu_total else 0.0

    @property
    def memory_pct(self) -> float:
        return 100.0 * self.memory_allocated / self.memory_total if self.memory_total else 0.0


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


def capacity_by_zone() -> list[ZoneCapacity]:
    rows = db.session.execute(
        select(Zone.name,
               func.coalesce(func.sum(Host.cpu_number * Host.cpu_speed), 0),
               func.coalesce(func.sum(Host.cpu_allocated), 0),
               func.coalesce(func.sum(Host.memory_total), 0),
               func.coalesce(func.sum(Host.memory_allocated), 0))
        .select_from(Zone).outerjoin(Host, (Host.zone_id == Zone.id) & Host.removed.is_(None))
        .where(Zone.removed.is_(None)).group_by(Zone.id, Zone.name).order_by(Zone.name)).all()
    return [ZoneCapacity(*map(lambda v: v if isinstance(v, str) else int(v), r)) for r in rows]
