"""The libvirt driver on libvirt's own test driver (`test:///default`), in-process:
the real libvirt API over a fake node. It runs as the KVM type (the test driver
accepts any domain type). What the test driver cannot do (live media change,
consoles of its own, migration, volume resize) is declared in extras."""
from __future__ import annotations

import contextlib
import itertools
import uuid
from typing import Iterator

import libvirt

from app.hypervisors.base import ConsoleSpec, DiskSpec, DriverContext, HostConnection, StoragePoolSpec, VMSpec
from app.hypervisors.libvirt.types import KVM
from tests.contract.env import ContractEnv
from tests.contract.hostnet import LocalNet

NAME = "libvirt-test"
URI = "test:///default"
# Autoport stays -1 on the test driver: give each VM a fixed VNC port.
_ports = itertools.count(5900)


def available() -> str | None:
    return None  # libvirt-python is a runtime dependency; the test driver is built in


def _volume_exists(conn: libvirt.virConnect):
    def check(pool: StoragePoolSpec, name: str) -> bool:
        try:
            conn.storagePoolLookupByName(pool.uuid).storageVolLookupByName(name)
            return True
        except libvirt.libvirtError:
            return False
    return check


@contextlib.contextmanager
def environment(tmp_path) -> Iterator[ContractEnv]:
    # A connection of our own keeps test:///default's state alive for the whole
    # test and lets the hooks look at what libvirt really holds.
    watcher = libvirt.open(URI)
    driver = KVM.make_driver(HostConnection(url=URI, address="127.0.0.1"),
                             DriverContext(instance_path=str(tmp_path), testing=True))
    pool = StoragePoolSpec(uuid=str(uuid.uuid4()), name="contract", kind="Filesystem",
                           path=str(tmp_path / "pool"))

    def make_vm_spec(name: str) -> VMSpec:
        return VMSpec(name=name, uuid=str(uuid.uuid4()), cpus=1, cpu_mhz=500, memory_mib=64,
                      disks=[DiskSpec(path=str(tmp_path / f"{name}.raw"), format="RAW")],
                      console=ConsoleSpec(listen="127.0.0.1", port=next(_ports)))

    def make_snapshot_vm_spec(name: str) -> VMSpec:
        return VMSpec(name=name, uuid=str(uuid.uuid4()), cpus=1, cpu_mhz=500, memory_mib=64,
                      disks=[DiskSpec(path=str(tmp_path / f"{name}.qcow2"), format="QCOW2")],
                      console=ConsoleSpec(listen="127.0.0.1", port=next(_ports)))

    net = LocalNet()
    try:
        yield ContractEnv(driver=driver, hv_type=KVM, pool=pool, make_vm_spec=make_vm_spec,
                          extras={**net.extras(), "guest_ignores_acpi": False, "live_media": False,
                                  "make_snapshot_vm_spec": make_snapshot_vm_spec,
                                  "no_template_import": "libvirt's test driver has no virStorageVolUpload "
                                                        "(template import runs on the real libvirtd: kvm module)",
                                  "no_volume_backup": "libvirt's test driver has no virStorageVolDownload "
                                                      "(volume snapshots run on the real libvirtd: kvm module)",
                                  "iso_of": driver.iso_path, "volume_exists": _volume_exists(watcher),
                                  "unreachable": lambda: KVM.make_driver(
                                      HostConnection(url="qemu+tcp://127.0.0.1:9/system", address="127.0.0.1"),
                                      DriverContext(testing=True))})
    finally:
        net.close()
        for dom in watcher.listAllDomains(0):
            if dom.name().startswith("nubo-"):
                driver.destroy_vm(dom.name())
        driver.delete_storage_pool(pool)
        driver.close()
        watcher.close()
