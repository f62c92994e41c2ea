"""The job runner itself: a worker that comes back after its job was reaped, the
transfer queue and its per-account limit."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.extensions import db
from app.jobs import service as jobs
from app.models import AsyncJob, JobStatus, utcnow
from tests.helpers.users import existing_user

pytestmark = pytest.mark.db

CALLS: dict[str, list] = {"reaped": [], "after": [], "handler_cleanup": [], "finally": []}


def _reap_from_outside(app, job_id: int) -> int:
    """What the reaper in another process does when this job's heartbeat went stale."""
    with app.app_context():  # its own session, as in another process
        with db.engine.begin() as conn:
            conn.execute(update(AsyncJob).where(AsyncJob.id == job_id)
                         .values(heartbeat=utcnow() - timedelta(hours=1)))
        return jobs.reap()


@jobs.handler("test.stalls_then_succeeds")
def _stalls_then_succeeds(job, params):
    from flask import current_app
    # The worker stalls (GC pause, stopped VM, network partition) long enough to be reaped...
    assert _reap_from_outside(current_app._get_current_object(), job.id) == 1
    CALLS["after"].append(job.id)
    return {"done": True}  # ...then comes back and finishes


@jobs.handler("test.stalls_then_reports_progress")
def _stalls_then_reports_progress(job, params):
    from flask import current_app
    try:
        assert _reap_from_outside(current_app._get_current_object(), job.id) == 1
        jobs.progress(job, 50, "half way")  # the first checkpoint after the reap stops the handler
        CALLS["after"].append(job.id)  # never reached
        return {"done": True}
    except Exception:  # noqa: BLE001 - a handler's own failure clean-up (as the download's)
        CALLS["handler_cleanup"].append(job.id)  # must not run: the reaper's clean-up did it already
        raise
    finally:
        CALLS["finally"].append(job.id)


@jobs.handler("test.leaves_a_write_uncommitted")
def _leaves_a_write_uncommitted(job, params):
    CALLS["after"].append(job.id)
    db.session.execute(update(AsyncJob).where(AsyncJob.id == job.id).values(progress_message="left over"))
    return {"done": job.cmd}  # the job as claimed: every column in hand


jobs.on_reap("test.stalls_then_succeeds", lambda job: CALLS["reaped"].append(job.id))
jobs.on_reap("test.stalls_then_reports_progress", lambda job: CALLS["reaped"].append(job.id))


@pytest.fixture(autouse=True)
def _calls():
    for v in CALLS.values():
        v.clear()


def _pending(app) -> int:
    return db.session.scalar(select(func.count()).select_from(AsyncJob).where(AsyncJob.status == JobStatus.PENDING))


def test_a_worker_back_after_the_reap_does_not_overwrite_the_reaped_result(app):
    with app.app_context():
        job = jobs.submit("testCmd", None, "test.stalls_then_succeeds")
        db.session.expire_all()
        job = db.session.get(AsyncJob, job.id)
        assert job.status == JobStatus.FAILED and job.result_code == 530
        assert "no heartbeat" in json.loads(job.result)["errortext"]
        assert CALLS["reaped"] == [job.id]  # the clean-up ran once
        assert CALLS["after"] == [job.id]  # the handler did come back...
        assert _pending(app) == 0  # ...and its success was discarded, nothing left pending


def test_a_worker_back_after_the_reap_stops_at_its_next_progress(app):
    with app.app_context():
        job = jobs.submit("testCmd", None, "test.stalls_then_reports_progress")
        db.session.expire_all()
        job = db.session.get(AsyncJob, job.id)
        assert job.status == JobStatus.FAILED
        assert "no heartbeat" in json.loads(job.result)["errortext"]  # the reaper's reason, not JobLost's
        assert job.progress == 0  # the late progress was not written
        assert CALLS["reaped"] == [job.id] and CALLS["after"] == []
        assert CALLS["handler_cleanup"] == [] and CALLS["finally"] == [job.id]


def test_a_job_is_claimed_once_and_what_its_handler_left_uncommitted_is_not_its_outcome(app):
    """jobs._claim: one UPDATE … RETURNING (an UPDATE and a SELECT on MariaDB), also when the
    session running it holds the job already (a test's, here); a second claim finds it taken."""
    with app.app_context():
        job = AsyncJob(cmd="leaveCmd", queue="jobs", params=json.dumps({"handler": "test.leaves_a_write_uncommitted"}))
        db.session.add(job)
        db.session.commit()
        assert jobs.execute(job.id) is None  # ran, in this session
        assert jobs.execute(job.id) is None  # claimed already: runs nothing
        db.session.expire_all()
        job = db.session.get(AsyncJob, job.id)
        assert job.status == JobStatus.SUCCEEDED and json.loads(job.result) == {"done": "leaveCmd"}
        assert job.progress_message != "left over" and job.worker == jobs.WORKER_ID
        assert CALLS["after"] == [job.id]


def _reaped_while_planning(app, monkeypatch, cmd: str) -> None:
    """The planner's candidate read, for the pending job of `cmd`, reaps that job meanwhile (its
    worker seen as stalled), so the job learns it only at its next step."""
    from app.services import planner
    candidates = planner._candidates

    def reaped_meanwhile(*args, **kwargs):
        rows = candidates(*args, **kwargs)
        job_id = db.session.scalar(select(AsyncJob.id).where(AsyncJob.cmd == cmd))
        assert _reap_from_outside(app, job_id) == 1
        return rows
    monkeypatch.setattr(planner, "_candidates", reaped_meanwhile)


def test_a_deploy_reaped_before_its_host_is_held_stops_there_holding_nothing(app, tmp_path, monkeypatch):
    """A deploy reaped while it looked for a host (its worker stalled) stops at its 40 % step;
    the hold, taken in that step's transaction, is rolled back with it: no capacity stays
    counted on the host."""
    from app.models import Host, VMState
    from app.services import vms as vm_service
    from tests.helpers.sim_zone import simulator_zone
    with app.app_context():
        admin = existing_user("root", "rootpass1", role="admin", account="admin")
        alice = existing_user("alice", "alicepass1")
        w = simulator_zone(admin, tmp_path, name="rz", guest_cidr="10.5.0.0/24",
                           host_urls=["simulator://r1?cpus=4&memory=8192"])
        host = db.session.scalar(select(Host))
        before = (host.cpu_allocated, host.memory_allocated)
        _reaped_while_planning(app, monkeypatch, "deployVirtualMachine")
        vm, job = vm_service.deploy(alice, zone_uuid=w.zone.uuid, service_offering_uuid=w.offering.uuid,
                                    template_uuid=w.template.uuid, name="late")
        db.session.expire_all()
        job = db.session.get(AsyncJob, job.id)
        assert job.status == JobStatus.FAILED
        assert "no heartbeat" in json.loads(job.result)["errortext"]  # the reaper's result stays
        assert job.progress == 0  # the 40 % step was not written...
        host = db.session.get(Host, host.id)
        assert (host.cpu_allocated, host.memory_allocated) == before  # ...and the hold was given back
        vm = db.session.get(type(vm), vm.id)
        assert not vm.capacity_reserved and vm.host_id is None and vm.state != VMState.RUNNING


def test_a_migration_reaped_while_it_chose_its_destination_holds_nothing_there(app, tmp_path, monkeypatch):
    """The same for a live migration: the destination's hold (which no VM row shows) goes back
    when the job learns at its first step that it was reaped; the VM runs on where it was."""
    from app.models import Host, VirtualMachine, VMState
    from app.services import vms as vm_service
    from tests.helpers.sim_zone import simulator_zone
    with app.app_context():
        admin = existing_user("root", "rootpass1", role="admin", account="admin")
        w = simulator_zone(admin, tmp_path, name="mz", guest_cidr="10.6.0.0/24",
                           host_urls=["simulator://m1?cpus=4&memory=8192", "simulator://m2?cpus=4&memory=8192"])
        vm, _ = vm_service.deploy(admin, zone_uuid=w.zone.uuid, service_offering_uuid=w.offering.uuid,
                                  template_uuid=w.template.uuid, name="mover")
        db.session.expire_all()
        vm = db.session.get(VirtualMachine, vm.id)
        source_id = vm.host_id
        before = {h.id: (h.cpu_allocated, h.memory_allocated) for h in db.session.scalars(select(Host))}
        _reaped_while_planning(app, monkeypatch, "migrateVirtualMachine")
        job = vm_service.migrate(admin, vm.uuid)
        db.session.expire_all()
        job = db.session.get(AsyncJob, job.id)
        assert job.status == JobStatus.FAILED and job.progress == 0
        assert {h.id: (h.cpu_allocated, h.memory_allocated) for h in db.session.scalars(select(Host))} == before
        vm = db.session.get(VirtualMachine, vm.id)
        assert vm.state == VMState.RUNNING and vm.host_id == source_id


# --- The transfer queue ------------------------------------------------------------

import time  # noqa: E402

from app import jobs as queues  # noqa: E402
from app.models import DownloadState, ServiceOffering, Template, VirtualMachine  # noqa: E402
from app.services import accounts, settings, templates, vms  # noqa: E402
from tests.helpers.www import serve, trickling_server  # noqa: E402
from tests.helpers.sim_zone import simulator_zone  # noqa: E402


@pytest.fixture
def world(app, tmp_path):
    """A Simulator zone with secondary storage, alice's running VM, and bob."""
    with app.app_context():
        admin = existing_user("root", "rootpass1", role="admin", account="admin")
        alice = existing_user("alice", "alicepass1")
        existing_user("bob", "bobpass12")
        settings.update("template.url.allow.internal", "true")  # the tests' loopback servers
        w = simulator_zone(admin, tmp_path, name="jz", guest_cidr="10.4.0.0/24",
                           host_urls=["simulator://j1?cpus=4&memory=8192"])
        z, t, so = w.zone, w.template, w.offering
        (tmp_path / "www").mkdir()
        (tmp_path / "www" / "small.raw").write_bytes(b"NUBO" * 1024)
        vm, job = vms.deploy(alice, zone_uuid=z.uuid, service_offering_uuid=so.uuid, template_uuid=t.uuid, name="v1")
        db.session.refresh(job)
        assert job.status == JobStatus.SUCCEEDED, job.result
        return dict(zone=z.uuid, vm=vm.uuid, www=tmp_path / "www")


def _register(username: str, url: str, name: str) -> Template:
    return templates.register(accounts.get_user(username), url=url, name=name, hypervisor="Simulator",
                              format="RAW")


def _job_of(t: Template) -> AsyncJob:
    ref = templates.refs_of(t)[0]
    return db.session.get(AsyncJob, ref.job_id)


def test_an_accounts_downloads_past_its_limit_wait_their_turn(app, world):
    """Immediate mode: alice already runs two transfers (hand-made rows), so her third
    waits in the queue, unclaimed; bob's runs at once; hers runs when a slot frees."""
    with app.app_context(), serve(world["www"]) as base:
        url = f"{base}/small.raw"
        queues.transfers.flush()  # immediate mode's in-memory queue is per process
        alice = accounts.get_user("alice")
        assert settings.get("concurrent.transfers.per.account") == 2
        busy = [AsyncJob(cmd="downloadTemplate", account_id=alice.account_id, user_id=alice.id, queue=queues.TRANSFERS,
                         params=json.dumps({"handler": "template.download", "params": {}}),
                         started=utcnow(), heartbeat=utcnow()) for _ in range(2)]
        db.session.add_all(busy)
        db.session.commit()

        waiting = _register("alice", url, "a3")
        job = _job_of(waiting)
        assert job.queue == queues.TRANSFERS
        assert job.status == JobStatus.PENDING and job.started is None and job.heartbeat is not None
        assert templates.refs_of(waiting)[0].state == DownloadState.NOT_DOWNLOADED
        scheduled = queues.transfers.scheduled()  # back in the queue, to look again shortly
        assert [(t.name, t.args) for t in scheduled] == [("run_transfer", (job.id,))]
        assert jobs.reap() == 0  # waiting its turn is not "never picked up"

        other = _register("bob", url, "b1")
        assert templates.refs_of(other)[0].state == DownloadState.DOWNLOADED  # other accounts are not held

        for b in busy:  # alice's two transfers end: her third one's turn
            b.status = JobStatus.SUCCEEDED
        db.session.commit()
        later = queues.transfers._get_timestamp() + timedelta(seconds=60)
        for task in queues.transfers.read_schedule(later):
            queues.transfers.execute(task, later)
        db.session.expire_all()
        assert templates.refs_of(waiting)[0].state == DownloadState.DOWNLOADED
        assert db.session.get(AsyncJob, job.id).status == JobStatus.SUCCEEDED


@pytest.fixture
def consumers(app, tmp_path):
    """Real huey consumers on a SQLite queue, laid out as the Procfile runs them: the
    jobs consumer (2 threads here) and the transfers consumer (2 threads)."""
    from huey.consumer import Consumer

    from app.jobs import worker
    queues.configure(f"sqlite:///{tmp_path}/queue.db", immediate=False)
    worker.set_app(app)
    started = [Consumer(h, workers=2, worker_type="thread", periodic=False, check_worker_health=False,
                        max_delay=0.5)  # as the Procfile's --max-delay
               for h in (queues.huey, queues.transfers)]
    for c in started:
        c.start()
    yield
    for c in started:
        c.stop(graceful=True)
    worker.set_app(None)
    queues.configure("", immediate=True)


def _wait(what, deadline_s: float, message: str):
    """Poll the database until `what()` is true (fresh reads each time)."""
    deadline = time.monotonic() + deadline_s
    while True:
        db.session.expire_all()
        db.session.rollback()
        value = what()
        if value:
            return value
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def test_slow_downloads_fill_the_transfer_pool_and_short_jobs_still_run(app, world, consumers):
    """Three downloads from a trickling server fill the transfer pool (two threads,
    alice's limit two: one waits). A VM stop and the reaper still finish at once."""
    with app.app_context(), trickling_server() as (base, _):
        pending_before = _pending(app)
        slow = [_register("alice", f"{base}/slow-{i}.raw", f"slow-{i}") for i in range(3)]
        downloading = lambda: [t for t in slow  # noqa: E731
                               if templates.refs_of(t)[0].state == DownloadState.DOWNLOADING]
        _wait(lambda: len(downloading()) == 2, 30, "two downloads should be running")
        waiting = [t for t in slow if t not in downloading()]
        assert _job_of(waiting[0]).started is None  # alice's third waits its turn, no thread held

        t0 = time.monotonic()
        job = vms.stop(accounts.get_user("alice"), world["vm"], forced=True)
        _wait(lambda: db.session.get(AsyncJob, job.id).status != JobStatus.PENDING, 30,
              "the VM stop waited behind the downloads")
        assert db.session.get(AsyncJob, job.id).status == JobStatus.SUCCEEDED
        vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.uuid == world["vm"]))
        assert vm.state == "Stopped"
        stop_s = time.monotonic() - t0

        stale = AsyncJob(cmd="stopVirtualMachine", params=json.dumps({"handler": "test.stalls_then_succeeds",
                                                                      "params": {}}),
                         started=utcnow() - timedelta(hours=1), heartbeat=utcnow() - timedelta(hours=1),
                         worker="gone:1")
        db.session.add(stale)
        db.session.commit()
        from app.jobs.tasks import reap_jobs
        t0 = time.monotonic()
        reap_jobs()  # what the periodic scheduler enqueues every minute
        _wait(lambda: db.session.get(AsyncJob, stale.id).status == JobStatus.FAILED, 30,
              "the reaper waited behind the downloads")
        reap_s = time.monotonic() - t0

        assert len(downloading()) == 2  # the transfer pool was full the whole time
        print(f"VM stop {stop_s:.2f} s, reap {reap_s:.2f} s with the transfer pool full")
    # The server cut the transfers: they end failed, nothing stays pending.
    with app.app_context():
        _wait(lambda: _pending(app) == pending_before, 60, "a job stayed pending")


def test_a_deploy_that_fetches_a_direct_download_template_is_a_transfer(app, world):
    """Its first use fetches the template from its URL into the pool (a long transfer);
    once the base volume is there, deploys are short jobs again."""
    import hashlib
    with app.app_context(), serve(world["www"]) as base:
        root = accounts.get_user("root")
        checksum = "{SHA-256}" + hashlib.sha256((world["www"] / "small.raw").read_bytes()).hexdigest()
        dd = templates.register(root, url=f"{base}/small.raw", name="dd", hypervisor="Simulator", format="RAW",
                                zone_uuid=world["zone"], checksum=checksum, direct_download=True, is_public=True)
        dd.size = dd.physical_size = 1 << 30  # the Simulator does not fetch: it takes the announced size
        db.session.commit()
        so = db.session.scalar(select(ServiceOffering))
        alice = accounts.get_user("alice")
        queues_used = []
        for name in ("dd1", "dd2"):
            vm, job = vms.deploy(alice, zone_uuid=world["zone"], service_offering_uuid=so.uuid,
                                 template_uuid=dd.uuid, name=name)
            db.session.refresh(job)
            assert job.status == JobStatus.SUCCEEDED, job.result
            queues_used.append(job.queue)
        assert queues_used == [queues.TRANSFERS, queues.JOBS]
        stop = vms.stop(alice, vm.uuid, forced=True)
        start = vms.start(alice, vm.uuid)  # its root volume is in the pool: nothing to fetch
        assert (stop.queue, start.queue) == (queues.JOBS, queues.JOBS)


def test_a_transfer_waiting_its_turn_is_not_reaped_as_never_picked_up(app):
    """job.queue.timeout counts from the last time a transfer worker looked at the job
    (it waits for its account's turn), not from when the download was asked for."""
    with app.app_context():
        old = utcnow() - timedelta(seconds=settings.get("job.queue.timeout") + 60)
        params = json.dumps({"handler": "template.download", "params": {}})
        waiting = AsyncJob(cmd="downloadTemplate", queue=queues.TRANSFERS, params=params, created=old,
                           heartbeat=utcnow())  # deferred just now, as _transfer_turn leaves it
        lost = AsyncJob(cmd="downloadTemplate", queue=queues.TRANSFERS, params=params, created=old)
        db.session.add_all([waiting, lost])
        db.session.commit()
        assert jobs.reap() == 1
        db.session.expire_all()
        assert db.session.get(AsyncJob, waiting.id).status == JobStatus.PENDING
        assert "never picked up" in db.session.get(AsyncJob, lost.id).result
