"""What differs between the libvirt types, as data, plus the host-type check.

A Flavour is resolved per host (resolve()): Xen picks PV or HVM from the
setting `xen.guest.boot.mode`, KVM falls back to `type='qemu'` where the host's
capabilities offer no KVM, Custom takes the rules of whatever driver the URI
reaches.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from app.hypervisors.base import ConsoleKind, WrongHypervisor


@dataclass(frozen=True)
class Flavour:
    type_name: str  # internal name of the Nubo type ("KVM", "Xen", ...)
    domain_type: str  # <domain type=...>
    os_type: str = "hvm"  # <os><type>: hvm | xen | exe
    machine: str | None = None  # <os><type machine=...> (Xen: xenpv / xenfv)
    disk_bus: str = "virtio"
    disk_prefix: str = "vd"
    nic_model: str | None = "virtio"
    cdrom_bus: str = "ide"
    cdrom_targets: tuple[str, str] = ("hdc", "hdd")  # ISO, config drive
    console: ConsoleKind = ConsoleKind.VNC
    container: bool = False  # root filesystem instead of disks, <init> instead of a boot loader
    numeric_names: bool = False  # OpenVZ: the domain name is the container id
    events: bool = True  # pushes lifecycle events (else polled)
    storage: bool = True  # the host has libvirt's storage driver
    uri_schemes: tuple[str, ...] = ()  # accepted URI schemes (before '+'); empty: any
    libvirt_types: tuple[str, ...] = ()  # what conn.getType() may say; empty: any

    @property
    def paravirt(self) -> bool:
        return self.os_type == "xen"


KVM = Flavour("KVM", "kvm", uri_schemes=("qemu",), libvirt_types=("QEMU",))
# Xen HVM shape; resolve() turns it into PV when xen.guest.boot.mode = pv.
XEN = Flavour("Xen", "xen", os_type="hvm", machine="xenfv", disk_bus="xen", disk_prefix="xvd",
              nic_model=None, uri_schemes=("xen", "libxl"), libvirt_types=("Xen", "LIBXL"))
XEN_PV = replace(XEN, os_type="xen", machine="xenpv", nic_model="netfront", cdrom_bus="xen",
                 cdrom_targets=("xvdy", "xvdz"))
LXC = Flavour("LXC", "lxc", os_type="exe", nic_model=None, console=ConsoleKind.TEXT, container=True,
              uri_schemes=("lxc",), libvirt_types=("LXC",))
OPENVZ = Flavour("OpenVZ", "openvz", os_type="exe", nic_model=None, console=ConsoleKind.NONE,
                 container=True, numeric_names=True, events=False, storage=False,
                 uri_schemes=("openvz",), libvirt_types=("OpenVZ",))
CUSTOM = Flavour("Custom", "kvm")  # any URI; rules follow the driver it reaches

BY_TYPE = {f.type_name: f for f in (KVM, XEN, LXC, OPENVZ, CUSTOM)}
# conn.getType() -> the flavour whose rules a Custom host follows.
_CUSTOM_RULES = {"QEMU": KVM, "XEN": XEN, "LIBXL": XEN, "LXC": LXC, "OPENVZ": OPENVZ}


def uri_scheme(uri: str) -> str:
    """'qemu+ssh://...' -> 'qemu'."""
    return urlsplit(uri).scheme.split("+", 1)[0].lower()


def is_test_uri(uri: str) -> bool:
    return uri_scheme(uri) == "test"


def offered_domain_types(caps_xml: str, os_type: str | None = None) -> list[str]:
    """The <domain type=...> values the host's capabilities offer, in order."""
    out: list[str] = []
    root = ET.fromstring(caps_xml)
    for guest in root.findall("guest"):
        if os_type and (guest.findtext("os_type") or "") not in _os_aliases(os_type):
            continue
        for dom in guest.iter("domain"):
            t = dom.get("type")
            if t and t not in out:
                out.append(t)
    return out


def _os_aliases(os_type: str) -> tuple[str, ...]:
    # libvirt reports Xen PV guests as os_type "xen" and sometimes "linux": parse both.
    return ("xen", "linux") if os_type in ("xen", "linux") else (os_type,)


def resolve(base: Flavour, settings: dict, conn_type: str = "", caps_xml: str | None = None,
            acceleration: str = "auto") -> Flavour:
    """The concrete flavour for one host. acceleration "emulated" (a host field) forces
    QEMU's software emulation: for nested labs where KVM cannot run real guests."""
    f = base
    if f.type_name == "Custom":
        rules = _CUSTOM_RULES.get(conn_type.upper())
        if rules is not None:
            f = replace(rules, type_name="Custom", uri_schemes=(), libvirt_types=())
    if f.domain_type == "xen" and str(settings.get("xen.guest.boot.mode", "pv")).lower() == "pv":
        f = replace(XEN_PV, type_name=f.type_name, uri_schemes=f.uri_schemes, libvirt_types=f.libvirt_types)
    if f.domain_type == "kvm" and caps_xml is not None:
        offered = offered_domain_types(caps_xml, "hvm")
        # No KVM on this host (no /dev/kvm): QEMU's software emulation, same API.
        if ("kvm" not in offered or acceleration == "emulated") and "qemu" in offered:
            f = replace(f, domain_type="qemu")
    return f


# --- What a host really runs ---------------------------------------------------

def local_host_kind(root: str = "/") -> str | None:
    """'xen' for a Xen dom0, 'kvm' where the kvm module is loaded, else None.
    Xen dom0: /sys/hypervisor/type reads 'xen' and /proc/xen/capabilities has
    'control_d' (KVM does not fill /sys/hypervisor/type)."""
    def read(rel: str) -> str:
        try:
            with open(os.path.join(root, rel)) as fh:
                return fh.read().strip()
        except OSError:
            return ""
    if read("sys/hypervisor/type") == "xen" and "control_d" in read("proc/xen/capabilities"):
        return "xen"
    if os.path.exists(os.path.join(root, "dev/kvm")):
        return "kvm"
    return None


def is_local_uri(uri: str) -> bool:
    host = urlsplit(uri).hostname
    return host in (None, "", "localhost", "127.0.0.1", "::1")


def check_uri(flavour: Flavour, uri: str, testing: bool = False) -> None:
    """Refuse a URI of another hypervisor before connecting (a Xen host added as
    KVM with xen:///system, ...). libvirt's test driver stands in for any type in tests."""
    scheme = uri_scheme(uri)
    if not flavour.uri_schemes or (testing and scheme == "test"):
        return
    if scheme not in flavour.uri_schemes:
        raise WrongHypervisor(
            f"{uri} is not a {flavour.type_name} URI: {flavour.type_name} hosts are reached with "
            + " or ".join(f"{s}://" for s in flavour.uri_schemes) + " URIs")


def check_host_type(flavour: Flavour, conn_type: str, caps_xml: str, local_kind: str | None = None) -> None:
    """Refuse a host that runs another hypervisor than the flavour's type.
    conn_type is conn.getType(); local_kind is local_host_kind() for a local host."""
    if conn_type.upper() == "TEST" or not flavour.libvirt_types:
        return
    if conn_type.upper() not in {t.upper() for t in flavour.libvirt_types}:
        raise WrongHypervisor(f"The host's libvirt reports a {conn_type} hypervisor, not {flavour.type_name}")
    offered = offered_domain_types(caps_xml)
    if flavour.type_name == "KVM":
        if local_kind == "xen" or "xen" in offered:
            raise WrongHypervisor("The host is a Xen dom0: add it as a Xen host, not KVM")
        if "kvm" not in offered and "qemu" not in offered:
            raise WrongHypervisor("The host's libvirt offers neither KVM nor QEMU guests")
    elif flavour.type_name == "Xen":
        if local_kind == "kvm" or "kvm" in offered:
            raise WrongHypervisor("The host runs KVM: add it as a KVM host, not Xen")
        if "xen" not in offered:
            raise WrongHypervisor("The host is not a Xen dom0 (libvirt offers no Xen guests)")
    elif flavour.domain_type not in offered:
        raise WrongHypervisor(f"The host's libvirt offers no {flavour.type_name} guests")
