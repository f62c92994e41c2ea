"""The deployment planner: host choice by the rules, and reservations that never overbook."""
import threading

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import (AllocationState, Cluster, Host, HostState, Pod, ResourceState, StoragePool,
                        StorageScope, Zone)
from app.services import planner, settings
from app.services.errors import InsufficientCapacity
from app.services.planner import MIB, Need

pytestmark = pytest.mark.db
GIB = 1024 * MIB


def make_zone(n_hosts=2, cpus=4, mhz=2000, mem_gib=8, hv_type="Simulator", local=False, name="Z1"):
    zone = Zone(name=name, allocation_state=AllocationState.ENABLED, local_storage_enabled=local)
    pod = Pod(zone=zone, name="P1")
    cluster = Cluster(zone=zone, pod=pod, name="C1", hypervisor_type=hv_type)
    db.session.add_all([zone, pod, cluster])
    db.session.flush()
    hosts = []
    for i in range(n_hosts):
        h = Host(name=f"h{i}", zone_id=zone.id, pod_id=pod.id, cluster_id=cluster.id, hypervisor_type=hv_type,
                 url=f"simulator://h{i}", address=f"h{i}", state=HostState.UP,
                 resource_state=ResourceState.ENABLED, cpu_number=cpus, cpu_speed=mhz,
                 memory_total=mem_gib * GIB)
        db.session.add(h)
        hosts.append(h)
    db.session.flush()
    db.session.add(StoragePool(name="shared", zone_id=zone.id, cluster_id=cluster.id,
                               scope=StorageScope.CLUSTER, pool_type="NetworkFilesystem",
                               url="nfs://s/p", path="/p", capacity_bytes=1 << 40))
    if local:
        for h in hosts:
            db.session.add(StoragePool(name=f"local-{h.name}", zone_id=zone.id, host_id=h.id,
                                       scope=StorageScope.HOST, pool_type="Filesystem",
                                       url="file:///l", path="/l", capacity_bytes=1 << 40))
    db.session.commit()
    return zone, hosts


def test_reserves_and_releases(app):
    with app.app_context():
        zone, hosts = make_zone(n_hosts=1)
        need = Need.of(2, 1000, 4096)
        host = planner.plan_and_reserve(zone, "Simulator", need)
        db.session.commit()
        db.session.refresh(host)
        assert host.cpu_allocated == 2000 and host.memory_allocated == 4096 * MIB
        planner.release(host.id, need)
        db.session.commit()
        db.session.refresh(host)
        assert host.cpu_allocated == 0 and host.memory_allocated == 0


def test_no_capacity_says_why(app):
    with app.app_context():
        zone, _ = make_zone(n_hosts=1, mem_gib=2)
        with pytest.raises(InsufficientCapacity, match="no Up host of type Simulator with 4096 MiB free in zone Z1"):
            planner.plan_and_reserve(zone, "Simulator", Need.of(1, 500, 4096))
        with pytest.raises(InsufficientCapacity, match="no host of type KVM in zone Z1"):
            planner.plan_and_reserve(zone, "KVM", Need.of(1, 500, 512))


def test_skips_down_disabled_and_maintenance_hosts(app):
    with app.app_context():
        zone, hosts = make_zone(n_hosts=3)
        hosts[0].state = HostState.DOWN
        hosts[1].resource_state = ResourceState.MAINTENANCE
        db.session.commit()
        settings.update("vm.allocation.algorithm", "firstfit")
        got = planner.plan_and_reserve(zone, "Simulator", Need.of(1, 500, 512))
        assert got.id == hosts[2].id
        hosts[2].resource_state = ResourceState.DISABLED
        db.session.commit()
        with pytest.raises(InsufficientCapacity, match="no Up and Enabled host"):
            planner.plan_and_reserve(zone, "Simulator", Need.of(1, 500, 512))


def test_overprovisioning_factor(app):
    with app.app_context():
        zone, _ = make_zone(n_hosts=1, cpus=1, mhz=1000, mem_gib=1)
        with pytest.raises(InsufficientCapacity):
            planner.plan_and_reserve(zone, "Simulator", Need.of(2, 1000, 512))
        settings.update("cpu.overprovisioning.factor", "2")
        assert planner.plan_and_reserve(zone, "Simulator", Need.of(2, 1000, 512))


def test_local_storage_offering_needs_local_pool(app):
    with app.app_context():
        zone, _ = make_zone(n_hosts=1, local=False)
        with pytest.raises(InsufficientCapacity, match="local storage"):
            planner.plan_and_reserve(zone, "Simulator", Need.of(1, 500, 512), storage_type="local")
        zone2, hosts2 = make_zone(n_hosts=1, local=True, name="Z2")
        assert planner.plan_and_reserve(zone2, "Simulator", Need.of(1, 500, 512), storage_type="local").id == hosts2[0].id


def test_firstfitleastconsumed_prefers_emptier_host(app):
    with app.app_context():
        zone, hosts = make_zone(n_hosts=2)
        hosts[0].memory_allocated = 6 * GIB
        db.session.commit()
        settings.update("vm.allocation.algorithm", "firstfitleastconsumed")
        assert planner.plan_and_reserve(zone, "Simulator", Need.of(1, 500, 512)).id == hosts[1].id


def test_concurrent_reservations_never_overbook(app):
    """20 parallel deploys against capacity for 10: exactly 10 get a host."""
    with app.app_context():
        zone, hosts = make_zone(n_hosts=2, cpus=8, mhz=1000, mem_gib=5)  # 5 x 1 GiB per host
        zone_id = zone.id
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20, timeout=30)

    def deploy():
        barrier.wait()  # before taking a pooled connection
        with app.app_context():
            try:
                zone = db.session.get(Zone, zone_id)
                planner.plan_and_reserve(zone, "Simulator", Need.of(1, 100, 1024))
                db.session.commit()
                outcome = "ok"
            except InsufficientCapacity:
                db.session.rollback()
                outcome = "533"
            except Exception as e:  # a lock timeout would be a bug too
                db.session.rollback()
                outcome = f"error {e}"
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=deploy) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 10, results
    assert results.count("533") == 10, results
    with app.app_context():
        for h in db.session.scalars(select(Host)):
            assert h.memory_allocated <= h.memory_total
            assert h.memory_allocated == 5 * GIB


def test_skips_hosts_of_a_disabled_pod_or_cluster(app):
    """updatePod/updateCluster allocationstate=Disabled: their hosts get no new VMs; Enabled again, they do."""
    with app.app_context():
        zone, hosts = make_zone(n_hosts=1)
        need = Need.of(1, 500, 512)
        for model in (Pod, Cluster):
            row = db.session.get(model, getattr(hosts[0], f"{model.__tablename__[:-1]}_id"))
            row.allocation_state = AllocationState.DISABLED
            db.session.commit()
            with pytest.raises(InsufficientCapacity):
                planner.plan_and_reserve(zone, "Simulator", need)
            row.allocation_state = AllocationState.ENABLED
            db.session.commit()
        assert planner.plan_and_reserve(zone, "Simulator", need).id == hosts[0].id
