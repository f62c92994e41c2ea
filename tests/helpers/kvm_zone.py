"""A Basic zone whose one host is the local libvirtd (qemu:///system), made through
Nubo's services, and its clean-up: shared by the real-guest tests
(tests/integration/test_vm_kvm.py) and the libvirt event benchmark (bench/event_bench.py).

The host is added with acceleration=emulated: on these (nested) machines KVM starts
an empty disk but cannot run a real kernel, so real guests use QEMU's software
emulation — the same libvirt API and driver code. No VLAN: VLAN tags need Open vSwitch."""
from __future__ import annotations

import subprocess
from pathlib import Path

import libvirt

from app.extensions import db
from app.models import ServiceOffering, new_uuid
from app.services import accounts, hosts, settings, storage, templates, zones
from app.services.network import networks
from tests.helpers.users import existing_user

URI = "qemu:///system"
BRIDGE = "nubotest0"


def ensure_bridge() -> None:
    """A Linux bridge for the guests' NICs (no uplink: nothing leaves this machine)."""
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0:
        subprocess.run(["ip", "link", "add", "name", BRIDGE, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)


def make_zone(tmp: Path, www: str, images: dict[str, str], suffix: str) -> dict:
    """Zone, pod, cluster, the libvirtd host, a file pool, a local image store, the
    templates `images` names (name → file under `www`), a tiny offering; admin "root"
    and user "alice". Call inside an app context. Returns their uuids."""
    admin = existing_user("root", "rootpass1", role="admin", account="admin")
    alice = existing_user("alice", "alicepass1")
    z = zones.create_zone(admin, name="kvm", network_type="Basic", dns1="127.0.0.1", internal_dns1="127.0.0.1",
                          guest_cidr="10.77.0.0/24")
    zones.create_physical_network(admin, z, vlan_range=None, traffic_labels={"KVM": BRIDGE})
    networks.ensure_default_network(admin, z)
    p = zones.create_pod(admin, zone_uuid=z.uuid, name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                         start_ip="10.0.0.10")
    c = zones.add_cluster(admin, pod_uuid=p.uuid, name="c", hypervisor="KVM")
    h = hosts.add_host(admin, cluster_uuid=c.uuid, url=URI, fields={"acceleration": "emulated"})
    pool = storage.create_storage_pool(admin, zone_uuid=z.uuid, cluster_uuid=c.uuid, name="primary",
                                       url=f"file://{tmp}/primary")
    storage.add_image_store(admin, provider="Local", url=f"file://{tmp}/secondary", zone_uuid=z.uuid)
    made = {name: templates.register(admin, url=f"{www}/{file}", name=name, hypervisor="KVM", format="RAW",
                                     zone_uuid=z.uuid, is_public=True).uuid for name, file in images.items()}
    so = ServiceOffering(uuid=new_uuid(), name="tiny", cpu_number=1, cpu_speed=500, memory=128)
    db.session.add(so)
    db.session.commit()
    settings.update("vm.stop.timeout", "20")
    settings.update("instance.name", suffix)  # our domains' names, unique to this run
    return dict(made, zone=z.uuid, so=so.uuid, host=h.uuid, pool=pool.uuid, alice=alice.uuid)


def clean_up(made: dict, suffix: str) -> None:
    """Nothing of ours may stay on the real libvirtd: domains named *-<suffix>, the pool."""
    conn = libvirt.open(URI)
    for dom in conn.listAllDomains(0):
        if dom.name().endswith("-" + suffix):
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    try:
        p = conn.storagePoolLookupByName(made["pool"])
        for name in sorted(p.listVolumes(), key=lambda n: n.startswith("template-")):
            p.storageVolLookupByName(name).delete(0)
        p.destroy()
        p.undefine()
    except (libvirt.libvirtError, KeyError):
        pass
    conn.close()
