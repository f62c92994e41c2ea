"""Public IP addresses of isolated networks: associateIpAddress / disassociateIpAddress,
static NAT (enableStaticNat / disableStaticNat) and listPublicIpAddresses, CloudStack's
NetworkServiceImpl / IpAddressManagerImpl / RulesManagerImpl.

An address is made Free with its range (ranges.py) and taken by one guarded UPDATE
(Free -> Allocated) run by quotas.take in the same transaction as the account's public-IP
count (resource type 1) and the row's quota_counted flag: two callers never get one address,
an account at its limit gets none, and a process killed in between leaves neither. Released,
the row goes back to Free with its count in one transaction too.

The network's source-NAT address (taken when the network is implemented) counts like any
other; it cannot be released while its network is implemented (CloudStack's rule), only with
the network (release_all).
"""
from __future__ import annotations

import ipaddress
import random
import uuid as uuidlib
from dataclasses import dataclass

from sqlalchemy import and_, or_, select, update

from app.extensions import db
from app.models import (Account, FirewallRule, GuestType, IpState, Network, NetworkState, Nic, PhysicalNetwork,
                        PublicIpAddress, RuleState, VirtualMachine, VlanIpRange, VMState, Zone, utcnow)
from app.services import access, events, quotas
from app.services.errors import InsufficientCapacity, InvalidParameter, NetworkRuleConflict, NotFound, ResourceInUse
from app.services.network import rules
from app.services.pagination import page_of


def public_network_id(zone: Zone) -> str:
    """The id of the zone's Public network, which Nubo has no row for (listPublicIpAddresses
    shows it as an address's `networkid`): stable, derived from the zone's."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"nubo:public-network:{zone.uuid}"))


# --- Associate ----------------------------------------------------------------------------------

def _network(caller, uuid: str) -> Network:
    net = db.session.scalar(select(Network).where(Network.uuid == uuid, Network.removed.is_(None)))
    if net is None or (net.account_id is not None and not access.can_see(caller, net.account_id)):
        raise NotFound("Unable to find network by network id specified", field="networkid")
    return net


def _owner_network(caller, zone_uuid: str, owner: Account) -> Network:
    """associateIpAddress with zoneid only: the owner's one isolated network in the zone."""
    zone = db.session.scalar(select(Zone).where(Zone.uuid == zone_uuid, Zone.removed.is_(None)))
    if zone is None:
        raise NotFound("Unable to find zone by id specified", field="zoneid")
    nets = db.session.scalars(select(Network).where(
        Network.zone_id == zone.id, Network.account_id == owner.id, Network.guest_type == GuestType.ISOLATED,
        Network.removed.is_(None))).all()
    if not nets:
        raise InvalidParameter(f"Account name={owner.name} domain={owner.domain.name} doesn't have virtual networks in "
                               f"zone={zone.name}", field="zoneid")
    if len(nets) > 1:
        raise InvalidParameter("Account has more than one isolated network in the zone", field="zoneid")
    return nets[0]


def _free_candidates(zone_id: int, owner_id: int, address: str | None, limit: int = 16) -> list[int]:
    """Free addresses of the zone's public ranges (shared ones, or dedicated to the owner)."""
    q = (select(PublicIpAddress.id).join(VlanIpRange, VlanIpRange.id == PublicIpAddress.vlan_range_id)
         .where(PublicIpAddress.zone_id == zone_id, PublicIpAddress.state == IpState.FREE,
                VlanIpRange.for_virtual_network.is_(True), VlanIpRange.removed.is_(None),
                or_(VlanIpRange.account_id.is_(None), VlanIpRange.account_id == owner_id)))
    if address:
        q = q.where(PublicIpAddress.address == address)
    return list(db.session.scalars(q.order_by(PublicIpAddress.id).limit(limit)))


def claim(zone_id: int, owner_id: int, network_id: int, *, source_nat: bool = False,
          address: str | None = None, commit: bool = True) -> PublicIpAddress:
    """Take a Free address of the zone for the owner's network, with the owner's public-IP
    count, in one transaction (532 at the limit, 533 when none is free). commit=False leaves
    the transaction open for the caller's own rows (as quotas.take does)."""
    for _ in range(20):
        ids = _free_candidates(zone_id, owner_id, address)
        if not ids:
            db.session.rollback()
            if address:
                raise InvalidParameter(f"The IP address {address} is not a free public address of the zone",
                                       field="ipaddress")
            raise InsufficientCapacity("Insufficient address capacity")
        pick = random.choice(ids)  # parallel claims mostly try different rows
        stmt = (update(PublicIpAddress).where(PublicIpAddress.id == pick, PublicIpAddress.state == IpState.FREE)
                .values(state=IpState.ALLOCATED, account_id=owner_id, network_id=network_id, is_source_nat=source_nat,
                        allocated=utcnow(), quota_counted=True, vm_id=None, vm_ip=None))
        try:
            quotas.take(owner_id, {"public_ip": 1}, also=[(stmt, "The address was taken meanwhile")], commit=False)
        except ResourceInUse:
            continue  # another caller took that one first: draw again (nothing was counted)
        ip = db.session.get(PublicIpAddress, pick, populate_existing=True)
        if commit:
            db.session.commit()
        return ip
    raise ResourceInUse("Too many concurrent address requests; try again")


def associate_ip(caller, *, network_uuid: str | None = None, zone_uuid: str | None = None,
                 address: str | None = None, account: str | None = None) -> PublicIpAddress:
    """associateIpAddress's synchronous half (CloudStack's create()): the address is taken for
    the network's owner and counted; finish_associate() then gives it to the router."""
    named = access.owner_for(caller, account) if (account or access.current_project()) else None
    if network_uuid:
        network = _network(caller, network_uuid)
    elif zone_uuid:
        network = _owner_network(caller, zone_uuid, named or caller.account)
    else:
        raise InvalidParameter("Unable to figure out zone to assign IP to. Please specify either zoneId, or "
                               "networkId, or vpcId in the call", field="networkid")
    if address is not None:
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise InvalidParameter(f"{address} is not an IPv4 address", field="ipaddress") from None
    owner_id = network.account_id
    if network.guest_type != GuestType.ISOLATED or owner_id is None or "SourceNat" not in rules.services_of(network):
        raise InvalidParameter("In zone of type Advanced ip address can be associated only to the network of guest "
                               "type Isolated with the SourceNat enabled", field="networkid")
    if named is not None and named.id != owner_id:
        raise InvalidParameter("The owner of the network is not the same as owner of the IP", field="account")
    ip = claim(network.zone_id, owner_id, network.id, address=address)
    return ip


def finish_associate(caller, ip_uuid: str) -> PublicIpAddress:
    """associateIpAddress's job: the router gets the address; if it cannot, the address is
    released again (count given back) and the error raised."""
    ip = db.session.scalar(select(PublicIpAddress).where(PublicIpAddress.uuid == ip_uuid))
    if ip is None or ip.state != IpState.ALLOCATED:
        raise NotFound(f"Unable to find IP address by ID {ip_uuid}", field="id")
    network = db.session.get(Network, ip.network_id)
    try:
        rules._apply(network)
    except Exception:
        db.session.rollback()
        _free(db.session.get(PublicIpAddress, ip.id))
        db.session.commit()
        raise
    events.record("NET.IPASSIGN", f"Public IP address {ip.address} associated with network {network.name}",
                  user=caller, account_id=ip.account_id, resource_type="IpAddress", resource_id=ip.uuid)
    db.session.commit()
    return ip


# --- Release --------------------------------------------------------------------------------------

def _free(ip: PublicIpAddress) -> None:
    """The address back to Free and its count back to its account, once (uncommitted)."""
    done = db.session.execute(update(PublicIpAddress).where(PublicIpAddress.id == ip.id,
                                                            PublicIpAddress.quota_counted.is_(True))
                              .values(quota_counted=False).execution_options(synchronize_session=False))
    if done.rowcount == 1 and ip.account_id is not None:
        quotas.give(ip.account_id, {"public_ip": 1}, commit=False)
    db.session.execute(update(PublicIpAddress).where(PublicIpAddress.id == ip.id).values(
        state=IpState.FREE, account_id=None, network_id=None, is_source_nat=False, vm_id=None, vm_ip=None,
        allocated=None).execution_options(synchronize_session=False))
    from app.services import tags
    tags.forget("PublicIpAddress", [ip.id])  # the row is taken again later, by anyone


def get_ip(caller, uuid: str, field: str = "id") -> PublicIpAddress:
    return rules.get_public_ip(caller, uuid, field)


def disassociate_ip(caller, uuid: str) -> None:
    """disassociateIpAddress (the job): every rule of the address and its static NAT go, the
    router is re-applied without them, then the address is Free and its count given back.
    A router failure puts everything back as it was."""
    ip = get_ip(caller, uuid)
    if ip.state == IpState.FREE or ip.allocated is None:
        return  # not allocated: nothing to do (CloudStack answers success)
    network = db.session.get(Network, ip.network_id) if ip.network_id else None
    if ip.is_source_nat and network is not None and network.state != NetworkState.ALLOCATED:
        raise InvalidParameter("ip address is used for source nat purposes and can not be disassociated.", field="id")
    ip = rules._lock_ip(ip.id)
    if ip.state != IpState.ALLOCATED:
        db.session.rollback()
        raise ResourceInUse(f"Public IP address {ip.address} is being changed by another request")
    ip.state = IpState.RELEASING  # for_router leaves it out (and its NAT and rules)
    before = rules.revoke_all_for_ip(ip.id)
    db.session.commit()
    if network is not None:
        try:
            rules._apply(network)
        except Exception:
            db.session.rollback()
            rules.undo_revoke(before)
            db.session.execute(update(PublicIpAddress).where(PublicIpAddress.id == ip.id)
                               .values(state=IpState.ALLOCATED).execution_options(synchronize_session=False))
            db.session.commit()
            raise
    n = rules.delete_all(FirewallRule.public_ip_id == ip.id)
    address, account_id = ip.address, ip.account_id
    _free(ip)
    events.record("NET.IPRELEASE", f"Public IP address {address} released"
                  + (f" with its {n} rule{'s' if n != 1 else ''}" if n else ""),
                  user=caller, account_id=account_id, resource_type="IpAddress", resource_id=ip.uuid)
    db.session.commit()


def release_all(network, caller=None) -> int:
    """deleteNetwork's part: every rule of the network deleted, every address associated with
    it (the source NAT one too) Free again with its count given back. No router is applied
    (the network's router is being destroyed). Committed; returns the addresses released."""
    rules.delete_all(FirewallRule.network_id == network.id)
    ips = db.session.scalars(select(PublicIpAddress).where(PublicIpAddress.network_id == network.id)).all()
    for ip in ips:
        address, account_id, ip_uuid = ip.address, ip.account_id, ip.uuid
        _free(ip)
        events.record("NET.IPRELEASE", f"Public IP address {address} released with network {network.name}",
                      user=caller, account_id=account_id, resource_type="IpAddress", resource_id=ip_uuid)
    db.session.commit()
    return len(ips)


def free(ip: PublicIpAddress, *, commit: bool = True) -> None:
    """An address back to Free with its count given back (its rules must be gone already)."""
    _free(ip)
    if commit:
        db.session.commit()


def release_for_vm(vm, caller=None) -> None:
    """A VM expunged: its port forwarding rules go and static NAT to it is disabled (with every
    rule of those addresses), then each network concerned is re-applied once. A router that
    cannot take it now is left to the monitor's re-apply (the database is the desired state)."""
    import logging
    pf = db.session.scalars(select(FirewallRule).where(FirewallRule.vm_id == vm.id,
                                                       FirewallRule.purpose == "PortForwarding")).all()
    batch = [r for rule in pf for r in rules._batch(rule)]
    ips = db.session.scalars(select(PublicIpAddress).where(PublicIpAddress.vm_id == vm.id)).all()
    networks = {r.network_id for r in batch} | {ip.network_id for ip in ips if ip.network_id}
    for ip in ips:
        batch += db.session.scalars(select(FirewallRule).where(FirewallRule.public_ip_id == ip.id)).all()
        ip.vm_id, ip.vm_ip = None, None
        events.record("STATICNAT.DISABLE", f"Static NAT of {ip.address} disabled: VM {vm.name} expunged", user=caller,
                      account_id=ip.account_id, resource_type="IpAddress", resource_id=ip.uuid)
    rules._delete_rows(list({r.id: r for r in batch}.values()))
    db.session.commit()
    for network_id in networks:
        try:
            rules._apply(db.session.get(Network, network_id))
        except Exception as e:  # noqa: BLE001 - the monitor re-applies
            db.session.rollback()
            logging.getLogger(__name__).warning("router of network %s not re-applied after VM %s left: %s",
                                                network_id, vm.uuid, e)


# --- Static NAT ------------------------------------------------------------------------------------

def enable_static_nat(caller, *, ip_uuid: str, vm_uuid: str, network_uuid: str | None = None,
                      vm_guest_ip: str | None = None) -> PublicIpAddress:
    """enableStaticNat (synchronous in CloudStack): the whole address maps to the VM's NIC on
    the address's network, then the router is applied (a failure undoes it)."""
    from app.services import vms
    ip = get_ip(caller, ip_uuid, "ipaddressid")
    if ip.state != IpState.ALLOCATED or ip.network_id is None:
        raise InvalidParameter(f"Unable to enable static NAT for the ipAddress id={ip.uuid} as IP is not associated "
                               f"with any network and no networkId is passed in", field="ipaddressid")
    network = db.session.get(Network, ip.network_id)
    if network_uuid and network_uuid != network.uuid:
        raise InvalidParameter(f"Invalid network Id={network_uuid}. IP is associated with a different network than "
                               f"passed network id", field="networkid")
    vm = vms.get_vm(caller, vm_uuid, field="virtualmachineid")
    nic = db.session.scalar(select(Nic).where(Nic.vm_id == vm.id, Nic.network_id == network.id, Nic.removed.is_(None)))
    if nic is None:
        raise InvalidParameter("Vm doesn't belong to the network with specified id", field="virtualmachineid")
    if "StaticNat" not in rules.services_of(network):
        raise InvalidParameter("Unable to create static nat rule; StaticNat service is not supported in network "
                               "with specified id", field="ipaddressid")
    if vm.state in (VMState.DESTROYED, VMState.EXPUNGING):
        raise InvalidParameter(f"Invalid user vm: {vm.uuid}", field="virtualmachineid")
    if vm.account_id != ip.account_id:
        raise InvalidParameter(f"Unable to create ip forwarding rule, IP address {ip.address} owner is not the same "
                               f"as owner of virtual machine {vm.name}", field="virtualmachineid")
    if vm_guest_ip is not None and vm_guest_ip != nic.ip_address:
        raise InvalidParameter(f"VM ip {vm_guest_ip} address not belongs to the vm", field="vmguestip")
    if ip.is_source_nat:
        raise InvalidParameter(f"Can't enable static, ip address {ip.address} is a sourceNat ip address",
                               field="ipaddressid")
    vm_ip = nic.ip_address
    ip = rules._lock_ip(ip.id)
    try:
        if ip.state != IpState.ALLOCATED:
            raise ResourceInUse(f"Public IP address {ip.address} is being changed by another request")
        if ip.vm_id is None:
            pf = db.session.scalar(select(FirewallRule.id).where(
                FirewallRule.public_ip_id == ip.id, FirewallRule.purpose == "PortForwarding",
                FirewallRule.state != RuleState.REVOKE).limit(1))
            if pf is not None:
                raise NetworkRuleConflict(f"Failed to enable static nat for the ip address {ip.address} as it already "
                                          f"has PortForwarding rules assigned")
        elif ip.vm_id != vm.id:
            raise NetworkRuleConflict(f"Failed to enable static for the ip address {ip.address} and vm id={vm.uuid} "
                                      f"as it's already assigned to antoher vm")
        other = db.session.scalar(select(PublicIpAddress).where(
            PublicIpAddress.vm_id == vm.id, PublicIpAddress.vm_ip == vm_ip, PublicIpAddress.id != ip.id))
        if other is not None:
            raise InvalidParameter(f"Failed to enable static nat on the  ip {ip.address} with Id {ip.uuid} as the vm "
                                   f"{vm.instance_name} with Id {vm.uuid} is already associated with another public "
                                   f"ip {other.address} with id {other.uuid}", field="virtualmachineid")
    except Exception:
        db.session.rollback()
        raise
    before = (ip.vm_id, ip.vm_ip)
    ip.vm_id, ip.vm_ip = vm.id, vm_ip
    db.session.commit()
    try:
        rules._apply(network)
    except Exception:
        db.session.rollback()
        db.session.execute(update(PublicIpAddress).where(PublicIpAddress.id == ip.id)
                           .values(vm_id=before[0], vm_ip=before[1]).execution_options(synchronize_session=False))
        db.session.commit()
        raise
    events.record("STATICNAT.ENABLE", f"Static NAT of {ip.address} to VM {vm.name} ({vm_ip}) enabled", user=caller,
                  account_id=ip.account_id, resource_type="IpAddress", resource_id=ip.uuid)
    db.session.commit()
    return ip


def disable_static_nat(caller, ip_uuid: str) -> None:
    """disableStaticNat (the job): the address's firewall, port forwarding and ip forwarding
    rules go with its static NAT (RulesManagerImpl.disableStaticNat); a router failure puts
    everything back."""
    ip = get_ip(caller, ip_uuid, "ipaddressid")
    if ip.vm_id is None:
        raise InvalidParameter("Specified IP address id is not associated with any vm Id", field="ipaddressid")
    network = db.session.get(Network, ip.network_id)
    ip = rules._lock_ip(ip.id)
    if ip.vm_id is None or ip.state != IpState.ALLOCATED:
        db.session.rollback()
        raise InvalidParameter("One to one nat is not enabled for the specified ip id", field="ipaddressid")
    before_vm = (ip.vm_id, ip.vm_ip)
    before = rules.revoke_all_for_ip(ip.id)
    ip.vm_id, ip.vm_ip = None, None
    db.session.commit()
    try:
        rules._apply(network)
    except Exception:
        db.session.rollback()
        rules.undo_revoke(before)
        db.session.execute(update(PublicIpAddress).where(PublicIpAddress.id == ip.id)
                           .values(vm_id=before_vm[0], vm_ip=before_vm[1]).execution_options(synchronize_session=False))
        db.session.commit()
        raise
    rules.delete_all(FirewallRule.public_ip_id == ip.id)
    vm = db.session.get(VirtualMachine, before_vm[0])
    events.record("STATICNAT.DISABLE", f"Static NAT of {ip.address} to VM {vm.name if vm else before_vm[0]} disabled",
                  user=caller, account_id=ip.account_id, resource_type="IpAddress", resource_id=ip.uuid)
    db.session.commit()


# --- Listing -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IpView:
    """An address with everything its IPAddressResponse shows (loaded for a page at once)."""
    ip: PublicIpAddress
    zone: Zone
    vlan: VlanIpRange
    account: Account | None
    network: Network | None  # associated with
    vm: VirtualMachine | None  # static NAT
    has_rules: bool
    range_network: Network | None  # a shared network's own range
    physical_network_uuid: str | None


def _views(rows: list[PublicIpAddress]) -> list[IpView]:
    def by_id(model, ids):
        ids = {i for i in ids if i is not None}
        return {o.id: o for o in db.session.scalars(select(model).where(model.id.in_(ids)))} if ids else {}
    vlans = by_id(VlanIpRange, (r.vlan_range_id for r in rows))
    zones = by_id(Zone, (r.zone_id for r in rows))
    accts = by_id(Account, (r.account_id for r in rows))
    nets = by_id(Network, [r.network_id for r in rows] + [v.network_id for v in vlans.values()])
    vms = by_id(VirtualMachine, (r.vm_id for r in rows))
    phys = by_id(PhysicalNetwork, (v.physical_network_id for v in vlans.values()))
    ids = [r.id for r in rows]
    with_rules = set(db.session.scalars(select(FirewallRule.public_ip_id).where(
        FirewallRule.public_ip_id.in_(ids), FirewallRule.state != RuleState.REVOKE).distinct())) if ids else set()
    return [IpView(r, zones[r.zone_id], vlans[r.vlan_range_id], accts.get(r.account_id), nets.get(r.network_id),
                   vms.get(r.vm_id), r.id in with_rules, nets.get(vlans[r.vlan_range_id].network_id),
                   _uuid(phys.get(vlans[r.vlan_range_id].physical_network_id)))
            for r in rows]


def _uuid(obj) -> str | None:
    return obj.uuid if obj is not None else None


def view(ip: PublicIpAddress) -> IpView:
    return _views([ip])[0]


def list_public_ips(caller, *, id=None, address=None, zone_uuid=None, associated_network_uuid=None,
                    network_uuid=None, is_static_nat=None, is_source_nat=None, allocated_only=None,
                    for_virtual_network=None, vlan_uuid=None, physical_network_uuid=None, state=None, keyword=None,
                    account=None, listall: bool = False, tags=None, page=None):
    """listPublicIpAddresses: the caller's addresses (admins: an account's, or every one with
    listall); with allocatedonly=false also the Free ones. allocatedonly defaults to true
    (false when a state is asked for)."""
    q = select(PublicIpAddress).join(VlanIpRange, VlanIpRange.id == PublicIpAddress.vlan_range_id)
    if allocated_only is None:
        allocated_only = state is None
    owner = and_(PublicIpAddress.account_id.is_not(None),
                 access.list_owner(caller, PublicIpAddress.account_id, account=account, listall=listall))
    if allocated_only:
        q = q.where(owner, PublicIpAddress.state != IpState.FREE)
    else:
        # Free addresses of ranges the account may take (shared ones, or dedicated to it)
        free = PublicIpAddress.state == IpState.FREE
        if not caller.is_admin:
            free = and_(free, or_(VlanIpRange.account_id.is_(None), access.owned(caller, VlanIpRange.account_id)))
        q = q.where(or_(owner, free))
    if id:
        q = q.where(PublicIpAddress.uuid == id)
    if address:
        q = q.where(PublicIpAddress.address == address)
    if keyword:
        q = q.where(PublicIpAddress.address.contains(keyword, autoescape=True))
    if state:
        q = q.where(PublicIpAddress.state == state)
    if zone_uuid:
        q = q.where(PublicIpAddress.zone_id == select(Zone.id).where(Zone.uuid == zone_uuid).scalar_subquery())
    if associated_network_uuid:
        q = q.where(PublicIpAddress.network_id == _network(caller, associated_network_uuid).id)
    if network_uuid:
        net_id = db.session.scalar(select(Network.id).where(Network.uuid == network_uuid))
        if net_id is not None:  # a shared network's own range
            q = q.where(VlanIpRange.network_id == net_id)
        else:  # the zone's Public network (its derived id)
            zone_ids = [z.id for z in db.session.scalars(select(Zone)) if public_network_id(z) == network_uuid]
            q = q.where(VlanIpRange.network_id.is_(None), PublicIpAddress.zone_id.in_(zone_ids))
    if is_static_nat is not None:
        q = q.where(PublicIpAddress.vm_id.is_not(None) if is_static_nat else PublicIpAddress.vm_id.is_(None))
    if is_source_nat is not None:
        q = q.where(PublicIpAddress.is_source_nat.is_(bool(is_source_nat)))
    if for_virtual_network is not None:
        q = q.where(VlanIpRange.for_virtual_network.is_(bool(for_virtual_network)))
    if vlan_uuid:
        q = q.where(VlanIpRange.uuid == vlan_uuid)
    if physical_network_uuid:
        q = q.where(VlanIpRange.physical_network_id == select(PhysicalNetwork.id).where(
            PhysicalNetwork.uuid == physical_network_uuid).scalar_subquery())
    from app.services import tags as tagging
    q = tagging.matching(q, "PublicIpAddress", PublicIpAddress.id, tags)
    rows, total = page_of(q.order_by(PublicIpAddress.id), page)
    return _views(list(rows)), total

