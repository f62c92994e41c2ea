"""Is a silent host dead? Asked of its neighbours, never decided from Nubo's view alone
(CloudStack's KVMInvestigator: CheckOnHostCommand sent to the Up hosts of its cluster,
which read its heartbeat on the shared NFS storage).

Nubo runs no agent on its hosts: a neighbour's own libvirtd reads the heartbeat file that
scripts/host/nubo-heartbeat.sh writes on every shared primary storage (Driver.heartbeat_age),
so the age is what the neighbour sees of the storage, not what Nubo sees of the host.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import or_, select

from app.extensions import db
from app.hypervisors.base import DriverError
from app.models import Host, HostState, PoolState, PoolType, ResourceState, StoragePool, StorageScope
from app.services import hypervisors as hv
from app.services import settings

log = logging.getLogger("nubo.ha")

SHARED_KINDS = (PoolType.NFS, PoolType.FILESYSTEM)


@dataclass(frozen=True)
class Verdict:
    """What the investigation found: dead (judged Down, HA may restart its VMs), alive (it
    stays Alert), or None: nobody could tell (Down on time alone, no restarts)."""
    dead: bool | None
    reason: str


@dataclass(frozen=True)
class _Case:
    host_id: int
    host_name: str
    host_key: str
    timeout: int
    neighbours: tuple  # ((name, type name, connection), ...)
    pools: tuple  # ((pool name, StoragePoolSpec), ...)


def _can_read_heartbeats(type_name: str) -> bool:
    try:
        return hv.resolve(type_name).capabilities.storage_heartbeat
    except Exception:  # noqa: BLE001 - a type whose plugin is gone reads nothing
        return False


def _case(host: Host) -> _Case | str:
    """What to ask whom about `host`, or why nobody can be asked."""
    from app.services.hosts import connection_for
    from app.services.storage import spec_of
    if not settings.get("vm.ha.enabled", zone=host.zone_id):
        return "vm.ha.enabled is off"
    if not _can_read_heartbeats(host.hypervisor_type):
        return f"{hv.display_name(host.hypervisor_type)} hosts keep no storage heartbeat"
    neighbours = [h for h in db.session.scalars(select(Host).where(
        Host.cluster_id == host.cluster_id, Host.id != host.id, Host.removed.is_(None),
        Host.state == HostState.UP, Host.resource_state != ResourceState.MAINTENANCE).order_by(Host.id))
        if _can_read_heartbeats(h.hypervisor_type)][:settings.get("ha.investigators")]
    if not neighbours:
        return "no Up neighbour in its cluster could read its heartbeat"
    pools = list(db.session.scalars(select(StoragePool).where(
        StoragePool.removed.is_(None), StoragePool.zone_id == host.zone_id, StoragePool.state == PoolState.UP,
        StoragePool.pool_type.in_(SHARED_KINDS),
        or_(StoragePool.scope == StorageScope.ZONE,
            (StoragePool.scope == StorageScope.CLUSTER) & (StoragePool.cluster_id == host.cluster_id)))
        .order_by(StoragePool.id)))
    if not pools:
        return "its cluster has no shared primary storage to keep a heartbeat on"
    return _Case(host.id, host.name, host.address, settings.get("ha.heartbeat.timeout", cluster=host.cluster_id),
                 tuple((n.name, n.hypervisor_type, connection_for(n)) for n in neighbours),
                 tuple((p.name, spec_of(p)) for p in pools))


def _ask(app, case: _Case) -> Verdict:
    """Neighbour after neighbour until one sees the heartbeat fresh (alive); stale on every
    pool a neighbour could read: dead; no reading at all: nobody can tell."""
    stale, unread = [], []
    with app.app_context():
        for name, type_name, conn in case.neighbours:
            try:
                driver = hv.driver_for(type_name, conn)
            except DriverError as e:
                unread.append(f"{name}: {e}")
                continue
            try:
                for pool_name, spec in case.pools:
                    try:
                        age = driver.heartbeat_age(spec, case.host_key)
                    except DriverError as e:
                        unread.append(f"{name} cannot read {pool_name}: {e}")
                        continue
                    if age is None:
                        unread.append(f"no heartbeat of {case.host_name} on {pool_name}")
                    elif age < case.timeout:
                        return Verdict(False, f"it does not answer, but {name} sees its heartbeat on {pool_name} "
                                              f"{age:.0f} s old: alive, cut off from the management server")
                    else:
                        stale.append(f"{name} sees its heartbeat on {pool_name} {age:.0f} s old")
            finally:
                driver.close()
    if stale:
        return Verdict(True, "; ".join(stale) + f" (over ha.heartbeat.timeout, {case.timeout} s)")
    return Verdict(None, "nobody could read its heartbeat: " + "; ".join(unread[:3]))


def judge(hosts: list[Host]) -> dict[int, Verdict]:
    """A verdict for each host (silent for ping.interval × ping.timeout). Reads the database
    first, then asks the neighbours (in parallel, by host). Commits nothing: the caller's
    objects (a sweep's thousands of hosts) stay loaded; only a read snapshot is held meanwhile."""
    cases: list[_Case] = []
    verdicts: dict[int, Verdict] = {}
    for host in hosts:
        c = _case(host)
        if isinstance(c, str):
            verdicts[host.id] = Verdict(None, c)
        else:
            cases.append(c)
    if cases:
        app = current_app._get_current_object()
        with ThreadPoolExecutor(max_workers=min(8, len(cases))) as pool:
            for case, verdict in zip(cases, pool.map(lambda c: _ask(app, c), cases)):
                verdicts[case.host_id] = verdict
                log.info("investigated %s: %s", case.host_name, verdict.reason)
    return verdicts
