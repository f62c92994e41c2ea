"""Faults on the Simulator: a host that stops answering (its VMs Unknown, then Stopped
with capacity back; the host Alert, then Down), a worker that died mid-action (the
reaper fails the job, frees the VM and sets it from the hypervisor), an action on a
busy VM, a deploy whose host fails during the start."""
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AsyncJob, IpAddress, VirtualMachine, utcnow
from app.monitor.hosts import ping_hosts
from app.services import accounts, hosts, settings, vms
from app.services import simulator as sim
from app.services.errors import ResourceInUse
from tests.helpers.users import existing_user
from tests.helpers.sim_zone import power_cut, simulator_zone

pytestmark = pytest.mark.db


@pytest.fixture
def world(app, tmp_path):
    with app.app_context():
        admin = existing_user("root", "rootpass1", role="admin", account="admin")
        alice = existing_user("alice", "alicepass1")
        w = simulator_zone(admin, tmp_path, name="fz", guest_cidr="10.3.0.0/24",
                           host_urls=[f"simulator://f{i}?cpus=4&memory=8192" for i in (1, 2)])
        z, t, so = w.zone, w.template, w.offering
        return dict(zone=z.uuid, t=t.uuid, so=so.uuid, alice=alice.uuid)


def _deploy(w, name, host=None):
    alice = accounts.user_by_uuid(w["alice"])
    vm, job = vms.deploy(alice, zone_uuid=w["zone"], service_offering_uuid=w["so"], template_uuid=w["t"], name=name)
    db.session.refresh(job)
    assert job.status == 1, job.result
    return db.session.get(VirtualMachine, vm.id)


def test_a_host_that_stops_answering(app, world):
    with app.app_context():
        vm = _deploy(world, "a1")
        host = vm.host
        power_cut(host.name)  # its neighbour f2 finds its storage heartbeat stopped: judged Down
        t0 = utcnow()
        ping_hosts(now=t0)
        db.session.expire_all()
        assert hosts.get_host(host.uuid).state == "Alert"
        assert db.session.get(VirtualMachine, vm.id).state == "Unknown"
        later = t0 + timedelta(seconds=settings.get("ping.interval") * settings.get("ping.timeout") + 1)
        ping_hosts(now=later)
        db.session.expire_all()
        h = hosts.get_host(host.uuid)
        vm = db.session.get(VirtualMachine, vm.id)
        assert h.state == "Down" and vm.state == "Stopped" and vm.host_id is None
        assert h.memory_allocated == 0  # capacity given back
        # It starts again elsewhere: the planner only uses Up hosts.
        alice = accounts.user_by_uuid(world["alice"])
        job = vms.start(alice, vm.uuid)
        db.session.refresh(job)
        vm = db.session.get(VirtualMachine, vm.id)
        assert job.status == 1 and vm.state == "Running" and vm.host_id != h.id


def test_the_reaper_frees_a_vm_whose_worker_died(app, world):
    from app.jobs import service as jobs
    with app.app_context():
        vm = _deploy(world, "r1")
        stale = utcnow() - timedelta(hours=1)
        job = AsyncJob(cmd="stopVirtualMachine", instance_type="VirtualMachine", instance_id=vm.uuid,
                       params=json.dumps({"handler": "vm.stop", "params": {"vm": vm.uuid, "token": -5}}),
                       started=stale, heartbeat=stale)
        db.session.add(job)
        db.session.flush()
        vm.active_job_id, vm.state = job.id, "Stopping"  # the worker died half-way through a stop
        db.session.commit()
        alice = accounts.user_by_uuid(world["alice"])
        with pytest.raises(ResourceInUse, match="busy"):
            vms.reboot(alice, vm.uuid)
        assert jobs.reap() == 1
        db.session.expire_all()
        assert db.session.get(AsyncJob, job.id).status == 2
        vm = db.session.get(VirtualMachine, vm.id)
        assert vm.active_job_id is None and vm.state == "Running"  # what the Simulator says


def test_a_deploy_whose_start_fails_gives_everything_back(app, world):
    with app.app_context():
        for h in ("f1", "f2"):
            sim.arm_fault(host=h, count=1, operations=["start_vm"], message="injected: no room for the domain")
        alice = accounts.user_by_uuid(world["alice"])
        vm, job = vms.deploy(alice, zone_uuid=world["zone"], service_offering_uuid=world["so"],
                             template_uuid=world["t"], name="f")
        db.session.refresh(job)
        assert job.status == 2 and "injected: no room" in job.result
        vm = db.session.get(VirtualMachine, vm.id)
        assert vm.state == "Error" and not vm.capacity_reserved and not vm.quota_counted
        assert db.session.scalar(select(func.count()).select_from(IpAddress)) == 0
        assert all(v.removed is not None for v in vm.volumes)
        assert sum(h.memory_allocated for h in hosts.list_hosts()[0]) == 0
