"""The `lab` fixture: real libvirt hosts on this machine (scripts/lab.sh; README "Lab: several
real hosts on one machine"). Tests of several hosts (migration, maintenance, HA, VXLAN) use it.

Interface (stable; build on it, extend it compatibly):

    pytestmark = [pytest.mark.libvirt, pytest.mark.xdist_group("lab")]   # one lab at a time

    def test_something(app, lab):
        h1, h2 = lab.hosts                 # LabHost: name ("lab1"), uri, address, ssh_host_key,
                                           #   netns, link, host_uuid
        lab.host("lab2")                   # by name
        lab.host_fields(h1)                # the add-host fields for Nubo: ssh_private_key,
                                           #   ssh_host_key (pinned), acceleration=emulated
        lab.storage_url                    # "file:///mnt/nubo-lab/primary" for createStoragePool
        lab.storage_path                   # /mnt/nubo-lab/primary: where hosts mount it
        lab.storage_dir                    # the same storage seen from this machine
        lab.info["storage_kind"]           # "glusterfs" (live migration allowed) or "directory"
        lab.bridge_address                 # this machine on the lab network (Nubo's address)
        lab.traffic_label                  # "cloudbr0": the bridge for guest NICs on every host
        lab.fail("lab1"); lab.recover("lab1")   # power cut / boot again (scripts/lab.sh)
        lab.state("lab1")                  # "up", "failed" or "down"
        lab.run("lab1", "ip", "-br", "link")    # a command inside the host (CompletedProcess)
        with lab.connect("lab1") as conn:  # a libvirt connection to the host (libvirt-python)
            conn.listAllDomains()

- The lab (2 hosts) is made once per pytest worker (session scope) and removed at the end.
  Its number (NUBO_LAB_ID) is the first one free on this machine (an flock per number), so
  test runs side by side each have their own lab; network 198.19.<id>.0/24.
- After each test of tests/lab/, `lab.wipe()` puts the lab back as it was made: failed hosts
  recovered, every domain destroyed and undefined, every storage pool removed, the shared
  storage emptied. Tests need not clean up the hosts themselves (they still clean up what
  they made on this machine). Per-host daemons of a feature go in scripts/lab.d/ (hooks run
  at up and recover, see scripts/lab.d/README).
- Guests run under QEMU's emulation (acceleration=emulated): these machines' KVM cannot boot a
  real kernel.
- What other features must know (README has the details): a guest's VNC listens on its host's
  address, so a migration must rewrite it for the destination; a failed host's address does
  not answer at all (connections time out, ARP is cached), Nubo's driver gives up after
  CONNECT_TIMEOUT (5 s); test_lab.py shows a live migration with libvirt's own calls.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import requires

ROOT = Path(__file__).resolve().parents[2]
LAB_SH = str(ROOT / "scripts" / "lab.sh")
HOSTS = 2


@dataclass(frozen=True)
class LabHost:
    name: str
    uri: str
    address: str
    ssh_host_key: str
    netns: str
    link: str
    host_uuid: str


class Lab:
    def __init__(self, lab_id: int):
        self.id = lab_id
        self.env = {**os.environ, "NUBO_LAB_ID": str(lab_id)}
        self.env.pop("NUBO_LAB_DIR", None)
        self._load()

    # --- scripts/lab.sh ---------------------------------------------------------

    def sh(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        r = subprocess.run([LAB_SH, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"scripts/lab.sh {' '.join(args)} failed ({r.returncode}): "
                                 f"{(r.stderr or r.stdout)[-2000:]}")
        return r

    def _load(self) -> None:
        info = json.loads(self.sh("json").stdout)
        self.info = info
        self.dir = info["dir"]
        self.storage_url = info["storage_url"]
        self.storage_path = info["storage_path"]
        self.storage_dir = info["storage_dir"]
        self.bridge_address = info["bridge_address"]
        self.ssh_private_key = info["ssh_private_key"]
        self.traffic_label = "cloudbr0"
        self.hosts = [LabHost(h["name"], h["uri"], h["address"], h["ssh_host_key"], h["netns"], h["link"],
                              h["host_uuid"]) for h in info["hosts"]]

    def host(self, name: str) -> LabHost:
        return next(h for h in self.hosts if h.name == name)

    def host_fields(self, host: LabHost | str) -> dict[str, str]:
        """Nubo's add-host fields for a lab host (hosts.add_host(fields=...), addHost's details)."""
        h = self.host(host) if isinstance(host, str) else host
        return {"username": "root", "ssh_private_key": self.ssh_private_key, "ssh_host_key": h.ssh_host_key,
                "acceleration": "emulated"}

    def state(self, name: str) -> str:
        for line in self.sh("list").stdout.splitlines():
            parts = line.split()
            if parts and parts[0] == name:
                return parts[2]
        raise KeyError(name)

    def fail(self, name: str) -> None:
        self.sh("fail", name)

    def recover(self, name: str) -> None:
        self.sh("recover", name)

    def run(self, name: str, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """A command inside a lab host (its network, mount and UTS namespaces)."""
        return self.sh("exec", name, *argv, check=check, timeout=timeout)

    @contextlib.contextmanager
    def connect(self, name: str) -> Iterator:
        """A libvirt connection to the host as Nubo opens it (qemu+ssh with the pinned key)."""
        from app.hypervisors.base import DriverContext, HostConnection
        from app.hypervisors.libvirt.types import KVM
        h = self.host(name)
        driver = KVM.make_driver(HostConnection(h.uri, h.address, self.host_fields(h)),
                                 DriverContext(instance_path=os.path.join(self.dir, "test-client")))
        try:
            yield driver.lv
        finally:
            driver.close()

    # --- between tests ------------------------------------------------------------

    def wipe(self) -> None:
        """The lab as made: failed hosts recovered, no domain, no pool, empty shared storage."""
        import libvirt
        for h in self.hosts:
            if self.state(h.name) != "up":
                self.recover(h.name)
        for h in self.hosts:
            with self.connect(h.name) as conn:
                for dom in conn.listAllDomains(0):
                    with contextlib.suppress(libvirt.libvirtError):
                        if dom.isActive():
                            dom.destroy()
                    with contextlib.suppress(libvirt.libvirtError):
                        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                                          | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                                          | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
                for pool in conn.listAllStoragePools(0):
                    with contextlib.suppress(libvirt.libvirtError):
                        if pool.isActive():
                            pool.destroy()
                    with contextlib.suppress(libvirt.libvirtError):
                        pool.undefine()
        try:
            os.stat(self.storage_dir)
        except OSError:  # this machine's GlusterFS mount dropped: `up` mounts it again
            self.sh("up", str(len(self.hosts)))
        for entry in Path(self.storage_dir).iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _take_lab_id() -> tuple[int, object]:
    """The first lab number no other test run on this machine holds (an flock held all session)."""
    os.makedirs("/run/lock", exist_ok=True)
    for n in range(1, 251):
        fh = open(f"/run/lock/nubo-lab-{n}.lock", "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        return n, fh
    pytest.fail("no free lab number (250 labs running?)")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("the lab needs root (namespaces, bridges, libvirtd)")
    requires.need("/usr/sbin/libvirtd", "/usr/sbin/virtlogd", "/usr/sbin/sshd", "ssh-keygen", "nsenter",
                  "unshare", "ip", "/usr/sbin/glusterd", "mount.glusterfs",
                  why="scripts/sysdeps.sh test installs them (GlusterFS: the shared primary storage)")
    lab_id, lock = _take_lab_id()
    env = {**os.environ, "NUBO_LAB_ID": str(lab_id)}
    env.pop("NUBO_LAB_DIR", None)
    # A lab of this number left by a killed run goes first.
    subprocess.run([LAB_SH, "down"], env=env, capture_output=True, timeout=120)
    try:
        up = subprocess.run([LAB_SH, "up", str(HOSTS)], env=env, capture_output=True, text=True, timeout=300)
        if up.returncode != 0:
            pytest.fail(f"scripts/lab.sh up {HOSTS} failed: {(up.stderr or up.stdout)[-3000:]}")
        yield Lab(lab_id)
    finally:
        down = subprocess.run([LAB_SH, "down"], env=env, capture_output=True, text=True, timeout=120)
        lock.close()
        if down.returncode != 0:
            raise AssertionError(f"scripts/lab.sh down failed: {down.stderr[-2000:]}")


@pytest.fixture(scope="session")
def acpi_image(tmp_path_factory):
    """The ACPI test guest (tests/guests/acpi_guest.py), built once per worker."""
    from tests.guests import acpi_guest
    from tests.helpers.www import built_guest
    return built_guest(acpi_guest, tmp_path_factory.mktemp("acpi-guest"))


@pytest.fixture
def acpi_www(tmp_path, acpi_image):
    """A loopback HTTP server with the guest as /acpi.raw (registerTemplate's url)."""
    from tests.helpers.www import serve_files
    with serve_files(tmp_path / "www", {"acpi.raw": acpi_image}) as url:
        yield url


@pytest.fixture(autouse=True)
def _wiped_lab(request):
    """Each test of tests/lab/ that used the lab leaves it as made (Lab.wipe)."""
    yield
    if "lab" in request.fixturenames:
        request.getfixturevalue("lab").wipe()
