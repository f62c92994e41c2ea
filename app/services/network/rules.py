"""Firewall, port forwarding, ip forwarding (static NAT) and egress rules, CloudStack's
FirewallManagerImpl and RulesManagerImpl.

A rule is written in state Add (checked against the other rules of its IP, or of its network
for egress, with that IP's or network's row locked, so two creates cannot both pass the
check), then the router is given the network's whole desired state (routers.apply) and the
rule becomes Active. A router failure deletes the rule again: nothing changed. Deleting marks
the rule Revoke (for_router leaves it out), applies, then deletes the row; a router failure
puts it back as it was.

createPortForwardingRule and createIpForwardingRule with openfirewall=true (CloudStack's
default outside VPCs) also make the matching ingress firewall rule for 0.0.0.0/0 (unless one
with the same protocol and ports exists), related to the rule it was made for (its
related_rule_id): deleting the PF rule deletes that firewall rule too.
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import or_, select, update

from app.extensions import db
from app.models import (FirewallRule, GuestType, IpState, Network, Nic, PublicIpAddress, RulePurpose,
                        RuleState, VirtualMachine, VlanIpRange, VMState, new_uuid)
from app.network.host.specs import FirewallSpec, NatRule
from app.services import access, events
from app.services.errors import InvalidParameter, NetworkRuleConflict, NotFound
from app.services.pagination import page_of

INGRESS, EGRESS = "Ingress", "Egress"
ALL_CIDRS = "0.0.0.0/0"
ICMP = "icmp"


@dataclass(frozen=True)
class RouterRules:
    """A network's public side as the router must make it."""
    public_ips: tuple[str, ...] = ()  # every public address associated with the network (source NAT first)
    nat: tuple[NatRule, ...] = ()  # port forwarding and static NAT
    ingress: tuple[FirewallSpec, ...] = ()
    egress: tuple[FirewallSpec, ...] = ()
    # The prefix length of each public_ips entry (its range's netmask), in the same order
    public_prefixes: tuple[int, ...] = ()
    source_nat_ip: str | None = None  # None until the network has one
    # The offering's egressdefaultpolicy: True = egress allowed and the egress rules are
    # denies; False = egress denied and the rules are allows (CloudStack's semantics)
    egress_default_allow: bool = True


# --- The router's view ----------------------------------------------------------------------

def _cidrs(text: str | None) -> tuple[str, ...]:
    return tuple(c for c in (text or "").split(",") if c)


def _icmp(value: int | None) -> int | None:
    return None if value is None or value < 0 else value  # CloudStack's -1: any


def for_router(network) -> RouterRules:
    """The network's active rules (and those being added), not those being revoked."""
    ips = db.session.execute(
        select(PublicIpAddress, VlanIpRange.netmask).join(VlanIpRange, VlanIpRange.id == PublicIpAddress.vlan_range_id)
        .where(PublicIpAddress.network_id == network.id, PublicIpAddress.state == IpState.ALLOCATED)
        .order_by(PublicIpAddress.is_source_nat.desc(), PublicIpAddress.id)).all()
    by_id = {ip.id: ip for ip, _ in ips}
    rules = db.session.scalars(select(FirewallRule).where(
        FirewallRule.network_id == network.id, FirewallRule.state != RuleState.REVOKE).order_by(FirewallRule.id)).all()
    nat: list[NatRule] = []
    ingress: list[FirewallSpec] = []
    egress: list[FirewallSpec] = []
    for r in rules:
        if r.traffic_type == EGRESS:
            if r.purpose == RulePurpose.FIREWALL:
                egress.append(FirewallSpec(protocol=r.protocol, cidrs=_cidrs(r.dest_cidrs) or (ALL_CIDRS,),
                                           start_port=r.start_port, end_port=r.end_port,
                                           icmp_type=_icmp(r.icmp_type), icmp_code=_icmp(r.icmp_code)))
            continue
        ip = by_id.get(r.public_ip_id)
        if ip is None:  # its address is being released
            continue
        if r.purpose == RulePurpose.FIREWALL:
            ingress.append(FirewallSpec(protocol=r.protocol, cidrs=_cidrs(r.source_cidrs) or (ALL_CIDRS,),
                                        start_port=r.start_port, end_port=r.end_port, icmp_type=_icmp(r.icmp_type),
                                        icmp_code=_icmp(r.icmp_code), public_ip=ip.address))
        elif r.purpose == RulePurpose.PORT_FORWARDING and r.vm_ip:
            nat.append(NatRule(public_ip=ip.address, guest_ip=r.vm_ip, protocol=r.protocol,
                               public_start=r.start_port, public_end=r.end_port,
                               private_start=r.private_start_port, private_end=r.private_end_port))
        # StaticNat rules (createIpForwardingRule) only list port ranges of a static-NAT IP;
        # the whole IP is mapped below and the firewall rules decide what passes.
    for ip, _ in ips:
        if ip.vm_id is not None and ip.vm_ip:
            nat.append(NatRule(public_ip=ip.address, guest_ip=ip.vm_ip, protocol="all"))
    offering = network.offering
    return RouterRules(
        public_ips=tuple(ip.address for ip, _ in ips),
        public_prefixes=tuple(ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen for _, mask in ips),
        source_nat_ip=next((ip.address for ip, _ in ips if ip.is_source_nat), None),
        nat=tuple(nat), ingress=tuple(ingress), egress=tuple(egress),
        egress_default_allow=bool(offering.egress_default_policy) if offering is not None else True)


# --- Shared checks --------------------------------------------------------------------------

def services_of(network: Network) -> set[str]:
    """The services the network's offering gives (CloudStack's ntwk_service_map)."""
    off = network.offering
    return set(json.loads(off.services or "{}")) if off is not None else set()


def check_service(network: Network, service: str) -> None:
    if service not in services_of(network):
        raise InvalidParameter(f"Service {service} is not supported in the network id={network.uuid}")


def get_public_ip(caller, uuid: str, field: str = "ipaddressid") -> PublicIpAddress:
    """An address the caller may act on. Another account's (or a Free one, for a user) is
    answered exactly like a missing one (Nubo's isolation rule; CloudStack would say 531 and
    so tell that it exists)."""
    ip = db.session.scalar(select(PublicIpAddress).where(PublicIpAddress.uuid == uuid))
    if ip is None or not access.can_see(caller, ip.account_id):
        raise NotFound(f"Unable to find IP address by ID {uuid}", field=field)
    return ip


def _ip_for_rules(caller, uuid: str, service: str) -> tuple[PublicIpAddress, Network]:
    ip = get_public_ip(caller, uuid)
    if ip.state != IpState.ALLOCATED or ip.network_id is None:
        raise InvalidParameter("Unable to create firewall rule ; ip with specified id is not associated with any "
                               "network", field="ipaddressid")
    network = db.session.get(Network, ip.network_id)
    check_service(network, service)
    return ip, network


def _lock_ip(ip_id: int) -> PublicIpAddress:
    """Start a write transaction that holds the address's row (CloudStack's acquireInLockTable):
    rule checks and writes on one IP run one at a time. The caller's reads before it are ended
    first, so the checks after it see every rule committed meanwhile."""
    db.session.commit()
    db.session.execute(update(PublicIpAddress).where(PublicIpAddress.id == ip_id)
                       .values(zone_id=PublicIpAddress.zone_id).execution_options(synchronize_session=False))
    ip = db.session.get(PublicIpAddress, ip_id, populate_existing=True)
    return ip


def _lock_network(network_id: int) -> Network:
    db.session.commit()
    db.session.execute(update(Network).where(Network.id == network_id)
                       .values(zone_id=Network.zone_id).execution_options(synchronize_session=False))
    return db.session.get(Network, network_id, populate_existing=True)


def _protocol(value: str | None, allowed: Iterable[str], zone_uuid: str) -> str:
    proto = (value or "").strip().lower()
    if proto not in allowed:
        raise InvalidParameter(f"Protocol {(value or '').strip()} is not supported in zone {zone_uuid}",
                               field="protocol")
    return proto


def _ports(start: int | None, end: int | None) -> tuple[int | None, int | None]:
    """FirewallManagerImpl.validateFirewallRule's port checks; end defaults to start."""
    if end is None:
        end = start
    if start is not None and not 1 <= start <= 65535:
        raise InvalidParameter(f"publicPort is an invalid value: {start}", field="startport")
    if end is not None and not 1 <= end <= 65535:
        raise InvalidParameter(f"Public port range is an invalid value: {end}", field="endport")
    if start is not None and end is not None and start > end:
        raise InvalidParameter("Start port can't be bigger than end port", field="startport")
    return start, end


def _cidr_list(values: Iterable[str] | None, what: str = "Source") -> list[str]:
    out = []
    for raw in values or ():
        cidr = raw.strip()
        try:
            if "/" not in cidr:
                raise ValueError
            ipaddress.IPv4Network(cidr, strict=False)
        except ValueError:
            raise InvalidParameter(f"{what} CIDRs formatting error {cidr}", field="cidrlist") from None
        out.append(cidr)
    return out


def _icmp_params(proto: str, start: int | None, end: int | None, icmp_type: int | None,
                 icmp_code: int | None) -> tuple[int | None, int | None]:
    if proto != ICMP and (icmp_type is not None or icmp_code is not None):
        raise InvalidParameter("Can specify icmpCode and icmpType for ICMP protocol only", field="icmptype")
    if proto == ICMP:
        if start is not None or end is not None:
            raise InvalidParameter("Can't specify start/end port when protocol is ICMP", field="startport")
        icmp_type = -1 if icmp_type is None else icmp_type
        icmp_code = -1 if icmp_code is None else icmp_code
        for name, v in (("icmptype", icmp_type), ("icmpcode", icmp_code)):
            if not -1 <= v <= 255:
                raise InvalidParameter(f"Invalid {name} {v}: it must be -1 (any) or 0-255", field=name)
        if icmp_type == -1 and icmp_code != -1:
            raise InvalidParameter("An ICMP code needs an ICMP type (icmptype -1 means any type and any code)",
                                   field="icmpcode")
    return icmp_type, icmp_code


# --- Conflicts (FirewallManagerImpl.detectRulesConflict) ---------------------------------------

def rule_str(r: FirewallRule) -> str:
    return f"Rule[{r.uuid}-{r.purpose}-{r.state}]"


def _same_cidrs(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    if not a and not b:
        return True
    return bool(set(a) & set(b))


def _ranges_overlap(a: FirewallRule, b: FirewallRule) -> bool:
    return (a.start_port <= b.start_port <= a.end_port or a.start_port <= b.end_port <= a.end_port
            or b.start_port <= a.start_port <= b.end_port or b.start_port <= a.end_port <= b.end_port)


def detect_conflicts(new: FirewallRule, others: Iterable[FirewallRule], ip_uuid: str | None = None) -> None:
    """CloudStack's rules: a firewall rule never collides with a PF/static-NAT rule, nor with a
    firewall rule of another protocol; two rules of one purpose and protocol collide when their
    port ranges overlap and their CIDRs share one (firewall: source and destination); static
    NAT rules and other rules never share an IP."""
    fw, pf, snat = RulePurpose.FIREWALL, RulePurpose.PORT_FORWARDING, RulePurpose.STATIC_NAT
    for r in others:
        if r.id == new.id or r.state == RuleState.REVOKE:
            continue
        one_fw = (fw in (r.purpose, new.purpose)) and (new.purpose != r.purpose or new.protocol != r.protocol)
        both_fw = r.purpose == new.purpose == fw
        both_pf = r.purpose == new.purpose == pf
        dup = False
        if both_fw:
            dup = (_same_cidrs(_cidrs(r.source_cidrs), _cidrs(new.source_cidrs))
                   and _same_cidrs(_cidrs(r.dest_cidrs), _cidrs(new.dest_cidrs)))
        elif both_pf:
            dup = _same_cidrs(_cidrs(r.source_cidrs), _cidrs(new.source_cidrs))
        if not one_fw:
            if r.purpose == snat and new.purpose != snat:
                raise NetworkRuleConflict(f"There is 1 to 1 Nat rule specified for the ip address id={ip_uuid}")
            if r.purpose != snat and new.purpose == snat:
                raise NetworkRuleConflict(f"There is already firewall rule specified for the ip address id={ip_uuid}")
        if new.protocol == ICMP and r.protocol == ICMP:
            if new.icmp_code == r.icmp_code and new.icmp_type == r.icmp_type and dup:
                raise InvalidParameter(f"New rule conflicts with existing rule: {rule_str(r)}")
        ports = (new.start_port, new.end_port, r.start_port, r.end_port)
        if all(p is None for p in ports) and dup and r.protocol == new.protocol and new.protocol != ICMP:
            raise NetworkRuleConflict(f"There is already a firewall rule specified with protocol = {new.protocol} "
                                      f"and no ports")
        if any(p is None for p in ports) or one_fw or ((both_fw or both_pf) and not dup):
            continue
        if _ranges_overlap(r, new):
            allowed = (both_pf or r.purpose == new.purpose == snat) and new.protocol != r.protocol
            if not allowed:
                raise NetworkRuleConflict(f"The range specified, {new.start_port}-{new.end_port}, conflicts with rule "
                                          f"{rule_str(r)} which has {r.start_port}-{r.end_port}")


def _ip_rules(ip_id: int) -> list[FirewallRule]:
    return list(db.session.scalars(select(FirewallRule).where(FirewallRule.public_ip_id == ip_id,
                                                              FirewallRule.state != RuleState.REVOKE)))


def _insert_checked(rule: FirewallRule, others: list[FirewallRule], ip_uuid: str | None) -> None:
    """Write the rule (state Add) inside the caller's locked transaction, checked against
    `others`; a conflict rolls everything back."""
    rule.uuid = rule.uuid or new_uuid()
    rule.state = RuleState.ADD
    db.session.add(rule)
    db.session.flush()
    try:
        detect_conflicts(rule, others, ip_uuid)
    except Exception:
        db.session.rollback()
        raise


# --- Apply, undo ---------------------------------------------------------------------------------

def _apply(network: Network) -> None:
    from app.services.network import routers
    routers.apply(network)


def _batch(rule: FirewallRule) -> list[FirewallRule]:
    """The rule and the firewall rules made with it (openfirewall)."""
    related = db.session.scalars(select(FirewallRule).where(FirewallRule.related_rule_id == rule.id)).all()
    return [rule, *related]


def _delete_rows(rules: list[FirewallRule]) -> None:
    ids = [r.id for r in rules]
    if not ids:
        return
    # Related rules point at each other: unlink first (MariaDB refuses a self-referencing SET NULL cascade).
    db.session.execute(update(FirewallRule).where(or_(FirewallRule.id.in_(ids), FirewallRule.related_rule_id.in_(ids)))
                       .values(related_rule_id=None).execution_options(synchronize_session=False))
    for r in rules:
        db.session.delete(r)
    from app.services import tags
    tags.forget("FirewallRule", ids)
    tags.forget("PortForwardingRule", ids)


def activate(caller, rule_uuid: str) -> FirewallRule:
    """Second half of every create (the async job): apply the network's desired state with the
    new rule, then Active; a router failure deletes the rule (and what was made with it) and
    re-raises, so nothing changed."""
    rule = db.session.scalar(select(FirewallRule).where(FirewallRule.uuid == rule_uuid))
    if rule is None:
        raise NotFound("Unable to find the rule; it was deleted meanwhile", field="id")
    network = db.session.get(Network, rule.network_id)
    batch = [r for r in _batch(rule) if r.state == RuleState.ADD]
    try:
        _apply(network)
    except Exception:
        db.session.rollback()
        batch = [r for r in _batch(db.session.get(FirewallRule, rule.id)) if r.state == RuleState.ADD]
        _delete_rows(batch)
        db.session.commit()
        raise
    for r in batch:
        r.state = RuleState.ACTIVE
    ip = db.session.get(PublicIpAddress, rule.public_ip_id) if rule.public_ip_id else None
    where = f"on {ip.address}" if ip else f"of network {network.name}"
    for r in batch:
        kind, what = _EVENTS[(r.purpose, r.traffic_type)][0], _WORDS[r.purpose]
        events.record(kind, f"{what} {_describe(r)} {where} added", user=caller, account_id=r.account_id,
                      resource_type="FirewallRule", resource_id=r.uuid)
    db.session.commit()
    return rule


_EVENTS = {
    (RulePurpose.FIREWALL, INGRESS): ("FIREWALL.OPEN", "FIREWALL.CLOSE"),
    (RulePurpose.FIREWALL, EGRESS): ("FIREWALL.EGRESS.OPEN", "FIREWALL.EGRESS.CLOSE"),
    (RulePurpose.PORT_FORWARDING, INGRESS): ("NET.RULEADD", "NET.RULEDELETE"),
    (RulePurpose.STATIC_NAT, INGRESS): ("NET.RULEADD", "NET.RULEDELETE"),
}
_WORDS = {RulePurpose.FIREWALL: "Firewall rule", RulePurpose.PORT_FORWARDING: "Port forwarding rule",
          RulePurpose.STATIC_NAT: "IP forwarding rule"}


def _describe(r: FirewallRule) -> str:
    ports = "" if r.start_port is None else (f" {r.start_port}" if r.start_port == r.end_port
                                             else f" {r.start_port}-{r.end_port}")
    out = f"{r.protocol}{ports}"
    if r.purpose == RulePurpose.PORT_FORWARDING:
        priv = (f"{r.private_start_port}" if r.private_start_port == r.private_end_port
                else f"{r.private_start_port}-{r.private_end_port}")
        out += f" -> {r.vm_ip}:{priv}"
    return out


def revoke(caller, rule: FirewallRule, *, with_related: bool = True) -> None:
    """Delete: Revoke, apply, delete the rows. A router failure restores the states and
    re-raises (the router keeps what it had, nothing changed)."""
    network = db.session.get(Network, rule.network_id)
    batch = _batch(rule) if with_related else [rule]
    before = {r.id: r.state for r in batch}
    for r in batch:
        r.state = RuleState.REVOKE
    db.session.commit()
    try:
        _apply(network)
    except Exception:
        db.session.rollback()
        for r in batch:
            db.session.execute(update(FirewallRule).where(FirewallRule.id == r.id, FirewallRule.state == RuleState.REVOKE)
                               .values(state=before[r.id]).execution_options(synchronize_session=False))
        db.session.commit()
        raise
    ip = db.session.get(PublicIpAddress, rule.public_ip_id) if rule.public_ip_id else None
    where = f"on {ip.address}" if ip else f"of network {network.name}"
    for r in batch:
        events.record(_EVENTS[(r.purpose, r.traffic_type)][1], f"{_WORDS[r.purpose]} {_describe(r)} {where} deleted",
                      user=caller, account_id=r.account_id, resource_type="FirewallRule", resource_id=r.uuid)
    _delete_rows(batch)
    db.session.commit()


def revoke_all_for_ip(ip_id: int) -> dict[int, str]:
    """Mark every rule of the address Revoke (uncommitted, not applied); returns the states
    they had, for undo_revoke."""
    rules = db.session.scalars(select(FirewallRule).where(FirewallRule.public_ip_id == ip_id)).all()
    before = {r.id: r.state for r in rules}
    for r in rules:
        r.state = RuleState.REVOKE
    return before


def undo_revoke(before: dict[int, str]) -> None:
    for rule_id, state in before.items():
        db.session.execute(update(FirewallRule).where(FirewallRule.id == rule_id).values(state=state)
                           .execution_options(synchronize_session=False))


def delete_all(rule_filter) -> int:
    """Delete the rules matching `rule_filter` (a WHERE clause) at once (uncommitted)."""
    rules = list(db.session.scalars(select(FirewallRule).where(rule_filter)))
    _delete_rows(rules)
    return len(rules)


# --- Lookup --------------------------------------------------------------------------------------

def get_rule(caller, uuid: str, purpose: str, traffic: str = INGRESS, field: str = "id") -> FirewallRule:
    rule = db.session.scalar(select(FirewallRule).where(FirewallRule.uuid == uuid, FirewallRule.purpose == purpose,
                                                        FirewallRule.traffic_type == traffic))
    if rule is None or not access.can_see(caller, rule.account_id):  # the same answer
        raise NotFound(f"Unable to find {uuid} having purpose {purpose}", field=field)
    return rule


# --- Firewall rules (ingress) ----------------------------------------------------------------------

def create_firewall_rule(caller, *, ip_uuid: str, protocol: str, start_port: int | None = None,
                         end_port: int | None = None, cidrs: list[str] | None = None, icmp_type: int | None = None,
                         icmp_code: int | None = None) -> FirewallRule:
    """createFirewallRule's synchronous half: validated, written in state Add (activate() applies)."""
    cidr_list = _cidr_list(cidrs) or [ALL_CIDRS]
    ip, network = _ip_for_rules(caller, ip_uuid, "Firewall")
    start, end = _ports(start_port, end_port)
    proto = _protocol(protocol, ("tcp", "udp", ICMP), network.zone.uuid)
    icmp_type, icmp_code = _icmp_params(proto, start, end, icmp_type, icmp_code)
    ip = _lock_ip(ip.id)
    if ip.state != IpState.ALLOCATED or ip.network_id != network.id:
        db.session.rollback()
        raise InvalidParameter("Unable to create firewall rule ; ip with specified id is not associated with any "
                               "network", field="ipaddressid")
    rule = FirewallRule(purpose=RulePurpose.FIREWALL, traffic_type=INGRESS, public_ip_id=ip.id, network_id=network.id,
                        account_id=ip.account_id, protocol=proto, start_port=start, end_port=end,
                        icmp_type=icmp_type, icmp_code=icmp_code, source_cidrs=",".join(cidr_list))
    _insert_checked(rule, _ip_rules(ip.id), ip.uuid)
    db.session.commit()
    return rule


def delete_firewall_rule(caller, uuid: str) -> None:
    revoke(caller, get_rule(caller, uuid, RulePurpose.FIREWALL), with_related=False)


# --- Port forwarding ------------------------------------------------------------------------------

def _vm_nic(caller, vm_uuid: str, ip: PublicIpAddress, network: Network) -> tuple[VirtualMachine, Nic]:
    from app.services import vms
    vm = vms.get_vm(caller, vm_uuid, field="virtualmachineid")
    if vm.state in (VMState.DESTROYED, VMState.EXPUNGING):
        raise InvalidParameter(f"Invalid user vm: {vm.uuid}", field="virtualmachineid")
    if vm.account_id != ip.account_id:
        raise InvalidParameter(f"Unable to create ip forwarding rule, IP address {ip.address} owner is not the same as "
                               f"owner of virtual machine {vm.name}", field="virtualmachineid")
    nic = db.session.scalar(select(Nic).where(Nic.vm_id == vm.id, Nic.network_id == network.id,
                                              Nic.removed.is_(None)))
    if nic is None or not nic.ip_address:
        raise InvalidParameter("Vm doesn't belong to network associated with ipAddress", field="virtualmachineid")
    return vm, nic


def create_port_forwarding_rule(caller, *, ip_uuid: str, protocol: str, public_port: int, private_port: int,
                                vm_uuid: str, public_end_port: int | None = None, private_end_port: int | None = None,
                                vm_guest_ip: str | None = None, open_firewall: bool | None = None,
                                cidrs: list[str] | None = None) -> FirewallRule:
    """createPortForwardingRule's synchronous half (RulesManagerImpl.createPortForwardingRule)."""
    cidr_list = _cidr_list(cidrs)
    if vm_guest_ip is not None:
        try:
            ipaddress.IPv4Address(vm_guest_ip)
        except ValueError:
            raise InvalidParameter("Invalid vm ip address", field="vmguestip") from None
    ip, network = _ip_for_rules(caller, ip_uuid, "PortForwarding")
    if ip.vm_id is not None:
        raise InvalidParameter(f"Unable to create port forwarding rule; ip id={ip.uuid} has static nat enabled",
                               field="ipaddressid")
    start, end = _ports(public_port, public_end_port)
    proto = (protocol or "").strip().lower()
    if proto == ICMP:
        raise InvalidParameter(f"Protocol {protocol} is currently supported only for rules with purpose Firewall",
                               field="protocol")
    proto = _protocol(protocol, ("tcp", "udp"), network.zone.uuid)
    pstart = private_port
    pend = private_end_port if private_end_port is not None else private_port
    for name, v in (("privateport", pstart), ("privateendport", pend)):
        if not 1 <= v <= 65535:
            raise InvalidParameter(f"{name} is an invalid value: {v}", field=name)
    if pstart > pend:
        raise InvalidParameter("Start port can't be bigger than end port", field="privateport")
    if pend - pstart != end - start:
        raise InvalidParameter("Source port and destination port ranges should be of equal sizes.",
                               field="privateendport")
    if start != end or pstart != pend:  # a range maps onto the same ports (CloudStack)
        if start != pstart:
            raise InvalidParameter("Private port start should be equal to public port start", field="privateport")
        if end != pend:
            raise InvalidParameter("Private port end should be equal to public port end", field="privateendport")
    vm, nic = _vm_nic(caller, vm_uuid, ip, network)
    if vm_guest_ip is not None and vm_guest_ip != nic.ip_address:
        raise InvalidParameter("IP Address is not in the VM nic's network ", field="vmguestip")
    ip = _lock_ip(ip.id)
    if ip.state != IpState.ALLOCATED or ip.network_id != network.id or ip.vm_id is not None:
        db.session.rollback()
        raise InvalidParameter(f"Unable to create port forwarding rule; ip id={ip_uuid} is being changed or has "
                               f"static nat enabled", field="ipaddressid")
    others = _ip_rules(ip.id)
    rule = FirewallRule(purpose=RulePurpose.PORT_FORWARDING, traffic_type=INGRESS, public_ip_id=ip.id,
                        network_id=network.id, account_id=ip.account_id, protocol=proto, start_port=start, end_port=end,
                        vm_id=vm.id, vm_ip=nic.ip_address, private_start_port=pstart, private_end_port=pend,
                        source_cidrs=",".join(cidr_list) or None)
    _insert_checked(rule, others, ip.uuid)
    if open_firewall is None or open_firewall:
        _open_firewall(rule, ip, others)
    db.session.commit()
    return rule


def _open_firewall(rule: FirewallRule, ip: PublicIpAddress, others: list[FirewallRule]) -> None:
    """createRuleForAllCidrs: the firewall rule for 0.0.0.0/0 on the rule's public ports, unless
    one with that protocol and those ports exists already."""
    for r in others:
        if (r.purpose == RulePurpose.FIREWALL and r.protocol == rule.protocol and r.start_port == rule.start_port
                and r.end_port == rule.end_port and r.state != RuleState.REVOKE):
            return
    fw = FirewallRule(purpose=RulePurpose.FIREWALL, traffic_type=INGRESS, public_ip_id=ip.id,
                      network_id=rule.network_id, account_id=rule.account_id, protocol=rule.protocol,
                      start_port=rule.start_port, end_port=rule.end_port, source_cidrs=ALL_CIDRS,
                      related_rule_id=rule.id)
    _insert_checked(fw, [*others, rule], ip.uuid)


def delete_port_forwarding_rule(caller, uuid: str) -> None:
    revoke(caller, get_rule(caller, uuid, RulePurpose.PORT_FORWARDING))


# --- IP forwarding (static NAT) rules -------------------------------------------------------------

def create_ip_forwarding_rule(caller, *, ip_uuid: str, protocol: str, start_port: int, end_port: int | None = None,
                              open_firewall: bool | None = None, cidrs: list[str] | None = None) -> FirewallRule:
    """createIpForwardingRule's synchronous half (RulesManagerImpl.createStaticNatRule)."""
    if cidrs:
        raise InvalidParameter("Parameter cidrList is deprecated; if you need to open firewall rule for the specific "
                               "CIDR, please refer to createFirewallRule command", field="cidrlist")
    ip = get_public_ip(caller, ip_uuid)
    if ip.is_source_nat or ip.vm_id is None or ip.state != IpState.ALLOCATED:
        raise NetworkRuleConflict(f"Can't do static nat on ip address: {ip.address}")
    network = db.session.get(Network, ip.network_id)
    start, end = _ports(start_port, end_port)
    proto = (protocol or "").strip().lower()
    if proto == ICMP:
        raise InvalidParameter(f"Protocol {protocol} is currently supported only for rules with purpose Firewall",
                               field="protocol")
    proto = _protocol(protocol, ("tcp", "udp"), network.zone.uuid)
    check_service(network, "StaticNat")
    ip = _lock_ip(ip.id)
    if ip.vm_id is None or ip.state != IpState.ALLOCATED:
        db.session.rollback()
        raise NetworkRuleConflict(f"Can't do static nat on ip address: {ip.address}")
    others = _ip_rules(ip.id)
    rule = FirewallRule(purpose=RulePurpose.STATIC_NAT, traffic_type=INGRESS, public_ip_id=ip.id,
                        network_id=network.id, account_id=ip.account_id, protocol=proto, start_port=start,
                        end_port=end, vm_id=ip.vm_id, vm_ip=ip.vm_ip)
    _insert_checked(rule, others, ip.uuid)
    if open_firewall is None or open_firewall:
        _open_firewall(rule, ip, others)
    db.session.commit()
    return rule


def delete_ip_forwarding_rule(caller, uuid: str) -> None:
    revoke(caller, get_rule(caller, uuid, RulePurpose.STATIC_NAT))


# --- Egress rules -----------------------------------------------------------------------------------

def _network(caller, uuid: str, field: str = "networkid") -> Network:
    net = db.session.scalar(select(Network).where(Network.uuid == uuid, Network.removed.is_(None)))
    if net is None or not access.can_see(caller, net.account_id):
        raise NotFound("Unable to find network with the specified id", field=field)
    return net


def create_egress_rule(caller, *, network_uuid: str, protocol: str, start_port: int | None = None,
                       end_port: int | None = None, cidrs: list[str] | None = None,
                       dest_cidrs: list[str] | None = None, icmp_type: int | None = None,
                       icmp_code: int | None = None) -> FirewallRule:
    """createEgressFirewallRule's synchronous half."""
    network = _network(caller, network_uuid)
    if network.guest_type != GuestType.ISOLATED:
        raise InvalidParameter("Egress firewall rules can be created only for Isolated networks", field="networkid")
    source = _cidr_list(cidrs) or [network.cidr]
    for c in source:
        if c != ALL_CIDRS and not ipaddress.IPv4Network(c, strict=False).subnet_of(
                ipaddress.IPv4Network(network.cidr, strict=False)):
            raise InvalidParameter(f"[{c}] is not within the guest CIDR [{network.cidr}]. ", field="cidrlist")
    dest = _cidr_list(dest_cidrs, "Destination")
    proto = _protocol(protocol, ("tcp", "udp", ICMP, "all"), network.zone.uuid)
    if proto == "all" and start_port is not None:
        raise InvalidParameter(f"Unable to create firewall rule for the network id=[{network.uuid}] due to: ports must "
                               f"not be informed to protocol ALL, as it does not require them.", field="startport")
    start, end = _ports(start_port, end_port)
    icmp_type, icmp_code = _icmp_params(proto, start, end, icmp_type, icmp_code)
    check_service(network, "Firewall")
    network = _lock_network(network.id)
    others = list(db.session.scalars(select(FirewallRule).where(
        FirewallRule.network_id == network.id, FirewallRule.traffic_type == EGRESS,
        FirewallRule.purpose == RulePurpose.FIREWALL, FirewallRule.state != RuleState.REVOKE)))
    rule = FirewallRule(purpose=RulePurpose.FIREWALL, traffic_type=EGRESS, network_id=network.id,
                        account_id=network.account_id or caller.account_id, protocol=proto, start_port=start,
                        end_port=end, icmp_type=icmp_type, icmp_code=icmp_code, source_cidrs=",".join(source),
                        dest_cidrs=",".join(dest) or None)
    _insert_checked(rule, others, None)
    db.session.commit()
    return rule


def delete_egress_rule(caller, uuid: str) -> None:
    revoke(caller, get_rule(caller, uuid, RulePurpose.FIREWALL, EGRESS), with_related=False)


# --- Lists and views ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class RuleView:
    """A rule with what its response shows (loaded for a whole page at once)."""
    rule: FirewallRule
    ip: PublicIpAddress | None
    network: Network
    vm: VirtualMachine | None


def views(rules: list[FirewallRule]) -> list[RuleView]:
    ip_ids = {r.public_ip_id for r in rules if r.public_ip_id}
    ips = {ip.id: ip for ip in db.session.scalars(select(PublicIpAddress).where(PublicIpAddress.id.in_(ip_ids)))} \
        if ip_ids else {}
    net_ids = {r.network_id for r in rules}
    nets = {n.id: n for n in db.session.scalars(select(Network).where(Network.id.in_(net_ids)))} if net_ids else {}
    # A static-NAT rule shows its address's VM (CloudStack reads ip.getAssociatedWithVmId())
    vm_ids = {r.vm_id for r in rules if r.vm_id} | {ip.vm_id for ip in ips.values() if ip.vm_id}
    vms = {v.id: v for v in db.session.scalars(select(VirtualMachine).where(VirtualMachine.id.in_(vm_ids)))} \
        if vm_ids else {}
    out = []
    for r in rules:
        ip = ips.get(r.public_ip_id)
        vm_id = (ip.vm_id if ip else None) if r.purpose == RulePurpose.STATIC_NAT else r.vm_id
        out.append(RuleView(r, ip, nets[r.network_id], vms.get(vm_id)))
    return out


def _listed(caller, q, *, id=None, ip_uuid=None, network_uuid=None, account=None, listall=False, tags=None,
            tag_type: str = "FirewallRule", page=None):
    if ip_uuid:
        ip = get_public_ip(caller, ip_uuid)
        q = q.where(FirewallRule.public_ip_id == ip.id)
    if network_uuid:
        q = q.where(FirewallRule.network_id == _network(caller, network_uuid).id)
    if id:
        q = q.where(FirewallRule.uuid == id)
    q = q.where(access.list_owner(caller, FirewallRule.account_id, account=account, listall=listall))
    if tags:
        from app.services import tags as tagging
        q = tagging.matching(q, tag_type, FirewallRule.id, tags)
    rows, total = page_of(q.order_by(FirewallRule.id.desc()), page)
    return views(list(rows)), total


def list_firewall_rules(caller, **kw):
    q = select(FirewallRule).where(FirewallRule.purpose == RulePurpose.FIREWALL, FirewallRule.traffic_type == INGRESS)
    return _listed(caller, q, **kw)


def list_port_forwarding_rules(caller, **kw):
    return _listed(caller, select(FirewallRule).where(FirewallRule.purpose == RulePurpose.PORT_FORWARDING),
                   tag_type="PortForwardingRule", **kw)


def list_ip_forwarding_rules(caller, *, vm_uuid=None, **kw):
    q = select(FirewallRule).where(FirewallRule.purpose == RulePurpose.STATIC_NAT)
    if vm_uuid:
        from app.services import vms
        vm = vms.get_vm(caller, vm_uuid, field="virtualmachineid")
        q = q.where(FirewallRule.public_ip_id.in_(select(PublicIpAddress.id).where(PublicIpAddress.vm_id == vm.id)))
    return _listed(caller, q, **kw)


def list_egress_rules(caller, **kw):
    q = select(FirewallRule).where(FirewallRule.purpose == RulePurpose.FIREWALL, FirewallRule.traffic_type == EGRESS)
    return _listed(caller, q, **kw)

