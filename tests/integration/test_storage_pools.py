"""Primary storage as CloudStack's admins change it, on a Simulator zone: updateStoragePool (name,
tags, capacity bytes and IOPS, enabled) with its refusals changing nothing, and maintenance
(enableStorageMaintenance stops the running VMs using the pool and ends in Maintenance; no VM
starts or lands on it meanwhile; cancelStorageMaintenance brings it Up and starts them again; a
worker killed mid-maintenance is reaped to ErrorInMaintenance, from where it resumes)."""
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AsyncJob, StoragePool, StoragePoolWork, VirtualMachine, utcnow
from app.services import accounts, storage, storage_maintenance, vms
from app.services.errors import InvalidParameter, NotFound, ResourceUnavailable
from tests.helpers.sim_zone import simulator_zone
from tests.helpers.users import existing_user

# On every database (@pytest.mark.db): updates, maintenance and its reaper, parallel requests;
# the page and URL validation on SQLite.


@pytest.fixture
def world(app, tmp_path):
    with app.app_context():
        admin = existing_user("root", "rootpass1", role="admin", account="admin")
        alice = existing_user("alice", "alicepass1")
        w = simulator_zone(admin, tmp_path, name="sz", guest_cidr="10.4.0.0/24",
                           host_urls=[f"simulator://s{i}?cpus=4&memory=8192" for i in (1, 2)])
        pool = db.session.scalar(select(StoragePool).where(StoragePool.zone_id == w.zone.id))
        return dict(zone=w.zone.uuid, t=w.template.uuid, so=w.offering.uuid, alice=alice.uuid, admin=admin.uuid,
                    pool=pool.uuid)


def _deploy(w, name):
    alice = accounts.user_by_uuid(w["alice"])
    vm, job = vms.deploy(alice, zone_uuid=w["zone"], service_offering_uuid=w["so"], template_uuid=w["t"], name=name)
    db.session.refresh(job)
    assert job.status == 1, job.result
    return db.session.get(VirtualMachine, vm.id)


def _deploy_fails(w, name):
    """No host has a usable shared pool: the deploy's job fails with CloudStack's 533."""
    alice = accounts.user_by_uuid(w["alice"])
    vm, job = vms.deploy(alice, zone_uuid=w["zone"], service_offering_uuid=w["so"], template_uuid=w["t"], name=name)
    db.session.refresh(job)
    assert job.status == 2 and "shared primary storage" in job.result, job.result
    assert json.loads(job.result)["errorcode"] == 533


def _pool(w) -> StoragePool:
    db.session.expire_all()
    return storage.get_storage_pool(w["pool"])


def _snapshot(w) -> tuple:
    p = _pool(w)
    return (p.name, p.tags, p.capacity_bytes, p.capacity_iops, p.state)


@pytest.mark.db
def test_update_storage_pool_and_its_refusals(app, world):
    with app.app_context():
        admin = accounts.user_by_uuid(world["admin"])
        p = storage.update_storage_pool(admin, world["pool"], name="fast", tags=["ssd", " fast", "ssd"],
                                        capacity_iops=5000, capacity_bytes=200 << 30)
        assert (p.name, p.tags, p.capacity_iops, p.capacity_bytes) == ("fast", "ssd,fast", 5000, 200 << 30)
        before = _snapshot(world)
        for kw, field in [(dict(enabled=True), "enabled"),            # Up already: CloudStack refuses
                          (dict(capacity_bytes=0), "capacitybytes"),
                          (dict(capacity_iops=-1), "capacityiops"),
                          (dict(name="x" * 300), "name")]:
            with pytest.raises(InvalidParameter) as e:
                storage.update_storage_pool(admin, world["pool"], tags=["changed"], **kw)
            assert e.value.field == field, kw
            assert _snapshot(world) == before  # nothing half-changed
        with pytest.raises(NotFound):
            storage.update_storage_pool(admin, "00000000-0000-0000-0000-00000000dead", name="y")
        # Below what volumes hold: refused, in the same UPDATE that concurrent reservations race.
        _deploy(world, "v1")
        allocated = _pool(world).allocated_bytes
        with pytest.raises(InvalidParameter, match="allocated"):
            storage.update_storage_pool(admin, world["pool"], capacity_bytes=allocated - 1)
        assert _snapshot(world) == before
        # Disabled: no new VM lands on it (its only pool); enabled again: deploys work.
        assert storage.update_storage_pool(admin, world["pool"], enabled=False).state == "Disabled"
        alice = accounts.user_by_uuid(world["alice"])
        _deploy_fails(world, "v2")
        with pytest.raises(InvalidParameter, match="cannot be disabled"):
            storage.update_storage_pool(admin, world["pool"], enabled=False)
        assert storage.update_storage_pool(admin, world["pool"], enabled=True).state == "Up"
        assert storage.update_storage_pool(admin, world["pool"], tags=[]).tags is None
        _deploy(world, "v3")


@pytest.mark.db
def test_maintenance_stops_the_vms_and_cancel_starts_them_again(app, world):
    with app.app_context():
        admin = accounts.user_by_uuid(world["admin"])
        alice = accounts.user_by_uuid(world["alice"])
        running = [_deploy(world, f"m{i}") for i in range(2)]
        stopped = _deploy(world, "m-off")
        db.session.refresh(vms.stop(alice, stopped.uuid))
        job = storage_maintenance.enable_maintenance(admin, world["pool"])
        db.session.refresh(job)
        assert job.status == 1, job.result
        assert json.loads(job.result)["storagepool"]["state"] == "Maintenance"
        db.session.expire_all()
        assert [db.session.get(VirtualMachine, v.id).state for v in running] == ["Stopped", "Stopped"]
        assert all(db.session.get(VirtualMachine, v.id).host_id is None for v in running)
        assert db.session.scalar(select(func.count()).select_from(StoragePoolWork)) == 2  # not the one already off
        # In maintenance: a start of a VM on it, a new deploy, a second maintenance are refused.
        with pytest.raises(ResourceUnavailable, match="Maintenance"):
            vms.start(alice, running[0].uuid)
        _deploy_fails(world, "m3")
        with pytest.raises(InvalidParameter, match="not ready for migration"):
            storage_maintenance.enable_maintenance(admin, world["pool"])
        job = storage_maintenance.cancel_maintenance(admin, world["pool"])
        db.session.refresh(job)
        assert job.status == 1, job.result
        db.session.expire_all()
        assert _pool(world).state == "Up"
        assert [db.session.get(VirtualMachine, v.id).state for v in running] == ["Running", "Running"]
        assert db.session.get(VirtualMachine, stopped.id).state == "Stopped"  # it was off before: stays off
        assert db.session.scalar(select(func.count()).select_from(StoragePoolWork)) == 0
        with pytest.raises(InvalidParameter, match="not ready to complete"):
            storage_maintenance.cancel_maintenance(admin, world["pool"])


@pytest.mark.db
def test_a_maintenance_whose_worker_died_is_reaped_and_resumes(app, world):
    from app.jobs import service as jobs
    with app.app_context():
        admin = accounts.user_by_uuid(world["admin"])
        vm = _deploy(world, "k1")
        pool = _pool(world)
        stale = utcnow() - timedelta(hours=1)
        # The worker died right after the pool went PrepareForMaintenance and its work was recorded.
        pool.state = "PrepareForMaintenance"
        job = AsyncJob(cmd="enableStorageMaintenance", instance_type="StoragePool", instance_id=pool.uuid,
                       params=json.dumps({"handler": "storage.maintenance", "params": {"pool": pool.uuid}}),
                       started=stale, heartbeat=stale)
        db.session.add_all([job, StoragePoolWork(pool_id=pool.id, vm_id=vm.id)])
        db.session.commit()
        assert jobs.reap() == 1
        assert _pool(world).state == "ErrorInMaintenance"
        assert db.session.get(VirtualMachine, vm.id).state == "Running"
        job = storage_maintenance.enable_maintenance(admin, world["pool"])  # resumes from the rows
        db.session.refresh(job)
        assert job.status == 1, job.result
        db.session.expire_all()
        assert _pool(world).state == "Maintenance"
        assert db.session.get(VirtualMachine, vm.id).state == "Stopped"
        job = storage_maintenance.cancel_maintenance(admin, world["pool"])
        db.session.refresh(job)
        db.session.expire_all()
        assert job.status == 1 and db.session.get(VirtualMachine, vm.id).state == "Running"


def test_the_pool_page_changes_the_pool(app, client, users, auth, tmp_path):
    """The admin's pool page: disable/enable, maintenance and back (offered in the states CloudStack allows),
    storage tags and IOPS; a refusal is flashed and changes nothing; users never reach it."""
    with app.app_context():
        admin = accounts.get_user("admin")
        w = simulator_zone(admin, tmp_path, name="pz", guest_cidr="10.5.0.0/24", host_urls=["simulator://p1"])
        uuid = db.session.scalar(select(StoragePool.uuid).where(StoragePool.zone_id == w.zone.id))
    auth.login("admin")
    page = f"/admin/storage/primary/{uuid}"

    def post(action, **data):
        token = auth.csrf(page)
        return client.post(f"{page}/{action}", data={"csrf_token": token, **data}, follow_redirects=True)

    html = client.get(page).get_data(as_text=True)
    assert "Disable" in html and "Enable maintenance mode" in html and "Cancel maintenance mode" not in html
    html = post("disable").get_data(as_text=True)
    assert "is disabled" in html and "state-disabled" in html
    html = post("settings", tags="ssd, fast", capacityiops="abc").get_data(as_text=True)
    assert "IOPS is a whole number" in html
    html = post("settings", tags="ssd, fast", capacityiops="500").get_data(as_text=True)
    assert "ssd,fast" in html and "500" in html
    html = post("enable").get_data(as_text=True)
    assert "is enabled" in html
    html = post("maintain").get_data(as_text=True)  # jobs run at once in these tests
    assert "Cancel maintenance mode" in html and "state-maintenance" in html
    html = post("maintain").get_data(as_text=True)
    assert "not ready for migration" in html
    html = post("cancel-maintenance").get_data(as_text=True)
    assert "Enable maintenance mode" in html and "state-up" in html
    assert client.post(f"{page}/explode", data={"csrf_token": auth.csrf(page)}).status_code == 404
    auth.logout()
    auth.login("alice")
    assert client.post(f"{page}/disable", data={"csrf_token": auth.csrf()}).status_code in (302, 403, 404)
    with app.app_context():
        assert storage.get_storage_pool(uuid).state == "Up"


@pytest.mark.db
def test_a_maintenance_that_cannot_be_queued_leaves_the_pool_as_it_was(app, world, monkeypatch):
    def queue_down(*a, **kw):
        raise ConnectionError("the job queue does not answer")
    with app.app_context():
        admin = accounts.user_by_uuid(world["admin"])
        monkeypatch.setattr(storage_maintenance.jobs, "submit", queue_down)
        with pytest.raises(ConnectionError):
            storage_maintenance.enable_maintenance(admin, world["pool"])
        assert _pool(world).state == "Up"  # not left PrepareForMaintenance with no job to finish it


@pytest.mark.db
def test_parallel_maintenance_requests_have_one_winner(app, world):
    """Six admins put the same pool into maintenance at once: one job runs, the others get CloudStack's
    431 at once, and the pool ends in Maintenance with its VM stopped once."""
    import threading
    with app.app_context():
        vm = _deploy(world, "race1")
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6, timeout=60)

    def one():
        barrier.wait()
        with app.app_context():
            try:
                job = storage_maintenance.enable_maintenance(accounts.user_by_uuid(world["admin"]), world["pool"])
                out = f"job {job.status}"
            except InvalidParameter as e:
                out = f"{e.code}"
            finally:
                db.session.remove()
        with lock:
            results.append(out)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["431"] * 5 + ["job 1"], results
    with app.app_context():
        assert _pool(world).state == "Maintenance"
        assert db.session.get(VirtualMachine, vm.id).state == "Stopped"
        assert db.session.scalar(select(func.count()).select_from(StoragePoolWork)) == 1


@pytest.mark.db
def test_a_cancel_whose_worker_died_leaves_the_pool_up(app, world):
    from app.jobs import service as jobs
    with app.app_context():
        pool = _pool(world)
        stale = utcnow() - timedelta(hours=1)
        pool.state = "CancelMaintenance"
        db.session.add(AsyncJob(cmd="cancelStorageMaintenance", instance_type="StoragePool", instance_id=pool.uuid,
                                params=json.dumps({"handler": "storage.cancel_maintenance",
                                                   "params": {"pool": pool.uuid}}), started=stale, heartbeat=stale))
        db.session.commit()
        assert jobs.reap() == 1
        assert _pool(world).state == "Up"


def test_nfs_urls_with_dot_segments_are_refused(app):
    """The API's url: a path with . or .. is not an absolute export path (issue 18's audit)."""
    from app.services import storage
    with app.app_context():
        for url in ("nfs://filer/../export", "nfs://filer/export/./primary", "nfs://filer/export/.."):
            with pytest.raises(InvalidParameter, match="must be absolute"):
                storage.parse_url(url)
        assert storage.parse_url("nfs://filer/export/primary")[1:] == ("filer", "/export/primary")
