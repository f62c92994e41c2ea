"""IP ranges (CloudStack's `vlan` table): createVlanIpRange, listVlanIpRanges, deleteVlanIpRange.

A public range (forvirtualnetwork=true) of a zone gets one PublicIpAddress row (Free) per
address, made with the range in one transaction. A shared network's range (networkid given)
adds guest addresses to that network instead: no public rows.
"""
from __future__ import annotations

import ipaddress

from sqlalchemy import func, insert, select

from app.extensions import db
from app.models import (GuestType, IpState, Network, PhysicalNetwork, PublicIpAddress, TrafficType, VlanIpRange,
                        Zone, new_uuid, utcnow)
from app.services import events
from app.services.errors import InvalidParameter, NotFound, ResourceInUse
from app.services.pagination import page_of

MAX_ADDRESSES = 65536  # one range's public rows, made in one transaction


def _ip(value: str | None, what: str, field: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address((value or "").strip())
    except ValueError:
        raise InvalidParameter(f"Please specify a valid {what}", field=field) from None


def parse_vlan(value: str | None) -> str:
    """"untagged", "vlan://untagged", "100" or "vlan://100" -> "untagged" or "100"."""
    v = (value or "untagged").strip()
    if v.lower().startswith("vlan://"):
        v = v[7:]
    if v.lower() == "untagged" or v == "":
        return "untagged"
    if not v.isdigit() or not 1 <= int(v) <= 4094:
        raise InvalidParameter(f"Invalid vlan {value}: use untagged or an id within 1-4094", field="vlan")
    return str(int(v))


def check_subnet(gateway: str, netmask: str, start: str, end: str | None):
    """CloudStack's validateIpRange: the normalized (gateway, netmask, start, end, network)."""
    gw = _ip(gateway, "gateway", "gateway")
    mask = _ip(netmask, "netmask", "netmask")
    try:
        net = ipaddress.IPv4Network(f"{gw}/{mask}", strict=False)
    except ValueError:
        raise InvalidParameter("Please specify a valid netmask", field="netmask") from None
    first = _ip(start, "start IP", "startip")
    last = _ip(end, "end IP", "endip") if end else first
    if first not in net:
        raise InvalidParameter("Please ensure that your start IP is in the same subnet as your IP range's gateway, "
                               "as per the IP range's netmask.", field="startip")
    if last not in net:
        raise InvalidParameter("Please ensure that your end IP is in the same subnet as your IP range's gateway, "
                               "as per the IP range's netmask.", field="endip")
    if first > last:
        raise InvalidParameter("Please specify a valid IP range.", field="endip")
    if first <= gw <= last:
        raise InvalidParameter("The gateway shouldn't overlap start/end ip addresses", field="gateway")
    if net.num_addresses > 2 and (first == net.network_address or last == net.broadcast_address):
        raise InvalidParameter("The IP range must not include the subnet's network or broadcast address",
                               field="startip")
    return str(gw), str(mask), str(first), str(last), net


def _live_ranges(zone_id: int):
    return list(db.session.scalars(select(VlanIpRange).where(VlanIpRange.zone_id == zone_id,
                                                             VlanIpRange.removed.is_(None))))


def _overlaps(a1, a2, b1, b2) -> bool:
    return a1 <= b2 and b1 <= a2


def get_range(uuid: str, field: str = "id") -> VlanIpRange:
    r = db.session.scalar(select(VlanIpRange).where(VlanIpRange.uuid == uuid, VlanIpRange.removed.is_(None)))
    if r is None:
        raise NotFound("Please specify a valid IP range id", field=field)
    return r


def create_range(caller, *, zone_uuid: str | None = None, network_uuid: str | None = None,
                 physical_network_uuid: str | None = None, pod_uuid: str | None = None, vlan: str | None = None,
                 gateway: str, netmask: str, start_ip: str, end_ip: str | None = None,
                 for_virtual_network: bool | None = None, account_id: int | None = None,
                 commit: bool = True) -> VlanIpRange:
    from app.services import zones
    from app.services.network import physical
    net: Network | None = None
    if network_uuid:
        net = db.session.scalar(select(Network).where(Network.uuid == network_uuid, Network.removed.is_(None)))
        if net is None:
            raise NotFound("Unable to find network with the specified id", field="networkid")
        if net.guest_type != GuestType.SHARED:
            raise InvalidParameter("Can't add an IP range to a network which is not Shared", field="networkid")
    zone: Zone
    if zone_uuid:
        zone = zones.get_zone(zone_uuid)
        if net is not None and net.zone_id != zone.id:
            raise InvalidParameter("The network is not in that zone", field="networkid")
    elif net is not None:
        zone = net.zone
    elif physical_network_uuid:
        zone = physical.get_physical_network(physical_network_uuid).zone
    else:
        raise InvalidParameter("Please specify a zone, a physical network or a network", field="zoneid")
    phys: PhysicalNetwork | None = None
    if physical_network_uuid:
        phys = physical.get_physical_network(physical_network_uuid)
        if phys.zone_id != zone.id:
            raise InvalidParameter("The physical network is not in that zone", field="physicalnetworkid")
    public = for_virtual_network if for_virtual_network is not None else (net is None and
                                                                          zone.network_type == "Advanced")
    if public and net is not None:
        raise InvalidParameter("A range of a shared network cannot be for virtual networks (public)",
                               field="forvirtualnetwork")
    if not public and net is None:
        raise InvalidParameter("A range that is not public needs the shared network it belongs to (networkid)",
                               field="networkid")
    if phys is None:
        phys = net.physical_network if net is not None and net.physical_network_id else _carrier(zone, public)
    vlan_id = parse_vlan(vlan if vlan is not None else (str(net.vlan) if net is not None and net.vlan else None))
    gw, mask, first, last, subnet = check_subnet(gateway, netmask, start_ip, end_ip)
    lo, hi = int(ipaddress.IPv4Address(first)), int(ipaddress.IPv4Address(last))
    if public and hi - lo + 1 > MAX_ADDRESSES:
        raise InvalidParameter(f"A public IP range holds at most {MAX_ADDRESSES} addresses", field="endip")
    tag = f"vlan://{vlan_id}"
    if net is not None and net.cidr and not subnet.subnet_of(ipaddress.IPv4Network(net.cidr, strict=False)):
        raise InvalidParameter(f"The IP range must be inside the network's CIDR {net.cidr}", field="gateway")
    for other in _live_ranges(zone.id):
        o_lo, o_hi = int(ipaddress.IPv4Address(other.start_ip)), int(ipaddress.IPv4Address(other.end_ip))
        if _overlaps(lo, hi, o_lo, o_hi):
            raise InvalidParameter("The IP range already has IPs that overlap with the new range. Please specify a "
                                   "different start IP/end IP.", field="startip")
        o_net = ipaddress.IPv4Network(f"{other.gateway}/{other.netmask}", strict=False)
        if other.vlan == vlan_id and (other.gateway != gw or other.netmask != mask):
            raise InvalidParameter(f"The IP range with tag: {tag} in zone {zone.name} has already been added with "
                                   f"gateway {other.gateway} ,and netmask {other.netmask}, Please specify the "
                                   "gateway/netmask if you want to extend ip range", field="gateway")
        if other.vlan != vlan_id and o_net.overlaps(subnet):
            raise InvalidParameter(f"The IP range with tag: {tag} in zone {zone.name} has overlapped with the subnet. "
                                   "Please specify a different gateway/netmask.", field="gateway")
    # Guest networks of the zone (their CIDRs) must not overlap a public range; a shared
    # network's own range must lie in its CIDR instead.
    for g in db.session.scalars(select(Network).where(Network.zone_id == zone.id, Network.removed.is_(None),
                                                      Network.cidr.is_not(None))):
        g_net = ipaddress.IPv4Network(g.cidr, strict=False)
        if net is not None and g.id == net.id:
            continue
        if g_net.overlaps(subnet):
            raise InvalidParameter(f"The IP range {first}-{last} overlaps with the guest network {g.name} "
                                   f"({g.cidr}) of zone {zone.name}", field="startip")
    if public and zone.guest_cidr and ipaddress.IPv4Network(zone.guest_cidr, strict=False).overlaps(subnet):
        raise InvalidParameter(f"The IP range {first}-{last} overlaps with the guest network cidr {zone.guest_cidr} "
                               f"of zone {zone.name}", field="startip")
    if public and vlan_id != "untagged":
        for p in physical.zone_physical_networks(zone.id):
            if p.isolation_method != "VLAN":
                continue
            if int(vlan_id) in physical._vnets_in_use(p) or physical.in_spans(
                    int(vlan_id), physical.parse_vnet_range(p.vlan_range)):
                raise InvalidParameter(f"The VLAN tag {vlan_id} is already being used for dynamic vlan allocation "
                                       f"for the guest network in zone {zone.name}", field="vlan")
    r = VlanIpRange(uuid=new_uuid(), zone_id=zone.id, physical_network_id=phys.id if phys else None,
                    network_id=net.id if net is not None else None, vlan=vlan_id, gateway=gw, netmask=mask,
                    start_ip=first, end_ip=last, for_virtual_network=bool(public), account_id=account_id)
    db.session.add(r)
    db.session.flush()
    if public:
        db.session.execute(insert(PublicIpAddress), [
            {"uuid": new_uuid(), "created": utcnow(), "zone_id": zone.id, "vlan_range_id": r.id,
             "address": str(ipaddress.IPv4Address(a)), "state": IpState.FREE, "account_id": account_id,
             "is_source_nat": False, "quota_counted": False} for a in range(lo, hi + 1)])
    elif net is not None:
        _extend_network(net, lo, hi)
    events.record("VLAN.IP.RANGE.CREATE", f"IP range {first}-{last} ({tag}) added to "
                  f"{'zone ' + zone.name if public else 'network ' + net.name}", user=caller,
                  resource_type="VlanIpRange", resource_id=r.uuid)
    if commit:
        db.session.commit()
    return r


def _carrier(zone: Zone, public: bool) -> PhysicalNetwork | None:
    """The zone's physical network carrying Public (or Guest) traffic, else its first one."""
    from app.models import PhysicalNetworkTrafficType
    from app.services.network import physical
    tt = TrafficType.PUBLIC if public else TrafficType.GUEST
    phys = db.session.scalar(select(PhysicalNetwork).join(
        PhysicalNetworkTrafficType, PhysicalNetworkTrafficType.physical_network_id == PhysicalNetwork.id).where(
        PhysicalNetwork.zone_id == zone.id, PhysicalNetwork.removed.is_(None),
        PhysicalNetworkTrafficType.traffic_type == tt))
    if phys is None:
        nets = physical.zone_physical_networks(zone.id)
        phys = nets[0] if nets else None
    return phys


def _extend_network(net: Network, lo: int, hi: int) -> None:
    """A shared network's addresses grow by the range: its start/end widen when the range
    touches them (the allocator reads start..end); a separate range stays a row of its own."""
    if not net.start_ip or not net.end_ip:
        net.start_ip, net.end_ip = str(ipaddress.IPv4Address(lo)), str(ipaddress.IPv4Address(hi))
        return
    s, e = int(ipaddress.IPv4Address(net.start_ip)), int(ipaddress.IPv4Address(net.end_ip))
    if hi + 1 == s:
        net.start_ip = str(ipaddress.IPv4Address(lo))
    elif lo == e + 1:
        net.end_ip = str(ipaddress.IPv4Address(hi))


def delete_range(caller, uuid: str) -> None:
    r = get_range(uuid)
    busy = db.session.scalar(select(func.count()).select_from(PublicIpAddress).where(
        PublicIpAddress.vlan_range_id == r.id, PublicIpAddress.state != IpState.FREE))
    if busy:
        raise ResourceInUse(f"The IP range can't be deleted because it has allocated public IP addresses "
                            f"({busy} of them).")
    if r.network_id is not None:
        from app.models import IpAddress
        lo, hi = int(ipaddress.IPv4Address(r.start_ip)), int(ipaddress.IPv4Address(r.end_ip))
        used = [a for a in db.session.scalars(select(IpAddress.address).where(IpAddress.network_id == r.network_id))
                if lo <= int(ipaddress.IPv4Address(a)) <= hi]
        if used:
            raise ResourceInUse(f"The IP range can't be deleted because some of its addresses are in use "
                                f"({', '.join(used[:5])})")
    db.session.query(PublicIpAddress).filter(PublicIpAddress.vlan_range_id == r.id).delete(synchronize_session=False)
    r.removed = utcnow()
    events.record("VLAN.IP.RANGE.DELETE", f"IP range {r.start_ip}-{r.end_ip} deleted", user=caller,
                  resource_type="VlanIpRange", resource_id=r.uuid)
    db.session.commit()


def list_ranges(*, id=None, zone_uuid=None, network_uuid=None, physical_network_uuid=None, vlan=None,
                for_virtual_network=None, keyword=None, page=None):
    from app.services import zones
    from app.services.network import physical
    q = select(VlanIpRange).where(VlanIpRange.removed.is_(None)).order_by(VlanIpRange.id)
    if id:
        q = q.where(VlanIpRange.uuid == id)
    if zone_uuid:
        q = q.where(VlanIpRange.zone_id == zones.get_zone(zone_uuid).id)
    if network_uuid:
        q = q.where(VlanIpRange.network_id == select(Network.id).where(Network.uuid == network_uuid)
                    .scalar_subquery())
    if physical_network_uuid:
        q = q.where(VlanIpRange.physical_network_id == physical.get_physical_network(physical_network_uuid).id)
    if vlan:
        q = q.where(VlanIpRange.vlan == parse_vlan(vlan))
    if for_virtual_network is not None:
        q = q.where(VlanIpRange.for_virtual_network.is_(bool(for_virtual_network)))
    if keyword:
        q = q.where(VlanIpRange.start_ip.contains(keyword, autoescape=True)
                    | VlanIpRange.gateway.contains(keyword, autoescape=True))
    return page_of(q, page)


def free_count(r: VlanIpRange) -> int:
    return db.session.scalar(select(func.count()).select_from(PublicIpAddress).where(
        PublicIpAddress.vlan_range_id == r.id, PublicIpAddress.state == IpState.FREE)) or 0
