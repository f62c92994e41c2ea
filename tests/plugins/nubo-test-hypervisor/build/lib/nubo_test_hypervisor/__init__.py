"""A made-up hypervisor type registered from outside Nubo's code."""
from app.hypervisors.base import (Capabilities, ConsoleKind, Driver, HostFacts, HostField,
                                  HypervisorType)


class BhyveDriver(Driver):
    def check_host(self) -> HostFacts:
        return HostFacts(hypervisor="Bhyve", version="14.1", arch="amd64", cpu_sockets=1,
                         cpu_cores=8, cpu_mhz=3000, memory_bytes=32 << 30)


class BhyveType(HypervisorType):
    name = "Bhyve"
    default_display_name = "bhyve"
    description = "FreeBSD's hypervisor (test plugin)"
    capabilities = Capabilities(template_formats=("RAW",), local_storage=True,
                                console=ConsoleKind.VNC, max_guests_per_host=20)
    host_fields = (HostField("url", "Host address", required=True),)
    driver_class = BhyveDriver
    default_traffic_label = "bridge0"


BHYVE = BhyveType()
