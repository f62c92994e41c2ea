"""The Hyper-V hypervisor type (entry point `Hyperv`)."""
from __future__ import annotations

import re

from app.hypervisors.base import Capabilities, ConsoleKind, HostConnection, HostField, HypervisorType
from app.hypervisors.hyperv import trust
from app.hypervisors.hyperv.driver import HypervDriver

_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$")


def _address(value: str) -> str | None:
    v = (value or "").strip()
    return None if _HOST.match(v) else "Give the Hyper-V host's name or IP address"


class HypervType(HypervisorType):
    name = "Hyperv"
    default_display_name = "Hyper-V"
    description = "Microsoft Hyper-V Server 2012 R2 and later, managed over WinRM (PowerShell)"
    capabilities = Capabilities(
        local_storage=True, storage_kinds=("SMB",), template_formats=("VHD", "VHDX"), iso=True,
        live_migration=True, storage_migration=True, scale_stopped_vm=True, console=ConsoleKind.RDP,
        max_guests_per_host=1024, max_hosts_per_cluster=64, max_data_volumes=64,
        # A guest network on Hyper-V is a VLAN id on the VM's network adapter (Set-VMNetworkAdapterVlan
        # -Access, from NicSpec.vlan); no VXLAN, no virtual router, no security groups.
        isolation_methods=("VLAN",))
    host_fields = (
        HostField("url", "Host address", required=True, validate=_address, help="Name or IP of the Hyper-V host"),
        HostField("username", "User name", required=True, help="A member of Hyper-V Administrators"),
        HostField("password", "Password", kind="password", required=True, secret=True),
        HostField("transport", "WinRM transport", kind="select", choices=("ntlm", "kerberos", "credssp", "ssl"),
                  default="ntlm"),
        HostField("cert_validation", "Server certificate", kind="select", choices=("validate", "ignore"),
                  default="validate", help="Only for the ssl transport"),
        # Per-host trust for the ssl transport (CloudStack's words: cacertificates, fingerprint).
        HostField("fingerprint", "Certificate fingerprint (SHA-256)", validate=trust.fingerprint_error,
                  help="Only for the ssl transport: trust exactly the certificate with this SHA-256 "
                       "fingerprint (64 hex digits, colons allowed), e.g. a self-signed WinRM certificate"),
        HostField("cacertificates", "CA certificates (PEM)", kind="textarea", validate=trust.ca_error,
                  help="Only for the ssl transport: trust certificates issued by these CAs, for this host only "
                       "(the host name or address must match the certificate)"),
        HostField("port", "WinRM port", default="", help="5985 (HTTP, encrypted messages) or 5986 (ssl)"),
    )
    driver_class = HypervDriver
    default_traffic_label = "nubo-switch"

    def check_fields(self, values: dict[str, str]) -> tuple[str, str] | None:
        pinned, cas = values.get("fingerprint"), (values.get("cacertificates") or "").strip()
        for name, given in (("fingerprint", pinned), ("cacertificates", cas)):
            if given and values.get("transport") != "ssl":
                return name, "A certificate to trust applies to the ssl transport only"
            if given and values.get("cert_validation") == "ignore":
                return name, "The server certificate is set to ignore: nothing would be checked against it"
        if pinned and cas:
            return "fingerprint", "Give a fingerprint or CA certificates, not both"
        return None

    def connection(self, url: str, fields: dict[str, str]) -> HostConnection:
        host = url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
        return HostConnection(url=url, address=host, fields=dict(fields))


HYPERV = HypervType()
