"""The storage heartbeat through a real libvirtd (this machine's, standing for a neighbour host):
scripts/host/nubo-heartbeat.sh writes it, LibvirtDriver.heartbeat_age reads its age through a
transient pool and a probe file (the storage's own clock) and leaves nothing behind."""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import libvirt
import pytest

from app.hypervisors.base import HostConnection, StoragePoolSpec
from app.hypervisors.libvirt.types import KVM

pytestmark = pytest.mark.libvirt
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "host" / "nubo-heartbeat.sh"


def test_a_neighbour_reads_the_heartbeat_age_and_leaves_nothing(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    pool = StoragePoolSpec(uuid=str(uuid.uuid4()), name="shared", kind="Filesystem", path=str(shared))
    d = KVM.make_driver(HostConnection("qemu:///system", "198.18.0.12"))
    try:
        assert d.heartbeat_age(pool, "198.18.0.11") is None  # no host has written one yet
        subprocess.run([str(SCRIPT), "-n", "198.18.0.11", "-d", str(shared), "-1"], check=True, timeout=30)
        hb = shared / "nubo-ha" / "hb-198.18.0.11"
        assert hb.read_text().strip().isdigit()
        assert d.heartbeat_age(pool, "198.18.0.11") < 30  # just written
        assert d.heartbeat_age(pool, "198.18.0.99") is None  # another host's: none
        st = hb.stat()
        os.utime(hb, (st.st_atime - 500, st.st_mtime - 500))  # the host died 500 s ago
        assert 499 <= d.heartbeat_age(pool, "198.18.0.11") < 560
        # Nothing left: no probe file, no transient pool; the shared pool itself stays defined here.
        assert sorted(p.name for p in (shared / "nubo-ha").iterdir()) == ["hb-198.18.0.11"]
        names = [p.name() for p in d.lv.listAllStoragePools(0)]
        assert f"nubo-ha-{pool.uuid}" not in names
    finally:
        try:
            d.delete_storage_pool(pool)
        finally:
            d.close()


def test_the_writer_fences_the_guests_of_a_storage_it_cannot_write(tmp_path):
    """-f: no beat written on a mount for that long → the QEMU processes naming the mount are
    killed (here a stand-in whose command line says qemu and the mount), before Nubo restarts
    them elsewhere; other processes are left alone."""
    gone = tmp_path / "file"
    gone.write_text("")
    mount = gone / "mnt"  # under a regular file: every write there fails, as on a dead mount
    sleep = shutil.which("sleep")
    guest = subprocess.Popen([f"qemu-system-x86_64 -drive file={mount}/disk", "300"], executable=sleep)
    bystander = subprocess.Popen(["qemu-system-x86_64 -drive file=/elsewhere", "300"], executable=sleep)
    writer = subprocess.Popen([str(SCRIPT), "-n", "198.18.0.11", "-d", str(mount), "-i", "1", "-f", "2"],
                              stderr=subprocess.PIPE, text=True)
    try:
        assert guest.wait(timeout=60) == -9  # killed with SIGKILL
        assert bystander.poll() is None
    finally:
        writer.terminate()
        _, err = writer.communicate(timeout=30)
        for p in (guest, bystander):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert f"no heartbeat on {mount}" in err and f"cannot write the heartbeat on {mount}" in err
