"""Affinity groups and offering tags on a Simulator zone with several hosts, through the services:
anti-affinity spreads and affinity packs (at deploy, start, migration and maintenance), an
impossible placement is CloudStack's 533 naming the group, parallel deploys into one
anti-affinity group never share a host (threads, on every database), and host/storage tags
choose the hosts and pools."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import (AffinityGroup, AffinityGroupVM, AsyncJob, JobStatus, ServiceOffering, StoragePool,
                        VirtualMachine, VMState, new_uuid)
from app.services import accounts, affinity, hosts, offerings, settings, storage, vms, volumes
from app.services.errors import InsufficientCapacity, InvalidParameter, NotFound, PermissionDenied
from tests.helpers.sim_zone import simulator_zone

# Placement (locks, transactions) runs on every database (@pytest.mark.db); the rest on SQLite.


@pytest.fixture
def world(app, tmp_path):
    with app.app_context():
        admin = accounts.create_user("root", "Kx-admin-secret-7", role="admin", account="admin")
        alice = accounts.create_user("alice", "Kx-user-secret-7")
        bob = accounts.create_user("bob", "Kx-user-secret-8")
        w = simulator_zone(admin, tmp_path, name="agz", guest_cidr="10.70.0.0/24",
                           host_urls=[f"simulator://ag{i}?cpus=8&memory=16384" for i in range(3)])
        return dict(zone=w.zone.uuid, t=w.template.uuid, so=w.offering.uuid, admin=admin.uuid, alice=alice.uuid,
                    bob=bob.uuid, hosts=[h.uuid for h in w.hosts], host_ids=[h.id for h in w.hosts])


def _u(w, who):
    return accounts.user_by_uuid(w[who])


def _deploy(w, who, name, ok=True, **kw):
    vm, job = vms.deploy(_u(w, who), zone_uuid=w["zone"], service_offering_uuid=kw.pop("so", w["so"]),
                         template_uuid=w["t"], name=name, **kw)
    db.session.refresh(job)
    if ok:
        assert job.status == JobStatus.SUCCEEDED, job.result
    return db.session.get(VirtualMachine, vm.id), job


def _group(w, who, name, kind):
    job = affinity.submit_create(_u(w, who), name=name, type_=kind)
    db.session.refresh(job)
    assert job.status == JobStatus.SUCCEEDED, job.result
    return db.session.scalar(select(AffinityGroup).where(AffinityGroup.uuid == job.instance_id))


def _run(job):
    db.session.refresh(job)
    return job


def _counts():
    return (db.session.scalar(select(func.count()).select_from(AffinityGroup)),
            db.session.scalar(select(func.count()).select_from(AffinityGroupVM)),
            db.session.scalar(select(func.count()).select_from(VirtualMachine)))


def test_groups_and_their_errors(app, world):
    with app.app_context():
        w = world
        assert affinity.types() == ["host affinity", "host anti-affinity"]
        g = _group(w, "alice", "web", "host anti-affinity")
        before = _counts()
        with pytest.raises(InvalidParameter, match="invalid affinity group type: nope. Valid values are "
                                                   "host affinity,host anti-affinity"):
            affinity.submit_create(_u(w, "alice"), name="x", type_="nope")
        with pytest.raises(InvalidParameter, match="a group with name web already exists"):
            affinity.submit_create(_u(w, "alice"), name="web", type_="host affinity")
        with pytest.raises(PermissionDenied):  # a user names another account: 531
            affinity.submit_create(_u(w, "alice"), name="x", type_="host affinity", account="bob")
        # bob: the same name is his own; alice's group is "not found" to him, like a missing one
        _group(w, "bob", "web", "host affinity")
        for call in (lambda: affinity.get(_u(w, "bob"), g.uuid),
                     lambda: affinity.submit_delete(_u(w, "bob"), uuid=g.uuid),
                     lambda: _deploy(w, "bob", "b1", affinity_group_uuids=[g.uuid])):
            with pytest.raises(NotFound):
                call()
        with pytest.raises(InvalidParameter, match="mutually exclusive"):
            _deploy(w, "alice", "a1", affinity_group_uuids=[g.uuid], affinity_group_names=["web"])
        with pytest.raises(NotFound, match="Unable to find group by name nope"):
            _deploy(w, "alice", "a1", affinity_group_names=["nope"])
        with pytest.raises(InvalidParameter, match="Either the affinity group Id or group name"):
            affinity.submit_delete(_u(w, "alice"))
        assert _counts()[0] == before[0] + 1 and _counts()[1:] == before[1:]  # bob's group only
        rows, total = affinity.list_groups(_u(w, "alice"))
        assert [r.name for r in rows] == ["web"] and total == 1
        assert affinity.list_groups(_u(w, "admin"), listall=True)[1] == 2
        assert affinity.list_groups(_u(w, "admin"))[1] == 0  # an admin's own, without listall
        # an admin creates one for alice; alice deletes hers by name (async)
        admin_made = affinity.submit_create(_u(w, "admin"), name="db", type_="host affinity", account="alice")
        assert _run(admin_made).status == JobStatus.SUCCEEDED
        assert {r.name for r in affinity.list_groups(_u(w, "alice"))[0]} == {"web", "db"}
        assert _run(affinity.submit_delete(_u(w, "alice"), name="db")).status == JobStatus.SUCCEEDED
        assert [r.name for r in affinity.list_groups(_u(w, "alice"))[0]] == ["web"]


@pytest.mark.db
def test_anti_affinity_spreads_and_533_names_the_group(app, world):
    with app.app_context():
        w = world
        g = _group(w, "alice", "spread", "host anti-affinity")
        placed = [_deploy(w, "alice", f"s{i}", affinity_group_uuids=[g.uuid])[0] for i in range(3)]
        assert len({vm.host_id for vm in placed}) == 3
        assert affinity.vm_uuids([g.id])[g.id] == [vm.uuid for vm in placed]
        vm4, job = _deploy(w, "alice", "s4", ok=False, affinity_group_names=["spread"])
        assert job.status == JobStatus.FAILED and job.result_code == 533, job.result
        assert "host anti-affinity group spread" in job.result
        assert vm4.state == VMState.ERROR
        # the Error VM left its group (as CloudStack: only the three remain)
        assert affinity.vm_uuids([g.id])[g.id] == [vm.uuid for vm in placed]
        # a stopped member counts nowhere: its host is free for a new member; its own start then fails
        _run(vms.stop(_u(w, "alice"), placed[0].uuid))
        freed = placed[0].last_host_id if db.session.refresh(placed[0]) is None else None
        vm5, _ = _deploy(w, "alice", "s5", affinity_group_uuids=[g.uuid])
        assert vm5.host_id == freed
        job = _run(vms.start(_u(w, "alice"), placed[0].uuid))
        assert job.status == JobStatus.FAILED and job.result_code == 533 and "spread" in job.result
        assert db.session.get(VirtualMachine, placed[0].id).state == VMState.STOPPED


def test_affinity_packs_and_update_needs_a_stopped_vm(app, world):
    with app.app_context():
        w = world
        settings.update("vm.allocation.algorithm", "random")
        g = _group(w, "alice", "pack", "host affinity")
        placed = [_deploy(w, "alice", f"p{i}", affinity_group_uuids=[g.uuid])[0] for i in range(4)]
        assert len({vm.host_id for vm in placed}) == 1
        loose, _ = _deploy(w, "alice", "loose")
        # updateVMAffinityGroup: refused while Running (431, nothing changed), done when Stopped
        with pytest.raises(InvalidParameter, match="make sure the virtual machine is stopped"):
            affinity.submit_update_vm(_u(w, "alice"), loose.uuid, [g.uuid], None)
        with pytest.raises(InvalidParameter, match="must be given"):
            affinity.submit_update_vm(_u(w, "alice"), loose.uuid, None, None)
        assert affinity.groups_of_vms([loose.id]) == {}
        _run(vms.stop(_u(w, "alice"), loose.uuid))
        job = _run(affinity.submit_update_vm(_u(w, "alice"), loose.uuid, None, ["pack"]))
        assert job.status == JobStatus.SUCCEEDED, job.result
        assert '"affinitygroup": [{"id": "%s"' % g.uuid in job.result
        assert _run(vms.start(_u(w, "alice"), loose.uuid)).status == JobStatus.SUCCEEDED
        assert db.session.get(VirtualMachine, loose.id).host_id == placed[0].host_id
        # the pack's host full for another member: 533 naming the group, though other hosts fit
        big = ServiceOffering(uuid=new_uuid(), name="big", cpu_number=4, cpu_speed=2000, memory=12288)
        db.session.add(big)
        db.session.commit()
        _vm, job = _deploy(w, "alice", "p9", ok=False, so=big.uuid, affinity_group_uuids=[g.uuid])
        assert job.result_code == 533 and "host affinity group pack" in job.result, job.result
        # deleting the group drops its memberships (CloudStack's rule), the VMs stay
        assert _run(affinity.submit_delete(_u(w, "alice"), uuid=g.uuid)).status == JobStatus.SUCCEEDED
        assert db.session.scalar(select(func.count()).select_from(AffinityGroupVM)) == 0
        assert db.session.get(VirtualMachine, loose.id).state == VMState.RUNNING


@pytest.mark.db
def test_migration_and_maintenance_keep_anti_affinity(app, world):
    with app.app_context():
        w = world
        settings.update("vm.allocation.algorithm", "firstfit")
        g = _group(w, "alice", "ha", "host anti-affinity")
        a, _ = _deploy(w, "alice", "m1", affinity_group_uuids=[g.uuid])
        b, _ = _deploy(w, "alice", "m2", affinity_group_uuids=[g.uuid])
        h = w["host_ids"]
        assert (a.host_id, b.host_id) == (h[0], h[1])
        admin = _u(w, "admin")
        with pytest.raises(InvalidParameter, match="anti-affinity group ha already has a VM on that host"):
            vms.migrate(admin, a.uuid, w["hosts"][1])
        # b migrating to h2 (its destination reserved, recorded on its row): h2 counts as b's too
        b.state, b.migration_host_id = VMState.MIGRATING, h[2]
        db.session.commit()
        job = _run(vms.migrate(admin, a.uuid))
        assert job.status == JobStatus.FAILED and job.result_code == 533 and "ha" in job.result, job.result
        b = db.session.get(VirtualMachine, b.id)
        b.state, b.migration_host_id = VMState.RUNNING, None
        db.session.commit()
        job = _run(vms.migrate(admin, a.uuid))  # the planner: not h1 (b), so h2
        assert job.status == JobStatus.SUCCEEDED, job.result
        moved = db.session.get(VirtualMachine, a.id)
        assert (moved.host_id, moved.migration_host_id) == (h[2], None)
        # maintenance of h2: a can go nowhere but h0 (h1 has b)
        job = _run(hosts.prepare_maintenance(admin, w["hosts"][2]))
        assert job.status == JobStatus.SUCCEEDED, job.result
        assert db.session.get(VirtualMachine, a.id).host_id == h[0]
        # and with h0 disabled too, maintenance of h0 cannot move a: ErrorInMaintenance naming the group
        hosts.cancel_maintenance(admin, w["hosts"][2])
        c, _ = _deploy(w, "alice", "m3", affinity_group_uuids=[g.uuid])
        assert c.host_id == h[2]
        job = _run(hosts.prepare_maintenance(admin, w["hosts"][0]))
        assert job.status == JobStatus.FAILED and "ha" in job.result, job.result
        assert db.session.get(VirtualMachine, a.id).host_id == h[0]


@pytest.mark.db
def test_parallel_deploys_into_one_anti_affinity_group(app, world):
    """Four deploys at once into one anti-affinity group on three hosts: three run on three
    different hosts, one fails with 533 — the group lock serialises the placements."""
    with app.app_context():
        w = world
        settings.update("vm.allocation.algorithm", "firstfit")  # every planner wants the same host first
        g = _group(w, "alice", "par", "host anti-affinity")
        gid = g.uuid
    results: list = []
    barrier = threading.Barrier(4)

    def one(i):
        with app.app_context():
            user = accounts.user_by_uuid(w["alice"])
            barrier.wait()
            try:
                vm, job = vms.deploy(user, zone_uuid=w["zone"], service_offering_uuid=w["so"], template_uuid=w["t"],
                                     name=f"par{i}", affinity_group_uuids=[gid])
                db.session.refresh(job)
                results.append((job.status, job.result_code))
            except Exception as e:  # noqa: BLE001 - recorded for the assertion
                results.append(("raised", repr(e)))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert len(results) == 4, results
    assert sorted(r[0] for r in results) == sorted([JobStatus.SUCCEEDED] * 3 + [JobStatus.FAILED]), results
    assert [r[1] for r in results if r[0] == JobStatus.FAILED] == [533]
    with app.app_context():
        running = db.session.scalars(select(VirtualMachine).where(VirtualMachine.state == VMState.RUNNING)).all()
        assert len(running) == 3 and len({vm.host_id for vm in running}) == 3


def test_host_and_storage_tags(app, world, tmp_path):
    with app.app_context():
        w = world
        admin = _u(w, "admin")
        hosts.update_host(admin, w["hosts"][2], host_tags="ssd, gpu")
        so = offerings.create(admin, name="gpu", display_text=None, cpu_number=1, cpu_speed=500, memory=512,
                              host_tags="gpu")
        for i in range(3):
            vm, _ = _deploy(w, "alice", f"g{i}", so=so.uuid)
            assert vm.host_id == w["host_ids"][2]
        # a tag no host has: 533 saying so, nothing left counted
        offerings.update(admin, so.uuid, host_tags="gpu,fpga")
        vm, job = _deploy(w, "alice", "g9", ok=False, so=so.uuid)
        assert job.result_code == 533 and "with the host tags gpu,fpga" in job.result, job.result
        # storage tags: only the tagged pool takes the root volume
        z = vms.zones.get_zone(w["zone"])
        cluster = db.session.scalar(select(StoragePool.cluster_id).where(StoragePool.zone_id == z.id))
        from app.models import Cluster
        fast = storage.create_storage_pool(admin, zone_uuid=w["zone"], name="fast", url="nfs://agz/fast",
                                           cluster_uuid=db.session.get(Cluster, cluster).uuid, tags="fast")
        offerings.update(admin, so.uuid, host_tags="", storage_tags="fast")
        assert db.session.get(ServiceOffering, so.id).host_tags is None
        vm, _ = _deploy(w, "alice", "f1", so=so.uuid)
        assert {v.pool_id for v in vm.volumes} == {fast.id}
        offerings.update(admin, so.uuid, storage_tags="slow")
        vm, job = _deploy(w, "alice", "f2", ok=False, so=so.uuid)
        assert job.result_code == 533 and "storage tags slow" in job.result, job.result
        # a disk offering's tags choose the pool its volumes are made on at first attach
        do = volumes.create_disk_offering(admin, name="fastdisk", disk_size=1, tags="fast")
        nfs = db.session.scalar(select(StoragePool).where(StoragePool.name == "nfs"))
        nfs.tags = "slow"  # (updateStoragePool's part, done here in the row)
        db.session.commit()
        plain, _ = _deploy(w, "alice", "plain", so=so.uuid)
        assert {v.pool_id for v in plain.volumes} == {nfs.id}
        v = volumes.create_volume(_u(w, "alice"), name="d1", zone_uuid=w["zone"], disk_offering_uuid=do.uuid)
        volumes.attach_volume(_u(w, "alice"), v.uuid, plain.uuid)
        assert db.session.get(type(v), v.id).pool_id == fast.id
        volumes.update_disk_offering(admin, do.uuid, tags="none-has-it", name="renamed", sort_key=-1)
        assert volumes.list_disk_offerings()[0][0].name == "renamed"
        v2 = volumes.create_volume(_u(w, "alice"), name="d2", zone_uuid=w["zone"], disk_offering_uuid=do.uuid)
        with pytest.raises(InsufficientCapacity, match="storage tags none-has-it"):
            volumes.attach_volume(_u(w, "alice"), v2.uuid, plain.uuid)
        with pytest.raises(InvalidParameter):
            offerings.update(admin, so.uuid, host_tags="bad\x01tag")
        assert db.session.get(ServiceOffering, so.id).storage_tags == "slow"
        assert db.session.scalar(select(func.count()).select_from(AsyncJob)) > 0


def test_pages_list_create_delete_and_the_vm_card(app, world, client):
    from tests.conftest import AuthActions
    auth = AuthActions(client)
    with app.app_context():
        vm, _ = _deploy(world, "alice", "pg1")
        vm_uuid = vm.uuid
    auth.login("alice", "Kx-user-secret-7")
    assert b"Affinity groups" in client.get("/portal/").data  # in the navigation
    token = auth.csrf("/affinitygroups/new")
    r = client.post("/affinitygroups/new", data={"name": "front", "type": "host anti-affinity",
                                                 "description": "spread", "csrf_token": token})
    assert r.status_code == 302, r.data
    r = client.post("/affinitygroups/new", data={"name": "front", "type": "host affinity", "csrf_token": token})
    assert r.status_code == 422 and b"already exists" in r.data
    page = client.get("/affinitygroups/").get_data(as_text=True)
    assert "front" in page and "host anti-affinity" in page
    with app.app_context():
        g = db.session.scalar(select(AffinityGroup).where(AffinityGroup.name == "front"))
        g_uuid = g.uuid
    # the VM page: Running, so the groups cannot change; Stopped, they can
    html = client.get(f"/vms/{vm_uuid}").get_data(as_text=True)
    assert "In no affinity group." in html and "Stop the VM to change its groups." in html
    with app.app_context():
        _run(vms.stop(_u(world, "alice"), vm_uuid))
    html = client.get(f"/vms/{vm_uuid}").get_data(as_text=True)
    assert f'value="{g_uuid}"' in html
    r = client.post(f"/affinitygroups/vm/{vm_uuid}", data={"group": g_uuid, "csrf_token": token})
    assert r.status_code == 303
    html = client.get(f"/vms/{vm_uuid}").get_data(as_text=True)
    assert "<strong>front</strong>" in html and "Affinity groups changed" in html
    # another account's group or VM: 404, nothing changed
    auth.logout()
    auth.login("bob", "Kx-user-secret-8")
    token = auth.csrf("/affinitygroups/")
    assert client.post(f"/affinitygroups/{g_uuid}/delete", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/affinitygroups/vm/{vm_uuid}", data={"csrf_token": token}).status_code == 404
    assert "front" not in client.get("/affinitygroups/").get_data(as_text=True)
    auth.logout()
    auth.login("alice", "Kx-user-secret-7")
    token = auth.csrf("/affinitygroups/")
    assert client.post(f"/affinitygroups/{g_uuid}/delete", data={"csrf_token": token}).status_code == 302
    html = client.get("/affinitygroups/").get_data(as_text=True)
    assert "Affinity group front deleted" in html and f'id="affinity-{g_uuid}"' not in html


def test_disk_offering_tags_and_edit_page(app, world, client):
    from tests.conftest import AuthActions
    auth = AuthActions(client)
    auth.login("root", "Kx-admin-secret-7")
    token = auth.csrf("/volumes/offerings")
    r = client.post("/volumes/offerings", data={"name": "fastdisk", "disksize": "5", "storagetype": "shared",
                                                "tags": "fast, ssd", "csrf_token": token})
    assert r.status_code == 302, r.data
    with app.app_context():
        from app.models import DiskOffering
        o = db.session.scalar(select(DiskOffering).where(DiskOffering.name == "fastdisk"))
        assert o.tags == "fast,ssd"
        uuid = o.uuid
    html = client.get("/volumes/offerings").get_data(as_text=True)
    assert "fast,ssd" in html and f"/volumes/offerings/{uuid}/edit?" in html
    assert 'value="fast,ssd"' in client.get(f"/volumes/offerings/{uuid}/edit?tags=fast,ssd").get_data(as_text=True)
    r = client.post(f"/volumes/offerings/{uuid}/edit", data={"name": "fast2", "displaytext": "quick", "tags": "",
                                                            "sortkey": "3", "csrf_token": token})
    assert r.status_code == 302, r.data
    with app.app_context():
        o = db.session.scalar(select(DiskOffering).where(DiskOffering.uuid == uuid))
        assert (o.name, o.display_text, o.tags, o.sort_key) == ("fast2", "quick", None, 3)
    r = client.post(f"/volumes/offerings/{uuid}/edit", data={"name": "", "csrf_token": token})
    assert r.status_code == 422
    auth.logout()
    auth.login("alice", "Kx-user-secret-7")
    assert client.get(f"/volumes/offerings/{uuid}/edit").status_code == 403


def test_update_vm_affinity_group_with_an_empty_list_clears_it_through_the_api(app, client, world):
    """`affinitygroupids=` (empty) reaches the command as an empty list and takes the VM out
    of its groups, as CloudStack's ParamProcessWorker makes an empty List of it; with neither
    parameter given it is 431. Other commands still ignore an empty parameter."""
    from tests.integration.test_quotas import api
    with app.app_context():
        w = world
        g = _group(w, "alice", "pack", "host affinity")
        vm, _ = _deploy(w, "alice", "one", affinity_group_uuids=[g.uuid])
        _run(vms.stop(_u(w, "alice"), vm.uuid))
        vm_uuid, g_uuid = vm.uuid, g.uuid
    status, body = api(app, client, "alice", command="updateVMAffinityGroup", id=vm_uuid)
    assert status == 431 and "must be given" in body["errortext"]
    for param in ("affinitygroupids", "affinitygroupnames"):
        with app.app_context():
            if not db.session.scalar(select(func.count()).select_from(AffinityGroupVM)):  # back in the group
                affinity.add_vm(db.session.scalar(select(VirtualMachine).where(VirtualMachine.uuid == vm_uuid)),
                                [db.session.scalar(select(AffinityGroup).where(AffinityGroup.uuid == g_uuid))])
                db.session.commit()
        status, body = api(app, client, "alice", command="updateVMAffinityGroup", id=vm_uuid, **{param: ""})
        assert status == 200, body
        status, result = api(app, client, "alice", command="queryAsyncJobResult", jobid=body["jobid"])
        assert result["jobstatus"] == 1, result
        assert result["jobresult"]["virtualmachine"].get("affinitygroup", []) == []
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(AffinityGroupVM)) == 0
    # An empty list parameter of another command is still as if not given.
    status, body = api(app, client, "alice", command="listVirtualMachines", ids="")
    assert status == 200 and body["count"] == 1, body
