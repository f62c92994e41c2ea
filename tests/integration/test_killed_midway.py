"""Work a killed process leaves half done, and capacity counted once.

Each test runs the step in a child process that SIGKILLs itself at a named point
(tests/helpers/killed_step.py), then runs what a restart runs (the reaper, the
monitor's start-up reconciliation and a sweep) and compares what was counted before
and after: VMs, volumes, IPs, pending jobs, host and pool capacity, account usage.
"""
import signal
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.jobs import service as jobs
from app.models import (AsyncJob, DownloadState, Event, Host, IpAddress, JobStatus, ServiceOffering, StoragePool,
                        Template, TemplateStoreRef, VirtualMachine, VMState, Volume, new_uuid, utcnow)
from app.models.simulator import SimHost, SimVM
from app.monitor import vms as monitor_vms
from app.monitor.hosts import ping_hosts
from app.services import accounts, capacity, quotas, settings, templates, vms, volumes
from app.services import simulator as sim
from tests.helpers.killed_step import run_killed
from tests.helpers.sim_zone import power_cut, simulator_zone

pytestmark = pytest.mark.db
GIB = 1 << 30


@pytest.fixture
def world(app, tmp_path):
    with app.app_context():
        admin = accounts.create_user("root", "Kx-admin-secret-7", role="admin", account="admin")
        alice = accounts.create_user("alice", "Kx-user-secret-7")
        w = simulator_zone(admin, tmp_path, name="kz", guest_cidr="10.3.0.0/24",
                           host_urls=[f"simulator://kh{i}?cpus=8&memory=16384" for i in (1, 2)])
        z, t, so, hs = w.zone, w.template, w.offering, w.hosts
        w = dict(zone=z.uuid, t=t.uuid, so=so.uuid, alice=alice.uuid, admin=admin.uuid, hosts=[h.uuid for h in hs])
        # A first VM caches the template on the pool, so later deploys only add their root volumes.
        _deploy(w, "warm")
        return w


def _alice(w):
    return accounts.user_by_uuid(w["alice"])


def _deploy(w, name):
    vm, job = vms.deploy(_alice(w), zone_uuid=w["zone"], service_offering_uuid=w["so"], template_uuid=w["t"],
                         name=name)
    db.session.refresh(job)
    assert job.status == JobStatus.SUCCEEDED, job.result
    return db.session.get(VirtualMachine, vm.id)


def _deploy_args(w, name):
    return {"user": w["alice"], "zone": w["zone"], "so": w["so"], "t": w["t"], "name": name}


def _restart(now=None):
    """What a restart runs: the reaper (its on_reap hooks), the monitor's start-up
    reconciliation of records (twice, job.heartbeat.timeout apart: a lock or an upload
    must be seen stuck twice) and one sweep of the hosts. The capacity repair is NOT run:
    the records must be right without it."""
    now = now or utcnow() + timedelta(hours=2)
    db.session.commit()
    jobs.reap(now=now)
    later = now + timedelta(seconds=max(settings.get("job.heartbeat.timeout"), settings.get("upload.stall.timeout")))
    for t in (now, later):
        vms.recover_orphans(now=t)
        templates.recover_uploads(now=t)
    result = ping_hosts(with_vms=True)
    monitor_vms.apply_answers(result.vm_answers, result.seen_at)
    db.session.expire_all()


def _counts(account_uuid):
    user = accounts.user_by_uuid(account_uuid)
    q = lambda *w: db.session.scalar(select(func.count()).select_from(w[0]).where(*w[1:]))  # noqa: E731
    return {
        "vms": q(VirtualMachine, VirtualMachine.removed.is_(None)),
        "volumes": q(Volume, Volume.removed.is_(None)),
        "ips": q(IpAddress),
        "pending jobs": q(AsyncJob, AsyncJob.status == JobStatus.PENDING),
        "usage": quotas.usage(user.account_id),
        "host memory": sum(h.memory_allocated for h in db.session.scalars(select(Host))),
        "host cpu": sum(h.cpu_allocated for h in db.session.scalars(select(Host))),
        "pool allocated": sum(p.allocated_bytes for p in db.session.scalars(select(StoragePool))),
    }


def _assert_consistent(w, template_bytes):
    """Every record true to itself and to the Simulator."""
    db.session.expire_all()
    live = list(db.session.scalars(select(VirtualMachine).where(VirtualMachine.removed.is_(None))))
    assert db.session.scalar(select(func.count()).select_from(AsyncJob)
                             .where(AsyncJob.status == JobStatus.PENDING)) == 0
    for vm in live:
        assert vm.active_job_id is None, f"{vm.name} left locked"
        assert vm.state in (VMState.RUNNING, VMState.STOPPED), f"{vm.name} left {vm.state}"
        assert vm.capacity_reserved == (vm.state == VMState.RUNNING), vm.name
    for h in db.session.scalars(select(Host)):
        mine = [vm for vm in live if vm.capacity_reserved and vm.host_id == h.id]
        assert (h.cpu_allocated, h.memory_allocated) == (sum(v.cpu_number * v.cpu_speed for v in mine),
                                                         sum(v.memory for v in mine) << 20), h.name
        sim_host = db.session.scalar(select(SimHost).where(SimHost.name == h.name))
        running = set(db.session.scalars(select(SimVM.name).where(SimVM.host_id == sim_host.id,
                                                                  SimVM.state.in_(("running", "starting")))))
        assert running == {v.instance_name for v in mine}, h.name
    for p in db.session.scalars(select(StoragePool)):
        held = db.session.scalar(select(func.coalesce(func.sum(Volume.size), 0)).where(
            Volume.pool_id == p.id, Volume.removed.is_(None)))
        assert p.allocated_bytes == template_bytes + held, p.name
    counted = [vm for vm in live if vm.quota_counted]
    usage = quotas.usage(_alice(w).account_id)
    assert usage["user_vm"] == len(counted) and usage["memory"] == sum(v.memory for v in counted)
    assert capacity.check_hosts() == 0  # nothing left to repair


def _template_bytes():
    """What the template copies hold on the pools (the pools' allocation beyond the volumes)."""
    total = sum(p.allocated_bytes for p in db.session.scalars(select(StoragePool)))
    return total - db.session.scalar(select(func.coalesce(func.sum(Volume.size), 0)).where(
        Volume.pool_id.is_not(None), Volume.removed.is_(None)))


# The worker's steps of a deploy (the job runs in the killed process).
WORKER_STEPS = [
    ("app.services.planner:_attempt", "after"),  # host chosen and reserved (committed), nothing more
    ("app.services.template_cache:create_root_volume", "before"),  # capacity and pool held, no disk
    ("app.hypervisors.simulator:SimulatorDriver.start_vm", "after"),  # running on the host, record Starting
    ("app.services.vms:_result", "before"),  # recorded Running, the job not finished
]


def test_four_deploys_killed_in_the_worker_leave_capacity_counted_once(app, world):
    with app.app_context():
        template_bytes = _template_bytes()
        before = _counts(world["alice"])
        for i, (step, when) in enumerate(WORKER_STEPS):
            assert run_killed(app, "deploy", _deploy_args(world, f"k{i}"), kill_at=step, when=when) == -signal.SIGKILL
        _restart()
        _assert_consistent(world, template_bytes)
        after = _counts(world["alice"])
        live = {vm.name: vm.state for vm in db.session.scalars(select(VirtualMachine).where(
            VirtualMachine.removed.is_(None)))}
        # The two that reached the host run; the two that did not are Stopped (startable again).
        assert live == {"warm": "Running", "k0": "Stopped", "k1": "Stopped", "k2": "Running", "k3": "Running"}
        assert after["vms"] == before["vms"] + 4 and after["usage"]["user_vm"] == before["usage"]["user_vm"] + 4
        assert after["host memory"] == before["host memory"] + 2 * (1024 << 20)
        # The Stopped ones start and stop normally: nothing of theirs is stuck.
        for name in ("k0", "k1"):
            vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.name == name))
            job = vms.start(_alice(world), vm.uuid)
            db.session.refresh(job)
            assert job.status == JobStatus.SUCCEEDED, job.result
        _assert_consistent(world, template_bytes)


# The web request's steps of a deploy (before any job runs). The VM is made locked by a token
# for its job: from the first step on, it holds a token that no job took.
WEB_STEPS = [
    ("app.services.network.vm_nics:create_nic", "before"),  # VM and root volume rows, no NIC, no job
    ("app.services.network.vm_nics:create_nic", "after"),  # a NIC with its IP, no job
    ("app.jobs.service:submit", "before"),
    ("app.jobs.tasks:run_job", "before"),  # the job row committed (the lock names it), never queued
]


@pytest.mark.parametrize("step,when", WEB_STEPS, ids=[f"{s.rsplit(':')[-1]}-{w}" for s, w in WEB_STEPS])
def test_a_deploy_request_killed_before_its_job_gives_everything_back(app, world, step, when):
    with app.app_context():
        template_bytes = _template_bytes()
        before = _counts(world["alice"])
        assert run_killed(app, "deploy", _deploy_args(world, "w1"), kill_at=step, when=when) == -signal.SIGKILL
        vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.name == "w1"))
        assert vm.state == VMState.STARTING  # what the dead request left
        _restart()
        vm = db.session.get(VirtualMachine, vm.id)
        assert vm.state == VMState.ERROR and vm.removed is not None
        assert _counts(world["alice"]) == before
        _assert_consistent(world, template_bytes)
        assert db.session.scalar(select(Event.id).where(Event.type == "VM.CREATE.FAILED",
                                                        Event.resource_id == vm.uuid))
        # The name is free again and a deploy works.
        _deploy(world, "w1")


def test_a_lock_is_not_freed_while_its_request_may_still_be_alive(app, world):
    """A lock token no job took is freed only when seen twice, job.heartbeat.timeout apart."""
    with app.app_context():
        vm = _deploy(world, "l1")
        token = vms._lock(vm, "stop")
        now = utcnow()
        vms.recover_orphans(now=now)
        vms.recover_orphans(now=now + timedelta(seconds=settings.get("job.heartbeat.timeout") - 1))
        db.session.expire_all()
        assert db.session.get(VirtualMachine, vm.id).active_job_id == token
        vms.recover_orphans(now=now + timedelta(seconds=settings.get("job.heartbeat.timeout")))
        db.session.expire_all()
        assert db.session.get(VirtualMachine, vm.id).active_job_id is None


def test_a_lock_naming_a_finished_job_is_freed(app, world):
    """Killed between the reaper's verdict and its clean-up: the job is Failed, the VM still names it."""
    with app.app_context():
        vm = _deploy(world, "f1")
        job = AsyncJob(cmd="stopVirtualMachine", instance_type="VirtualMachine", instance_id=vm.uuid,
                       status=JobStatus.FAILED, params="{}")
        db.session.add(job)
        db.session.flush()
        vm.active_job_id = job.id
        db.session.commit()
        assert vms.recover_orphans() == 1
        db.session.expire_all()
        vm = db.session.get(VirtualMachine, vm.id)
        assert vm.active_job_id is None and vm.state == VMState.RUNNING


@pytest.mark.parametrize("fails", ["submit", "queue"])
def test_a_deploy_whose_job_cannot_be_submitted_gives_everything_back(app, world, monkeypatch, fails):
    """submit: the job row is never made; queue: the row is made but the queue refuses the task."""
    import app.jobs.service as job_service
    import app.jobs.tasks as job_tasks

    def refuse(*a, **kw):
        raise ConnectionError("the queue is down")
    with app.app_context():
        before = _counts(world["alice"])
        monkeypatch.setattr(job_service if fails == "submit" else job_tasks,
                            "submit" if fails == "submit" else "run_job", refuse)
        with pytest.raises(ConnectionError):
            vms.deploy(_alice(world), zone_uuid=world["zone"], service_offering_uuid=world["so"],
                       template_uuid=world["t"], name="q1")
        monkeypatch.undo()
        db.session.expire_all()
        vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.name == "q1"))
        assert vm.state == VMState.ERROR and vm.removed is not None and vm.active_job_id is None
        assert _counts(world["alice"]) == before
        _deploy(world, "q1")  # the name is free again


def test_the_reaper_and_the_monitor_give_a_vm_back_once(app, world):
    """The reaper recovers a VM (its host no longer has it) while the monitor holds an older
    copy of the VM's row: the host's capacity is given back once, not twice."""
    with app.app_context():
        admin = accounts.user_by_uuid(world["admin"])
        host = db.session.scalar(select(Host).where(Host.uuid == world["hosts"][0]))
        pair = []
        for name in ("d1", "d2"):
            vm, job = vms.deploy(admin, zone_uuid=world["zone"], service_offering_uuid=world["so"],
                                 template_uuid=world["t"], name=name, host_uuid=host.uuid)
            pair.append(vm.id)
        db.session.expire_all()
        base = db.session.get(Host, host.id).memory_allocated
        d1 = db.session.get(VirtualMachine, pair[0])
        # d1's domain disappears from its host (killed by hand on the host).
        db.session.execute(SimVM.__table__.delete().where(SimVM.name == d1.instance_name))
        db.session.commit()
        stale = db.session.get(VirtualMachine, pair[0])  # what the monitor loaded for its sweep
        assert stale.capacity_reserved
        import threading

        def reaper():  # another process: its own session
            with app.app_context():
                monitor_vms.reconcile_vm(db.session.get(VirtualMachine, pair[0]))
        t = threading.Thread(target=reaper)
        t.start()
        t.join()
        assert monitor_vms.apply(stale, db.session.get(Host, host.id), None)  # the monitor's late verdict
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(Host, host.id).memory_allocated == base - (1024 << 20)
        assert capacity.check_hosts() == 0


def test_the_capacity_check_repairs_drift_with_an_event(app, world):
    with app.app_context():
        host = db.session.scalar(select(Host).where(Host.memory_allocated > 0))
        right = (host.cpu_allocated, host.memory_allocated)
        host.memory_allocated += 4 * GIB  # drift from a bug, or a row edited by hand
        host.cpu_allocated = 0
        db.session.commit()
        assert capacity.check_hosts() == 1
        db.session.expire_all()
        host = db.session.get(Host, host.id)
        assert (host.cpu_allocated, host.memory_allocated) == right
        ev = db.session.scalar(select(Event).where(Event.type == "CAPACITY.REPAIR", Event.resource_id == host.uuid))
        assert ev is not None and ev.level == "WARN"
        assert capacity.check_hosts() == 0


def test_split_brain_keeps_the_record_and_capacity_with_the_recorded_host(app, world):
    """Host A goes Down (its VM Stopped, capacity back); the VM starts on B; A comes back with
    the VM still running there. Both report it Running: the record and the capacity stay on B,
    A holds nothing for it, and an event says so (once). (This is apply_answers alone: the
    monitor's sweep first destroys such a copy on a host back from Down, tests/integration/test_ha.py.)"""
    with app.app_context():
        admin = accounts.user_by_uuid(world["admin"])
        a, b = (db.session.scalar(select(Host).where(Host.uuid == u)) for u in world["hosts"])
        vms.deploy(admin, zone_uuid=world["zone"], service_offering_uuid=world["so"], template_uuid=world["t"],
                   name="sb", host_uuid=a.uuid)
        vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.name == "sb"))
        assert vm.host_id == a.id and vm.state == VMState.RUNNING
        power_cut(a.name)  # B finds A's storage heartbeat stopped: A is judged Down
        t0 = utcnow()
        ping_hosts(now=t0)
        ping_hosts(now=t0 + timedelta(seconds=settings.get("ping.interval") * settings.get("ping.timeout") + 1))
        db.session.expire_all()
        assert db.session.get(Host, a.id).state == "Down"
        vm = db.session.get(VirtualMachine, vm.id)
        assert vm.state == VMState.STOPPED
        job = vms.start(admin, vm.uuid)
        db.session.refresh(job)
        assert job.status == JobStatus.SUCCEEDED, job.result
        db.session.expire_all()
        assert db.session.get(VirtualMachine, vm.id).host_id == b.id
        sim.set_host_up(a.name, True)  # A is back, the old copy still running on it
        for _ in range(2):
            result = ping_hosts(with_vms=True)
            monitor_vms.apply_answers(result.vm_answers, result.seen_at)
            db.session.expire_all()
            vm = db.session.get(VirtualMachine, vm.id)
            assert db.session.get(Host, a.id).state == "Up"
            assert vm.state == VMState.RUNNING and vm.host_id == b.id and vm.capacity_reserved
            # Each host holds exactly its recorded VMs (the warm-up VM may be on either): sb on B only.
            for h in (a, b):
                mine = list(db.session.scalars(select(VirtualMachine.memory).where(
                    VirtualMachine.host_id == h.id, VirtualMachine.capacity_reserved.is_(True))))
                assert db.session.get(Host, h.id).memory_allocated == sum(mine) << 20, h.name
        evs = list(db.session.scalars(select(Event).where(Event.type == "VM.STATE", Event.resource_id == vm.uuid,
                                                          Event.level == "ERROR")))
        assert len(evs) == 1 and a.name in evs[0].description and b.name in evs[0].description
        assert capacity.check_hosts() == 0


def test_an_attach_killed_while_the_disk_is_made_leaks_no_pool_capacity(app, world):
    with app.app_context():
        template_bytes = _template_bytes()
        vm = _deploy(world, "av")
        offering = volumes.create_disk_offering(accounts.user_by_uuid(world["admin"]), name="d4", disk_size=4)
        v = volumes.create_volume(_alice(world), name="data", zone_uuid=world["zone"],
                                  disk_offering_uuid=offering.uuid)
        pool_before = _counts(world["alice"])["pool allocated"]
        assert run_killed(app, "attach", {"user": world["alice"], "volume": v.uuid, "vm": vm.uuid},
                          kill_at="app.hypervisors.simulator:SimulatorDriver.create_volume",
                          when="before") == -signal.SIGKILL
        _restart()
        _assert_consistent(world, template_bytes)  # the 4 GiB are the volume's, not lost
        v = db.session.get(Volume, v.id)
        assert v.vm_id is None
        # Deleting the volume gives the 4 GiB back; or an attach makes the disk and uses them.
        volumes.delete_volume(_alice(world), v.uuid)
        assert _counts(world["alice"])["pool allocated"] == pool_before
        _assert_consistent(world, template_bytes)


def test_an_attach_after_a_killed_one_makes_the_disk(app, world):
    with app.app_context():
        vm = _deploy(world, "av2")
        offering = volumes.create_disk_offering(accounts.user_by_uuid(world["admin"]), name="d4", disk_size=4)
        v = volumes.create_volume(_alice(world), name="data", zone_uuid=world["zone"],
                                  disk_offering_uuid=offering.uuid)
        pool_before = _counts(world["alice"])["pool allocated"]
        run_killed(app, "attach", {"user": world["alice"], "volume": v.uuid, "vm": vm.uuid},
                   kill_at="app.hypervisors.simulator:SimulatorDriver.create_volume", when="before")
        _restart()
        v = volumes.attach_volume(_alice(world), v.uuid, vm.uuid)
        assert v.vm_id == vm.id and v.state == "Ready" and v.path
        assert _counts(world["alice"])["pool allocated"] == pool_before + 4 * GIB


def test_an_upload_cut_off_by_a_killed_process_can_be_uploaded_again_or_deleted(app, world, tmp_path):
    with app.app_context():
        from flask import current_app
        with current_app.test_request_context():
            params = templates.upload_params(accounts.user_by_uuid(world["admin"]), name="up", format="RAW",
                                             hypervisor="Simulator", zone_uuid=world["zone"])
        args = {"metadata": params["metadata"], "expires": params["expires"], "signature": params["signature"],
                "size": 8 << 20}
        assert run_killed(app, "upload", args, kill_at="app.services.templates:finish",
                          when="before") == -signal.SIGKILL
        t = db.session.scalar(select(Template).where(Template.uuid == params["id"]))
        ref = templates.refs_of(t)[0]
        part = tmp_path / "sec" / (templates.relative_path(t) + ".part")
        assert ref.state == DownloadState.DOWNLOADING and part.exists()  # "n% Downloaded", forever
        _restart()
        ref = db.session.get(TemplateStoreRef, ref.id)
        assert ref.state == DownloadState.ERROR and "upload it again" in ref.error
        assert not part.exists()
        assert db.session.scalar(select(Event.id).where(Event.type == "TEMPLATE.UPLOAD.FAILED",
                                                        Event.resource_id == t.uuid))
        # Uploaded again, whole this time.
        t2, ref2 = templates.check_upload(params["metadata"], params["expires"], params["signature"])
        templates.receive_upload(t2, ref2, iter([b"\0" * (1 << 20)]), 1 << 20)
        assert db.session.get(TemplateStoreRef, ref.id).state == DownloadState.DOWNLOADED


def test_an_upload_still_receiving_is_left_alone(app, world):
    with app.app_context():
        from flask import current_app
        with current_app.test_request_context():
            params = templates.upload_params(accounts.user_by_uuid(world["admin"]), name="up2", format="RAW",
                                             hypervisor="Simulator", zone_uuid=world["zone"])
        t = db.session.scalar(select(Template).where(Template.uuid == params["id"]))
        ref = templates.refs_of(t)[0]
        ref.state, ref.downloaded_bytes = DownloadState.DOWNLOADING, 1 << 20
        db.session.commit()
        now = utcnow()
        templates.recover_uploads(now=now)
        ref.downloaded_bytes = 2 << 20  # more arrived meanwhile
        db.session.commit()
        templates.recover_uploads(now=now + timedelta(seconds=settings.get("upload.stall.timeout")))
        assert db.session.get(TemplateStoreRef, ref.id).state == DownloadState.DOWNLOADING


@pytest.mark.parametrize("step,when", [("app.services.planner:plan_and_reserve", "after"),
                                       ("app.hypervisors.simulator:SimulatorDriver.migrate_vm", "before")],
                         ids=["reserved", "migrating"])
def test_a_migration_killed_mid_way_leaves_the_vm_where_it_runs_and_its_destination_repaired(
        app, world, step, when):
    """The destination's reservation is the one thing no VM row holds: the capacity check
    leaves it alone while the VM is Migrating (from before the reservation), and repairs it
    (with an event) once the reaper has put the VM back where the hypervisor says it runs."""
    with app.app_context():
        template_bytes = _template_bytes()
        vm = _deploy(world, "mg")
        source = vm.host_id
        assert run_killed(app, "migrate", {"user": world["admin"], "vm": vm.uuid},
                          kill_at=step, when=when) == -signal.SIGKILL
        db.session.expire_all()
        assert db.session.get(VirtualMachine, vm.id).state == VMState.MIGRATING
        assert capacity.check_hosts() == 0  # a migration in flight: nothing touched
        before = {h.id: h.memory_allocated for h in db.session.scalars(select(Host))}
        assert sum(before.values()) == 3 * (1024 << 20)  # warm-up VM, mg and mg's destination
        _restart()
        vm = db.session.get(VirtualMachine, vm.id)
        assert vm.state == VMState.RUNNING and vm.host_id == source and vm.active_job_id is None
        dest = next(h for h in before if h != source)
        assert capacity.check_hosts() == 1
        assert db.session.scalar(select(Event.id).where(Event.type == "CAPACITY.REPAIR",
                                                        Event.resource_id == db.session.get(Host, dest).uuid))
        _assert_consistent(world, template_bytes)


# Killed just after the quota is taken, before the rows that count it are written: the
# take and the rows commit together (or neither does), so nothing is counted for nothing.
def test_a_deploy_killed_after_taking_its_quota_counts_nothing(app, world):
    with app.app_context():
        template_bytes = _template_bytes()
        before = _counts(world["alice"])
        assert run_killed(app, "deploy", _deploy_args(world, "qk"), kill_at="app.services.quotas:take",
                          when="after") == -signal.SIGKILL
        assert db.session.scalar(select(VirtualMachine.id).where(VirtualMachine.name == "qk")) is None
        assert _counts(world["alice"]) == before  # before any restart: nothing to repair
        _restart()
        assert _counts(world["alice"]) == before
        _assert_consistent(world, template_bytes)
        assert quotas.counted_from_rows([_alice(world).account_id])[_alice(world).account_id] == before["usage"]
        _deploy(world, "qk")


def test_a_volume_create_killed_after_taking_its_quota_counts_nothing(app, world):
    with app.app_context():
        template_bytes = _template_bytes()
        offering = volumes.create_disk_offering(accounts.user_by_uuid(world["admin"]), name="d5", disk_size=5)
        before = _counts(world["alice"])
        assert run_killed(app, "create_volume", {"user": world["alice"], "name": "qv", "zone": world["zone"],
                                                 "offering": offering.uuid},
                          kill_at="app.services.quotas:take", when="after") == -signal.SIGKILL
        assert db.session.scalar(select(Volume.id).where(Volume.name == "qv")) is None
        assert _counts(world["alice"]) == before
        _restart()
        assert _counts(world["alice"]) == before
        _assert_consistent(world, template_bytes)
        aid = _alice(world).account_id
        assert quotas.counted_from_rows([aid])[aid] == before["usage"]
        volumes.create_volume(_alice(world), name="qv", zone_uuid=world["zone"], disk_offering_uuid=offering.uuid)
        assert _counts(world["alice"])["usage"]["primary_storage"] == before["usage"]["primary_storage"] + 5


def test_a_scale_killed_after_taking_its_quota_counts_the_old_offering(app, world):
    with app.app_context():
        template_bytes = _template_bytes()
        vm = _deploy(world, "qs")
        job = vms.stop(_alice(world), vm.uuid)
        db.session.refresh(job)
        assert job.status == JobStatus.SUCCEEDED, job.result
        big = ServiceOffering(uuid=new_uuid(), name="big", cpu_number=4, cpu_speed=1000, memory=4096)
        db.session.add(big)
        db.session.commit()
        before = _counts(world["alice"])
        assert run_killed(app, "scale", {"user": world["alice"], "vm": vm.uuid, "offering": big.uuid},
                          kill_at="app.services.quotas:take", when="after") == -signal.SIGKILL
        vm = db.session.get(VirtualMachine, vm.id)
        assert (vm.cpu_number, vm.memory) == (1, 1024)
        assert _counts(world["alice"])["usage"] == before["usage"]
        _restart()  # frees the lock the dead request held
        assert _counts(world["alice"]) == before
        _assert_consistent(world, template_bytes)
        aid = _alice(world).account_id
        assert quotas.counted_from_rows([aid])[aid] == before["usage"]
        vm = vms.change_offering(_alice(world), vm.uuid, big.uuid)  # and it scales now
        assert _counts(world["alice"])["usage"]["memory"] == before["usage"]["memory"] + 3072
