"""Networking on a Simulator zone for tests: a VXLAN physical network with a VNI range,
CloudStack's default isolated (source NAT) and shared offerings (rows made here when the
seeding has not made them), and a public range of 198.18.0.0/15 addresses."""
from __future__ import annotations

import ipaddress
import json

from sqlalchemy import select

from app.extensions import db
from app.models import (IpState, NetworkOffering, PhysicalNetwork, PublicIpAddress, VlanIpRange, new_uuid)

ISOLATED = "DefaultIsolatedNetworkOfferingWithSourceNatService"
SHARED = "DefaultSharedNetworkOffering"
L2 = "DefaultL2NetworkOffering"
_OFFERINGS = {
    ISOLATED: ("Isolated", {"Dhcp": "VirtualRouter", "Dns": "VirtualRouter", "UserData": "VirtualRouter",
                            "SourceNat": "VirtualRouter", "StaticNat": "VirtualRouter",
                            "PortForwarding": "VirtualRouter", "Firewall": "VirtualRouter"}),
    SHARED: ("Shared", {"Dhcp": "VirtualRouter", "Dns": "VirtualRouter", "UserData": "VirtualRouter"}),
    L2: ("L2", {}),
}


def offering(name: str) -> NetworkOffering:
    off = db.session.scalar(select(NetworkOffering).where(NetworkOffering.name == name,
                                                          NetworkOffering.removed.is_(None)))
    if off is None:
        kind, services = _OFFERINGS[name]
        off = NetworkOffering(uuid=new_uuid(), name=name, display_text=name, guest_ip_type=kind,
                              services=json.dumps(services), is_default=True, state="Enabled",
                              specify_vlan=kind == "Shared", specify_ip_ranges=kind == "Shared")
        db.session.add(off)
        db.session.commit()
    return off


def network_zone(zone, *, vnis: str = "5000-5003", public: str = "198.18.0.10-198.18.0.12",
                 isolation: str = "VXLAN", gateway: str = "198.18.0.1") -> PhysicalNetwork:
    """The zone's physical network set to VXLAN with `vnis`, the offerings, a public range
    (a /24 with `gateway`)."""
    phys = db.session.scalar(select(PhysicalNetwork).where(PhysicalNetwork.zone_id == zone.id,
                                                           PhysicalNetwork.removed.is_(None)))
    if phys is None:
        phys = PhysicalNetwork(uuid=new_uuid(), zone_id=zone.id, name="pn", traffic_labels="{}")
        db.session.add(phys)
    phys.isolation_method, phys.vlan_range = isolation, vnis
    for name in _OFFERINGS:
        offering(name)
    first, last = public.split("-")
    rng = VlanIpRange(uuid=new_uuid(), zone_id=zone.id, physical_network_id=None, vlan="untagged",
                      gateway=gateway, netmask="255.255.255.0", start_ip=first, end_ip=last,
                      for_virtual_network=True)
    db.session.add(rng)
    db.session.flush()
    a, b = int(ipaddress.IPv4Address(first)), int(ipaddress.IPv4Address(last))
    for i in range(a, b + 1):
        db.session.add(PublicIpAddress(uuid=new_uuid(), zone_id=zone.id, vlan_range_id=rng.id,
                                       address=str(ipaddress.IPv4Address(i)), state=IpState.FREE))
    db.session.commit()
    return phys
