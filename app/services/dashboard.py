"""The operator dashboard: a fixed number of grouped queries whatever the size of the cloud.

Hosts and VMs by state, capacity of every zone, pod and cluster against the alerts'
notification thresholds, the latest failed async jobs and the open alerts."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, Alert, AsyncJob, Cluster, Host, JobStatus, Pod, VirtualMachine, Zone
from app.services.inventory import HostSums, PoolSums, Usage, host_sums, pool_sums

RECENT = 8  # failed jobs and open alerts shown


def counts(vm_states: dict[str, int] | None = None) -> dict[str, int]:
    """Tiles; vm_states: vms_by_state() when the caller has it already."""
    def count(model, *where):
        return db.session.scalar(select(func.count()).select_from(model).where(model.removed.is_(None), *where))
    vm_states = vms_by_state() if vm_states is None else vm_states
    return {
        "zones": count(Zone),
        "hosts": count(Host),
        "vms": sum(vm_states.values()),
        "vms_running": vm_states.get("Running", 0),
        "accounts": count(Account),
    }


def vms_by_state() -> dict[str, int]:
    return {s: int(n) for s, n in db.session.execute(
        select(VirtualMachine.state, func.count()).where(VirtualMachine.removed.is_(None))
        .group_by(VirtualMachine.state).order_by(VirtualMachine.state)).all()}


def hosts_by_state() -> dict[str, int]:
    return {s: int(n) for s, n in db.session.execute(
        select(Host.state, func.count()).where(Host.removed.is_(None)).group_by(Host.state)
        .order_by(Host.state)).all()}


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


@dataclass
class CapacityRow:
    """A zone, pod or cluster (depth 0, 1, 2) with its allocated CPU and memory (and, for a zone,
    its primary storage allocated), each with whether it is over its notification threshold."""
    kind: str
    name: str
    uuid: str
    depth: int
    cpu: Usage
    memory: Usage
    storage: Usage | None = None
    over: set[str] = field(default_factory=set)


def capacity_tree() -> tuple[list[CapacityRow], dict[str, float]]:
    """Every zone, its pods, their clusters, in order: seven queries."""
    from app.services.alerts.triggers import thresholds
    limits = thresholds()
    zs = db.session.execute(select(Zone.id, Zone.name, Zone.uuid).where(Zone.removed.is_(None))
                            .order_by(Zone.name)).all()
    ps = db.session.execute(select(Pod.id, Pod.name, Pod.uuid, Pod.zone_id).where(Pod.removed.is_(None))
                            .order_by(Pod.name)).all()
    cs = db.session.execute(select(Cluster.id, Cluster.name, Cluster.uuid, Cluster.pod_id)
                            .where(Cluster.removed.is_(None)).order_by(Cluster.name)).all()
    by_zone, by_pod, by_cluster = host_sums(Host.zone_id), host_sums(Host.pod_id), host_sums(Host.cluster_id)
    pools = pool_sums()

    def row(kind, r, depth, sums, storage=None):
        s = sums.get(r.id, HostSums())
        out = CapacityRow(kind, r.name, r.uuid, depth, s.cpu, s.memory, storage)
        own = thresholds(r.id) if kind == "cluster" else limits  # a cluster's own values where set
        for name, u in (("cpu", s.cpu), ("memory", s.memory), ("storage", storage)):
            if u is not None and u.total and u.used / u.total >= own[name]:
                out.over.add(name)
        return out

    rows = []
    for z in zs:
        rows.append(row("zone", z, 0, by_zone, pools.get(z.id, PoolSums()).allocated))
        for p in (p for p in ps if p.zone_id == z.id):
            rows.append(row("pod", p, 1, by_pod))
            rows += [row("cluster", c, 2, by_cluster) for c in cs if c.pod_id == p.id]
    return rows, limits


@dataclass
class FailedJob:
    job: AsyncJob
    error: str


def failed_jobs(limit: int = RECENT) -> list[FailedJob]:
    out = []
    for j in db.session.scalars(select(AsyncJob).where(AsyncJob.status == JobStatus.FAILED)
                                .order_by(AsyncJob.completed.desc(), AsyncJob.id.desc()).limit(limit)):
        try:
            result = json.loads(j.result or "{}")
        except ValueError:
            result = {}
        out.append(FailedJob(j, result.get("errortext", "") if isinstance(result, dict) else str(result)))
    return out


def open_alerts(limit: int = RECENT) -> tuple[list[Alert], int]:
    rows = list(db.session.scalars(select(Alert).where(Alert.open_key.is_not(None))
                                   .order_by(Alert.id.desc()).limit(limit)))
    total = len(rows) if len(rows) < limit else db.session.scalar(
        select(func.count()).select_from(Alert).where(Alert.open_key.is_not(None)))
    return rows, total
