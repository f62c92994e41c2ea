"""The libvirt driver's guest-network wiring: which channel reaches a host, what each type
declares, and the NIC's <target dev> (the real steps run in tests/contract and tests/network)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import paramiko
import pytest

from app.hypervisors.base import HostConnection, NicSpec, OperationFailed, OperationNotSupported
from app.hypervisors.hyperv.types import HYPERV
from app.hypervisors.libvirt import domain_xml as dx
from app.hypervisors.libvirt import flavours
from app.hypervisors.libvirt.types import CUSTOM, KVM, LXC, OPENVZ, XEN
from app.network.host.channel import LocalChannel
from app.network.host.specs import VmRuleset
from app.network.host.ssh import SSHChannel


def _driver(t, url, **fields):
    return t.make_driver(HostConnection(url=url, address="kvm1", fields=fields))


def test_channel_by_uri():
    assert isinstance(_driver(KVM, "qemu:///system").channel, LocalChannel)
    key = paramiko.RSAKey.generate(1024)
    ch = _driver(KVM, "qemu+ssh://admin@kvm1:2222/system?no_tty=1",
                 ssh_host_key=f"kvm1 {key.get_name()} {key.get_base64()}").channel
    assert isinstance(ch, SSHChannel) and (ch.host, ch.port, ch.username) == ("kvm1", 2222, "admin")
    with pytest.raises(OperationFailed, match="pinned SSH host key"):
        _driver(KVM, "qemu+ssh://root@kvm1/system").channel
    with pytest.raises(OperationNotSupported, match=r"qemu\+ssh://"):
        _driver(KVM, "qemu+tls://kvm1/system").channel


def test_capabilities():
    for t in (KVM, LXC, CUSTOM):
        c = t.capabilities
        assert c.virtual_router and c.security_groups and c.isolation_methods == ("VLAN", "VXLAN")
    for t in (XEN, OPENVZ):
        c = t.capabilities
        assert not c.virtual_router and not c.security_groups and c.isolation_methods == ("VLAN", "VXLAN")
    c = HYPERV.capabilities
    assert c.isolation_methods == ("VLAN",) and not c.virtual_router and not c.security_groups


def test_types_without_router_refuse_its_steps():
    d = _driver(XEN, "xen:///system")
    with pytest.raises(OperationNotSupported):
        d.router_status("0123456789")
    with pytest.raises(OperationNotSupported):
        d.sg_apply([VmRuleset("vn1", "02:00:00:00:00:01", ())])


def test_nic_target_dev():
    el = dx.nic_element(flavours.KVM, NicSpec(mac="02:00:00:00:00:01", bridge="brvx-5001", target_dev="vn0123456789"))
    assert el.find("target").get("dev") == "vn0123456789" and el.find("source").get("bridge") == "brvx-5001"
    assert dx.nic_element(flavours.KVM, NicSpec(mac="02:00:00:00:00:01", bridge="b")).find("target") is None
    xml = ET.tostring(ET.Element("domain"), encoding="unicode").replace(
        "<domain />", "<domain><devices><interface type='bridge'><source bridge='brvx-7'/></interface>"
                      "<interface type='bridge'><source bridge='cloudbr0'/></interface></devices></domain>")
    assert dx.nic_bridges(xml) == ["brvx-7", "cloudbr0"]


def test_host_key_field_validation():
    field = next(f for f in KVM.host_fields if f.name == "ssh_host_key")
    assert not field.secret
    assert field.validate("kvm1 ssh-ed25519 AAAAC3Nza") is None
    assert field.validate("not a key") is not None


class _Domain:
    """A domain whose shutdown is refused `refusals` times as libvirt's LXC driver refuses it
    before it knows the container's init PID, then stops it."""

    def __init__(self, refusals: int, message: str = "Requested operation is not valid: Init process ID is not yet known"):
        self.refusals, self.message, self.active, self.asked = refusals, message, True, 0

    def isActive(self):
        return self.active

    def XMLDesc(self, flags):
        return "<domain/>"

    def shutdown(self):
        import libvirt
        self.asked += 1
        if self.asked <= self.refusals:
            e = libvirt.libvirtError(self.message)
            e.err = (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_FROM_LXC, self.message, 2, None, None, None, 0, 0)
            raise e
        self.active = False


def test_a_container_whose_init_pid_is_not_yet_known_is_asked_again(monkeypatch):
    d = _driver(LXC, "lxc:///system")
    dom = _Domain(refusals=3)
    monkeypatch.setattr(d, "_domain", lambda name: dom)
    assert d.stop_vm("c1", timeout=10) is True and dom.asked == 4
    # Past the stop's time, the refusal is the answer; and a VM (not a container) is not asked again.
    dom = _Domain(refusals=1000)
    monkeypatch.setattr(d, "_domain", lambda name: dom)
    with pytest.raises(OperationFailed, match="not yet known"):
        d.stop_vm("c1", timeout=0.3)
    k = _driver(KVM, "qemu:///system")
    dom = _Domain(refusals=1)
    monkeypatch.setattr(k, "_domain", lambda name: dom)
    with pytest.raises(OperationFailed, match="not yet known"):
        k.stop_vm("v1", timeout=10)
    assert dom.asked == 1
