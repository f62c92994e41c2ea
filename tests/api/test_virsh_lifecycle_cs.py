"""A VM's whole life through Nubo's External type with the shipped example extension
(extensions/virsh/virsh.py) on this machine's real libvirtd, driven by the real `cs` client
against a live Nubo with a real job consumer, and every step checked on libvirt itself:
deploy (prepare names the domain, create defines and starts it with the offering's vCPUs and
memory and the NIC's MAC), stop, start, reboot (libvirt's reboot event), custom actions with
parameters (a snapshot libvirt lists, a description libvirt keeps), the console through Nubo's
real console proxy (which answers the VNC password the extension set: the viewer reads QEMU's
ServerInit), expunge (the domain and its disk are gone)."""
from __future__ import annotations

import subprocess
import threading

import libvirt
import pytest

from app.hypervisors import registry as hv_registry
from app.hypervisors.external.types import EXTERNAL
from tests.console_support import WS, console_proxy, rfb_handshake
from tests.helpers import virsh_cloud

pytestmark = [pytest.mark.libvirt, pytest.mark.xdist_group("libvirt-guests")]
hv_registry.register(EXTERNAL)  # an installed checkout has it from its entry point already
URI = virsh_cloud.URI
ORIGIN = "https://nubo.example"


@pytest.fixture
def conn():
    prefix = virsh_cloud.ready()
    c = libvirt.open(URI)
    yield c, prefix
    c.close()
    virsh_cloud.clean_up(prefix)


class Events:
    """`virsh event --all --loop` on one domain: its lines, as they come."""

    def __init__(self, name: str):
        self.proc = subprocess.Popen(["virsh", "-c", URI, "event", "--domain", name, "--all", "--loop"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.seen = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.seen:
                self.lines.append(line)
                self.seen.notify_all()

    def wait_for(self, text: str, timeout: float = 60) -> bool:
        with self.seen:
            return self.seen.wait_for(lambda: any(text in line for line in self.lines), timeout)

    def close(self):
        self.proc.kill()
        self.proc.wait()


def test_a_vms_whole_life_through_the_virsh_extension(live, conn, tmp_path):
    c, prefix = conn
    api, alice = live.client(), live.client("alice")
    cloud = virsh_cloud.build(api, live.flask_app.instance_path, tmp_path, prefix)
    images, template, actions = cloud["images"], cloud["template_path"], cloud["actions"]
    assert cloud["extension"]["pathready"] is True

    # Deploy: prepare names the domain, create defines it from the payload and starts it.
    vm = alice.deployVirtualMachine(zoneid=cloud["zone"], templateid=cloud["template"],
                                    serviceofferingid=cloud["offering"], name="web1",
                                    fetch_result=True)["virtualmachine"]
    assert vm["state"] == "Running"
    full = api.listVirtualMachines(id=vm["id"])["virtualmachine"][0]
    name = prefix + full["instancename"]
    dom = c.lookupByName(name)
    assert dom.isActive() and dom.UUIDString() == vm["id"]
    state, max_kib, _, vcpus, _ = dom.info()
    assert (max_kib, vcpus) == (128 << 10, 1)
    xml = dom.XMLDesc(0)
    assert full["nic"][0]["macaddress"] in xml and "listen='127.0.0.1'" in xml
    disk = images / f"{name}.qcow2"
    assert disk.exists() and str(disk) in xml

    # Stop, start: on libvirt.
    alice.stopVirtualMachine(id=vm["id"], fetch_result=True)
    assert dom.info()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    assert api.listVirtualMachines(id=vm["id"])["virtualmachine"][0]["state"] == "Stopped"
    alice.startVirtualMachine(id=vm["id"], fetch_result=True)
    assert dom.isActive()

    # Custom actions with parameters; then a reboot, seen as libvirt's reboot event.
    events = Events(name)
    try:
        r = alice.runCustomAction(customactionid=actions["setdescription"], resourceid=vm["id"],
                                  parameters={"description": "web tier"}, fetch_result=True)["customactionresult"]
        assert r["success"] is True
        assert "<description>web tier</description>" in dom.XMLDesc(0)
        assert events.wait_for("metadata-change"), events.lines  # the listener is live
        alice.rebootVirtualMachine(id=vm["id"], fetch_result=True)
        assert events.wait_for("reboot"), events.lines
    finally:
        events.close()
    r = alice.runCustomAction(customactionid=actions["createsnapshot"], resourceid=vm["id"],
                              parameters={"name": "before-upgrade", "description": "first"},
                              fetch_result=True)["customactionresult"]
    assert r["success"] is True, r
    assert dom.snapshotLookupByName("before-upgrade").getXMLDesc().count("<description>first</description>") == 1
    r = alice.runCustomAction(customactionid=actions["createsnapshot"], resourceid=vm["id"],
                              parameters={"name": "no spaces!"}, fetch_result=True)["customactionresult"]
    assert r["success"] is False and "Invalid snapshot name" in r["result"]["details"]
    assert dom.snapshotNum() == 1

    # The console: getconsole through Nubo's proxy; the proxy answers the VNC password.
    ep = alice.createConsoleEndpoint(virtualmachineid=vm["id"])["consoleendpoint"]
    with console_proxy(live.flask_app.config, tmp_path / "proxy.log", PUBLIC_ORIGINS=ORIGIN) as port:
        ws = WS(f"ws://127.0.0.1:{port}/?token={ep['websocket']['token']}", origin=ORIGIN)
        try:
            assert rfb_handshake(ws)[2] == f"QEMU ({name})"
        finally:
            ws.close()
    password = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE).split("passwd='")[1].split("'")[0]
    answers = repr(api.listVirtualMachines(id=vm["id"])) + repr(api.listEvents(listall=True)) + repr(ep)
    assert password not in answers  # the VNC password stays between the extension and the proxy

    # Expunge: delete; the domain, its snapshot and its disk are gone; the template stays.
    api.destroyVirtualMachine(id=vm["id"], expunge=True, fetch_result=True)
    with pytest.raises(libvirt.libvirtError):
        c.lookupByName(name)
    assert not disk.exists() and template.exists()
