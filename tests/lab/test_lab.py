"""The lab itself (scripts/lab.sh), at libvirt level: two hosts that are distinct libvirt
hosts, live migration between them with the disk left on the shared storage, and a power
cut (`fail`) and reboot (`recover`) of a host with a running guest."""
from __future__ import annotations

import os
import socket
import subprocess
import uuid

import libvirt
import pytest

from app.hypervisors.base import HostUnreachable

pytestmark = [pytest.mark.libvirt, pytest.mark.xdist_group("lab")]

DOMAIN = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{disk}'/>
<target dev='vda' bus='virtio'/></disk></devices></domain>"""


def _qemu_pids(name: str) -> list[str]:
    r = subprocess.run(["pgrep", "-f", f"guest={name},"], capture_output=True, text=True)
    return r.stdout.split()


def test_migration_and_power_cut(lab):
    h1, h2 = lab.hosts
    name = "labtest-" + uuid.uuid4().hex[:8]
    disk = f"{lab.storage_path}/{name}.raw"
    lab.run(h1.name, "qemu-img", "create", "-f", "raw", disk, "16M")
    assert os.path.exists(f"{lab.storage_dir}/{name}.raw")  # one storage, seen from here too

    with lab.connect(h1.name) as c1, lab.connect(h2.name) as c2:
        # Distinct hosts: own hostname, own host UUID.
        assert (c1.getHostname(), c2.getHostname()) == ("lab1", "lab2")
        assert h1.host_uuid in c1.getCapabilities() and h2.host_uuid in c2.getCapabilities()
        dom = c1.defineXML(DOMAIN.format(name=name, disk=disk))
        dom.create()
        # Live, peer to peer (lab1's libvirtd opens qemu+ssh:// to lab2 itself), disk in place:
        # libvirt accepts it because the storage is shared (GlusterFS).
        flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
                 | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
        dom.migrateToURI3(h2.uri, {libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{h2.address}"}, flags)
        assert c2.lookupByName(name).isActive()
        with pytest.raises(libvirt.libvirtError):
            c1.lookupByName(name)

    # Power cut: the host is unreachable and its guest's QEMU is gone at once.
    assert _qemu_pids(name)
    lab.fail(h2.name)
    assert lab.state(h2.name) == "failed" and not _qemu_pids(name)
    # Nothing answers on its address (a connection attempt waits out its timeout, as with a
    # real dead host whose address this machine still knows).
    with pytest.raises(OSError):
        socket.create_connection((h2.address, 22), timeout=3).close()
    # Nubo's driver gives up after its connect timeout instead of the kernel's SYN retries.
    with pytest.raises(HostUnreachable, match="does not answer"):
        with lab.connect(h2.name):
            pass
    assert subprocess.run(["ping", "-c", "1", "-W", "1", h2.address], capture_output=True).returncode != 0

    # Reboot: the guest is still defined (on the host's disk), not running.
    lab.recover(h2.name)
    assert lab.state(h2.name) == "up"
    with lab.connect(h2.name) as c2:
        dom = c2.lookupByName(name)
        assert not dom.isActive() and dom.isPersistent()
