"""VM snapshots of a real guest on the local libvirtd (one guest, booted once), through Nubo's
services and jobs: internal qcow2 snapshots by virDomainSnapshotCreateXML, with the memory of the
running guest and disk-only of the stopped one; the disk's content written between them (by
qemu-io on the stopped guest's qcow2) is what a revert takes back; a memory revert brings the
stopped guest back running from the saved memory (libvirt: running, reason from_snapshot) and it
answers ACPI again; deletes leave no internal snapshot in the image; expunge leaves no domain."""
from __future__ import annotations

import json
import subprocess
import time

import libvirt
import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import VMSnapshot, Volume
from app.services import accounts, vms
from app.services.errors import InvalidParameter
from app.services.snapshots import vm_snapshots
from tests.integration.test_vm_kvm import SUFFIX, URI, _deploy, _job_ok, bridge, guest_image, kvm, www  # noqa: F401

pytestmark = [pytest.mark.libvirt, pytest.mark.xdist_group("libvirt-guests")]
OFFSET, LENGTH = "1M", "64k"  # a region of the root disk the test writes patterns into


def _io(path: str, cmd: str, *, shared: bool = False) -> subprocess.CompletedProcess:
    args = ["qemu-io", "-f", "qcow2"] + (["-U", "-r"] if shared else []) + ["-c", cmd, path]
    return subprocess.run(args, capture_output=True, text=True)


def _has(path: str, byte: int, *, shared: bool = False) -> bool:
    out = _io(path, f"read -P 0x{byte:02x} {OFFSET} {LENGTH}", shared=shared)
    return out.returncode == 0 and "Pattern verification failed" not in out.stdout + out.stderr


def _internal(path: str) -> set[str]:
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path], capture_output=True, text=True,
                         check=True)
    return {s["name"] for s in json.loads(out.stdout).get("snapshots", [])}


def _snap(alice, vm, **kw) -> VMSnapshot:
    job = vm_snapshots.create(alice, vm.uuid, **kw)
    assert _job_ok(job), job.result
    return db.session.scalar(select(VMSnapshot).where(VMSnapshot.uuid == job.instance_id))


def test_vm_snapshots_of_a_real_guest(app, kvm):
    conn = libvirt.open(URI)
    try:
        with app.app_context():
            alice = accounts.user_by_uuid(kvm["alice"])
            vm = _deploy(alice, kvm, "acpi", "snap1")
            booted_at = time.monotonic() + 15  # it boots in ~12 s under emulation (ACPI answered after)
            dom = conn.lookupByName(vm.instance_name)
            root = db.session.scalar(select(Volume).where(Volume.vm_id == vm.id, Volume.volume_type == "ROOT"))
            path = root.path
            assert root.format == "QCOW2"

            # KVM's rule: a running VM's snapshot includes its memory.
            with pytest.raises(InvalidParameter, match="does not allow to take a disk-only snapshot"):
                vm_snapshots.create(alice, vm.uuid, name="nope")
            assert db.session.scalar(select(func.count()).select_from(VMSnapshot)) == 0

            mem = _snap(alice, vm, name="with-memory", memory=True)
            assert mem.state == "Ready" and mem.snapshot_type == "DiskAndMemory" and mem.current
            s = dom.snapshotLookupByName(mem.name)
            assert "<state>running</state>" in s.getXMLDesc(0)
            assert mem.name in _internal(path)  # inside the qcow2 image, memory included
            assert dom.isActive()

            # Stop it (ACPI), write 0xaa, take a disk-only snapshot, write 0xbb over it.
            time.sleep(max(0.0, booted_at - time.monotonic()))
            for _ in range(4):
                if _job_ok(vms.stop(alice, vm.uuid)):
                    break
            assert vms.get_vm(alice, vm.uuid).state == "Stopped" and not dom.isActive()
            assert _io(path, f"write -P 0xaa {OFFSET} {LENGTH}").returncode == 0
            disk = _snap(alice, vm, name="disk-only")
            assert disk.snapshot_type == "Disk" and disk.parent_id == mem.id and disk.current
            assert "<state>shutoff</state>" in dom.snapshotLookupByName(disk.name).getXMLDesc(0)
            assert _io(path, f"write -P 0xbb {OFFSET} {LENGTH}").returncode == 0
            assert _has(path, 0xbb)

            # Revert to the disk-only snapshot: the VM stays Stopped, the disk has 0xaa again.
            assert _job_ok(vm_snapshots.revert(alice, disk.uuid))
            assert vms.get_vm(alice, vm.uuid).state == "Stopped" and not dom.isActive()
            assert _has(path, 0xaa) and not _has(path, 0xbb)

            # Revert to the memory snapshot: running again from the saved memory, the disk as it was
            # then (neither pattern), and the guest (its ACPI handler, in memory) answers a stop.
            assert _job_ok(vm_snapshots.revert(alice, mem.uuid))
            vm = vms.get_vm(alice, vm.uuid)
            assert vm.state == "Running" and dom.isActive()
            state, reason = dom.state()
            assert state == libvirt.VIR_DOMAIN_RUNNING and reason == libvirt.VIR_DOMAIN_RUNNING_FROM_SNAPSHOT
            assert not _has(path, 0xaa, shared=True) and not _has(path, 0xbb, shared=True)
            db.session.expire_all()
            assert db.session.get(VMSnapshot, mem.id).current and not db.session.get(VMSnapshot, disk.id).current
            assert vm.console_port  # the console Nubo records is the restored guest's

            stopped = False
            for _ in range(4):
                if _job_ok(vms.stop(alice, vm.uuid)):
                    stopped = True
                    break
            assert stopped and not dom.isActive()

            # Delete both: gone from libvirt and from the image.
            for snap in (disk, mem):
                assert _job_ok(vm_snapshots.delete(alice, snap.uuid))
            assert dom.snapshotNum(0) == 0 and _internal(path) == set()
            assert vm_snapshots.of_vm(vm) == []

            # A snapshot left on the VM goes with it at expunge (the domain is undefined with it).
            _snap(alice, vm, name="last")
            assert _job_ok(vms.destroy(alice, vm.uuid, expunge=True))
            with pytest.raises(libvirt.libvirtError):
                conn.lookupByName(vm.instance_name)
            assert db.session.scalar(select(func.count()).select_from(VMSnapshot).where(
                VMSnapshot.removed.is_(None))) == 0
    finally:
        for d in conn.listAllDomains(0):  # snapshot metadata would keep kvm_zone.clean_up from undefining
            if d.name().endswith("-" + SUFFIX):
                if d.isActive():
                    d.destroy()
                d.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        conn.close()
