"""VM HA on the Simulator (app/services/ha/): a silent host is investigated through its
neighbour (its storage heartbeat) before it is judged Down; then its HA VMs start again on
the other host of its cluster and its other VMs are Stopped; a host only cut off from Nubo
(heartbeat alive) is never Down; a host back from Down loses the copies of VMs that run
elsewhere; HA work a killed monitor left half done is finished by the next sweep."""
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import (Alert, Event, HaStep, HaWork, Host, ServiceOffering, SimHost, SimVM, User, VirtualMachine,
                        VMState, new_uuid, utcnow)
from app.monitor import vms as monitor_vms
from app.monitor.hosts import ping_hosts
from app.services import capacity, settings, vms
from app.services import simulator as sim
from app.services.ha import work as ha_work
from tests.helpers.sim_zone import power_cut, simulator_zone
from tests.helpers.users import existing_user



@pytest.fixture
def world(app, tmp_path):
    with app.app_context():
        admin = existing_user("root", "rootpass1", role="admin", account="admin")
        w = simulator_zone(admin, tmp_path, name="haz", guest_cidr="10.3.0.0/24",
                           host_urls=["simulator://ha1?cpus=8&memory=16384", "simulator://ha2?cpus=8&memory=4096"])
        ha = ServiceOffering(uuid=new_uuid(), name="ha", cpu_number=1, cpu_speed=1000, memory=1024, offer_ha=True)
        db.session.add(ha)
        db.session.commit()
        return dict(zone=w.zone.uuid, t=w.template.uuid, so=w.offering.uuid, ha=ha.uuid, admin=admin.id,
                    h1=w.hosts[0].id, h2=w.hosts[1].id)


def _deploy(w, name, offering, host_id):
    admin = db.session.get(User, w["admin"])
    vm, job = vms.deploy(admin, zone_uuid=w["zone"], service_offering_uuid=offering, template_uuid=w["t"], name=name,
                         host_uuid=db.session.get(Host, host_id).uuid)
    db.session.refresh(job)
    assert job.status == 1, job.result
    vm = db.session.get(VirtualMachine, vm.id)
    assert vm.host_id == host_id and vm.state == VMState.RUNNING
    return vm.id


def _silent_until_deadline(host_id: int):
    """Two pings: now (Alert), then past ping.interval × ping.timeout (the investigation)."""
    t0 = utcnow()
    ping_hosts(now=t0)
    assert db.session.get(Host, host_id).state == "Alert"
    ping_hosts(now=t0 + timedelta(seconds=settings.get("ping.interval") * settings.get("ping.timeout") + 1))
    db.session.expire_all()
    return db.session.get(Host, host_id)


def _sweep():
    """The monitor's sweep, as far as HA is concerned."""
    result = ping_hosts(with_vms=True)
    answers = ha_work.sweep(result.vm_answers)
    monitor_vms.apply_answers(answers, result.seen_at)
    db.session.expire_all()


def _sim_hosts_of(instance: str) -> list[str]:
    return sorted(db.session.scalars(select(SimHost.name).join(SimVM, SimVM.host_id == SimHost.id)
                                     .where(SimVM.name == instance)))


@pytest.mark.db
def test_a_dead_host_is_investigated_then_its_ha_vms_restart_elsewhere_and_its_copies_go(app, world):
    with app.app_context():
        hav, plain = _deploy(world, "hav", world["ha"], world["h1"]), _deploy(world, "plain", world["so"], world["h1"])
        assert db.session.get(VirtualMachine, hav).ha_enable
        power_cut("ha1")
        h1 = _silent_until_deadline(world["h1"])
        assert h1.state == "Down" and "ha2 sees its heartbeat" in h1.state_reason, h1.state_reason
        rows = {r.vm_id: r for r in db.session.scalars(select(HaWork))}
        assert rows[hav].step == HaStep.SCHEDULED and rows[plain].step == HaStep.DONE
        assert db.session.get(VirtualMachine, plain).state == "Stopped"  # fenced: marked Stopped
        # The next sweep's HA work: the HA VM's start job, on the other host of the cluster.
        assert ha_work.process() == 1
        db.session.expire_all()
        vm = db.session.get(VirtualMachine, hav)
        assert vm.state == "Running" and vm.host_id == world["h2"]
        assert db.session.get(HaWork, rows[hav].id).step == HaStep.DONE
        assert db.session.get(VirtualMachine, plain).state == "Stopped" and \
            db.session.get(VirtualMachine, plain).host_id is None
        texts = [e.description for e in db.session.scalars(select(Event).where(Event.type.in_(("VM.HA", "HA.HOST.DOWN"))))]
        assert any("starting HA on the following VMs: hav" in t for t in texts), texts
        assert any("restarted on ha2 by HA" in t for t in texts), texts
        assert db.session.scalar(select(Alert).where(Alert.subject.like("HA starting VM: hav%"))) is not None
        assert ha_work.process() == 0  # nothing more to do

        # ha1 comes back with both guests still on it (frozen, not killed, by the failure).
        assert _sim_hosts_of(vm.instance_name) == ["ha1", "ha2"]
        sim.set_host_up("ha1", True)
        _sweep()
        vm = db.session.get(VirtualMachine, hav)
        assert vm.state == "Running" and vm.host_id == world["h2"] and _sim_hosts_of(vm.instance_name) == ["ha2"]
        assert db.session.get(Host, world["h1"]).state == "Up"
        assert any("destroyed there, not restarted" in e.description for e in db.session.scalars(
            select(Event).where(Event.type == "VM.HA", Event.resource_id == vm.uuid)))
        # The non-HA VM was placed nowhere: its copy runs on, adopted where it is (one host).
        p = db.session.get(VirtualMachine, plain)
        assert p.state == "Running" and p.host_id == world["h1"] and _sim_hosts_of(p.instance_name) == ["ha1"]
        _sweep()  # settled: the rows are cleared and gone, capacity is right
        assert db.session.scalar(select(HaWork.id)) is None
        assert capacity.check_hosts() == 0


def test_a_host_only_cut_off_from_nubo_is_never_down(app, world):
    with app.app_context():
        hav = _deploy(world, "hav", world["ha"], world["h1"])
        sim.set_host_up("ha1", False, heartbeat=True)  # management network cut, still running
        h1 = _silent_until_deadline(world["h1"])
        assert h1.state == "Alert" and "alive" in h1.state_reason, h1.state_reason
        assert db.session.get(VirtualMachine, hav).state == "Unknown"
        assert db.session.scalar(select(HaWork.id)) is None and ha_work.process() == 0
        # Its heartbeat then stops (the power goes too): judged Down at the next sweep.
        power_cut("ha1")
        ping_hosts(now=utcnow() + timedelta(seconds=settings.get("ping.interval") * settings.get("ping.timeout") + 1))
        db.session.expire_all()
        assert db.session.get(Host, world["h1"]).state == "Down"
        assert ha_work.process() == 1


def test_without_a_neighbour_the_host_goes_down_on_time_and_nothing_restarts(app, world):
    with app.app_context():
        hav = _deploy(world, "hav", world["ha"], world["h1"])
        power_cut("ha2")
        power_cut("ha1")
        ping_hosts()  # ha2 Alert first: no Up neighbour for ha1
        h1 = _silent_until_deadline(world["h1"])
        assert h1.state == "Down" and "no Up neighbour" in h1.state_reason
        row = db.session.scalar(select(HaWork).where(HaWork.vm_id == hav))
        assert row.step == HaStep.CANCELLED and "not confirmed" in row.reason
        assert ha_work.process() == 0 and db.session.get(VirtualMachine, hav).state == "Stopped"


def test_restart_failures_are_retried_then_given_up(app, world):
    with app.app_context():
        settings.update("max.retries", "2")
        big = ServiceOffering(uuid=new_uuid(), name="big", cpu_number=1, cpu_speed=1000, memory=8192, offer_ha=True)
        db.session.add(big)
        db.session.commit()
        hav = _deploy(world, "big", big.uuid, world["h1"])  # ha2 has 4 GiB: it cannot take it
        power_cut("ha1")
        assert _silent_until_deadline(world["h1"]).state == "Down"
        assert ha_work.process() == 1
        row = db.session.scalar(select(HaWork).where(HaWork.vm_id == hav))
        assert row.step == HaStep.SCHEDULED and row.times_tried == 1 and row.time_to_try > utcnow()
        assert db.session.scalar(select(Alert).where(Alert.subject.like("Unable to restart big%"))) is not None
        assert ha_work.process() == 0  # not before restart.retry.interval
        assert ha_work.process(now=row.time_to_try + timedelta(seconds=1)) == 1
        db.session.expire_all()
        row = db.session.get(HaWork, row.id)
        assert row.step == HaStep.ERROR and row.times_tried == 2
        assert db.session.get(VirtualMachine, hav).state == "Stopped"


def test_ha_work_a_killed_monitor_left_is_finished_by_the_next_sweep(app, world):
    with app.app_context():
        hav = _deploy(world, "hav", world["ha"], world["h1"])
        power_cut("ha1")
        assert _silent_until_deadline(world["h1"]).state == "Down"
        # The monitor claimed the row, then died before it submitted the start job.
        row = db.session.scalar(select(HaWork).where(HaWork.vm_id == hav))
        row.step, row.taken, row.times_tried = HaStep.RESTARTING, utcnow() - timedelta(seconds=600), 1
        db.session.commit()
        assert ha_work.process() == 1  # given back, then started
        db.session.expire_all()
        vm = db.session.get(VirtualMachine, hav)
        assert vm.state == "Running" and vm.host_id == world["h2"] and vm.active_job_id is None
        assert db.session.get(HaWork, row.id).step == HaStep.DONE
