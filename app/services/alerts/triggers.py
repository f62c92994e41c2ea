"""What raises and clears alerts: capacity thresholds (each monitor sweep), hosts, routers,
storage pools (called where their state changes) and failing async jobs (a job finish hook).

Capacity is counted as the planner and the dashboard count it (app/services/inventory.py):
allocated CPU and memory of a cluster's (and a zone's) hosts, with the overprovisioning
factors, and a primary storage pool's allocated bytes, against CloudStack's
cluster.*.allocated.capacity.notificationthreshold settings.
"""
from __future__ import annotations

import json
import logging

from sqlalchemy import select

from app.extensions import db
from app.jobs import service as jobs
from app.models import AsyncJob, Cluster, Host, JobStatus, StoragePool, Zone
from app.services import settings
from app.services.settings import Definition, define

log = logging.getLogger("nubo.alerts")


def _fraction(value: float) -> None:
    from app.services.errors import InvalidParameter
    if not 0 <= value <= 1:
        raise InvalidParameter("The value must be between 0 and 1 (a fraction, 0.75 for 75 %)", field="value")


for _name, _what in (("cluster.cpu.allocated.capacity.notificationthreshold", "cpu"),
                     ("cluster.memory.allocated.capacity.notificationthreshold", "memory"),
                     ("cluster.storage.allocated.capacity.notificationthreshold", "allocated storage")):
    define(Definition(_name, "0.75", f"Percentage (as a value between 0 and 1) of {_what} utilization above which "
                      f"alerts will be sent about low {_what} available.", category="Alert", type="float", min=0,
                      max=1, validate=_fraction, scopes=("cluster",)))

THRESHOLDS = {"cpu": "cluster.cpu.allocated.capacity.notificationthreshold",
              "memory": "cluster.memory.allocated.capacity.notificationthreshold",
              "storage": "cluster.storage.allocated.capacity.notificationthreshold"}


def thresholds(cluster_id: int | None = None) -> dict[str, float]:
    """Fractions (0.75) by kind: cpu, memory, storage; a cluster's own values where set (no query)."""
    scope = {"cluster": cluster_id} if cluster_id is not None else {}
    return {kind: settings.get(name, **scope) for kind, name in THRESHOLDS.items()}


def _pct(used: int, total: int) -> float:
    return used / total if total else 0.0


def check_capacity() -> int:
    """Raise an alert for each zone and cluster whose allocated CPU or memory, and each primary
    storage pool whose allocated bytes, is over its threshold; clear those back under it. A
    fixed number of queries whatever the size of the cloud. Commits; returns alerts raised."""
    from app.services import alerts
    from app.services.inventory import host_sums, pool_allocation
    names = dict(db.session.execute(select(Zone.id, Zone.name).where(Zone.removed.is_(None))).all())
    clusters = {c.id: c for c in db.session.execute(select(Cluster.id, Cluster.name, Cluster.pod_id, Cluster.zone_id)
                                                     .where(Cluster.removed.is_(None))).all()}
    open_keys = alerts.open_keys([alerts.CPU.id, alerts.MEMORY.id, alerts.STORAGE_ALLOCATED.id])
    raised = 0

    def judge(type_, kind, used, total, where: dict, label: str, unit: str):
        nonlocal raised
        key = alerts.key_of(type_, **where)
        limits = thresholds(where.get("cluster_id"))
        over = total > 0 and _pct(used, total) >= limits[kind]
        if over and key not in open_keys:
            pct = 100 * _pct(used, total)
            if alerts.raise_alert(type_, f"System Alert: Low Available {kind.upper() if kind == 'cpu' else kind.capitalize()} "
                                  f"in {label}", content=f"{label}: {pct:.0f} % allocated ({used} of {total} {unit}), "
                                  f"over {THRESHOLDS[kind]} ({limits[kind]:g})", **where):
                raised += 1
        elif not over and key in open_keys:
            alerts.clear(type_, **where)

    for scope, sums in (("zone", host_sums(Host.zone_id)), ("cluster", host_sums(Host.cluster_id))):
        for key_value, s in sums.items():
            if scope == "zone":
                if key_value not in names:
                    continue
                where, label = {"zone_id": key_value}, f"zone {names[key_value]}"
            else:
                c = clusters.get(key_value)
                if c is None:
                    continue
                where = {"zone_id": c.zone_id, "pod_id": c.pod_id, "cluster_id": c.id}
                label = f"cluster {c.name} (zone {names.get(c.zone_id, c.zone_id)})"
            judge(alerts.CPU, "cpu", s.cpu.used, s.cpu.total, where, label, "MHz")
            judge(alerts.MEMORY, "memory", s.memory.used, s.memory.total, where, label, "bytes")
    for pool in pool_allocation():
        where = {"zone_id": pool.zone_id, "pod_id": pool.pod_id, "cluster_id": pool.cluster_id,
                 "resource": ("StoragePool", pool.uuid)}
        judge(alerts.STORAGE_ALLOCATED, "storage", pool.allocated, pool.capacity, where,
              f"primary storage {pool.name} (zone {names.get(pool.zone_id, pool.zone_id)})", "bytes")
    db.session.commit()
    return raised


# --- Hosts, routers, pools: called where their state changes --------------------------------

def host_state_changed(host: Host) -> None:
    """A host went Alert or Down (an alert), or Up again (its alert clears)."""
    from app.models import HostState
    from app.services import alerts
    where = {"zone_id": host.zone_id, "pod_id": host.pod_id, "cluster_id": host.cluster_id,
             "resource": ("Host", host.uuid)}
    if host.state in (HostState.ALERT, HostState.DOWN):
        from app.models import Pod
        zone, pod = db.session.get(Zone, host.zone_id), db.session.get(Pod, host.pod_id) if host.pod_id else None
        alerts.raise_alert(alerts.HOST, f"Host is {host.state}, name: {host.name} (id:{host.uuid}), availability "
                           f"zone: {zone.name if zone else host.zone_id}, pod: {pod.name if pod else '-'}",
                           content=host.state_reason or "no answer", **where)
    elif host.state == HostState.UP:
        alerts.clear(alerts.HOST, **where)


def router_failed(router, reason: str) -> None:
    from app.services import alerts
    net = router.network
    alerts.raise_alert(alerts.DOMAIN_ROUTER, f"Virtual router {router.name} of network {net.name if net else '?'} "
                       f"failed", content=reason, zone_id=getattr(net, "zone_id", None),
                       resource=("DomainRouter", router.uuid))


def router_recovered(router) -> None:
    from app.services import alerts
    net = router.network
    alerts.clear(alerts.DOMAIN_ROUTER, zone_id=getattr(net, "zone_id", None), resource=("DomainRouter", router.uuid))


def pool_failed(pool: StoragePool, reason: str) -> None:
    from app.services import alerts
    alerts.raise_alert(alerts.STORAGE_MISC, f"Primary storage {pool.name} failed: {reason}"[:999], content=reason,
                       zone_id=pool.zone_id, pod_id=pool.pod_id, cluster_id=pool.cluster_id,
                       resource=("StoragePool", pool.uuid))


def pool_recovered(pool: StoragePool) -> None:
    from app.services import alerts
    alerts.clear(alerts.STORAGE_MISC, zone_id=pool.zone_id, pod_id=pool.pod_id, cluster_id=pool.cluster_id,
                 resource=("StoragePool", pool.uuid))


def image_store_state_changed(store) -> None:
    """An image store (secondary storage) Unreachable raises ALERT.STORAGE.SECONDARY; Ready clears it."""
    from app.models import ImageStoreState
    from app.services import alerts
    where = {"zone_id": store.zone_id, "resource": ("ImageStore", store.uuid)}
    if store.state == ImageStoreState.UNREACHABLE:
        alerts.raise_alert(alerts.SECONDARY_STORAGE, f"Secondary storage {store.name} is unreachable: "
                           f"{store.state_reason or 'no answer'}"[:999], content=store.state_reason, **where)
    elif store.state == ImageStoreState.READY:
        alerts.clear(alerts.SECONDARY_STORAGE, **where)


# --- Async jobs ------------------------------------------------------------------------------

# A job refused for the caller's own input or rights is not the operator's problem.
_NOT_ALERTS = {431, 432, 531, 532}


def job_finished(job_id: int, status: int, result, cmd: str | None = None) -> None:
    """One open alert per failing command (deployVirtualMachine, ...); a later job of that command
    that succeeds clears it. cmd: the job's, when the runner has it in hand."""
    from app.services import alerts
    code = result.get("errorcode") if isinstance(result, dict) else None
    if status == JobStatus.SUCCEEDED:
        if cmd is None:
            cmd = db.session.scalar(select(AsyncJob.cmd).where(AsyncJob.id == job_id))
        # Most successes find no open alert: one SELECT, the clearing UPDATE only when there is one.
        if cmd and alerts.is_open(alerts.ASYNC_JOB, resource=("AsyncJob", cmd)) \
                and alerts.clear(alerts.ASYNC_JOB, resource=("AsyncJob", cmd)):
            db.session.commit()
        db.session.rollback()
        return
    if status != JobStatus.FAILED or code in _NOT_ALERTS:
        return
    job = db.session.get(AsyncJob, job_id)
    if job is None:
        return
    text = result.get("errortext", "") if isinstance(result, dict) else str(result)
    alerts.raise_alert(alerts.ASYNC_JOB, f"Async job {job.cmd} failed: {text}"[:999],
                       content=json.dumps({"jobid": job.uuid, "cmd": job.cmd, "instancetype": job.instance_type,
                                           "instanceid": job.instance_id, "result": result})[:5000],
                       resource=("AsyncJob", job.cmd))
    db.session.commit()


def _job_alert_due(status: int, cmd: str | None) -> bool:
    """job_finished's probe, in the job's last transaction: a failure may raise an alert; a
    success has something to do only if its command has an open alert (one indexed SELECT)."""
    from app.services import alerts
    return status != JobStatus.SUCCEEDED or (cmd is not None and alerts.is_open(alerts.ASYNC_JOB,
                                                                               resource=("AsyncJob", cmd)))


jobs.on_finish(job_finished, _job_alert_due)
