"""VM HA on the lab's two real libvirt hosts (issue 19): `scripts/lab.sh fail lab1` (a power cut:
its libvirtd, QEMU and heartbeat writer killed, its link down) → the monitor's sweeps find lab1
silent, lab2 reads lab1's heartbeat on the shared storage stopped, lab1 is Down, and its HA VM
runs on lab2 within ping.interval × ping.timeout + 30 s; its other VM is Stopped. After
`recover`, lab1's libvirtd still has both guests defined: the HA VM's is undefined there (it
runs on lab2 only), the other stays Stopped."""
from __future__ import annotations

import time
import uuid

import libvirt
import pytest

from app.extensions import db
from app.models import Host, ServiceOffering, VirtualMachine, new_uuid
from app.monitor import sweep
from app.services import hosts, settings, storage, templates, vms, zones
from app.services.network import networks
from tests.helpers.users import existing_user

pytestmark = [pytest.mark.libvirt, pytest.mark.xdist_group("lab")]
SUFFIX = "H" + uuid.uuid4().hex[:8]


def _domain_on(lab, host: str, name: str) -> str | None:
    """'running', 'defined' or None: the guest as the host's own libvirtd has it."""
    with lab.connect(host) as conn:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            return None
        return "running" if dom.isActive() else "defined"


def _sweep_until(what, check, deadline: float) -> None:
    """The monitor's sweeps, at its own pace (ping.interval), until check() holds."""
    while True:
        sweep()
        db.session.expire_all()
        if check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not within the deadline: {what}")
        time.sleep(settings.get("ping.interval"))


def test_a_failed_hosts_ha_vm_runs_on_the_other_host_and_never_on_both(app, lab, tmp_path, acpi_www):
    h1, h2 = lab.hosts
    with app.app_context():
        admin = existing_user("root", "rootpass1", role="admin", account="admin")
        z = zones.create_zone(admin, name="halab", network_type="Basic", dns1="127.0.0.1",
                              internal_dns1="127.0.0.1", guest_cidr="10.79.0.0/24")
        zones.create_physical_network(admin, z, vlan_range=None, traffic_labels={"KVM": lab.traffic_label})
        networks.ensure_default_network(admin, z)
        p = zones.create_pod(admin, zone_uuid=z.uuid, name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                             start_ip="10.0.0.10")
        c = zones.add_cluster(admin, pod_uuid=p.uuid, name="c", hypervisor="KVM")
        added = {h.name: hosts.add_host(admin, cluster_uuid=c.uuid, url=h.uri, fields=lab.host_fields(h))
                 for h in (h1, h2)}
        storage.create_storage_pool(admin, zone_uuid=z.uuid, cluster_uuid=c.uuid, name="lab-primary",
                                    url=lab.storage_url)
        storage.add_image_store(admin, provider="Local", url=f"file://{tmp_path}/secondary", zone_uuid=z.uuid)
        tpl = templates.register(admin, url=f"{acpi_www}/acpi.raw", name="acpi", hypervisor="KVM", format="RAW",
                                 zone_uuid=z.uuid, is_public=True)
        offerings = {}
        for name, ha in (("ha", True), ("plain", False)):
            so = ServiceOffering(uuid=new_uuid(), name=name, cpu_number=1, cpu_speed=500, memory=128, offer_ha=ha)
            db.session.add(so)
            offerings[name] = so
        db.session.commit()
        settings.update("instance.name", SUFFIX)
        # Small, as the issue says: Down after 2 s of silence, a heartbeat stale after 6 s (lab writers: 2 s).
        settings.update("ping.interval", "1")
        settings.update("ping.timeout", "2")
        settings.update("ha.heartbeat.timeout", "6")
        placed = {}
        for name in ("ha", "plain"):
            vm, job = vms.deploy(admin, zone_uuid=z.uuid, service_offering_uuid=offerings[name].uuid,
                                 template_uuid=tpl.uuid, host_uuid=added["lab1"].uuid, name=f"{name}-vm")
            db.session.refresh(job)
            assert job.status == 1, job.result
            placed[name] = (vm.id, db.session.get(VirtualMachine, vm.id).instance_name)
        ha_id, ha_name = placed["ha"]
        plain_id, plain_name = placed["plain"]
        assert db.session.get(VirtualMachine, ha_id).ha_enable
        lab1_id, lab2_id = added["lab1"].id, added["lab2"].id
        sweep()  # both hosts Up and answering, the guests Running on lab1

        lab.fail("lab1")
        failed_at = time.monotonic()
        bound = settings.get("ping.interval") * settings.get("ping.timeout") + 30

        def ha_vm_runs_on_lab2():
            vm = db.session.get(VirtualMachine, ha_id)
            return vm.state == "Running" and vm.host_id == lab2_id

        _sweep_until("the HA VM Running on lab2", ha_vm_runs_on_lab2, failed_at + bound)
        print(f"\nHA: lab1 failed → its HA VM Running on lab2 after {time.monotonic() - failed_at:.1f} s "
              f"(bound {bound:.0f} s)")
        lab1 = db.session.get(Host, lab1_id)
        assert lab1.state == "Down" and "lab2 sees its heartbeat" in lab1.state_reason, lab1.state_reason
        assert _domain_on(lab, "lab2", ha_name) == "running"
        plain = db.session.get(VirtualMachine, plain_id)
        assert plain.state == "Stopped" and plain.host_id is None

        lab.recover("lab1")  # its libvirtd comes back with both guests defined, none running
        _sweep_until("lab1 Up without the HA VM's domain",
                     lambda: db.session.get(Host, lab1_id).state == "Up" and _domain_on(lab, "lab1", ha_name) is None,
                     time.monotonic() + 120)
        assert _domain_on(lab, "lab2", ha_name) == "running"  # on exactly one host
        vm = db.session.get(VirtualMachine, ha_id)
        assert vm.state == "Running" and vm.host_id == lab2_id
        plain = db.session.get(VirtualMachine, plain_id)
        assert plain.state == "Stopped" and _domain_on(lab, "lab1", plain_name) in ("defined", None)
