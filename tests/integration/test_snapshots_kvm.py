"""Volume snapshots on the real local libvirtd (issue 17's acceptance for snapshots): a running
guest's root disk snapshotted (an external disk-only snapshot freezes it, the frozen disk is
copied with qemu-img convert into one QCOW2 on the image store, the overlay is committed back),
listed, the disk changed behind it and reverted (VM stopped) to exactly the snapshot's
content, the snapshot turned into a template that a new real guest boots from (it honours
ACPI power-off: its kernel ran), and deleted. Two guests in all."""
from __future__ import annotations

import hashlib
import json
import subprocess
import xml.etree.ElementTree as ET

import libvirt
import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import OsType, Snapshot, Template
from app.services import accounts, vms
from app.services.snapshots import volume as snapshots
from app.services import templates
from tests.integration.test_vm_kvm import SUFFIX, _deploy, _job_ok, bridge, guest_image, kvm, www  # noqa: F401
from tests.helpers import kvm_zone

pytestmark = [pytest.mark.libvirt, pytest.mark.xdist_group("libvirt-guests")]


def _content(path, tmp_path) -> str:
    """The guest-visible bytes of a disk image (its backing chain read through), hashed."""
    out = tmp_path / "content.raw"
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", str(path), str(out)], check=True)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.unlink()
    return digest


def _info(path) -> dict:
    return json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], check=True,
                                     capture_output=True, text=True).stdout)


def _stop(alice, vm_uuid) -> None:
    for _ in range(6):  # the guest may still be booting: ask again
        if _job_ok(vms.stop(alice, vm_uuid)):
            return
    raise AssertionError("the guest did not power off on ACPI")


def test_snapshot_of_a_real_guest_taken_reverted_and_booted_as_a_template(app, kvm, tmp_path):
    conn = libvirt.open(kvm_zone.URI)
    with app.app_context():
        alice = accounts.user_by_uuid(kvm["alice"])
        vm = _deploy(alice, kvm, "acpi", "snap1")
        dom = conn.lookupByName(vm.instance_name)
        root = next(v for v in vm.volumes if v.volume_type == "ROOT")
        disk = root.path

        # Taken while the guest runs: it keeps running on its own disk, no overlay left behind
        job = snapshots.submit_create(alice, root.uuid, name="running")
        assert _job_ok(job), job.result
        s = db.session.scalar(select(Snapshot).where(Snapshot.uuid == job.instance_id))
        assert s.state == "BackedUp" and s.size == root.size
        copy = snapshots.file_of(s)
        info = _info(copy)
        assert info["format"] == "qcow2" and "backing-filename" not in info  # one self-contained image
        assert info["virtual-size"] == root.size and s.physical_size == copy.stat().st_size
        assert dom.isActive()
        assert ET.fromstring(dom.XMLDesc(0)).find("devices/disk/source").get("file") == disk
        assert ET.fromstring(dom.XMLDesc(0)).find("devices/disk/backingStore/source") is not None  # the template
        pool = conn.storagePoolLookupByName(kvm["pool"])
        pool.refresh(0)
        assert not [n for n in pool.listVolumes() if "nubo-overlay" in n or n.startswith("nubo-snapshot-")]
        rows, total = snapshots.list_snapshots(alice, volume_uuid=root.uuid)
        assert total == 1 and rows[0].uuid == s.uuid

        # Reverting needs the VM stopped; then the disk is exactly the snapshot again
        with pytest.raises(Exception, match="shutdown"):
            snapshots.submit_revert(alice, s.uuid)
        _stop(alice, vm.uuid)
        wanted = _content(copy, tmp_path)
        assert _content(disk, tmp_path) == wanted
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 1M", disk], check=True,
                       capture_output=True)
        assert _content(disk, tmp_path) != wanted
        job = snapshots.submit_revert(alice, s.uuid)
        assert _job_ok(job), job.result
        assert _content(disk, tmp_path) == wanted
        assert _job_ok(vms.start(alice, vm.uuid)) and dom.isActive()
        _stop(alice, vm.uuid)  # it still boots and answers ACPI from the reverted disk

        # A template from the snapshot; a new real guest boots from it
        os_type = db.session.scalars(select(OsType)).first().uuid
        job = snapshots.submit_create_template(alice, name="from-snapshot", display_text=None, os_type_uuid=os_type,
                                               snapshot_uuid=s.uuid)
        assert _job_ok(job), job.result
        t = db.session.scalar(select(Template).where(Template.uuid == job.instance_id))
        assert t.format == "QCOW2" and t.hypervisor_type == "KVM" and t.size == root.size
        kvm["from-snapshot"] = t.uuid
        new = _deploy(alice, kvm, "from-snapshot", "fromsnap")
        assert conn.lookupByName(new.instance_name).isActive()
        _stop(alice, new.uuid)  # it powered off on ACPI: its kernel booted from the template

        # Deleted: the copy goes; the template made from it stays usable
        job = snapshots.submit_delete(alice, s.uuid)
        assert _job_ok(job), job.result
        assert not copy.exists()
        ref = templates.refs_of(t)[0]
        assert (templates.store_root(templates.ref_store(ref)) / ref.install_path).exists()
    conn.close()
