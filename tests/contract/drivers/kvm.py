"""The libvirt driver as the KVM type on this machine's real libvirtd
(`qemu:///system`): real guests from a small RAW disk made with
`qemu-img create -f raw`, VNC on 127.0.0.1. An empty disk stops at SeaBIOS
("No bootable device"), which ignores ACPI power-off: the graceful-stop test
sees the timeout and the forced stop. Names and pools are unique per test, and
everything this module made is removed afterwards."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import libvirt

from app.hypervisors.base import (ConsoleSpec, DiskSpec, DriverContext, HostConnection, StoragePoolSpec, TemplateSource,
                                  VMSpec)
from app.hypervisors.libvirt.types import KVM
from tests.contract.env import ContractEnv
from tests.contract.hostnet import LocalNet

NAME = "kvm"


def raw_image_source(tmp: Path, checksum_ok: bool) -> TemplateSource:
    """A real 8 MiB RAW image (qemu-img) with some content, and its SHA-256 (or a wrong one)."""
    import hashlib
    path = tmp / "template.raw"
    if not path.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), "8M"], check=True)
        with open(path, "r+b") as f:
            f.write(b"NUBO-TEMPLATE" * 4096)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if checksum_ok else "0" * 64
    return TemplateSource(format="RAW", size_bytes=path.stat().st_size, local_path=str(path),
                          checksum="{SHA-256}" + digest)
URI = "qemu:///system"


def available() -> str | None:
    if shutil.which("qemu-img") is None:
        return "qemu-img is not installed (scripts/sysdeps.sh test installs qemu-utils)"
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as e:
        return f"no libvirtd answers on {URI} (scripts/libvirtd.sh starts one): {e.get_error_message()}"
    conn.close()
    return None


@contextlib.contextmanager
def environment(tmp_path) -> Iterator[ContractEnv]:
    watcher = libvirt.open(URI)
    driver = KVM.make_driver(HostConnection(url=URI, address="127.0.0.1"),
                             DriverContext(instance_path=str(tmp_path), testing=True))
    pool = StoragePoolSpec(uuid=str(uuid.uuid4()), name="contract", kind="Filesystem",
                           path=str(tmp_path / "pool"))
    made: list[str] = []

    def make_vm_spec(name: str) -> VMSpec:
        disk = tmp_path / f"{name}.raw"
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "64M"], check=True)
        made.append(name)
        return VMSpec(name=name, uuid=str(uuid.uuid4()), cpus=1, cpu_mhz=500, memory_mib=64,
                      display_name=f"contract {name}", disks=[DiskSpec(path=str(disk), format="RAW")],
                      console=ConsoleSpec(listen="127.0.0.1"))

    def make_snapshot_vm_spec(name: str) -> VMSpec:
        """VM snapshots are internal qcow2 snapshots: a qcow2 disk."""
        disk = tmp_path / f"{name}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
        made.append(name)
        return VMSpec(name=name, uuid=str(uuid.uuid4()), cpus=1, cpu_mhz=500, memory_mib=64,
                      display_name=f"contract {name}", disks=[DiskSpec(path=str(disk), format="QCOW2")],
                      console=ConsoleSpec(listen="127.0.0.1"))

    def volume_exists(p: StoragePoolSpec, name: str) -> bool:
        on_disk = os.path.exists(os.path.join(p.path, name))
        try:
            watcher.storagePoolLookupByName(p.uuid).storageVolLookupByName(name)
            return True
        except libvirt.libvirtError:
            return on_disk

    def template_source(tmp: Path, checksum_ok: bool) -> TemplateSource:
        return raw_image_source(tmp, checksum_ok)

    net = LocalNet()
    try:
        yield ContractEnv(driver=driver, hv_type=KVM, pool=pool, make_vm_spec=make_vm_spec,
                          extras={**net.extras(), "real_taps": True, "guest_ignores_acpi": True, "live_media": True,
                                  "iso_of": driver.iso_path, "volume_exists": volume_exists,
                                  "template_source": template_source, "make_snapshot_vm_spec": make_snapshot_vm_spec,
                                  "unreachable": lambda: KVM.make_driver(
                                      HostConnection(url="qemu+tcp://127.0.0.1:9/system", address="127.0.0.1"),
                                      DriverContext(testing=True))})
    finally:
        net.close()
        for name in made:
            driver.destroy_vm(name)
        driver.delete_storage_pool(pool)
        driver.close()
        # Nothing of ours is left on the real libvirtd.
        leftovers = [d.name() for d in watcher.listAllDomains(0) if d.name() in made]
        leftovers += [p.name() for p in watcher.listAllStoragePools(0) if p.name() == pool.uuid]
        watcher.close()
        assert not leftovers, f"left behind on {URI}: {leftovers}"
