"""Guest networks in CloudStack's model: Isolated (an account's, behind a virtual router with
source NAT), Shared (zone-wide, an admin's range and VLAN) and L2 (only the segment).

Each zone also has a default network made from its guest CIDR (the legacy one: no offering,
no router). Offering-based networks are created Allocated (Isolated, L2) and implemented on
the first VM start, as CloudStack does (`implement`: a step list undone newest-first on a
failure); Shared ones are implemented at once. NIC addresses: ipam.py; routers: routers.py."""
from __future__ import annotations

import ipaddress
import json

import logging
import time

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.hypervisors.base import DriverError
from app.models import (GuestType, GuestVnet, Host, HostState, IpState, Network, NetworkOffering, NetworkState,
                        Nic, PhysicalNetwork, PublicIpAddress, Router, RouterState, VirtualMachine, Zone, new_uuid,
                        utcnow)
from app.network.host.specs import SegmentSpec, nic_device, router_key
from app.services import events, quotas, zones
from app.services.errors import (InsufficientCapacity, InvalidParameter, NotFound, PermissionDenied, ResourceInUse,
                                 ResourceUnavailable, ServiceError)
from app.services.network import ipam, routers, vxlan
from app.services.pagination import page_of

log = logging.getLogger(__name__)


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
    from app.services.network.physical import label_for
    return label_for(zone_id, "Guest", type_name)


DEFAULT_ISOLATED = "DefaultIsolatedNetworkOfferingWithSourceNatService"


def _offering(uuid: str | None, caller) -> NetworkOffering | None:
    """The offering named, or (none named) the isolated source-NAT one for users; admins
    without one get the legacy zone-wide network (no offering, no router)."""
    if uuid:
        off = db.session.scalar(select(NetworkOffering).where(NetworkOffering.uuid == uuid,
                                                              NetworkOffering.removed.is_(None)))
        if off is None:
            raise NotFound("Unable to find network offering by id", field="networkofferingid")
    elif caller is None or caller.is_admin:  # None: the system (a zone's default network)
        return None
    else:
        off = db.session.scalar(select(NetworkOffering).where(NetworkOffering.name == DEFAULT_ISOLATED,
                                                              NetworkOffering.removed.is_(None)))
        if off is None:
            raise InvalidParameter("No default isolated network offering exists; give networkofferingid",
                                   field="networkofferingid")
    if off.state != "Enabled":
        raise InvalidParameter("Can't use specified network offering id as its state is not Enabled",
                               field="networkofferingid")
    if off.is_system or off.traffic_type != "Guest":
        raise InvalidParameter("Can't create a network with a system network offering", field="networkofferingid")
    if off.guest_ip_type != GuestType.ISOLATED and not caller.is_admin:
        raise PermissionDenied(f"Only admins can create {off.guest_ip_type} networks")
    return off


def _vlan_ranges(phys: PhysicalNetwork | None) -> list[tuple[int, int]]:
    out = []
    for part in ((phys.vlan_range or "") if phys else "").split(","):
        if part.strip():
            lo, _, hi = part.strip().partition("-")
            out.append((int(lo), int(hi or lo)))
    return out


def _check_overlap(zone: Zone, cidr: str, account_id: int | None, exclude: int | None = None) -> None:
    """A CIDR overlapping another network of the same account in the zone, or any Shared
    network of the zone (one with an offering: the zone's legacy default network is only a
    range), is refused."""
    new = ipaddress.IPv4Network(cidr)
    shared = (Network.account_id.is_(None)) & Network.network_offering_id.is_not(None)
    q = select(Network).where(Network.zone_id == zone.id, Network.removed.is_(None), Network.cidr.is_not(None),
                              or_(shared, Network.account_id == account_id) if account_id is not None else shared)
    for other in db.session.scalars(q):
        if other.id == exclude:
            continue
        if new.overlaps(ipaddress.IPv4Network(other.cidr)):
            raise InvalidParameter(f"The IP range {cidr} overlaps with the IP range {other.cidr} of network "
                                   f"{other.name} in zone {zone.name}; please specify a different "
                                   "gateway/netmask", field="gateway")


def create_network(caller, *, zone_uuid: str, name: str, cidr: str | None = None, gateway: str | None = None,
                   netmask: str | None = None, start_ip: str | None = None, end_ip: str | None = None,
                   vlan: int | None = None, account_id: int | None = None, account_name: str | None = None,
                   is_default: bool = False, display_text: str | None = None, offering_uuid: str | None = None,
                   network_domain: str | None = None, acl_type: str | None = None,
                   physical_network_uuid: str | None = None) -> Network:
    """createNetwork. Without an offering (admins): the legacy zone-wide network of today."""
    from app.services import accounts
    zone = zones.get_zone(zone_uuid)
    offering = _offering(offering_uuid, caller)
    if offering is None:
        return _create_legacy(caller, zone, name=name, cidr=cidr or _cidr_of(gateway, netmask), gateway=gateway,
                              start_ip=start_ip, end_ip=end_ip, vlan=vlan, account_id=account_id,
                              is_default=is_default, display_text=display_text)
    kind = offering.guest_ip_type
    if account_id is None and (kind == GuestType.ISOLATED or account_name or acl_type == "Account"):
        account_id = accounts.named_account(caller, account_name).id
    if kind == GuestType.SHARED and acl_type != "Account" and not account_name:
        account_id = None  # zone-wide (acltype Domain)
    if kind == GuestType.ISOLATED and acl_type == "Domain":
        raise InvalidParameter("AclType should be Account for Isolated networks", field="acltype")
    if vlan is not None and not caller.is_admin:
        raise PermissionDenied("Only ROOT admin is allowed to specify vlanId")
    if physical_network_uuid:
        phys = db.session.scalar(select(PhysicalNetwork).where(PhysicalNetwork.uuid == physical_network_uuid,
                                                               PhysicalNetwork.removed.is_(None)))
        if phys is None or phys.zone_id != zone.id:
            raise NotFound("Unable to find physical network by id", field="physicalnetworkid")
    else:
        phys = db.session.scalar(select(PhysicalNetwork).where(PhysicalNetwork.zone_id == zone.id,
                                                               PhysicalNetwork.removed.is_(None))
                                 .order_by(PhysicalNetwork.id))
    values: dict = dict(cidr=None, gateway=None, netmask=None, start_ip=None, end_ip=None)
    if kind == GuestType.L2:
        if cidr or gateway or netmask or start_ip or end_ip:
            raise InvalidParameter("Gateway, netmask and IP ranges are not allowed for L2 networks", field="gateway")
    else:
        if not (cidr or gateway or netmask):
            if kind == GuestType.SHARED:
                raise InvalidParameter("Gateway and netmask are required for a Shared network", field="gateway")
            if not zone.guest_cidr:
                raise InvalidParameter(f"Zone {zone.name} has no guest CIDR; give gateway and netmask",
                                       field="gateway")
            cidr = zone.guest_cidr  # CloudStack's default: the zone's guest CIDR (each isolated one alone)
        elif not cidr:
            if not (gateway and netmask):
                raise InvalidParameter("gateway and netmask must be given together", field="netmask")
            cidr = _cidr_of(gateway, netmask)
        explicit = bool(cidr != zone.guest_cidr or gateway or netmask)
        values = _range(cidr, gateway, start_ip, end_ip)
        if explicit or kind == GuestType.SHARED:
            _check_overlap(zone, values["cidr"], account_id)
    if vlan is not None:
        if not 1 <= vlan <= (16777215 if phys and phys.isolation_method.upper() == "VXLAN" else 4094):
            raise InvalidParameter(f"Invalid vlan id {vlan}", field="vlan")
        ranges = _vlan_ranges(phys)
        if kind == GuestType.ISOLATED and ranges and not any(lo <= vlan <= hi for lo, hi in ranges):
            raise InvalidParameter(f"The VLAN tag {vlan} is not in the guest VLAN range {phys.vlan_range} of "
                                   f"physical network {phys.name}", field="vlan")
        if _vlan_taken(zone, phys, vlan):
            raise InvalidParameter(f"The VLAN tag {vlan} is already being used for dynamic vlan allocation for "
                                   f"the guest network in zone {zone.name}", field="vlan")
    domain = (network_domain or "").strip() or None
    if domain and not all(p and len(p) <= 63 and p.replace("-", "").isalnum() for p in domain.split(".")):
        raise InvalidParameter("Invalid network domain. Total length shouldn't exceed 190 chars. Each domain label "
                               "must be between 1 and 63 characters long, can contain ASCII letters 'a' through "
                               "'z', the digits '0' through '9', and the hyphen ('-'); can't start or end with "
                               "\"-\"; can't start with digit", field="networkdomain")
    counted = kind == GuestType.ISOLATED and account_id is not None
    try:
        if counted:
            quotas.take(account_id, {"network": 1}, commit=False)  # 532 past the limit; committed with the row
        net = Network(uuid=new_uuid(), name=zones._name(name), display_text=display_text or name, zone_id=zone.id,
                      physical_network_id=phys.id if phys else None, network_offering_id=offering.id,
                      guest_type=kind, account_id=account_id, vlan=vlan, network_domain=domain,
                      dns1=zone.dns1, dns2=zone.dns2, is_default=is_default, quota_counted=counted,
                      state=NetworkState.ALLOCATED, security_groups="SecurityGroup" in json.loads(offering.services or "{}"),
                      **values)
        db.session.add(net)
        db.session.flush()
        if vlan is not None and phys is not None:
            db.session.add(GuestVnet(physical_network_id=phys.id, vnet=vlan, network_id=net.id, taken=utcnow()))
        events.record("NETWORK.CREATE", f"{kind} network {net.name} ({net.cidr or 'L2'}) created in zone "
                      f"{zone.name}", user=caller, resource_type="Network", resource_id=net.uuid,
                      account_id=account_id)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise InvalidParameter(f"The VLAN tag {vlan} is already being used for dynamic vlan allocation for the "
                               f"guest network in zone {zone.name}", field="vlan") from None
    except Exception:
        db.session.rollback()
        raise
    if kind == GuestType.SHARED:
        try:
            implement(net)  # CloudStack implements shared networks at once
        except ServiceError:
            _remove_rows(net)
            raise
    return net


def _cidr_of(gateway: str | None, netmask: str | None) -> str | None:
    if not gateway or not netmask:
        return None
    try:
        return str(ipaddress.IPv4Network(f"{gateway}/{netmask}", strict=False))
    except ValueError:
        raise InvalidParameter(f"Invalid gateway/netmask {gateway}/{netmask}", field="netmask") from None


def _vlan_taken(zone: Zone, phys: PhysicalNetwork | None, vlan: int) -> bool:
    if db.session.scalar(select(Network.id).where(Network.zone_id == zone.id, Network.vlan == vlan,
                                                  Network.removed.is_(None))):
        return True
    return phys is not None and db.session.scalar(select(GuestVnet.id).where(
        GuestVnet.physical_network_id == phys.id, GuestVnet.vnet == vlan)) is not None


def _create_legacy(caller, zone: Zone, *, name: str, cidr: str | None, gateway, start_ip, end_ip, vlan, account_id,
                   is_default, display_text) -> Network:
    if not cidr:
        raise InvalidParameter("cidr (or gateway and netmask) is required", field="cidr")
    values = _range(cidr, gateway, start_ip, end_ip)
    if vlan is not None and not 1 <= vlan <= 4094:
        raise InvalidParameter("vlan must be within 1-4094", field="vlan")
    if vlan is None and zone.network_type == "Advanced":
        vlan = _first_vlan(zone)
    elif vlan is not None and db.session.scalar(select(Network.id).where(
            Network.zone_id == zone.id, Network.vlan == vlan, Network.removed.is_(None))):
        raise InvalidParameter(f"VLAN {vlan} is already used by another network of zone {zone.name}", field="vlan")
    net = Network(uuid=new_uuid(), name=zones._name(name), display_text=display_text or name, zone_id=zone.id,
                  account_id=account_id, vlan=vlan, is_default=is_default,
                  guest_type=GuestType.ISOLATED if account_id else GuestType.SHARED,
                  broadcast_uri=f"vlan://{vlan}" if vlan else None, state=NetworkState.IMPLEMENTED, **values)
    db.session.add(net)
    events.record("NETWORK.CREATE", f"Guest network {net.name} ({net.cidr}, VLAN {vlan or 'none'}) created in "
                  f"zone {zone.name}", user=caller, resource_type="Network", resource_id=net.uuid)
    db.session.commit()
    return net


def default_network(zone: Zone) -> Network | None:
    """The zone's default guest network, if it has one (none made)."""
    return db.session.scalar(select(Network).where(Network.zone_id == zone.id, Network.is_default.is_(True),
                                                   Network.removed.is_(None)))


def ensure_default_network(caller, zone: Zone) -> Network | None:
    """The zone's default guest network, made from its guest CIDR when it has none."""
    net = default_network(zone)
    if net is not None or not zone.guest_cidr:
        return net
    return create_network(caller, zone_uuid=zone.uuid, name=f"{zone.name}-guest", cidr=zone.guest_cidr,
                          is_default=True, display_text=f"Default guest network of zone {zone.name}")


def visible(caller):
    """Networks the caller sees: zone-wide ones and those of the accounts it may see (access.owned)."""
    from app.services import access
    return select(Network).where(Network.removed.is_(None),
                                 or_(Network.account_id.is_(None), access.owned(caller, Network.account_id)))


def get_network(caller, uuid: str, field: str = "networkid") -> Network:
    net = db.session.scalar(visible(caller).where(Network.uuid == uuid))
    if net is None:
        raise NotFound("Unable to find network with the specified id", field=field)
    return net


def _owned(caller, uuid: str) -> Network:
    """A network the caller may change: its account's (admins: any). Another's is "not found",
    the same answer as a missing one."""
    from app.services import access
    net = get_network(caller, uuid, "id")
    if not access.can_see(caller, net.account_id):  # a zone-wide network: root admins only
        raise NotFound("Unable to find network with the specified id", field="id")
    return net


def list_networks(caller, *, id=None, zone_uuid=None, name=None, keyword=None, page=None, guest_type=None,
                  is_system=None, account=None, list_all=None, offering_uuid=None, physical_network_uuid=None,
                  traffic_type=None, can_use_for_deploy=None, supported_services=None, restart_required=None,
                  acl_type=None, vpc=None, tags=None):
    from app.services import tags as tagging
    q = tagging.matching(visible(caller).order_by(Network.id), "Network", Network.id, tags)
    if id:
        q = q.where(Network.uuid == id)
    if zone_uuid:
        q = q.where(Network.zone_id == zones.get_zone(zone_uuid).id)
    if name:
        q = q.where(Network.name == name)
    if keyword:
        q = q.where(Network.name.contains(keyword, autoescape=True))
    if guest_type:
        q = q.where(func.lower(Network.guest_type) == guest_type.lower())
    if is_system:
        q = q.where(False)  # Nubo's guest networks are never system networks
    if account:
        from app.services import accounts
        q = q.where(Network.account_id == accounts.named_account(caller, account).id)
    if offering_uuid:
        q = q.where(Network.network_offering_id == select(NetworkOffering.id).where(
            NetworkOffering.uuid == offering_uuid).scalar_subquery())
    if physical_network_uuid:
        q = q.where(Network.physical_network_id == select(PhysicalNetwork.id).where(
            PhysicalNetwork.uuid == physical_network_uuid).scalar_subquery())
    if traffic_type and traffic_type.lower() != "guest":
        q = q.where(False)
    if can_use_for_deploy is not None:
        ok = Network.state.in_([NetworkState.ALLOCATED, NetworkState.IMPLEMENTED, NetworkState.IMPLEMENTING])
        q = q.where(ok if can_use_for_deploy else ~ok)
    if restart_required is not None:
        q = q.where(Network.restart_required.is_(bool(restart_required)))
    if acl_type:
        q = q.where(Network.account_id.is_(None) if acl_type.lower() == "domain" else Network.account_id.is_not(None))
    if vpc:
        q = q.where(False)  # no VPCs
    if supported_services:
        wanted = {s.strip().lower() for s in supported_services if s.strip()}
        rows = [n for n in db.session.scalars(q)
                if wanted <= {k.lower() for k in routers.services_of(n)}]
        ids = [n.id for n in rows]
        q = visible(caller).where(Network.id.in_(ids)).order_by(Network.id)  # (the tag filter is in ids)
    return page_of(q, page)


def update_network(caller, uuid: str, *, name=None, display_text=None, network_domain=None,
                   offering_uuid=None, change_cidr=None) -> Network:
    """updateNetwork (the async job body). A new offering must be of the same guest type;
    a changed domain or offering re-applies the router."""
    net = _owned(caller, uuid)
    changed = []
    if name is not None:
        net.name = zones._name(name)
        changed.append("name")
    if display_text is not None:
        net.display_text = display_text
        changed.append("displaytext")
    reapply = False
    if network_domain is not None and (network_domain or None) != net.network_domain:
        net.network_domain = network_domain.strip() or None
        changed.append("networkdomain")
        reapply = True
    if offering_uuid and (net.offering is None or offering_uuid != net.offering.uuid):
        off = _offering(offering_uuid, caller)
        if off is None or off.guest_ip_type != net.guest_type:
            raise InvalidParameter("Can't upgrade from network offering of guest type "
                                   f"{net.guest_type} to another guest type", field="networkofferingid")
        net.network_offering_id = off.id
        changed.append("networkofferingid")
        reapply = True
    events.record("NETWORK.UPDATE", f"Network {net.name} updated ({', '.join(changed) or 'nothing'})",
                  user=caller, resource_type="Network", resource_id=net.uuid, account_id=net.account_id)
    db.session.commit()
    if reapply:
        routers.apply(net)
    return net


# --- Implementing: a step list undone newest-first ------------------------------------

class _Steps:
    """What an implementation made, with how to undo each (the zone launch's pattern:
    undo newest first, host objects before rows, since the rows come first)."""

    def __init__(self) -> None:
        self.undos: list[tuple[str, callable]] = []

    def made(self, label: str, undo) -> None:
        self.undos.append((label, undo))

    def undo(self) -> None:
        db.session.rollback()
        for label, fn in reversed(self.undos):
            try:
                fn()
                db.session.commit()
            except Exception:  # noqa: BLE001 - keep undoing the rest; logged
                db.session.rollback()
                log.exception("undoing %s failed", label)


IMPLEMENT_WAIT = 120.0  # seconds a second starter waits for another's implementation


def implement(network: Network, near_host: Host | None = None) -> Network:
    """Make an Allocated network real: its VLAN/VNI, its source-NAT IP and its router (on a
    host near `near_host`), applied. Idempotent: an Implemented network is left as it is; one
    another process is implementing is waited for. A failure undoes every step."""
    deadline = time.monotonic() + IMPLEMENT_WAIT
    while True:
        db.session.commit()
        db.session.refresh(network)
        if network.state == NetworkState.IMPLEMENTED:
            return network
        won = db.session.execute(update(Network).where(Network.id == network.id,
                                                       Network.state.in_([NetworkState.ALLOCATED,
                                                                          NetworkState.SHUTDOWN]))
                                 .values(state=NetworkState.IMPLEMENTING)
                                 .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
        if won == 1:
            break
        if time.monotonic() > deadline:
            raise ResourceUnavailable(f"Network {network.name} is being implemented by another request; "
                                      "try again")
        time.sleep(0.2)
    db.session.refresh(network)
    steps = _Steps()
    net_id = network.id
    try:
        _implement_steps(network, near_host, steps)
    except Exception as e:
        steps.undo()
        db.session.execute(update(Network).where(Network.id == net_id).values(
            state=NetworkState.ALLOCATED, broadcast_uri=None).execution_options(synchronize_session=False))
        db.session.commit()
        if isinstance(e, ServiceError):  # the same kind of error (533 no capacity, 530 a host refused...)
            raise type(e)(f"Unable to implement network {network.name}: {e.message}", field=e.field) from None
        raise
    return network


def _implement_steps(net: Network, near_host: Host | None, steps: _Steps) -> None:
    phys = routers.physical_of(net)
    net_id = net.id
    if net.vlan is None and phys is not None and net.guest_type != GuestType.SHARED and _vlan_ranges(phys):
        vnet = _take_vnet(net, phys)
        steps.made("vnet", lambda: _give_vnet(net_id, phys.id, vnet))
    net.broadcast_uri = routers.broadcast_uri(net)
    db.session.commit()
    if routers.needs_router(net):
        host = routers.place(net, near_host)
        _start_router(net, host, steps)
    net.state = NetworkState.IMPLEMENTED
    db.session.commit()


def _take_vnet(net: Network, phys: PhysicalNetwork) -> int:
    """The lowest free VLAN/VNI of the physical network's range: a GuestVnet row (unique)."""
    for _ in range(16):
        used = set(db.session.scalars(select(GuestVnet.vnet).where(GuestVnet.physical_network_id == phys.id)))
        used |= set(db.session.scalars(select(Network.vlan).where(Network.zone_id == net.zone_id,
                                                                  Network.removed.is_(None),
                                                                  Network.vlan.is_not(None))))
        free = next((v for lo, hi in _vlan_ranges(phys) for v in range(lo, hi + 1) if v not in used), None)
        if free is None:
            raise InsufficientCapacity(f"Unable to allocate a guest VLAN/VNI in physical network {phys.name}: "
                                       f"every one of {phys.vlan_range} is taken")
        db.session.add(GuestVnet(physical_network_id=phys.id, vnet=free, network_id=net.id, taken=utcnow()))
        net.vlan = free
        try:
            db.session.commit()
            return free
        except IntegrityError:
            db.session.rollback()
    raise InsufficientCapacity(f"Unable to allocate a guest VLAN/VNI in physical network {phys.name}")


def _give_vnet(net_id: int, phys_id: int, vnet: int) -> None:
    db.session.execute(delete(GuestVnet).where(GuestVnet.physical_network_id == phys_id, GuestVnet.vnet == vnet,
                                               GuestVnet.network_id == net_id))
    db.session.execute(update(Network).where(Network.id == net_id).values(vlan=None)
                       .execution_options(synchronize_session=False))


def _start_router(net: Network, host: Host, steps: _Steps) -> Router:
    """The router's rows, then the host objects; each recorded for undo."""
    services = routers.services_of(net)
    source_nat = None
    if net.guest_type == GuestType.ISOLATED and services.get("SourceNat") == "VirtualRouter":
        source_nat = db.session.scalar(select(PublicIpAddress).where(PublicIpAddress.network_id == net.id,
                                                                     PublicIpAddress.is_source_nat.is_(True)))
        if source_nat is None:
            from app.services.network import public_ips  # counted as the account's public IP (type 1)
            source_nat = public_ips.claim(net.zone_id, net.account_id, net.id, source_nat=True)
            ip_id = source_nat.id
            steps.made("source NAT IP", lambda: _free_ip(ip_id))
    router = Router(uuid=new_uuid(), name="pending", network_id=net.id, zone_id=net.zone_id, host_id=host.id,
                    state=RouterState.STARTING, public_ip_id=source_nat.id if source_nat else None,
                    guest_mac=ipam.new_mac(), public_mac=ipam.new_mac() if source_nat else None,
                    last_checked=utcnow())
    db.session.add(router)
    db.session.flush()
    router.name = f"r-{router.id}-VM"  # CloudStack's router names
    db.session.commit()
    router_id = router.id
    steps.made("router row", lambda: _drop_router_rows(router_id))
    router.guest_ip = ipam.allocate_router_ip(net, router.id, net.gateway if net.guest_type == GuestType.ISOLATED
                                              else None)
    db.session.commit()
    driver = routers._driver(host)
    segment = routers.segment_for(net, host)
    try:
        try:
            driver.ensure_segment(segment)
        except DriverError as e:
            raise ResourceUnavailable(f"The network's segment could not be made on {host.name}: {e}") from None
        steps.made("segment", lambda: _release(host, segment))
        steps.made("router on host", lambda: _destroy_key(host, router_key(router.uuid)))
        routers.push(router)
    finally:
        driver.close()
    router.state, router.state_reason = RouterState.RUNNING, None
    events.record("ROUTER.START", f"Virtual router {router.name} of network {net.name} started on {host.name}",
                  resource_type="DomainRouter", resource_id=router.uuid, account_id=net.account_id)
    db.session.commit()
    vxlan.sync_all([net])  # the router's host carries the network now
    return router


def _free_ip(ip_id: int) -> None:
    from app.services.network import public_ips
    ip = db.session.get(PublicIpAddress, ip_id)
    if ip is not None and ip.state != IpState.FREE:
        public_ips.free(ip, commit=False)


def _drop_router_rows(router_id: int) -> None:
    ipam.release_router_ips(router_id)
    db.session.execute(delete(Router).where(Router.id == router_id))


def _release(host: Host, segment: SegmentSpec) -> None:
    driver = routers._driver(host)
    try:
        driver.release_segment(segment)
    finally:
        driver.close()


def _destroy_key(host: Host, key: str) -> None:
    driver = routers._driver(host)
    try:
        driver.router_destroy(key)
    finally:
        driver.close()


def repair_orphans(now=None) -> int:
    """A worker killed while implementing left a router Starting (or a network Implementing):
    past job.heartbeat.timeout, the router is removed from its host and its rows, and the
    network goes back to Allocated (monitor, every sweep). Returns the routers removed."""
    from datetime import timedelta
    from app.services import settings
    now = now or utcnow()
    stale = now - timedelta(seconds=settings.get("job.heartbeat.timeout"))
    fixed = 0
    for router in list(db.session.scalars(select(Router).where(Router.removed.is_(None),
                                                               Router.state == RouterState.STARTING,
                                                               Router.last_checked < stale))):
        net = router.network
        routers.destroy_on_host(router, quiet=True)
        if router.public_ip_id:
            _free_ip(router.public_ip_id)
        _drop_router_rows(router.id)
        if net.state == NetworkState.IMPLEMENTING:
            _give_back_vnet(net)
            net.state = NetworkState.ALLOCATED
        events.record("ROUTER.DESTROY", f"Virtual router {router.name} of network {net.name} was left half made "
                      "by a process that stopped; removed", level="WARN", resource_type="DomainRouter",
                      resource_id=router.uuid, account_id=net.account_id)
        db.session.commit()
        fixed += 1
    # A network Implementing without a router row: seen twice job.heartbeat.timeout apart (per
    # process, as vms.recover_orphans does with lock tokens), it goes back to Allocated.
    implementing = set(db.session.scalars(select(Network.id).where(Network.removed.is_(None),
                                                                   Network.state == NetworkState.IMPLEMENTING)))
    for net_id in set(_implementing_seen) - implementing:
        _implementing_seen.pop(net_id)
    for net_id in implementing:
        first = _implementing_seen.setdefault(net_id, now)
        net = db.session.get(Network, net_id)
        if now - first >= now - stale and routers.router_of(net) is None:
            _give_back_vnet(net)
            net.state = NetworkState.ALLOCATED
            db.session.commit()
            _implementing_seen.pop(net_id, None)
            fixed += 1
    return fixed


_implementing_seen: dict[int, object] = {}


def _give_back_vnet(net: Network) -> None:
    """An implementation's dynamically taken VNET (not one the admin gave at create)."""
    if net.vlan is not None and net.guest_type == GuestType.ISOLATED:
        db.session.execute(delete(GuestVnet).where(GuestVnet.network_id == net.id))
        net.vlan = None
    net.broadcast_uri = None


# --- Shutting down, deleting, restarting ----------------------------------------------

def _destroy_router(net: Network, *, quiet: bool = False) -> None:
    router = routers.router_of(net)
    if router is None:
        return
    routers.destroy_on_host(router, quiet=quiet)
    routers.forget(router)
    events.record("ROUTER.DESTROY", f"Virtual router {router.name} of network {net.name} destroyed",
                  resource_type="DomainRouter", resource_id=router.uuid, account_id=net.account_id)
    db.session.commit()
    vxlan.sync_all([net])


def delete_network(caller, uuid: str) -> None:
    """deleteNetwork (the async job body): refused while VMs use it; the router destroyed,
    public IPs released, the VNET and quota given back."""
    net = _owned(caller, uuid)
    if db.session.scalar(select(func.count()).select_from(Nic).join(VirtualMachine, VirtualMachine.id == Nic.vm_id)
                         .where(Nic.network_id == net.id, Nic.removed.is_(None),
                                VirtualMachine.removed.is_(None))):
        raise ResourceInUse(f"Unable to delete network {net.name}: it has VMs on it (delete them first)")
    _destroy_router(net)
    from app.services.network import public_ips
    public_ips.release_all(net, caller)  # its rules and addresses (the source NAT one too), counts back
    _remove_rows(net)
    events.record("NETWORK.DELETE", f"Network {net.name} deleted", user=caller, resource_type="Network",
                  resource_id=net.uuid, account_id=net.account_id)
    db.session.commit()


def _remove_rows(net: Network) -> None:
    """The network's rows gone: its VNETs, its guest addresses, its quota."""
    db.session.rollback()
    db.session.execute(delete(GuestVnet).where(GuestVnet.network_id == net.id))
    if net.quota_counted and net.account_id:
        quotas.give(net.account_id, {"network": 1}, commit=False)
        net.quota_counted = False
    net.removed, net.state = utcnow(), NetworkState.DESTROY
    db.session.commit()


def restart_network(caller, uuid: str, *, cleanup: bool = False) -> Network:
    """restartNetwork (the async job body): cleanup=true destroys the router and builds it
    again from the database (same addresses); otherwise the configuration is applied again."""
    net = _owned(caller, uuid)
    if net.state != NetworkState.IMPLEMENTED:
        raise InvalidParameter(f"Network {net.name} is not in the right state to restart (it is {net.state})",
                               field="id")
    router = routers.router_of(net)
    if routers.needs_router(net):
        if cleanup or router is None or router.host is None or router.host.state != HostState.UP:
            if router is not None:
                _destroy_router(net, quiet=True)
            steps = _Steps()
            try:
                _start_router(net, routers.place(net), steps)
            except Exception:
                steps.undo()
                raise
        else:
            if router.state == RouterState.ALERT:
                routers.restart(router)
            else:
                routers.push(router)
            router.state, router.state_reason = RouterState.RUNNING, None
    net.restart_required = False
    events.record("NETWORK.RESTART", f"Network {net.name} restarted{' with clean-up' if cleanup else ''}",
                  user=caller, resource_type="Network", resource_id=net.uuid, account_id=net.account_id)
    db.session.commit()
    return net




# --- VMs on networks: what a start, a stop and an expunge need -----------------------

def managed(net: Network) -> bool:
    """An offering-based network: its segments are made by Nubo (legacy ones are not)."""
    return net.network_offering_id is not None


def prepare_nics(vm: VirtualMachine, host: Host) -> dict[int, tuple[SegmentSpec | None, str]]:
    """Before a VM starts on `host`: each NIC's network implemented (near the host), its
    segment and device name. Returns {nic id: (segment or None, target dev)}."""
    out = {}
    for nic in vm.nics:
        if nic.removed is not None:
            continue
        net = nic.network
        if managed(net) and net.state != NetworkState.IMPLEMENTED:
            implement(net, near_host=host)
            db.session.refresh(net)
        out[nic.id] = (routers.segment_for(net, host) if managed(net) else None, nic_device(nic.uuid))
    # The VM is placed on `host` (the planner's hold): the other hosts of its VXLAN networks
    # learn it now, before the guest's first broadcast.
    vxlan.sync_all(_vxlan_networks(vm, out), known=True)
    return out


def _vxlan_networks(vm: VirtualMachine, segments: dict) -> list[Network]:
    """The VM's networks whose segment (from prepare_nics) is a VXLAN; nothing is read for a
    VM without one (the statement budget of a start: tests/integration/test_statement_budget.py)."""
    vx = {nic_id for nic_id, (seg, _dev) in segments.items() if seg is not None and seg.isolation == "VXLAN"}
    if not vx:
        return []
    return list({n.network for n in vm.nics if n.id in vx})


def joined_host(vm: VirtualMachine, host: Host, segments: dict) -> None:
    """The VM runs on `host` now: its VXLAN networks' peers set again on every carrier (a host
    that joined while this one was starting is known to all). segments: prepare_nics's."""
    vxlan.sync_all(_vxlan_networks(vm, segments), known=True)


def apply_routers(vm: VirtualMachine) -> None:
    """The VM's networks' routers get its leases and metadata (before the guest boots)."""
    for net in {n.network for n in vm.nics if n.removed is None}:
        if managed(net):
            routers.apply(net)


def left_host(vm: VirtualMachine, host: Host | None) -> None:
    """The VM stopped on or left `host`: its security-group rules and, when nothing else uses
    them, its segments removed there (best effort: a host that refuses keeps a bridge)."""
    if host is None:
        return
    from app.services.network import secgroups
    try:
        if any(n.network.security_groups for n in vm.nics if n.removed is None):  # a network's kind never changes
            secgroups.remove_for_vm(vm, host)
    except ServiceError as e:
        log.warning("security groups of %s on %s: %s", vm.name, host.name, e.message)
    nets = [n.network for n in vm.nics if n.removed is None and managed(n.network) and n.network.vlan is not None]
    segments = [routers.segment_for(net, host) for net in nets]
    if not segments:
        return
    driver = routers._driver(host)
    try:
        for seg in segments:
            try:
                driver.release_segment(seg)
            except DriverError as e:
                log.warning("segment %s on %s: %s", seg, host.name, e)
    finally:
        driver.close()
    # A host no longer carrying a VXLAN network leaves the other carriers' lists.
    vxlan.sync_all({net for net, seg in zip(nets, segments) if seg.isolation == "VXLAN"}, without=(vm.id, host.id),
                   known=True)


def ensure_segments(vm: VirtualMachine, host: Host) -> None:
    """The VM's NIC segments made on `host` (before a migration there)."""
    nets = [n.network for n in vm.nics
            if n.removed is None and managed(n.network) and n.network.state == NetworkState.IMPLEMENTED]
    segments = [routers.segment_for(net, host) for net in nets]
    if not segments:
        return
    driver = routers._driver(host)
    try:
        for seg in segments:
            driver.ensure_segment(seg)
    except DriverError as e:
        raise ResourceUnavailable(f"The VM's networks could not be made on {host.name}: {e}") from None
    finally:
        driver.close()
    # the other carriers send to the destination before the guest lands there
    vxlan.sync_all({net for net, seg in zip(nets, segments) if seg.isolation == "VXLAN"}, plus=host, known=True)


# --- Async commands: the jobs ------------------------------------------------------------

def _job(cmd: str, caller, handler: str, net: Network, params: dict | None = None):
    from app.jobs import service as jobs
    return jobs.submit(cmd, caller, handler, {"network": net.uuid, **(params or {})},
                       instance_type="Network", instance_id=net.uuid)


def _job_caller():
    from flask import g
    return g.caller


def submit_update(caller, uuid: str, **changes):
    net = _owned(caller, uuid)
    if changes.get("offering_uuid"):
        _offering(changes["offering_uuid"], caller)  # a bad offering is refused before the job
    return _job("updateNetwork", caller, "network.update", net, changes)


def submit_delete(caller, uuid: str):
    return _job("deleteNetwork", caller, "network.delete", _owned(caller, uuid))


def submit_restart(caller, uuid: str, *, cleanup: bool = False):
    return _job("restartNetwork", caller, "network.restart", _owned(caller, uuid), {"cleanup": bool(cleanup)})


def _register_jobs() -> None:
    from app.jobs import service as jobs

    def result(net: Network) -> dict:
        return {"network": jobs.ObjectResult("network", net)}

    @jobs.handler("network.update")
    def _update(job, params):
        p = {k: v for k, v in params.items() if k != "network"}
        return result(update_network(_job_caller(), params["network"], **p))

    @jobs.handler("network.delete")
    def _delete(job, params):
        delete_network(_job_caller(), params["network"])
        return {"success": True}

    @jobs.handler("network.restart")
    def _restart(job, params):
        return result(restart_network(_job_caller(), params["network"], cleanup=params.get("cleanup", False)))


_register_jobs()
