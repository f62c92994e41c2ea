"""The libvirt family's hypervisor types, registered through the
`nubo.hypervisors` entry points in pyproject.toml: KVM, XEN, LXC, OPENVZ, CUSTOM.
Each is data (names, capabilities, add-host form) plus its base flavour."""
from __future__ import annotations

import ipaddress
import re
from typing import Callable
from urllib.parse import urlencode, urlsplit, urlunsplit

from app.hypervisors.base import (
    Capabilities, ConsoleKind, DriverContext, HostConnection, HostField, HypervisorType,
)
from app.hypervisors.libvirt import flavours
from app.hypervisors.libvirt.driver import LibvirtDriver
from app.hypervisors.libvirt.flavours import Flavour

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")


def _validate_user(value: str) -> str | None:
    if value and not _USER.match(value):
        return "A user name is letters, digits, '_', '.', '-' (at most 32)"
    return None


def _validate_key(value: str) -> str | None:
    v = value.strip()
    if v and not (v.startswith("-----BEGIN ") and "PRIVATE KEY-----" in v):
        return "Paste the whole private key, from -----BEGIN ... PRIVATE KEY----- to the END line"
    return None


def _validate_host_key(value: str) -> str | None:
    v = (value or "").strip()
    if v and not any(p.startswith(("ssh-", "ecdsa-")) for p in v.split()[:-1]):
        return "Paste the key as '<type> <base64>' (a line of ssh-keyscan or the host's .pub file)"
    return None


def _address_validator(schemes: tuple[str, ...]) -> Callable[[str], str | None]:
    def validate(value: str) -> str | None:
        value = (value or "").strip()
        if not value:
            return "Give the host's address or libvirt URI"
        if "://" not in value:
            host = value.split("@")[-1]
            try:
                ipaddress.ip_address(host.strip("[]"))
                return None
            except ValueError:
                return None if _HOSTNAME.match(host) else f"{host!r} is not a host name or IP address"
        parts = urlsplit(value)
        if any(c in value for c in " \n\r\t'\"<>"):
            return "A libvirt URI has no spaces or quotes"
        if schemes and flavours.uri_scheme(value) not in schemes:
            return "Use a " + " or ".join(f"{s}://" for s in schemes) + " URI"
        if not parts.scheme:
            return "Not a URI"
        return None
    return validate


def _fields(schemes: tuple[str, ...], example: str, transports: bool = True) -> tuple[HostField, ...]:
    out = [
        HostField("url", "Host address or libvirt URI", required=True, validate=_address_validator(schemes),
                  help=f"A host name or IP (reached over SSH), or a full URI such as {example}"),
        HostField("username", "Username", default="root", validate=_validate_user,
                  help="SSH user, or the SASL user of a qemu+tcp/tls URI"),
        HostField("password", "Password", kind="password", secret=True,
                  help="SASL or SSH password; leave empty when an SSH key is used"),
    ]
    if transports:
        out += [
            HostField("ssh_private_key", "SSH private key", kind="textarea", secret=True, validate=_validate_key,
                      help="Used for qemu+ssh:// connections instead of a password"),
            HostField("ssh_host_key_check", "SSH host key check", kind="select", choices=("verify", "off"),
                      default="verify", help="'off' accepts any host key (libvirt's no_verify=1); lab use only"),
            HostField("ssh_host_key", "SSH host key", kind="textarea", validate=_validate_host_key,
                      help="The host's public key as `ssh-keyscan -t ed25519 <host>` prints it. Guest network "
                           "steps (bridges, routers, security groups) run over SSH and refuse any other key"),
        ]
    return tuple(out)


class LibvirtType(HypervisorType):
    """A libvirt type: make_driver hands the driver this type's flavour."""
    driver_class = LibvirtDriver
    flavour: Flavour = flavours.KVM
    default_traffic_label = "cloudbr0"
    # scheme for a bare host name: "<scheme>+ssh://user@host/system"
    uri_scheme: str = "qemu"

    def make_driver(self, conn: HostConnection, context: DriverContext | None = None) -> LibvirtDriver:
        return LibvirtDriver(conn, context, flavour=self.flavour)

    def connection(self, url: str, fields: dict[str, str]) -> HostConnection:
        """A bare host name (or user@host) becomes `<scheme>+ssh://user@host/system`
        with the SSH options the form asked for; a URI is kept as given."""
        url = (url or "").strip()
        fields = dict(fields)
        if "://" not in url:
            user, _, host = url.rpartition("@")
            user = user or fields.get("username") or "root"
            query = {"no_tty": "1"}
            if fields.get("ssh_host_key_check") == "off":
                query["no_verify"] = "1"
            netloc = f"{user}@{host}" if ":" not in host else f"{user}@[{host}]"
            url = urlunsplit((f"{self.uri_scheme}+ssh", netloc, "/system", urlencode(query), ""))
        elif fields.get("ssh_host_key_check") == "off" and "+ssh" in urlsplit(url).scheme and "no_verify=" not in url:
            url += ("&" if "?" in url else "?") + "no_verify=1"
        host = urlsplit(url).hostname or "localhost"
        return HostConnection(url=url, address=host, fields=fields)


# Guest networks on Linux libvirt hosts (docs/networking.md): VXLAN/VLAN bridges, router
# namespaces and security-group tables made over the host channel.
_NET_LINUX = dict(virtual_router=True, security_groups=True, isolation_methods=("VLAN", "VXLAN"))
# Xen and OpenVZ hosts are Linux too and take the same bridges; their router and security
# groups cannot be verified here (no Xen-booted or OpenVZ kernel), so they are not declared.
_NET_SEGMENTS_ONLY = dict(isolation_methods=("VLAN", "VXLAN"))

_VNC_VM = dict(direct_download=True, local_storage=True, storage_kinds=("NFS", "Filesystem"),
               template_formats=("QCOW2", "RAW"), iso=True, scale_stopped_vm=True,
               console=ConsoleKind.VNC, lifecycle_events=True, config_drive=True)


class KVMType(LibvirtType):
    name = "KVM"
    default_display_name = "KVM"
    description = "Linux KVM through libvirt (QEMU; software emulation where the host has no /dev/kvm)"
    flavour = flavours.KVM
    capabilities = Capabilities(**_VNC_VM, **_NET_LINUX, live_migration=True, storage_migration=True,
                                vm_snapshots=True, volume_snapshots=True, storage_heartbeat=True, max_guests_per_host=50,
                                max_hosts_per_cluster=32, max_data_volumes=26)
    host_fields = _fields(("qemu",), "qemu+ssh://root@kvm1/system or qemu+tls://kvm1/system") + (
        HostField("acceleration", "Acceleration", kind="select", choices=("auto", "emulated"), default="auto",
                  help="auto: KVM where the host offers it; emulated: QEMU's software emulation (nested labs "
                       "where KVM cannot run real guests)"),)


class XenType(LibvirtType):
    name = "Xen"
    default_display_name = "Xen"
    description = "Xen through libvirt's libxl driver (not XenServer/XCP-ng's XAPI)"
    flavour = flavours.XEN
    uri_scheme = "xen"
    capabilities = Capabilities(**_VNC_VM, **_NET_SEGMENTS_ONLY, live_migration=True, vm_snapshots=False,
                                max_guests_per_host=50, max_hosts_per_cluster=16, max_data_volumes=14)
    host_fields = _fields(("xen", "libxl"), "xen+ssh://root@dom0/system")


class LXCType(LibvirtType):
    name = "LXC"
    default_display_name = "LXC"
    description = "Linux containers through libvirt's LXC driver; root filesystems from TAR templates"
    flavour = flavours.LXC
    uri_scheme = "lxc"
    capabilities = Capabilities(direct_download=True, local_storage=True, storage_kinds=("NFS", "Filesystem"),
                                template_formats=("TAR",), scale_stopped_vm=True, console=ConsoleKind.TEXT,
                                lifecycle_events=True, storage_heartbeat=True, max_guests_per_host=100,
                                max_hosts_per_cluster=16, max_data_volumes=0, **_NET_LINUX)
    host_fields = _fields(("lxc",), "lxc+ssh://root@host/system")


class OpenVZType(LibvirtType):
    name = "OpenVZ"
    default_display_name = "OpenVZ"
    description = "OpenVZ containers through libvirt (numeric container ids, state polled)"
    flavour = flavours.OPENVZ
    uri_scheme = "openvz"
    capabilities = Capabilities(direct_download=True, local_storage=True, template_formats=("TAR",),
                                scale_stopped_vm=True, console=ConsoleKind.NONE, lifecycle_events=False,
                                max_guests_per_host=100, max_hosts_per_cluster=16, max_data_volumes=0,
                                **_NET_SEGMENTS_ONLY)
    host_fields = _fields(("openvz",), "openvz+ssh://root@host/system")


class CustomType(LibvirtType):
    name = "Custom"
    default_display_name = "Custom"  # the service shows hypervisor.custom.display.name instead
    description = "Any libvirt URI the admin gives (unless a plugin claims the Custom type)"
    flavour = flavours.CUSTOM
    capabilities = Capabilities(direct_download=True, local_storage=True, template_formats=("RAW",), iso=True,
                                scale_stopped_vm=True, console=ConsoleKind.VNC, lifecycle_events=True,
                                max_guests_per_host=50, max_hosts_per_cluster=16, max_data_volumes=6, **_NET_LINUX)
    host_fields = (HostField("url", "libvirt URI", required=True, validate=_address_validator(()),
                             help="Any libvirt URI, e.g. qemu+ssh://root@host/system or bhyve:///system"),
                   ) + _fields((), "")[1:]


KVM = KVMType()
XEN = XenType()
LXC = LXCType()
OPENVZ = OpenVZType()
CUSTOM = CustomType()
