"""The monitor's host pings: Up → Alert → Down when a host stops answering, Up
again when it comes back, maintenance hosts left alone, one event per change."""
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.extensions import db
from app.models import Event, Host, utcnow
from app.monitor.hosts import ping_hosts
from app.services import hosts, settings, zones
from app.services import simulator as sim
from tests.helpers.users import existing_user

# On every database (@pytest.mark.db): what the monitor records; the real libvirtd's answer and
# the parallel pings' limits (no database in the question) on SQLite.


def _cluster():
    z = zones.create_zone(None, name="mz", dns1="8.8.8.8", internal_dns1="10.0.0.2")
    p = zones.create_pod(None, zone_uuid=z.uuid, name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                         start_ip="10.0.0.10")
    return zones.add_cluster(None, pod_uuid=p.uuid, name="c", hypervisor="Simulator")


def _vm_on_sim(host_url: str, instance: str, *, running_in_nubo: bool, cpus: int = 1, memory: int = 512):
    """A Simulator host, a VM record of alice's for it (Running on the host, or Stopped with it as
    its last host) and the domain really running on the Simulator. Returns (host, vm)."""
    from app.hypervisors.base import DiskSpec, VMSpec
    from app.models import ServiceOffering, VirtualMachine, new_uuid
    from app.services import accounts
    from app.services import hypervisors as hv
    c = _cluster()
    h = hosts.add_host(None, cluster_uuid=c.uuid, url=host_url, fields={})
    alice = existing_user("alice", "alicepass1")
    so = ServiceOffering(uuid=new_uuid(), name="s", cpu_number=cpus, cpu_speed=1000, memory=memory)
    db.session.add(so)
    db.session.flush()
    vm = VirtualMachine(uuid=new_uuid(), name="v", instance_name=instance,
                        state="Running" if running_in_nubo else "Stopped", account_id=alice.account_id,
                        user_id=alice.id, zone_id=h.zone_id, host_id=h.id if running_in_nubo else None,
                        last_host_id=h.id, service_offering_id=so.id, hypervisor_type="Simulator", cpu_number=cpus,
                        cpu_speed=1000, memory=memory, capacity_reserved=running_in_nubo)
    db.session.add(vm)
    db.session.commit()  # the Simulator writes through its own connection
    driver = hv.driver_for("Simulator", hosts.connection_for(h))
    driver.start_vm(VMSpec(name=instance, uuid=vm.uuid, cpus=cpus, cpu_mhz=1000, memory_mib=memory,
                           disks=[DiskSpec(path="/x/root", format="RAW")]))
    driver.close()
    return h, vm


@pytest.mark.db
def test_states_follow_the_answers(app):
    with app.app_context():
        c = _cluster()
        h1 = hosts.add_host(None, cluster_uuid=c.uuid, url="simulator://mon-1?cpus=4&memory=8192", fields={})
        h2 = hosts.add_host(None, cluster_uuid=c.uuid, url="simulator://mon-2", fields={})
        h3 = hosts.add_host(None, cluster_uuid=c.uuid, url="simulator://mon-3", fields={})
        hosts.prepare_maintenance(None, h3.uuid)
        r = ping_hosts()
        assert (r.hosts, r.up, r.failed, r.changed) == (2, 2, 0, 0)
        assert db.session.get(Host, h1.id).memory_used > 0  # stats sampled for the pages

        sim.set_host_up("mon-1", False)
        t0 = utcnow()
        r = ping_hosts(now=t0)
        assert (r.up, r.failed, r.changed) == (1, 1, 1)
        host = db.session.get(Host, h1.id)
        assert host.state == "Alert" and "down" in host.state_reason.lower()
        # Silent for longer than ping.interval × ping.timeout: Down.
        later = t0 + timedelta(seconds=settings.get("ping.interval") * settings.get("ping.timeout") + 1)
        ping_hosts(now=later)
        assert db.session.get(Host, h1.id).state == "Down"
        sim.set_host_up("mon-1", True)
        ping_hosts(now=later)
        host = db.session.get(Host, h1.id)
        assert host.state == "Up" and host.state_reason is None
        assert db.session.get(Host, h3.id).state == "Up"  # in maintenance: not pinged, left as it was
        changes = [e.description for e in db.session.scalars(
            select(Event).where(Event.type == "HOST.STATE").order_by(Event.id))]
        assert [c.split(" is ")[1].split(":")[0] for c in changes] == ["Alert", "Down", "Up again"]
        assert db.session.get(Host, h2.id).state == "Up"


@pytest.mark.libvirt
def test_a_real_libvirt_host_answers(app):
    with app.app_context():
        z = zones.create_zone(None, name="kz", dns1="8.8.8.8", internal_dns1="10.0.0.2")
        p = zones.create_pod(None, zone_uuid=z.uuid, name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                             start_ip="10.0.0.10")
        c = zones.add_cluster(None, pod_uuid=p.uuid, name="c", hypervisor="KVM")
        h = hosts.add_host(None, cluster_uuid=c.uuid, url="qemu:///system", fields={})
        r = ping_hosts()
        assert (r.up, r.failed) == (1, 0)
        host = db.session.get(Host, h.id)
        assert host.state == "Up" and 0 <= host.cpu_used_pct <= 100 and host.memory_used > 0


@pytest.mark.db
def test_vm_stats_are_sampled_as_rates(app, tmp_path):
    """Two sweeps over a running Simulator VM: CPU percent and memory from the hypervisor's counters."""
    from app.models import VirtualMachine
    from app.monitor.vms import reconcile_hosts
    with app.app_context():
        h, vm = _vm_on_sim("simulator://stat-1?cpus=4&memory=8192", "i-9-1-VM", running_in_nubo=True, cpus=2,
                           memory=1024)
        import time
        reconcile_hosts([h])
        time.sleep(1.1)
        reconcile_hosts([h])
        vm = db.session.get(VirtualMachine, vm.id)
        assert vm.memory_used_kib and vm.cpu_used_pct is not None and 0 <= vm.cpu_used_pct <= 100


@pytest.mark.db
def test_a_domain_nubo_does_not_know_is_reported_and_left_alone(app):
    from app.hypervisors.base import DiskSpec, PowerState, VMSpec
    from app.monitor.vms import reconcile_hosts
    from app.services import hypervisors as hv
    with app.app_context():
        c = _cluster()
        h = hosts.add_host(None, cluster_uuid=c.uuid, url="simulator://stranger-host", fields={})
        driver = hv.driver_for("Simulator", hosts.connection_for(h))
        driver.start_vm(VMSpec(name="someone-elses-vm", uuid="00000000-0000-4000-8000-0000000000aa", cpus=1,
                               cpu_mhz=500, memory_mib=256, disks=[DiskSpec(path="/x", format="RAW")]))
        assert reconcile_hosts([h]) == 0
        reconcile_hosts([h])  # reported once, not at every sweep
        reports = list(db.session.scalars(select(Event).where(Event.type == "HOST.UNKNOWN.VM")))
        assert len(reports) == 1 and "someone-elses-vm" in reports[0].description
        assert driver.vm_info("someone-elses-vm").state == PowerState.RUNNING  # never touched
        driver.close()


@pytest.mark.db
def test_the_monitor_sweep_pings_and_reconciles_in_one_pass(app):
    """app.monitor.sweep(): what the monitor process runs every ping.interval."""
    from app.models import VirtualMachine
    from app.monitor import sweep
    with app.app_context():
        # Stopped in Nubo's records, started outside Nubo:
        h, vm = _vm_on_sim("simulator://sweep-1?cpus=4&memory=8192", "i-7-1-VM", running_in_nubo=False)
        result = sweep()
        assert result.hosts == 1 and result.up == 1
        vm = db.session.get(VirtualMachine, vm.id)
        assert vm.state == "Running" and vm.host_id == h.id
        assert hosts.get_host(h.uuid).memory_allocated == 512 << 20  # its capacity is counted


def test_hosts_are_asked_in_parallel_within_each_types_limit(app):
    """ask_hosts: answers in the order asked; a type that computes in Nubo's process
    (the Simulator, max_parallel_calls=2) is never asked more than twice at once, while
    hosts over the network (KVM) get monitor.threads."""
    import threading
    import time
    from collections import defaultdict

    from app.monitor.hosts import ask_hosts
    active, peak, changed = defaultdict(int), defaultdict(int), threading.Condition()
    # The first calls of a type wait for each other until this many run at once (or
    # 30 s pass), so the peak does not depend on how busy the machine is.
    want = {"Simulator": 2, "KVM": 3}

    def call(host_id, type_name):
        with changed:
            active[type_name] += 1
            peak[type_name] = max(peak[type_name], active[type_name])
            changed.notify_all()
            changed.wait_for(lambda: peak[type_name] >= want[type_name], timeout=30)
        time.sleep(0.02)  # overlap a little: a pool wider than its limit would show
        with changed:
            active[type_name] -= 1
        return host_id

    with app.app_context():
        work = [(i, "Simulator" if i % 2 else "KVM") for i in range(40)]
        assert ask_hosts(work, call) == list(range(40))
    assert peak["Simulator"] == 2 and peak["KVM"] > 2


@pytest.mark.db
def test_a_vm_moved_behind_nubos_back_follows_its_new_host(app):
    """One sweep over two hosts: the VM's record says host A, host B runs it, A does not.
    The sweep compares rows and turns only such VMs into objects; A's silence stops the
    record and B's answer, in the same sweep, makes it Running on B with the capacity
    moved (it used to wait for the next sweep). A VM busy with a job is left alone,
    whatever the hosts say."""
    from app.hypervisors.base import DiskSpec, VMSpec
    from app.models import VirtualMachine
    from app.monitor.vms import reconcile_hosts
    from app.services import hypervisors as hv
    with app.app_context():
        a, vm = _vm_on_sim("simulator://move-a?cpus=4&memory=8192", "i-8-1-VM", running_in_nubo=True)
        b = hosts.add_host(None, cluster_uuid=hosts.get_host(a.uuid).cluster.uuid, url="simulator://move-b",
                           fields={})
        db.session.execute(update(Host).where(Host.id == a.id).values(memory_allocated=512 << 20))
        db.session.commit()
        for h, action in ((a, "stop"), (b, "start")):
            driver = hv.driver_for("Simulator", hosts.connection_for(h))
            if action == "stop":
                driver.destroy_vm("i-8-1-VM")
            else:
                driver.start_vm(VMSpec(name="i-8-1-VM", uuid=vm.uuid, cpus=1, cpu_mhz=1000, memory_mib=512,
                                       disks=[DiskSpec(path="/x/root", format="RAW")]))
            driver.close()
        busy = VirtualMachine(uuid="00000000-0000-4000-8000-0000000000bb", name="busy", instance_name="i-8-2-VM",
                              state="Running", account_id=vm.account_id, user_id=vm.user_id, zone_id=vm.zone_id,
                              host_id=a.id, last_host_id=a.id, service_offering_id=vm.service_offering_id,
                              hypervisor_type="Simulator", cpu_number=1, cpu_speed=1000, memory=512,
                              capacity_reserved=True, active_job_id=42)
        db.session.add(busy)
        db.session.commit()
        assert reconcile_hosts([hosts.get_host(a.uuid), hosts.get_host(b.uuid)]) == 1  # one VM corrected, in one sweep
        moved = db.session.get(VirtualMachine, vm.id)
        assert moved.state == "Running" and moved.host_id == b.id and moved.capacity_reserved
        assert hosts.get_host(a.uuid).memory_allocated == 0 and hosts.get_host(b.uuid).memory_allocated == 512 << 20
        busy = db.session.get(VirtualMachine, busy.id)
        assert busy.state == "Running" and busy.host_id == a.id  # not on A's list, but busy: untouched
