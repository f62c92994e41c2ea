"""Guest networks: each zone has a default one (made from the zone's guest CIDR,
with a VLAN from the physical network's range in Advanced zones); admins add more.

A NIC gets a unique MAC and an address from its network's range. Both are made
unique by the database (unique constraints), so concurrent deploys never share
one: a lost race simply tries the next free address."""
from __future__ import annotations

import ipaddress
import json
import secrets

from sqlalchemy import delete, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.extensions import db
from app.models import IpAddress, Network, Nic, PhysicalNetwork, VirtualMachine, Zone, new_uuid, utcnow
from app.services import events, zones
from app.services.dbutil import is_retryable
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


# --- NICs: MAC and IP -------------------------------------------------------------

def _new_mac() -> str:
    # Locally administered unicast (02:...), as CloudStack's guest MACs.
    return "02:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))


def add_nic(vm: VirtualMachine, net: Network, device_id: int = 0) -> Nic:
    """A NIC with a unique MAC and the lowest free address of the network (committed)."""
    for _ in range(8):
        nic = Nic(uuid=new_uuid(), vm_id=vm.id, network_id=net.id, mac_address=_new_mac(),
                  is_default=device_id == 0, device_id=device_id)
        db.session.add(nic)
        try:
            db.session.commit()
            break
        except IntegrityError:
            db.session.rollback()  # a MAC collision: draw again
    else:
        raise InsufficientCapacity("Could not draw a unique MAC address")
    nic.ip_address = allocate_ip(net, nic.id)
    db.session.commit()
    return nic


def allocate_ip(net: Network, nic_id: int) -> str:
    """A free address of the network. Fast path: the address right after the allocated count
    (where a range fills up in order); otherwise the lowest free one. The unique constraint
    decides every race."""
    start, end = int(ipaddress.IPv4Address(net.start_ip)), int(ipaddress.IPv4Address(net.end_ip))
    used = db.session.scalar(select(func.count()).select_from(IpAddress).where(IpAddress.network_id == net.id))
    if start + used <= end and _claim_ip(net, start + used, nic_id):
        return str(ipaddress.IPv4Address(start + used))
    while True:
        taken = {int(ipaddress.IPv4Address(a)) for a in db.session.scalars(
            select(IpAddress.address).where(IpAddress.network_id == net.id))}
        free = next((i for i in range(start, end + 1) if i not in taken), None)
        if free is None:
            raise InsufficientCapacity(f"Network {net.name} has no free address left ({net.start_ip}-{net.end_ip})")
        if _claim_ip(net, free, nic_id):
            return str(ipaddress.IPv4Address(free))


def _claim_ip(net: Network, address: int, nic_id: int) -> bool:
    """Insert the allocation; False when a concurrent deploy took that address first."""
    db.session.add(IpAddress(network_id=net.id, address=str(ipaddress.IPv4Address(address)), nic_id=nic_id,
                             allocated=utcnow()))
    try:
        db.session.commit()
        return True
    except IntegrityError:
        db.session.rollback()
        return False
    except DBAPIError as e:
        # InnoDB may answer concurrent inserts of one key with a deadlock: the same lost race.
        db.session.rollback()
        if not is_retryable(e):
            raise
        return False


def release_nics(vm: VirtualMachine) -> None:
    """Addresses back to their networks; NICs marked removed (expunge, failed deploy)."""
    nic_ids = [n.id for n in vm.nics if n.removed is None]
    if nic_ids:
        db.session.execute(delete(IpAddress).where(IpAddress.nic_id.in_(nic_ids)))
        for n in vm.nics:
            n.removed = utcnow()
    db.session.commit()
