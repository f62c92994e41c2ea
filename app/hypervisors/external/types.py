"""The External type's declaration: registered through the `nubo.hypervisors` entry point
like every other type. Its hosts take no connection form beyond a name (the address the
extension may use comes in externaldetails); everything else is the extension's."""
from __future__ import annotations

from app.hypervisors.base import Capabilities, ConsoleKind, HostConnection, HostField, HypervisorType
from app.hypervisors.external.driver import ExternalDriver


class ExternalType(HypervisorType):
    name = "External"
    default_display_name = "External"
    description = "VMs run by an extension's executable (CloudStack 4.21 extensions: Proxmox, MaaS, ...)"
    capabilities = Capabilities(console=ConsoleKind.VNC, external_orchestrator=True,
                                max_guests_per_host=10000, max_hosts_per_cluster=1000, max_data_volumes=0)
    host_fields = (HostField("url", "Host name or address", required=True,
                             help="What the extension calls this host"),
                   HostField("externaldetails", "External details", kind="textarea",
                             help="One name=value a line, sent to the extension as externaldetails.host "
                                  "(the API's externaldetails[0].<name>=<value>); a secret's name (password, "
                                  "token, ...) keeps it encrypted and never shown"))
    driver_class = ExternalDriver
    max_parallel_calls = 4

    def connection(self, url: str, fields: dict[str, str]) -> HostConnection:
        from urllib.parse import urlsplit
        host = urlsplit(url).hostname if "://" in url else url
        return HostConnection(url=url, address=host or url or "external", fields={})


EXTERNAL = ExternalType()
