"""Nubo on the lab's two real libvirt hosts (scripts/lab.sh): both added to one KVM cluster
over qemu+ssh (one through the API's addHost, the other through the add-host wizard's page,
Test connection first) with their SSH host keys pinned, the lab's shared primary storage added once
for the cluster, and a real guest (tests/guests/acpi_guest.py, QEMU emulation) deployed on
each host: Nubo shows each Running on its host, and each host's own libvirtd runs it."""
from __future__ import annotations

import os
import uuid

import libvirt
import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Host, ServiceOffering, new_uuid
from app.services import accounts, hosts, settings, storage, templates, vms, zones
from app.services.network import networks

pytestmark = [pytest.mark.libvirt, pytest.mark.xdist_group("lab")]
SUFFIX = "L" + uuid.uuid4().hex[:8]


def _api(app, client, **params):
    from app.api.signing import sign
    with app.app_context():
        key, secret = accounts.ensure_keys(accounts.get_user("admin"))
    params = {k: str(v) for k, v in params.items()} | {"apiKey": key, "response": "json"}
    params["signature"] = sign(params, secret)
    resp = client.post("/client/api", data=params)
    return resp.status_code, next(iter(resp.get_json().values()))


def test_two_lab_hosts_run_a_guest_each(app, client, auth, lab, tmp_path, acpi_www):
    h1, h2 = lab.hosts
    with app.app_context():
        admin = accounts.get_user("admin")
        alice = accounts.get_user("alice")
        z = zones.create_zone(admin, name="lab", network_type="Basic", dns1="127.0.0.1",
                              internal_dns1="127.0.0.1", guest_cidr="10.78.0.0/24")
        zones.create_physical_network(admin, z, vlan_range=None, traffic_labels={"KVM": lab.traffic_label})
        networks.ensure_default_network(admin, z)
        p = zones.create_pod(admin, zone_uuid=z.uuid, name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                             start_ip="10.0.0.10")
        c = zones.add_cluster(admin, pod_uuid=p.uuid, name="c", hypervisor="KVM")
        ids = dict(zone=z.uuid, pod=p.uuid, cluster=c.uuid, admin=admin.uuid, alice=alice.uuid)

    # lab2 through the add-host wizard: Test connection, a wrong pinned key refused with
    # nothing made (libvirt's own SSH check), then added.
    auth.login("admin")
    where = {"zone": ids["zone"], "pod": ids["pod"], "cluster": ids["cluster"]}
    form = {**lab.host_fields(h2), "url": h2.uri}
    tested = client.post("/admin/hosts/test-connection?type=KVM", data={"csrf_token": auth.csrf(), **form})
    assert tested.status_code == 200 and "lab2" in tested.get_data(as_text=True)
    wrong = client.post("/admin/hosts/add", data={"csrf_token": auth.csrf(), **where, **form,
                                                  "ssh_host_key": h1.ssh_host_key})
    assert wrong.status_code == 422 and "HOST KEY" in wrong.get_data(as_text=True).upper()
    added = client.post("/admin/hosts/add", data={"csrf_token": auth.csrf(), **where, **form})
    assert added.status_code == 302, added.get_data(as_text=True)[-3000:]
    with app.app_context():
        host2 = db.session.scalar(select(Host).where(Host.address == h2.address, Host.removed.is_(None)))
        assert host2.name == "lab2" and host2.address == h2.address and host2.state == "Up"

    # addHost through the API, the fields as CloudStack's details map.
    details = {f"details[0].{k}": v for k, v in lab.host_fields(h1).items() if k != "username"}
    status, body = _api(app, client, command="addHost", zoneid=ids["zone"], podid=ids["pod"],
                        clusterid=ids["cluster"], url=h1.uri, username="root", hypervisor="KVM", **details)
    assert status == 200, body
    host1_uuid = body["host"][0]["id"]
    assert body["host"][0]["name"] == "lab1" and body["host"][0]["state"] == "Up"

    with app.app_context():
        admin, alice = accounts.user_by_uuid(ids["admin"]), accounts.user_by_uuid(ids["alice"])
        pool = storage.create_storage_pool(admin, zone_uuid=ids["zone"], cluster_uuid=ids["cluster"],
                                           name="lab-primary", url=lab.storage_url)
        assert pool.path == lab.storage_path and pool.capacity_bytes > 0
        storage.add_image_store(admin, provider="Local", url=f"file://{tmp_path}/secondary", zone_uuid=ids["zone"])
        tpl = templates.register(admin, url=f"{acpi_www}/acpi.raw", name="acpi", hypervisor="KVM", format="RAW",
                                 zone_uuid=ids["zone"], is_public=True)
        so = ServiceOffering(uuid=new_uuid(), name="tiny", cpu_number=1, cpu_speed=500, memory=128)
        db.session.add(so)
        db.session.commit()
        settings.update("instance.name", SUFFIX)

        placed = {}
        for host_uuid in (host1_uuid, host2.uuid):
            vm, job = vms.deploy(admin, zone_uuid=ids["zone"], service_offering_uuid=so.uuid,
                                 template_uuid=tpl.uuid, host_uuid=host_uuid, account="alice",
                                 domainid=alice.account.domain.uuid)
            db.session.refresh(job)
            assert job.status == 1, job.result
            placed[host_uuid] = vm.uuid

        for host_uuid, vm_uuid in placed.items():
            vm = vms.get_vm(admin, vm_uuid)
            host = hosts.get_host(host_uuid)
            assert vm.state == "Running" and vm.host_id == host.id
            assert vm.console_host == host.address  # VNC on the host's own address, never 0.0.0.0
            root_disk = next(v for v in vm.volumes if v.removed is None)
            assert root_disk.path.startswith(lab.storage_path + "/")
            placed[host_uuid] = (vm.instance_name, host.name, root_disk.path)

    # Each host's own libvirtd runs its guest, and only its own.
    for instance_name, host_name, disk in placed.values():
        other = h2.name if host_name == h1.name else h1.name
        with lab.connect(host_name) as conn:
            assert conn.lookupByName(instance_name).isActive()
        with lab.connect(other) as conn:
            with pytest.raises(libvirt.libvirtError):
                conn.lookupByName(instance_name)
        # The disk is on the shared storage, seen from this machine in the lab's directory.
        assert os.path.exists(disk.replace(lab.storage_path, lab.storage_dir, 1))
