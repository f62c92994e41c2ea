"""The shipped example extension (extensions/virsh/virsh.py) called directly, as Nubo calls
it (`<path> <action> <payload.json> <timeout>`), on this machine's real libvirtd, with
payload files built by hand from the contract. Each step is checked on libvirt itself.

A VM's whole life through Nubo's External type with this extension is
tests/integration/test_external_virsh.py; this file covers what the extension does on
its own: the template overlay, idempotent retries, a create killed midway, bad input."""
from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import libvirt
import pytest

from app.console import vncauth
from tests.console_support import TCP, rfb_handshake
from tests.helpers import requires

pytestmark = pytest.mark.libvirt

SCRIPT = Path(__file__).resolve().parents[2] / "extensions" / "virsh" / "virsh.py"
URI = "qemu:///system"


@pytest.fixture
def conn():
    requires.need("virsh", "qemu-img", why="scripts/sysdeps.sh test installs libvirt-clients and qemu-utils")
    subprocess.run(["scripts/libvirtd.sh"], cwd=SCRIPT.parents[2], check=True)
    c = libvirt.open(URI)
    yield c
    c.close()


@pytest.fixture
def prefix(conn):
    """Our domains' names start with it; whatever is left of them is removed at the end."""
    p = f"vxt{secrets.token_hex(3)}-"
    yield p
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(p):
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


def payload(tmp: Path, prefix: str, *, vm_uuid: str, vm=None, details=None, parameters=None, **top) -> dict:
    p = {
        "externaldetails": {
            "extension": {"orchestratorrequirespreparevm": "true", "domain_prefix": prefix},
            "resourcemap": {"uri": URI},
            "host": {"image_dir": str(tmp / "images"), "stop_grace_seconds": "0"},
            "virtualmachine": vm or {},
        },
        "virtualmachineid": vm_uuid,
        "virtualmachinename": "web1",
        "cloudstack.vm.details": {
            "name": f"i-2-{vm_uuid[:4]}-VM", "uuid": vm_uuid, "cpus": 1,
            "minRam": 96 << 20, "maxRam": 128 << 20,
            "nics": [{"uuid": str(uuid.uuid4()), "mac": "02:00:5e:00:00:0a", "ip": "198.18.0.10",
                      "broadcastUri": "vlan://100"}],
            "details": details or {},
        },
        "caller": {"name": "admin", "roletype": "Admin"},
    }
    if parameters is not None:
        p["parameters"] = parameters
    p.update(top)
    return p


def call(tmp: Path, action: str, body, timeout: int = 60) -> tuple[int, dict | str]:
    f = tmp / f"{action}.json"
    f.write_text(body if isinstance(body, str) else json.dumps(body))
    r = subprocess.run([str(SCRIPT), action, str(f), str(timeout)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout + 10)
    try:
        return r.returncode, json.loads(r.stdout)
    except json.JSONDecodeError:
        return r.returncode, r.stdout


def rfb_security_types(port: int) -> list[int]:
    """What the VNC server asks of a viewer (RFB 3.8): 2 is VNC authentication, 1 none."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert s.recv(12).startswith(b"RFB ")
        s.sendall(b"RFB 003.008\n")
        n = s.recv(1)[0]
        return list(s.recv(n))


class _Handler:
    """What vncauth.greet_viewer uses of websockify's handler, over a plain socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.request = self

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self) -> bool:
        return False

    def recv_frames(self):
        data = self.sock.recv(4096)
        return ([data] if data else []), (None if data else {"code": 1000, "reason": ""})

    def send_frames(self, bufs=None) -> bool:
        for b in bufs or []:
            self.sock.sendall(b)
        return False


def _pump(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass


def viewer_through_the_proxys_handshake(port: int, password: str) -> tuple[int, int, str]:
    """The console proxy's part (vncauth) between a viewer offered no authentication and the
    guest's VNC server, which asks for `password`: what the viewer reads of ServerInit."""
    server = socket.create_connection(("127.0.0.1", port), timeout=10)
    viewer, proxy_side = socket.socketpair()
    errors = []

    def proxy():
        try:
            vncauth.authenticate(server, password)
            early = vncauth.greet_viewer(_Handler(proxy_side))
            if early:
                server.sendall(early)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)
            proxy_side.close()
            return
        threading.Thread(target=_pump, args=(server, proxy_side), daemon=True).start()
        _pump(proxy_side, server)

    threading.Thread(target=proxy, daemon=True).start()
    t = TCP.__new__(TCP)
    t.sock, t.buf = viewer, bytearray()
    viewer.settimeout(10)
    try:
        return rfb_handshake(t)
    except Exception:
        if errors:
            raise errors[0] from None
        raise
    finally:
        viewer.close()
        server.close()


def test_virsh_extension_on_the_real_libvirtd(tmp_path, conn, prefix):
    vm_uuid = str(uuid.uuid4())
    template = tmp_path / "template.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(template), "64M"], check=True)
    base = payload(tmp_path, prefix, vm_uuid=vm_uuid, vm={"template_path": str(template)})

    # prepare: a JSON merge-patch over the VM's details, naming the domain.
    rc, out = call(tmp_path, "prepare", base)
    name = f"{prefix}i-2-{vm_uuid[:4]}-VM"
    assert (rc, out) == (0, {"details": {"virsh_domain": name}})
    base["cloudstack.vm.details"]["details"] = out["details"]

    # A create killed after it made the disk, before it defined the domain: a retry
    # starts from scratch (the leftover disk is replaced, not reused, not refused).
    disk = tmp_path / "images" / f"{name}.qcow2"
    disk.parent.mkdir()
    disk.write_bytes(b"left by a killed create")
    rc, out = call(tmp_path, "create", base)
    assert rc == 0, out
    dom = conn.lookupByName(name)
    assert dom.UUIDString() == vm_uuid and dom.isActive()
    state, max_kib, cur_kib, vcpus, _ = dom.info()
    assert (max_kib, vcpus) == (128 << 10, 1)
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
    assert "02:00:5e:00:00:0a" in xml and "listen='127.0.0.1'" in xml and "passwd=" in xml
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and info["backing-filename"] == str(template)

    # create again (Nubo retried): the same domain, still running; nothing new.
    assert call(tmp_path, "create", base)[0] == 0
    assert [d.name() for d in conn.listAllDomains(0) if d.name().startswith(prefix)] == [name]

    # getconsole: the VNC server on 127.0.0.1 asks for exactly that password.
    rc, out = call(tmp_path, "getconsole", base)
    console = out["console"]
    assert rc == 0 and console["protocol"] == "vnc" and console["host"] == "127.0.0.1"
    assert f"passwd='{console['password']}'" in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
    assert rfb_security_types(int(console["port"])) == [2]
    # The console proxy answers that password for a viewer it offers no authentication:
    # QEMU accepts it (its ServerInit names the guest), and refuses a wrong one.
    assert viewer_through_the_proxys_handshake(int(console["port"]), console["password"])[2] == f"QEMU ({name})"
    with pytest.raises(vncauth.HandshakeFailed, match="refused the password"):
        viewer_through_the_proxys_handshake(int(console["port"]), "wrong123")

    # A custom action's bad parameter: refused, nothing made.
    rc, out = call(tmp_path, "createsnapshot", dict(base, parameters={"name": "no spaces"}))
    assert rc == 1 and "Invalid snapshot name" in out["error"] and dom.snapshotNum() == 0
    rc, out = call(tmp_path, "createsnapshot", dict(base, parameters={}))
    assert rc == 1 and out["error"] == "Missing required parameter: name"
    rc, out = call(tmp_path, "setdescription", dict(base, parameters={"description": "web tier"}))
    assert rc == 0 and "<description>web tier</description>" in dom.XMLDesc(0)

    # stop (no grace: the power is cut), status, start.
    assert call(tmp_path, "stop", base)[0] == 0
    assert dom.info()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    assert call(tmp_path, "status", base) == (0, {"status": "success", "power_state": "poweroff"})
    assert call(tmp_path, "stop", base)[0] == 0  # already off: fine
    assert call(tmp_path, "getconsole", base)[0] == 1  # no console of a stopped guest
    assert call(tmp_path, "start", base)[0] == 0 and dom.isActive()
    assert call(tmp_path, "status", base) == (0, {"status": "success", "power_state": "poweron"})

    # delete: the domain and the disk it made are gone; the template stays; a second delete is fine.
    assert call(tmp_path, "delete", base)[0] == 0
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName(name)
    assert not disk.exists() and template.exists()
    assert call(tmp_path, "delete", base)[0] == 0


def test_virsh_extension_refuses_bad_input(tmp_path, conn, prefix):
    vm_uuid = str(uuid.uuid4())
    base = payload(tmp_path, prefix, vm_uuid=vm_uuid)
    base["cloudstack.vm.details"]["nics"][0]["mac"] = "not-a-mac"
    cases = [
        ("create", base, "Invalid MAC address 'not-a-mac'"),
        ("create", payload(tmp_path, prefix, vm_uuid=vm_uuid, vm={"template_path": "/nonexistent.qcow2"}),
         "template_path /nonexistent.qcow2 is not a file"),
        ("create", payload(tmp_path, prefix, vm_uuid=vm_uuid, vm={"disk_size_gb": "lots"}),
         "disk_size_gb must be a whole number of GiB, not 'lots'"),
        ("start", payload(tmp_path, prefix, vm_uuid=vm_uuid), "is not defined"),
        ("reboot", payload(tmp_path, prefix, vm_uuid=vm_uuid), "is not running"),
        ("frobnicate", payload(tmp_path, prefix, vm_uuid=vm_uuid), "Invalid action: frobnicate"),
        ("status", "{not json", "Invalid JSON in file"),
    ]
    for action, body, error in cases:
        rc, out = call(tmp_path, action, body)
        assert rc == 1 and error in out["error"], (action, out)
    # Nothing of it reached libvirt or the image directory.
    assert not [d for d in conn.listAllDomains(0) if d.name().startswith(prefix)]
    assert not list((tmp_path / "images").glob("*")) if (tmp_path / "images").exists() else True
    # Usage without a payload file.
    r = subprocess.run([sys.executable, str(SCRIPT), "status"], capture_output=True, text=True)
    assert r.returncode == 1 and "Usage" in json.loads(r.stdout)["error"]
