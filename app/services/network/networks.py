"""Guest networks: each zone has a default one (made from the zone's guest CIDR,
with a VLAN from the physical network's range in Advanced zones); admins add more.

A NIC gets a unique MAC and an address from its network's range. Both are made
unique by the database (unique constraints), so concurrent deploys never share
one: a lost race simply tries the next free address."""
from __future__ import annotations

import ipaddress
import json

from sqlalchemy import func, select

from app.extensions import db
from app.models import IpAddress, Network, Nic, PhysicalNetwork, VirtualMachine, Zone, new_uuid, utcnow
from app.services import events, zones
from app.services.errors import InsufficientCapacity, InvalidParameter, NotFound, ResourceInUse
from app.services.pagination import page_of


def _range(cidr: str, gateway: str | None, start: str | None, end: str | None) -> dict:
    try:
        net = ipaddress.IPv4Network(cidr, strict=False)
    except ValueError:
        raise InvalidParameter(f"{cidr!r} is not a CIDR such as 10.1.1.0/24", field="cidr") from None
    if net.num_addresses < 8:
        raise InvalidParameter("A guest network needs at least a /29", field="cidr")
    hosts = list(net.hosts())
    gw = zones._ipv4(gateway, "gateway") or str(hosts[0])
    first = zones._ipv4(start, "startip") or str(hosts[1] if hosts[0] == ipaddress.IPv4Address(gw) else hosts[0])
    last = zones._ipv4(end, "endip") or str(hosts[-1])
    zones.check_range(net, first, last, "startip", "endip")
    if ipaddress.IPv4Address(gw) not in net:
        raise InvalidParameter(f"The gateway {gw} is not in {net}", field="gateway")
    if ipaddress.IPv4Address(first) <= ipaddress.IPv4Address(gw) <= ipaddress.IPv4Address(last):
        raise InvalidParameter(f"The gateway {gw} is inside the guest range", field="startip")
    return dict(cidr=str(net), gateway=gw, netmask=str(net.netmask), start_ip=first, end_ip=last)


def _first_vlan(zone: Zone) -> int | None:
    phys = db.session.scalar(select(PhysicalNetwork).where(PhysicalNetwork.zone_id == zone.id,
                                                           PhysicalNetwork.removed.is_(None)))
    if phys is None or not phys.vlan_range:
        return None
    used = set(db.session.scalars(select(Network.vlan).where(Network.zone_id == zone.id, Network.removed.is_(None))))
    for part in phys.vlan_range.split(","):
        lo, _, hi = part.partition("-")
        for vlan in range(int(lo), int(hi or lo) + 1):
            if vlan not in used:
                return vlan
    raise InsufficientCapacity(f"Zone {zone.name} has no free VLAN left in {phys.vlan_range}")


def traffic_label(zone_id: int, type_name: str) -> str:
    """The host-side bridge or virtual switch for guests of this type in this zone."""
    phys = db.session.scalar(select(PhysicalNetwork).where(PhysicalNetwork.zone_id == zone_id,
                                                           PhysicalNetwork.removed.is_(None)))
    labels = json.loads(phys.traffic_labels or "{}") if phys else {}
    from app.services.zone_wizard import default_label
    return labels.get(type_name) or default_label(type_name)


def create_network(caller, *, zone_uuid: str, name: str, cidr: str, gateway: str | None = None,
                   start_ip: str | None = None, end_ip: str | None = None, vlan: int | None = None,
                   account_id: int | None = None, is_default: bool = False, display_text: str | None = None) -> Network:
    zone = zones.get_zone(zone_uuid)
    values = _range(cidr, gateway, start_ip, end_ip)
    if vlan is not None and not 1 <= vlan <= 4094:
        raise InvalidParameter("vlan must be within 1-4094", field="vlan")
    if vlan is None and zone.network_type == "Advanced":
        vlan = _first_vlan(zone)
    elif vlan is not None and db.session.scalar(select(Network.id).where(
            Network.zone_id == zone.id, Network.vlan == vlan, Network.removed.is_(None))):
        raise InvalidParameter(f"VLAN {vlan} is already used by another network of zone {zone.name}", field="vlan")
    net = Network(uuid=new_uuid(), name=zones._name(name), display_text=display_text or name, zone_id=zone.id,
                  account_id=account_id, vlan=vlan, is_default=is_default, **values)
    db.session.add(net)
    events.record("NETWORK.CREATE", f"Guest network {net.name} ({net.cidr}, VLAN {vlan or 'none'}) created in "
                  f"zone {zone.name}", user=caller, resource_type="Network", resource_id=net.uuid)
    db.session.commit()
    return net


def ensure_default_network(caller, zone: Zone) -> Network | None:
    """The zone's default guest network, made from its guest CIDR when it has none."""
    net = db.session.scalar(select(Network).where(Network.zone_id == zone.id, Network.is_default.is_(True),
                                                  Network.removed.is_(None)))
    if net is not None or not zone.guest_cidr:
        return net
    return create_network(caller, zone_uuid=zone.uuid, name=f"{zone.name}-guest", cidr=zone.guest_cidr,
                          is_default=True, display_text=f"Default guest network of zone {zone.name}")


def get_network(caller, uuid: str, field: str = "networkid") -> Network:
    q = select(Network).where(Network.uuid == uuid, Network.removed.is_(None))
    if not caller.is_admin:
        q = q.where((Network.account_id.is_(None)) | (Network.account_id == caller.account_id))
    net = db.session.scalar(q)
    if net is None:
        raise NotFound("Unable to find network with the specified id", field=field)
    return net


def delete_network(caller, uuid: str) -> None:
    net = get_network(caller, uuid, "id")
    if db.session.scalar(select(func.count()).select_from(Nic).where(Nic.network_id == net.id,
                                                                     Nic.removed.is_(None))):
        raise ResourceInUse(f"Network {net.name} still has VMs on it")
    net.removed = utcnow()
    events.record("NETWORK.DELETE", f"Guest network {net.name} deleted", user=caller, resource_type="Network",
                  resource_id=net.uuid)
    db.session.commit()


def list_networks(caller, *, id=None, zone_uuid=None, name=None, keyword=None, page=None):
    q = select(Network).where(Network.removed.is_(None)).order_by(Network.id)
    if not caller.is_admin:
        q = q.where((Network.account_id.is_(None)) | (Network.account_id == caller.account_id))
    if id:
        q = q.where(Network.uuid == id)
    if zone_uuid:
        q = q.where(Network.zone_id == zones.get_zone(zone_uuid).id)
    if name:
        q = q.where(Network.name == name)
    if keyword:
        q = q.where(Network.name.contains(keyword, autoescape=True))
    return page_of(q, page)

