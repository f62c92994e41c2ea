"""The networked test guest (tests/guests/net_guest.py) on the real local libvirtd,
without Nubo: a namespace on a test-made bridge plays its router (dnsmasq with a
static lease, a metadata HTTP server, a TCP listener). Proves the guest itself —
lease, console protocol, HTTP server, metadata reads, outbound connections — so the
end-to-end tests (tests/network/test_real_guest.py) can trust what it reports."""
from __future__ import annotations

import random
import shutil
import subprocess
import time
import uuid

import libvirt
import pytest

from tests.guests import net_guest

pytestmark = [pytest.mark.libvirt, pytest.mark.xdist_group("libvirt-guests")]
URI = "qemu:///system"

DOMAIN = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{disk}'/>
      <target dev='vda' bus='virtio'/></disk>
    <interface type='bridge'><source bridge='{bridge}'/><mac address='{mac}'/><model type='virtio'/></interface>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>"""


@pytest.fixture(scope="module")
def guest_image(tmp_path_factory):
    reason = net_guest.missing()
    if reason:
        pytest.fail(f"the networked test guest cannot be built: {reason} (scripts/sysdeps.sh test installs it)")
    return net_guest.build(tmp_path_factory.mktemp("netguest"))


@pytest.fixture
def lab(tmp_path):
    """A bridge with no uplink and a namespace on it standing for the guest's router:
    DHCP (one static lease), meta-data over HTTP, a TCP listener."""
    tag = uuid.uuid4().hex[:8]
    bridge = f"ngb{tag}"
    net = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    outside = None
    try:
        outside = net_guest.Outside(f"ngs{tag}", bridge, f"{net}.1/24")
        mac = "52:54:00:%02x:%02x:%02x" % tuple(random.randbytes(3))
        meta = tmp_path / "meta"
        (meta / "latest" / "meta-data").mkdir(parents=True)
        user_data = f"#cloud-config\n# for {tag}\nnubo-connect={net}.1:9000\n"
        (meta / "latest" / "user-data").write_text(user_data)
        (meta / "latest" / "meta-data" / "instance-id").write_text(f"i-{tag}")
        (meta / "latest" / "meta-data" / "public-keys").write_text(f"ssh-ed25519 AAAAkey{tag} test\n")
        outside.spawn("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                      "--port=0", "--bind-interfaces", "--interface=eth0", f"--pid-file={tmp_path}/dnsmasq.pid",
                      f"--dhcp-leasefile={tmp_path}/leases", f"--dhcp-range={net}.50,static,255.255.255.0",
                      f"--dhcp-host={mac},{net}.50", f"--dhcp-option=option:router,{net}.1",
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        outside.spawn(net_guest._python(), "-m", "http.server", "--bind", f"{net}.1", "--directory", str(meta), "80",
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        outside.listen(9000)
        yield dict(bridge=bridge, net=net, mac=mac, outside=outside, user_data=user_data, tag=tag)
    finally:
        if outside:
            outside.close()
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


def test_net_guest_boots_leases_serves_and_reads_its_metadata(guest_image, lab, tmp_path):
    disk = tmp_path / "disk.raw"
    shutil.copy(guest_image, disk)
    conn = libvirt.open(URI)
    name = f"netguest-{lab['tag']}"
    t0 = time.monotonic()
    dom = conn.createXML(DOMAIN.format(name=name, disk=disk, bridge=lab["bridge"], mac=lab["mac"]), 0)
    try:
        net, outside = lab["net"], lab["outside"]
        with net_guest.Console.of(conn, name) as console:
            state = console.report(deadline_s=180)
            ready_s = time.monotonic() - t0
            assert state["ip"] == f"{net}.50" and state["mac"] == lab["mac"]
            assert state["server"] == f"{net}.1" and state["router"] == f"{net}.1" and state["mask"] == "24"
            assert state["user-data"].decode() == lab["user_data"] and state["user-data.code"] == "200"
            assert state["instance-id"] == f"i-{lab['tag']}".encode()
            assert state["public-keys"].decode().strip() == f"ssh-ed25519 AAAAkey{lab['tag']} test"

            # The connection its user-data asked for arrived from its own address.
            src, data = outside.wait_accepted(f"instance-id=i-{lab['tag']}", deadline_s=30)
            assert src == f"{net}.50" and f"mac={lab['mac']}" in data

            # Its HTTP server answers with its identity.
            body = outside.http_body(f"{net}.50")
            assert net_guest.identity_of(body) == {"mac": lab["mac"], "ip": f"{net}.50", "instance-id": f"i-{lab['tag']}"}

            # Commands on the console: a connection on demand, a GET, a port where nothing listens.
            assert console.send(f"{net}.1", 9000)
            assert outside.accepted_from(f"{net}.50", 2) == 2
            assert console.get(f"{net}.1", 80, "/latest/meta-data/instance-id") == ("200", f"i-{lab['tag']}".encode())
            assert not console.send(f"{net}.1", 9001)
            assert console.get(f"{net}.1", 9001)[0] == "000"
            assert console.meta()["instance-id"] == f"i-{lab['tag']}".encode()
        print(f"net guest ready (lease, httpd, metadata) {ready_s:.1f} s after the domain started")
    finally:
        dom.destroy()
        conn.close()
