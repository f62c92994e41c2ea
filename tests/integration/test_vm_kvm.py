"""The VM lifecycle end to end on the real local libvirtd, through Nubo's services
and jobs: deploy from RAW templates, graceful stop of a guest that honours ACPI
(tests/guests/acpi_guest.py), the forced path for an empty disk, reboot,
destroy/recover/expunge leaving no domain, volume or IP lease; libvirt events
and the reconcile keep the records true when the domain is changed behind Nubo's back.

The host is added with acceleration=emulated (tests/helpers/kvm_zone.py says why)."""
from __future__ import annotations

import subprocess
import time
import uuid
import xml.etree.ElementTree as ET

import libvirt
import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import IpAddress, VirtualMachine, Volume, new_uuid
from app.services import accounts, hosts, settings, templates, vm_admin, vms
from tests.helpers import kvm_zone
from tests.helpers.www import raw_image, serve
from tests.guests import acpi_guest

pytestmark = [pytest.mark.libvirt, pytest.mark.xdist_group("libvirt-guests")]
BRIDGE, URI = kvm_zone.BRIDGE, kvm_zone.URI
SUFFIX = "T" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def guest_image(tmp_path_factory):
    reason = acpi_guest.missing()
    if reason:
        pytest.fail(f"the ACPI test guest cannot be built: {reason} (scripts/sysdeps.sh test installs it)")
    return acpi_guest.build(tmp_path_factory.mktemp("guest"))


@pytest.fixture
def www(tmp_path, guest_image):
    root = tmp_path / "www"
    root.mkdir()
    (root / "acpi.raw").symlink_to(guest_image)
    raw_image(root / "empty.raw", "64M", stamp=None)
    with serve(root) as url:
        yield url


@pytest.fixture(scope="module", autouse=True)
def bridge():
    kvm_zone.ensure_bridge()


@pytest.fixture
def kvm(app, tmp_path, www):
    """A Basic zone with the local libvirtd as its host (tests/helpers/kvm_zone.py)."""
    made = {}
    with app.app_context():
        made = kvm_zone.make_zone(tmp_path, www, {"acpi": "acpi.raw", "empty": "empty.raw"}, SUFFIX)
    yield made
    kvm_zone.clean_up(made, SUFFIX)


def _deploy(alice, kvm, template, name):
    vm, job = vms.deploy(alice, zone_uuid=kvm["zone"], service_offering_uuid=kvm["so"], template_uuid=kvm[template],
                         name=name)
    db.session.refresh(job)
    assert job.status == 1, job.result
    return vms.get_vm(alice, vm.uuid)


def _qemu_io(path: str, command: str) -> None:
    """Run one qemu-io command on a disk (shared, so a running guest's disk is readable)."""
    args = ["qemu-io", "-r", "-U", "-c", command, path] if command.startswith("read") else ["qemu-io", "-c", command, path]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Pattern verification failed" not in out.stdout + out.stderr, out


def _job_ok(job) -> bool:
    db.session.refresh(job)
    return job.status == 1


def test_real_kvm_lifecycle(app, kvm):
    conn = libvirt.open(URI)
    with app.app_context():
        alice = accounts.user_by_uuid(kvm["alice"])
        vm = _deploy(alice, kvm, "acpi", "acpi1")
        assert vm.state == "Running" and vm.console_host == "127.0.0.1" and vm.console_port
        dom = conn.lookupByName(vm.instance_name)
        assert dom.isActive()
        xml = ET.fromstring(dom.XMLDesc(0))
        assert xml.find("devices/graphics").get("listen") == "127.0.0.1"  # never 0.0.0.0
        nic = xml.find("devices/interface")
        assert nic.find("source").get("bridge") == BRIDGE
        assert nic.find("mac").get("address") == vm.nics[0].mac_address
        disk = xml.find("devices/disk/source").get("file")
        assert ET.fromstring(conn.storageVolLookupByPath(disk).XMLDesc(0)).find("backingStore") is not None  # thin

        # Graceful stop: the guest powers off on the ACPI button (it may still be booting: ask again).
        for _ in range(4):
            if _job_ok(vms.stop(alice, vm.uuid)):
                break
        vm = vms.get_vm(alice, vm.uuid)
        assert vm.state == "Stopped" and not dom.isActive()
        assert _job_ok(vms.start(alice, vm.uuid)) and dom.isActive()
        assert _job_ok(vms.reboot(alice, vm.uuid))

        # An empty disk ignores ACPI: the graceful stop times out and says so; forced powers it off.
        settings.update("vm.stop.timeout", "3")
        e = _deploy(alice, kvm, "empty", "empty1")
        job = vms.stop(alice, e.uuid)
        assert not _job_ok(job) and "did not shut down within 3 s" in job.result
        assert vms.get_vm(alice, e.uuid).state == "Running"
        assert _job_ok(vms.stop(alice, e.uuid, forced=True))
        assert vms.get_vm(alice, e.uuid).state == "Stopped"

        # restoreVirtualMachine: the root disk is made again from the template (a marker written
        # to the old disk is gone with it); the guest boots from the new disk.
        old_root = next(v for v in vms.get_vm(alice, e.uuid).volumes if v.removed is None)
        _qemu_io(old_root.path, "write -P 0x5a 0 64k")
        _qemu_io(old_root.path, "read -P 0x5a 0 64k")
        assert _job_ok(vm_admin.restore(alice, e.uuid))
        assert _job_ok(vms.start(alice, e.uuid))
        e = vms.get_vm(alice, e.uuid)
        new_root = next(v for v in e.volumes if v.removed is None)
        assert new_root.id != old_root.id and new_root.path != old_root.path and new_root.state == "Ready"
        with pytest.raises(libvirt.libvirtError):
            conn.storageVolLookupByPath(old_root.path)
        live = ET.fromstring(conn.lookupByName(e.instance_name).XMLDesc(0)).find("devices/disk/source").get("file")
        assert live == new_root.path
        _qemu_io(new_root.path, "read -P 0 0 64k")  # the template's zeros, no marker
        assert _job_ok(vms.stop(alice, e.uuid, forced=True))

        # Destroy, recover, destroy, expunge: nothing is left.
        assert _job_ok(vms.destroy(alice, vm.uuid))
        assert vms.get_vm(alice, vm.uuid).state == "Destroyed" and not dom.isActive()
        assert vms.recover(alice, vm.uuid).state == "Stopped"
        assert _job_ok(vms.destroy(alice, vm.uuid, expunge=True))
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByName(vm.instance_name)
        root = db.session.scalar(select(Volume).where(Volume.vm_id == vm.id))
        assert root.removed is not None
        with pytest.raises(libvirt.libvirtError):
            conn.storageVolLookupByPath(disk)
        nic_ids = [n.id for n in vm.nics]
        assert db.session.scalar(select(func.count()).select_from(IpAddress).where(IpAddress.nic_id.in_(nic_ids))) == 0
        assert hosts.get_host(kvm["host"]).memory_allocated == 0  # the empty VM is stopped, acpi1 expunged
    conn.close()


def test_changes_behind_nubos_back_are_seen(app, kvm):
    from app.monitor.vms import EventListener, reconcile_hosts
    conn = libvirt.open(URI)
    with app.app_context():
        alice = accounts.user_by_uuid(kvm["alice"])
        vm = _deploy(alice, kvm, "empty", "ext1")
        host = hosts.get_host(kvm["host"])
        listener = EventListener(app)
        listener.sync([host])
        try:
            t_kill = time.monotonic()
            conn.lookupByName(vm.instance_name).destroy()  # `virsh destroy`: returns once QEMU is gone
            t0 = time.monotonic()
            # No reconcile runs here: only the event can change it. 60 s: a loaded machine.
            while time.monotonic() - t0 < 60.0:
                db.session.rollback()  # a fresh read each time: the listener commits in its own thread
                if db.session.get(VirtualMachine, vm.id).state == "Stopped":
                    break
                time.sleep(0.05)
            print(f"virsh destroy took {t0 - t_kill:.3f} s; the event was applied {time.monotonic() - t0:.3f} s "
                  "after it returned")
            db.session.rollback()
            assert db.session.get(VirtualMachine, vm.id).state == "Stopped", "the event was not applied within 60 s"
            assert hosts.get_host(kvm["host"]).memory_allocated == 0
        finally:
            listener.close()
        conn.lookupByName(vm.instance_name).create()  # `virsh start`, with no listener: the reconcile sees it
        assert reconcile_hosts([hosts.get_host(kvm["host"])]) == 1
        vm = db.session.get(VirtualMachine, vm.id)
        assert vm.state == "Running" and vm.host_id == hosts.get_host(kvm["host"]).id
        assert _job_ok(vms.destroy(alice, vm.uuid, expunge=True))
    conn.close()


def test_data_volume_attach_detach_resize_delete_on_a_real_guest(app, kvm):
    from app.services import volumes
    conn = libvirt.open(URI)
    with app.app_context():
        alice = accounts.user_by_uuid(kvm["alice"])
        admin = accounts.get_user("root")
        offering = volumes.create_disk_offering(admin, name="1G", disk_size=1)
        vm = _deploy(alice, kvm, "acpi", "withdata")  # a guest that acknowledges PCI hot-unplug
        booted_at = time.monotonic() + 15  # it boots in ~12 s under emulation; an unplug before is lost
        v = volumes.create_volume(alice, name="data", zone_uuid=kvm["zone"], disk_offering_uuid=offering.uuid)
        v = volumes.attach_volume(alice, v.uuid, vm.uuid)
        dom = conn.lookupByName(vm.instance_name)
        disks = [d.get("file") for d in ET.fromstring(dom.XMLDesc(0)).findall("devices/disk/source")]
        assert v.path in disks and conn.storageVolLookupByPath(v.path).info()[1] == 1 << 30
        time.sleep(max(0.0, booted_at - time.monotonic()))
        v = volumes.detach_volume(alice, v.uuid)
        persistent = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        assert v.path not in [d.get("file") for d in persistent.findall("devices/disk/source")]
        deadline = time.monotonic() + 30  # the live unplug completes when the guest acknowledges it
        while v.path in [d.get("file") for d in ET.fromstring(dom.XMLDesc(0)).findall("devices/disk/source")]:
            assert time.monotonic() < deadline, "the guest did not release the disk"
            time.sleep(0.5)
        v = volumes.resize_volume(alice, v.uuid, size_gib=2)  # offline: it is detached
        assert conn.storageVolLookupByPath(v.path).info()[1] == 2 << 30
        path = v.path
        volumes.delete_volume(alice, v.uuid)
        with pytest.raises(libvirt.libvirtError):
            conn.storageVolLookupByPath(path)  # no file left
        assert _job_ok(vms.destroy(alice, vm.uuid, expunge=True))
    conn.close()


def test_config_drive_iso_deploy_and_iso_attach(app, kvm, www, tmp_path):
    """SSH key and user data on a NoCloud cidata ISO; a VM from a bootable ISO; attach/detach an ISO."""
    import base64

    from app.models import SSHKeyPair
    from app.services import volumes
    conn = libvirt.open(URI)
    with app.app_context():
        alice = accounts.user_by_uuid(kvm["alice"])
        admin = accounts.get_user("root")
        db.session.add(SSHKeyPair(uuid=new_uuid(), name="k1", account_id=alice.account_id, fingerprint="x",
                                  public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINubo alice@laptop"))
        db.session.commit()
        userdata = base64.b64encode(b"#cloud-config\nruncmd: [echo hello]\n").decode()
        vm, job = vms.deploy(alice, zone_uuid=kvm["zone"], service_offering_uuid=kvm["so"],
                             template_uuid=kvm["empty"], name="cfg1", keypair="k1", userdata=userdata)
        assert _job_ok(job), job.result
        dom = conn.lookupByName(vm.instance_name)
        cdroms = [d.find("source").get("file") for d in ET.fromstring(dom.XMLDesc(0)).findall("devices/disk")
                  if d.get("device") == "cdrom" and d.find("source") is not None]
        cidata = next(p for p in cdroms if p.endswith("-cidata.iso"))
        out = tmp_path / "cidata"
        subprocess.run(["xorriso", "-osirrox", "on", "-indev", cidata, "-extract", "/", str(out)],
                       check=True, capture_output=True)
        assert "runcmd: [echo hello]" in (out / "user-data").read_text()
        meta = (out / "meta-data").read_text()
        assert vm.uuid in meta and "alice@laptop" in meta and "cfg1" in meta

        # A bootable ISO: the VM boots from it onto a blank root disk of the disk offering's size.
        src = tmp_path / "isosrc"
        src.mkdir()
        (src / "README").write_text("installer")
        iso_path = tmp_path / "www" / "installer.iso"
        subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso_path), str(src)], check=True,
                       capture_output=True)
        iso = templates.register(admin, is_iso=True, url=f"{www}/installer.iso", name="installer",
                                 zone_uuid=kvm["zone"], is_public=True)
        offering = volumes.create_disk_offering(admin, name="root2", disk_size=2)
        vm2, job = vms.deploy(alice, zone_uuid=kvm["zone"], service_offering_uuid=kvm["so"], iso_uuid=iso.uuid,
                              hypervisor="KVM", disk_offering_uuid=offering.uuid, name="fromiso")
        assert _job_ok(job), job.result
        xml = ET.fromstring(conn.lookupByName(vm2.instance_name).XMLDesc(0))
        disks = {d.get("device"): d for d in xml.findall("devices/disk")}
        assert disks["cdrom"].find("source").get("file").endswith(template_cache_name(iso))
        assert conn.storageVolLookupByPath(disks["disk"].find("source").get("file")).info()[1] == 2 << 30

        # Attach the ISO to the first VM, then detach it.
        assert _job_ok(vms.attach_iso(alice, vm.uuid, iso.uuid))
        xml = ET.fromstring(dom.XMLDesc(0))
        assert any(d.find("source") is not None and d.find("source").get("file").endswith(template_cache_name(iso))
                   for d in xml.findall("devices/disk") if d.get("device") == "cdrom")
        assert _job_ok(vms.detach_iso(alice, vm.uuid))
        assert vms.get_vm(alice, vm.uuid).iso_id is None
        for v in (vm, vm2):
            assert _job_ok(vms.destroy(alice, v.uuid, expunge=True))
        assert not any(p.endswith("-cidata.iso") for p in conn.storagePoolLookupByName(kvm["pool"]).listVolumes())
    conn.close()


def template_cache_name(t) -> str:
    from app.services.template_cache import base_volume_name
    return base_volume_name(t)


def test_deploy_that_cannot_start_gives_everything_back(app, kvm):
    """The host is unreachable when the deploy runs: the job fails with the reason, and
    capacity, IP, volume and quota are released."""
    from app.models import Host
    with app.app_context():
        alice = accounts.user_by_uuid(kvm["alice"])
        host = hosts.get_host(kvm["host"])
        host.url = "qemu+tcp://127.0.0.1:9/system"  # as if libvirtd had stopped
        db.session.commit()
        vm, job = vms.deploy(alice, zone_uuid=kvm["zone"], service_offering_uuid=kvm["so"],
                             template_uuid=kvm["empty"], name="doomed")
        assert not _job_ok(job) and "127.0.0.1" in job.result
        vm = db.session.get(VirtualMachine, vm.id)
        assert vm.state == "Error" and not vm.capacity_reserved and not vm.quota_counted
        assert db.session.get(Host, host.id).memory_allocated == 0
        assert db.session.scalar(select(func.count()).select_from(IpAddress)) == 0
        assert all(v.removed is not None for v in vm.volumes)
        from app.services import quotas
        assert quotas.usage(alice.account_id)["user_vm"] == 0
