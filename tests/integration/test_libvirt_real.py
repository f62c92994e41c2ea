"""The libvirt family on this machine's real libvirtd: the KVM/qemu choice from
the host's capabilities, the host-type check against a real KVM host, and LXC
containers on `lxc:///system` from a tiny root filesystem built here."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import libvirt
import pytest

from app.hypervisors.base import (
    ConsoleKind, DriverContext, HostConnection, PowerState, VMSpec, WrongHypervisor,
)
from app.hypervisors.libvirt import flavours as F
from app.hypervisors.libvirt.types import KVM, LXC, XEN

pytestmark = pytest.mark.libvirt


def _open(uri: str) -> libvirt.virConnect:
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as e:
        pytest.fail(f"no libvirtd on {uri} (scripts/libvirtd.sh starts one): {e.get_error_message()}")


def test_kvm_flavour_follows_this_hosts_capabilities():
    conn = _open("qemu:///system")
    try:
        offered = F.offered_domain_types(conn.getCapabilities(), "hvm")
    finally:
        conn.close()
    d = KVM.make_driver(HostConnection("qemu:///system", "127.0.0.1"))
    try:
        facts = d.check_host()
        assert facts.hypervisor == "KVM" and facts.cpu_cores >= 1
        # /dev/kvm usable: type='kvm'; otherwise QEMU's emulation, never a guess.
        assert d.flavour.domain_type == ("kvm" if "kvm" in offered else "qemu")
    finally:
        d.close()


@pytest.mark.parametrize("hv_type, uri", [(XEN, "xen:///system"), (XEN, "qemu:///system"),
                                          (LXC, "qemu:///system"), (KVM, "lxc:///system")])
def test_this_kvm_host_is_refused_as_another_type(hv_type, uri):
    d = hv_type.make_driver(HostConnection(uri, "127.0.0.1"))
    try:
        with pytest.raises(WrongHypervisor):
            d.check_host()
    finally:
        d.close()


def _rootfs(root: Path) -> Path:
    """A minimal root filesystem: the host's sh and sleep with their libraries."""
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc"):
        (root / d).mkdir(parents=True, exist_ok=True)
    binaries = [shutil.which("sh"), shutil.which("sleep")]
    libs = set()
    for b in binaries:
        shutil.copy2(b, root / "bin")
        out = subprocess.run(["ldd", b], capture_output=True, text=True).stdout
        libs.update(tok for tok in out.split() if tok.startswith("/"))
    for lib in libs:
        dest = root / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest, follow_symlinks=True)
    return root


@pytest.fixture
def lxc_uri():
    """A libvirtd of this test's own that can run containers: lxc:///system?socket=...

    libvirt 9.0 finds two cgroup layouts on these machines (v1 controllers on a tmpfs at
    /sys/fs/cgroup, and cgroup2 at /sys/fs/cgroup/unified with the hugetlb controller) and
    uses both. Inside a new container libvirt_lxc sets the v2 one up first: it makes
    /sys/fs/cgroup/unified on the container's read-only sysfs before the v1 step has put a
    tmpfs there, and fails ("Unable to create directory /sys/fs/cgroup/unified"). This daemon
    runs in a mount namespace of its own without that cgroup2 mount (the host keeps it), so
    libvirt sees cgroup v1 only, which libvirt_lxc sets up. Its /run/libvirt, /var/lib/libvirt,
    /var/log/libvirt and /etc/libvirt are its own too (the system libvirtd's LXC driver holds
    a lock in /run/libvirt/lxc); only its socket is visible, in a directory of this test."""
    if subprocess.run(["mountpoint", "-q", "/sys/fs/cgroup/unified"]).returncode != 0:
        yield "lxc:///system"  # no hybrid layout here: the system libvirtd as it is
        return
    top = Path(tempfile.mkdtemp(prefix="nubo-lxc-"))  # short: a unix socket path has 107 bytes
    for d in ("etc", "run", "lib", "log", "sock"):
        (top / d).mkdir()
    # The system's settings (qemu.conf, ...) but none of its domains, networks or pools: this
    # daemon must not autostart a second copy of anything the system libvirtd runs.
    for conf in Path("/etc/libvirt").glob("*.conf"):
        shutil.copy2(conf, top / "etc" / conf.name)
    (top / "etc" / "libvirtd.conf").write_text(f'unix_sock_dir = "{top}/sock"\nlisten_tls = 0\nlisten_tcp = 0\n')
    script = (f"umount /sys/fs/cgroup/unified && mount --bind {top}/etc /etc/libvirt && "
              f"mount --bind {top}/run /run/libvirt && mount --bind {top}/lib /var/lib/libvirt && "
              f"mount --bind {top}/log /var/log/libvirt && "
              f"exec /usr/sbin/libvirtd -f /etc/libvirt/libvirtd.conf -p {top}/libvirtd.pid")
    # unshare without --fork execs: the child's pid is libvirtd's own.
    daemon = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                              stdout=subprocess.DEVNULL, stderr=open(top / "daemon.log", "wb"))
    uri = f"lxc:///system?socket={top}/sock/libvirt-sock"
    try:
        deadline = time.monotonic() + 60
        while True:  # until it answers (or has died): its state, not a time
            if daemon.poll() is not None:
                pytest.fail(f"the test's libvirtd exited: {(top / 'daemon.log').read_text()[-2000:]}")
            try:
                libvirt.open(uri).close()
                break
            except libvirt.libvirtError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield uri
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(top, ignore_errors=True)


def _console_lines(uri: str, name: str, want: int) -> list[str]:
    """Lines the container's init printed on its text console (virDomainOpenConsole)."""
    conn = libvirt.open(uri)
    try:
        stream = conn.newStream(0)
        conn.lookupByName(name).openConsole(None, stream, 0)
        data = b""
        while data.count(b"\n") < want:
            chunk = stream.recv(4096)
            if not isinstance(chunk, bytes) or not chunk:
                break
            data += chunk
        stream.abort()
        return data.decode(errors="replace").splitlines()
    finally:
        conn.close()


def test_lxc_container_start_and_stop(tmp_path, lxc_uri):
    _open(lxc_uri).close()
    d = LXC.make_driver(HostConnection(lxc_uri, "127.0.0.1"), DriverContext(testing=True))
    name = f"nubo-lxc-{uuid.uuid4().hex[:8]}"
    spec = VMSpec(name=name, uuid=str(uuid.uuid4()), cpus=1, cpu_mhz=100, memory_mib=64,
                  root_fs_path=str(_rootfs(tmp_path / "rootfs")),
                  # PID 1 ignores SIGTERM unless it handles it: this init does, and says it lives.
                  cmdline="/bin/sh -c \"trap 'exit 0' TERM; i=0; while :; do echo tick $i; i=$((i+1)); sleep 1; done\"")
    try:
        assert d.check_host().hypervisor == "LXC"
        info = d.start_vm(spec)
        assert info.state == PowerState.RUNNING
        assert d.vm_info(name).state == PowerState.RUNNING
        assert d.console_target(name).kind is ConsoleKind.TEXT
        lines = [line for line in _console_lines(lxc_uri, name, 2) if line.strip()]
        assert lines and all(line.startswith("tick ") for line in lines), lines
        assert d.stop_vm(name, timeout=15) is True
        assert d.vm_info(name).state == PowerState.STOPPED
    finally:
        d.destroy_vm(name)
        d.close()
