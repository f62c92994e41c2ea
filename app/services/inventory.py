"""Read-only views of the physical layout for the admin pages: list rows with
their counts and capacity, and the detail of one zone, pod, cluster, host or pool.

Every function runs a fixed number of queries whatever the page size: the rows
(one query, related names joined-loaded, plus its count), then one grouped query
per aggregate for the ids on the page; never a query per row.

Capacity is counted as the planner counts it: a host's CPU is cores × MHz ×
`cpu.overprovisioning.factor`, its memory × `mem.overprovisioning.factor`;
"used" is what the planner has allocated to VMs.
"""
from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, case, func, select

from app.extensions import db
from app.models import (Cluster, Host, HostState, ImageStore, PhysicalNetwork, Pod, StoragePool, VirtualMachine,
                        VMState, Volume, Zone)
from app.services import hosts, settings, storage, zones
from app.services import hypervisors as hv
from app.services.errors import NotFound

DETAIL_ROWS = 20  # rows of each table on a detail page (the full list is one click away)


@dataclass(frozen=True)
class Usage:
    """Used out of total (MHz or bytes), for a capacity bar."""
    used: int = 0
    total: int = 0

    @property
    def pct(self) -> float:
        return 100.0 * self.used / self.total if self.total else 0.0


@dataclass(frozen=True)
class HostSums:
    """The hosts under one zone, pod or cluster, and their CPU and memory."""
    hosts: int = 0
    up: int = 0
    cpu: Usage = Usage()
    memory: Usage = Usage()


@dataclass(frozen=True)
class PoolSums:
    """The primary storage pools of one zone: used and allocated out of their size."""
    pools: int = 0
    used: Usage = Usage()
    allocated: Usage = Usage()


def factors(cluster: int | None = None, zone: int | None = None) -> tuple[float, float]:
    """(CPU, memory) overprovisioning factors the planner applies (in a cluster: its own, else its zone's)."""
    return (settings.get("cpu.overprovisioning.factor", cluster=cluster, zone=zone),
            settings.get("mem.overprovisioning.factor", cluster=cluster, zone=zone))


def capacity_sums():
    """SQL sums of the hosts' CPU MHz and memory bytes, each host's times its cluster's factor."""
    cpu_f = settings.sql_value("cpu.overprovisioning.factor", cluster_col=Host.cluster_id, zone_col=Host.zone_id)
    mem_f = settings.sql_value("mem.overprovisioning.factor", cluster_col=Host.cluster_id, zone_col=Host.zone_id)
    return (func.coalesce(func.sum(Host.cpu_number * Host.cpu_speed * cpu_f), 0),
            func.coalesce(func.sum(Host.memory_total * mem_f), 0))


def _only(key: ColumnElement, ids: Iterable[int] | None):
    return [] if ids is None else [key.in_(list(ids))]


def host_sums(key: ColumnElement, ids: Iterable[int] | None = None) -> dict[int, HostSums]:
    """Per value of `key` (Host.zone_id, .pod_id or .cluster_id), for `ids` or all: one grouped query."""
    cpu_capacity, mem_capacity = capacity_sums()
    rows = db.session.execute(
        select(key, func.count(), func.coalesce(func.sum(case((Host.state == HostState.UP, 1), else_=0)), 0),
               func.coalesce(func.sum(Host.cpu_allocated), 0), cpu_capacity,
               func.coalesce(func.sum(Host.memory_allocated), 0), mem_capacity)
        .where(Host.removed.is_(None), *_only(key, ids)).group_by(key))
    out = {}
    for key_value, *sums in rows:  # SUM is a Decimal on PostgreSQL and MariaDB
        n, up, cpu_used, cpu_total, mem_used, mem_total = (int(v) for v in sums)
        out[key_value] = HostSums(n, up, Usage(cpu_used, cpu_total), Usage(mem_used, mem_total))
    return out


def pool_sums(ids: Iterable[int] | None = None) -> dict[int, PoolSums]:
    """Primary storage per zone (every scope, local pools included), for `ids` or all: one grouped query."""
    rows = db.session.execute(
        select(StoragePool.zone_id, func.count(), func.coalesce(func.sum(StoragePool.capacity_bytes), 0),
               func.coalesce(func.sum(StoragePool.used_bytes), 0),
               func.coalesce(func.sum(StoragePool.allocated_bytes), 0))
        .where(StoragePool.removed.is_(None), *_only(StoragePool.zone_id, ids)).group_by(StoragePool.zone_id))
    return {k: PoolSums(int(n), Usage(int(used), int(total)), Usage(int(alloc), int(total)))
            for k, n, total, used, alloc in rows}


def pool_allocation() -> list:
    """Every primary storage pool's allocated bytes out of its size (the alerts' threshold check): one query.
    Rows with id, uuid, name, zone_id, pod_id, cluster_id, allocated, capacity."""
    return list(db.session.execute(select(
        StoragePool.id, StoragePool.uuid, StoragePool.name, StoragePool.zone_id, StoragePool.pod_id,
        StoragePool.cluster_id, StoragePool.allocated_bytes.label("allocated"),
        StoragePool.capacity_bytes.label("capacity")).where(StoragePool.removed.is_(None))))


def _counts(model, key: ColumnElement, ids: Iterable[int]) -> dict[int, int]:
    return dict(db.session.execute(select(key, func.count()).where(model.removed.is_(None), key.in_(list(ids)))
                                   .group_by(key)).all())


# --- List rows --------------------------------------------------------------

@dataclass
class ZoneRow:
    zone: Zone
    pods: int
    clusters: int
    hosts: HostSums
    storage: PoolSums


@dataclass
class PodRow:
    pod: Pod
    clusters: int
    hosts: HostSums


@dataclass
class ClusterRow:
    cluster: Cluster
    hosts: HostSums


@dataclass
class HostRow:
    host: Host
    vms: int
    cpu: Usage
    memory: Usage


def _zone_rows(items: list[Zone]) -> list[ZoneRow]:
    ids = [z.id for z in items]
    pods, clusters = _counts(Pod, Pod.zone_id, ids), _counts(Cluster, Cluster.zone_id, ids)
    sums, pools = host_sums(Host.zone_id, ids), pool_sums(ids)
    return [ZoneRow(z, pods.get(z.id, 0), clusters.get(z.id, 0), sums.get(z.id, HostSums()),
                    pools.get(z.id, PoolSums())) for z in items]


def zone_rows(*, keyword: str | None = None, sort: str | None = None, page=None) -> tuple[list[ZoneRow], int]:
    items, total = zones.list_zones(keyword=keyword, sort=sort, page=page)
    return _zone_rows(items), total


def _pod_rows(items: list[Pod]) -> list[PodRow]:
    ids = [p.id for p in items]
    clusters, sums = _counts(Cluster, Cluster.pod_id, ids), host_sums(Host.pod_id, ids)
    return [PodRow(p, clusters.get(p.id, 0), sums.get(p.id, HostSums())) for p in items]


def pod_rows(*, zone_uuid: str | None = None, keyword: str | None = None, sort: str | None = None,
             page=None) -> tuple[list[PodRow], int]:
    items, total = zones.list_pods(zone_uuid=zone_uuid, keyword=keyword, sort=sort, page=page)
    return _pod_rows(items), total


def cluster_rows(*, zone_uuid: str | None = None, pod_uuid: str | None = None, hypervisor: str | None = None,
                 keyword: str | None = None, sort: str | None = None, page=None) -> tuple[list[ClusterRow], int]:
    items, total = zones.list_clusters(zone_uuid=zone_uuid, pod_uuid=pod_uuid, hypervisor=hypervisor,
                                       keyword=keyword, sort=sort, page=page)
    sums = host_sums(Host.cluster_id, [c.id for c in items])
    return [ClusterRow(c, sums.get(c.id, HostSums())) for c in items], total


def _host_rows(items: list[Host]) -> list[HostRow]:
    vms = dict(db.session.execute(
        select(VirtualMachine.host_id, func.count())
        .where(VirtualMachine.host_id.in_([h.id for h in items]), VirtualMachine.removed.is_(None),
               VirtualMachine.state != VMState.DESTROYED)
        .group_by(VirtualMachine.host_id)).all()) if items else {}
    rows = []
    for h in items:
        cpu_f, mem_f = factors(cluster=h.cluster_id, zone=h.zone_id)
        rows.append(HostRow(h, vms.get(h.id, 0), Usage(h.cpu_allocated, int(h.cpu_number * h.cpu_speed * cpu_f)),
                            Usage(h.memory_allocated, int(h.memory_total * mem_f))))
    return rows


def host_rows(*, zone_uuid: str | None = None, pod_uuid: str | None = None, cluster_uuid: str | None = None,
              state: str | None = None, resource_state: str | None = None, hypervisor: str | None = None,
              keyword: str | None = None, sort: str | None = None, page=None) -> tuple[list[HostRow], int]:
    items, total = hosts.list_hosts(zone_uuid=zone_uuid, pod_uuid=pod_uuid, cluster_uuid=cluster_uuid, state=state,
                                    resource_state=resource_state, hypervisor=hypervisor, keyword=keyword,
                                    sort=sort, page=page)
    return _host_rows(items), total


# --- Details ----------------------------------------------------------------

@dataclass
class PhysicalNetworkView:
    name: str
    vlan_range: str | None
    labels: list[tuple[str, str]]  # (hypervisor display name, bridge or switch) of Guest traffic
    isolation: str = "VLAN"
    state: str = "Enabled"
    traffic: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)  # other traffic types' labels
    providers: list[tuple[str, str]] = field(default_factory=list)  # (provider, state)


@dataclass
class PublicRangeView:
    vlan: str
    gateway: str
    netmask: str
    start_ip: str
    end_ip: str
    free: int
    total: int


@dataclass
class ZoneDetail:
    row: ZoneRow
    hypervisors: list[str]  # display names of the cluster types in the zone
    networks: list[PhysicalNetworkView]
    pods: tuple[list[PodRow], int]
    clusters: tuple[list[ClusterRow], int]
    pools: tuple[list[StoragePool], int]
    stores: tuple[list[ImageStore], int]
    public_ranges: list[PublicRangeView] = field(default_factory=list)


def _physical_view(n: PhysicalNetwork) -> PhysicalNetworkView:
    from app.models import NetworkServiceProvider, PhysicalNetworkTrafficType
    traffic = [(t.traffic_type, _labels(t.labels)) for t in db.session.scalars(select(
        PhysicalNetworkTrafficType).where(PhysicalNetworkTrafficType.physical_network_id == n.id,
                                          PhysicalNetworkTrafficType.traffic_type != "Guest")
        .order_by(PhysicalNetworkTrafficType.id))]
    providers = [(p.name, p.state) for p in db.session.scalars(select(NetworkServiceProvider).where(
        NetworkServiceProvider.physical_network_id == n.id).order_by(NetworkServiceProvider.id))]
    return PhysicalNetworkView(n.name, n.vlan_range, _labels(n.traffic_labels), n.isolation_method, n.state,
                               traffic, providers)


def _public_ranges(zone_id: int) -> list[PublicRangeView]:
    from app.models import PublicIpAddress, VlanIpRange
    out = []
    for r in db.session.scalars(select(VlanIpRange).where(VlanIpRange.zone_id == zone_id,
                                                          VlanIpRange.removed.is_(None),
                                                          VlanIpRange.for_virtual_network.is_(True))
                                .order_by(VlanIpRange.id)):
        counts = dict(db.session.execute(select(PublicIpAddress.state, func.count()).where(
            PublicIpAddress.vlan_range_id == r.id).group_by(PublicIpAddress.state)).all())
        out.append(PublicRangeView(r.vlan, r.gateway, r.netmask, r.start_ip, r.end_ip, counts.get("Free", 0),
                                   sum(counts.values())))
    return out


def _labels(raw: str | None) -> list[tuple[str, str]]:
    try:
        labels = json.loads(raw or "{}")
    except ValueError:
        return []
    return sorted((hv.display_name(t), str(label)) for t, label in labels.items()) if isinstance(labels, dict) else []


def zone_detail(uuid: str, limit: int = DETAIL_ROWS) -> ZoneDetail:
    zone = zones.get_zone(uuid, "id")
    networks = db.session.scalars(select(PhysicalNetwork).where(
        PhysicalNetwork.zone_id == zone.id, PhysicalNetwork.removed.is_(None)).order_by(PhysicalNetwork.id))
    first = (1, limit)
    return ZoneDetail(
        row=_zone_rows([zone])[0], hypervisors=hv.list_hypervisors(zone.uuid),
        networks=[_physical_view(n) for n in networks], public_ranges=_public_ranges(zone.id),
        pods=pod_rows(zone_uuid=zone.uuid, sort="name", page=first),
        clusters=cluster_rows(zone_uuid=zone.uuid, sort="name", page=first),
        pools=storage.list_storage_pools(zone_uuid=zone.uuid, sort="name", page=first),
        stores=storage.list_image_stores(zone_uuid=zone.uuid, sort="name", page=first))


@dataclass
class ClusterDetail:
    row: ClusterRow
    hosts: tuple[list[HostRow], int]
    pools: tuple[list[StoragePool], int]


def cluster_detail(uuid: str, limit: int = DETAIL_ROWS) -> ClusterDetail:
    cluster = zones.get_cluster(uuid, "id")
    return ClusterDetail(row=ClusterRow(cluster, host_sums(Host.cluster_id, [cluster.id]).get(cluster.id, HostSums())),
                         hosts=host_rows(cluster_uuid=cluster.uuid, sort="name", page=(1, limit)),
                         pools=storage.list_storage_pools(cluster_uuid=cluster.uuid, sort="name", page=(1, limit)))


@dataclass
class PodDetail:
    row: PodRow
    clusters: tuple[list[ClusterRow], int]
    hosts: tuple[list[HostRow], int]
    reserved_ips: int  # addresses in the pod's reserved (management) range


def pod_detail(uuid: str, limit: int = DETAIL_ROWS) -> PodDetail:
    pod = zones.get_pod(uuid, "id")
    size = 0
    if pod.start_ip and pod.end_ip:
        size = max(0, int(ipaddress.ip_address(pod.end_ip)) - int(ipaddress.ip_address(pod.start_ip)) + 1)
    first = (1, limit)
    return PodDetail(row=_pod_rows([pod])[0],
                     clusters=cluster_rows(pod_uuid=pod.uuid, sort="name", page=first),
                     hosts=host_rows(pod_uuid=pod.uuid, sort="name", page=first), reserved_ips=size)


@dataclass
class HostDetail:
    row: HostRow
    local_pools: list[StoragePool]
    cpu_factor: float
    mem_factor: float
    settings: list[tuple[str, str]] = field(default_factory=list)  # (label, value): its add-host fields


def host_detail(uuid: str) -> HostDetail:
    host = hosts.get_host(uuid)
    pools = db.session.scalars(select(StoragePool).where(StoragePool.host_id == host.id,
                                                         StoragePool.removed.is_(None)).order_by(StoragePool.id))
    return HostDetail(_host_rows([host])[0], list(pools), *factors(cluster=host.cluster_id, zone=host.zone_id),
                      settings=hosts.public_settings(host))


def host_row(uuid: str) -> HostRow:
    """One host's list row (the answer to an action on it)."""
    return _host_rows([hosts.get_host(uuid)])[0]


@dataclass
class StoreDetail:
    store: ImageStore
    copies: tuple[list, int]  # (TemplateStoreRef rows, total): the templates and ISOs on it


def store_detail(uuid: str, page=(1, DETAIL_ROWS)) -> StoreDetail:
    from sqlalchemy.orm import joinedload

    from app.models import Template, TemplateStoreRef
    from app.services.pagination import page_of
    stores, _ = storage.list_image_stores(id=uuid)
    if not stores:
        raise NotFound("Unable to find image store with the specified id", field="id")
    q = (select(TemplateStoreRef).join(Template, Template.id == TemplateStoreRef.template_id)
         .where(TemplateStoreRef.image_store_id == stores[0].id, Template.removed.is_(None))
         .options(joinedload(TemplateStoreRef.template), joinedload(TemplateStoreRef.zone))
         .order_by(Template.name, TemplateStoreRef.id))
    return StoreDetail(stores[0], page_of(q, page))


@dataclass
class PoolDetail:
    pool: StoragePool
    volumes: int


def pool_detail(uuid: str) -> PoolDetail:
    pools, _ = storage.list_storage_pools(id=uuid)
    if not pools:
        raise NotFound("Unable to find storage pool with the specified id", field="id")
    volumes = db.session.scalar(select(func.count()).select_from(Volume).where(
        Volume.pool_id == pools[0].id, Volume.removed.is_(None)))
    return PoolDetail(pools[0], volumes)
