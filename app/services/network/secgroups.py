"""Security groups as CloudStack has them (SecurityGroupManagerImpl): groups per account (a
"default" one each, without rules: ingress denied, egress open), ingress and egress rules
(protocol, port range or ICMP type/code, a CIDR or another group's members), the VMs' groups
(security_group_vm_map), and the rulesets enforced on the hosts.

A VM's NIC on a network with security_groups=True is enforced on its host as one
specs.VmRuleset (anti-spoofing: its MAC and address; the union of its groups' rules, a rule
naming another group expanded to the addresses of that group's members). Every change that
alters a ruleset (a rule authorized or revoked, a member deployed or expunged) re-applies the
rulesets of the affected running VMs on their hosts at once; a host that refuses undoes the
change (the rule rows go again, the hosts that took the new rules get the old ones back)."""
from __future__ import annotations

import ipaddress
from collections import defaultdict

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.hypervisors.base import DriverError
from app.jobs import service as jobs
from app.models import (Account, Host, HostState, Network, Nic, SecurityGroup, SecurityGroupRule, VirtualMachine,
                        VMState, VmSecurityGroup, new_uuid)
from app.models.base import DOMAIN_ID, DOMAIN_NAME
from app.network.host.specs import SgRule, VmRuleset, nic_device
from app.services import access, events
from app.services.errors import (InvalidParameter, NotFound, PermissionDenied, ResourceInUse, ResourceUnavailable,
                                 ServiceError)
from app.services.pagination import page_of

DEFAULT_NAME = "default"
DEFAULT_DESCRIPTION = "Default Security Group"
INGRESS, EGRESS = "ingress", "egress"
PROTOCOLS = ("tcp", "udp", "icmp", "all")
# A member's addresses count in other groups' rules until it is destroyed.
_GONE = (VMState.DESTROYED, VMState.EXPUNGING, VMState.ERROR)


# --- Groups ---------------------------------------------------------------------------

def ensure_default(account_id: int) -> SecurityGroup:
    """The account's "default" group, made on first need (CloudStack makes it with the
    account). Safe against a concurrent maker: the unique (account, name) decides, inside a
    savepoint, so the caller's transaction goes on either way. Not committed here."""
    q = select(SecurityGroup).where(SecurityGroup.account_id == account_id, SecurityGroup.name == DEFAULT_NAME)
    group = db.session.scalar(q)
    if group is not None:
        return group
    try:
        with db.session.begin_nested():
            group = SecurityGroup(uuid=new_uuid(), name=DEFAULT_NAME, description=DEFAULT_DESCRIPTION,
                                  account_id=account_id)
            db.session.add(group)
    except IntegrityError:
        group = db.session.scalar(q)
    return group


def _visible(caller):
    return select(SecurityGroup).where(access.owned(caller, SecurityGroup.account_id))


def get_group(caller, uuid: str, field: str = "id") -> SecurityGroup:
    group = db.session.scalar(_visible(caller).where(SecurityGroup.uuid == uuid))
    if group is None:
        raise NotFound(f"Unable to find security group by id {uuid}", field=field)
    return group


def _owner(caller, account: str | None) -> Account:
    return access.owner_for(caller, account)


def group_by_name(caller, name: str, account: str | None = None, field: str = "securitygroupname") -> SecurityGroup:
    owner = _owner(caller, account)
    if name == DEFAULT_NAME:
        ensure_default(owner.id)
        db.session.commit()
    group = db.session.scalar(select(SecurityGroup).where(SecurityGroup.account_id == owner.id,
                                                          SecurityGroup.name == name))
    if group is None:
        raise NotFound(f"Unable to find security group {name} for account id={owner.uuid}", field=field)
    return group


def create_group(caller, *, name: str, description: str | None = None, account: str | None = None) -> SecurityGroup:
    owner = _owner(caller, account)
    name = (name or "").strip()
    if not name:
        raise InvalidParameter("Security group name cannot be empty", field="name")
    if len(name) > 255:
        raise InvalidParameter("Security group name is at most 255 characters", field="name")
    ensure_default(owner.id)  # CloudStack's account has it from the start
    if db.session.scalar(select(SecurityGroup.id).where(SecurityGroup.account_id == owner.id,
                                                        SecurityGroup.name == name)):
        db.session.commit()
        raise InvalidParameter(f"Unable to create security group, a group with name {name} already exists.",
                               field="name")
    group = SecurityGroup(uuid=new_uuid(), name=name, description=description, account_id=owner.id)
    db.session.add(group)
    try:
        db.session.flush()
    except IntegrityError:  # a concurrent create of the same name
        db.session.rollback()
        raise InvalidParameter(f"Unable to create security group, a group with name {name} already exists.",
                               field="name") from None
    events.record("SG.CREATE", f"Security group {name} created", user=caller, account_id=owner.id,
                  resource_type="SecurityGroup", resource_id=group.uuid)
    db.session.commit()
    return group


def delete_group(caller, *, uuid: str | None = None, name: str | None = None, account: str | None = None) -> None:
    if uuid and name:
        raise InvalidParameter("Specify either id or name, not both", field="id")
    if not uuid and not name:
        raise InvalidParameter("Either id or name is required", field="id")
    group = get_group(caller, uuid) if uuid else group_by_name(caller, name, account, "name")
    if group.name.lower() == DEFAULT_NAME:
        raise InvalidParameter("The network group default is reserved", field="id")
    if db.session.scalar(select(SecurityGroupRule.id).where(SecurityGroupRule.allowed_group_id == group.id).limit(1)):
        raise ResourceInUse("Cannot delete group when there are security rules that allow this group")
    if db.session.scalar(select(VmSecurityGroup.id).where(VmSecurityGroup.security_group_id == group.id).limit(1)):
        raise ResourceInUse("Cannot delete group when it's in use by virtual machines")
    db.session.execute(delete(SecurityGroupRule).where(SecurityGroupRule.security_group_id == group.id))
    db.session.delete(group)
    from app.services import tags
    tags.forget("SecurityGroup", [group.id])
    events.record("SG.DELETE", f"Security group {group.name} deleted", user=caller, account_id=group.account_id,
                  resource_type="SecurityGroup", resource_id=group.uuid)
    db.session.commit()


def list_groups(caller, *, id: str | None = None, name: str | None = None, vm_uuid: str | None = None,
                account: str | None = None, listall: bool = False, keyword: str | None = None,
                tags: list | None = None, page=None):
    """listSecurityGroups. A user sees its own groups (its default one made if missing);
    an admin its own unless listall=true or account= names another."""
    owner = _owner(caller, account) if (account or access.current_project()) else None
    wide = access.is_any_admin(caller) and listall
    if not wide or owner is not None:
        ensure_default(owner.id if owner is not None else caller.account_id)
        db.session.commit()
    q = _visible(caller).order_by(SecurityGroup.id)
    if owner is not None:
        q = q.where(SecurityGroup.account_id == owner.id)
    elif not wide and not access.listing_projects():
        q = q.where(SecurityGroup.account_id == caller.account_id)
    if id:
        q = q.where(SecurityGroup.uuid == id)
    if name:
        q = q.where(SecurityGroup.name == name)
    if keyword:
        q = q.where(SecurityGroup.name.contains(keyword, autoescape=True))
    if vm_uuid:
        from app.services import vms
        vm = vms.get_vm(caller, vm_uuid, "virtualmachineid")
        q = q.where(SecurityGroup.id.in_(select(VmSecurityGroup.security_group_id)
                                         .where(VmSecurityGroup.vm_id == vm.id)))
    from app.services import tags as tagging
    return page_of(tagging.matching(q, "SecurityGroup", SecurityGroup.id, tags), page)


# --- The response (SecurityGroupResponse), batch-loaded ---------------------------------

def _domain_of(account_id: int | None) -> dict:
    acct = db.session.get(Account, account_id) if account_id else None
    if acct is None:
        return {"domainid": DOMAIN_ID, "domain": DOMAIN_NAME}
    from app.services import projects
    p = projects.of_account(acct.id) if acct.is_project else None
    return {"domainid": acct.domain.uuid, "domain": acct.domain.name,
            **({"project": p.name, "projectid": p.uuid} if p else {})}


def describe(groups: list[SecurityGroup], only_rules: list[SecurityGroupRule] | None = None) -> list[dict]:
    """CloudStack's SecurityGroupResponse of each group, in a fixed number of queries.
    `only_rules`: answer with these rules only (authorize's answer, as CloudStack's
    createSecurityGroupResponseFromSecurityGroupRule)."""
    if not groups:
        return []
    ids = [g.id for g in groups]
    if only_rules is None:
        rules = list(db.session.scalars(select(SecurityGroupRule).where(
            SecurityGroupRule.security_group_id.in_(ids)).order_by(SecurityGroupRule.id)))
    else:
        rules = only_rules
    allowed_ids = {r.allowed_group_id for r in rules if r.allowed_group_id}
    allowed = {g.id: g for g in db.session.scalars(select(SecurityGroup).where(SecurityGroup.id.in_(allowed_ids)))} \
        if allowed_ids else {}
    account_ids = {g.account_id for g in groups} | {g.account_id for g in allowed.values()}
    names = dict(db.session.execute(select(Account.id, Account.name).where(Account.id.in_(account_ids))).all())
    members: dict[int, list[str]] = defaultdict(list)
    for gid, vm_uuid in db.session.execute(
            select(VmSecurityGroup.security_group_id, VirtualMachine.uuid)
            .join(VirtualMachine, VirtualMachine.id == VmSecurityGroup.vm_id)
            .where(VmSecurityGroup.security_group_id.in_(ids), VirtualMachine.removed.is_(None))
            .order_by(VirtualMachine.id)):
        members[gid].append(vm_uuid)
    by_group: dict[int, dict[str, list]] = {gid: {INGRESS: [], EGRESS: []} for gid in ids}
    for r in rules:
        out = {"ruleid": r.uuid, "protocol": r.protocol}
        if r.protocol == "icmp":
            out.update(icmptype=r.icmp_type, icmpcode=r.icmp_code)
        elif r.start_port is not None:
            out.update(startport=r.start_port, endport=r.end_port)
        if r.allowed_group_id:
            other = allowed[r.allowed_group_id]
            out.update(securitygroupname=other.name, account=names.get(other.account_id))
        else:
            out["cidr"] = r.cidr
        out["tags"] = []
        by_group[r.security_group_id][r.type].append(out)
    return [{"id": g.uuid, "name": g.name, "description": g.description, "account": names.get(g.account_id),
             **_domain_of(g.account_id), "ingressrule": by_group[g.id][INGRESS],
             "egressrule": by_group[g.id][EGRESS], "tags": [], "virtualmachinecount": len(members[g.id]),
             "virtualmachineids": members[g.id]} for g in groups]


# --- Rules ------------------------------------------------------------------------------

def _int(value, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidParameter(f"{name} must be a number", field=name) from None


def _normalize(protocol, start_port, end_port, icmp_type, icmp_code) -> tuple[str, int | None, int | None,
                                                                             int | None, int | None]:
    """CloudStack's checks of authorizeSecurityGroupRule; returns (protocol, start, end, type, code)."""
    protocol = (protocol or "all").strip().lower()
    start_port, end_port = _int(start_port, "startport"), _int(end_port, "endport")
    icmp_type, icmp_code = _int(icmp_type, "icmptype"), _int(icmp_code, "icmpcode")
    if protocol.isdigit():
        number = int(protocol)
        if number == 1:
            protocol, icmp_type, icmp_code = "icmp", -1, -1
        elif not 0 <= number <= 255:
            raise InvalidParameter(f"Invalid protocol number: {number}", field="protocol")
        else:
            protocol = str(number)
    elif protocol not in PROTOCOLS:
        raise InvalidParameter(f"Invalid protocol {protocol}", field="protocol")
    if protocol == "icmp":
        if icmp_type is None or icmp_code is None:
            raise InvalidParameter(f"Invalid ICMP type/code specified, icmpType = {icmp_type}, icmpCode = {icmp_code}",
                                   field="icmptype")
        if icmp_type == -1 and icmp_code != -1:
            raise InvalidParameter("Invalid icmp code", field="icmpcode")
        if icmp_type != -1 and icmp_code == -1:
            raise InvalidParameter("Invalid icmp code: need non-negative icmp code ", field="icmpcode")
        if not (-1 <= icmp_type <= 255 and -1 <= icmp_code <= 255):
            raise InvalidParameter("Invalid icmp type/code ", field="icmptype")
        return protocol, None, None, icmp_type, icmp_code
    if protocol == "all":
        if start_port is not None or end_port is not None:
            raise InvalidParameter("Cannot specify startPort or endPort without specifying protocol", field="startport")
        return protocol, None, None, None, None
    if protocol in ("tcp", "udp"):
        if start_port is None or end_port is None:
            raise InvalidParameter(f"Invalid port range specified, startPort = {start_port}, endPort = {end_port}",
                                   field="startport")
        if start_port == 0 and end_port == 0:
            end_port = 65535
        if start_port > end_port:
            raise InvalidParameter(f"Invalid port range {start_port}:{end_port}", field="startport")
        if start_port > 65535 or end_port > 65535 or start_port < 0 or end_port < 0:
            raise InvalidParameter(f"Invalid port numbers {start_port}:{end_port}", field="startport")
        return protocol, start_port, end_port, None, None
    return protocol, None, None, None, None  # another IP protocol by number: ports do not apply


def _cidr(value: str) -> str:
    value = (value or "").strip()
    try:
        if "/" not in value:
            raise ValueError
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise InvalidParameter(f"Invalid cidr {value}", field="cidrlist") from None
    return value


def _target_group(caller, group_uuid: str | None, group_name: str | None, account: str | None, command: str):
    if group_uuid and group_name:
        raise InvalidParameter("securityGroupId and securityGroupName parameters are mutually exclusive",
                               field="securitygroupid")
    if group_name:
        return group_by_name(caller, group_name, account)
    if not group_uuid:
        raise InvalidParameter(f"Either securityGroupId or securityGroupName is required by {command} command",
                               field="securitygroupid")
    return get_group(caller, group_uuid, "securitygroupid")


def check_authorize(caller, direction: str, *, group_uuid=None, group_name=None, account=None, protocol=None,
                    start_port=None, end_port=None, icmp_type=None, icmp_code=None, cidrs=None,
                    user_groups=None) -> dict:
    """Everything authorize checks before its job: the job's parameters (431 on bad input)."""
    command = f"authorizeSecurityGroup{direction.capitalize()}"
    group = _target_group(caller, group_uuid, group_name, account, command)
    if not cidrs and not user_groups:
        raise InvalidParameter("At least one cidr or at least one security group needs to be specified",
                               field="cidrlist")
    protocol, start, end, itype, icode = _normalize(protocol, start_port, end_port, icmp_type, icmp_code)
    cidrs = [_cidr(c) for c in (cidrs or [])]
    allowed: list[int] = []
    from app.services import accounts
    for entry in user_groups or []:
        name, acct_name = entry.get("group"), entry.get("account")
        if not name or not acct_name:
            raise InvalidParameter("Invalid user group specified, fields 'group' and 'account' cannot be null, please "
                                   "specify groups in the form:  userGroupList[0].group=XXX&userGroupList[0].account=YYY",
                                   field="usersecuritygrouplist")
        acct = accounts.get_account(acct_name, db.session.get(Account, group.account_id).domain_id)
        if acct is None or acct.removed is not None:
            raise InvalidParameter(f"Nonexistent account: {acct_name} when trying to authorize security group rule  "
                                   f"for {group.uuid}:{protocol}:{start}:{end}", field="usersecuritygrouplist")
        if name == DEFAULT_NAME:
            ensure_default(acct.id)
        other = db.session.scalar(select(SecurityGroup).where(SecurityGroup.account_id == acct.id,
                                                              SecurityGroup.name == name))
        if other is None:
            raise InvalidParameter(f"Nonexistent group {name} for account {acct_name}/1 is given, unable to authorize "
                                   "security group rule.", field="usersecuritygrouplist")
        allowed.append(other.id)
    db.session.commit()
    return {"group": group.id, "direction": direction, "protocol": protocol, "start": start, "end": end,
            "icmp_type": itype, "icmp_code": icode, "cidrs": cidrs, "allowed": sorted(set(allowed))}


def authorize(caller, direction: str, **kw):
    """authorizeSecurityGroupIngress / Egress: checked now, rules written and applied by a job."""
    params = check_authorize(caller, direction, **kw)
    group = db.session.get(SecurityGroup, params["group"])
    return jobs.submit(f"authorizeSecurityGroup{direction.capitalize()}", caller, "sg.authorize", params,
                       instance_type="SecurityGroup", instance_id=group.uuid)


@jobs.handler("sg.authorize")
def _run_authorize(job, params: dict) -> dict:
    from app.models import User
    return {"securitygroup": authorize_now(db.session.get(User, job.user_id), params)}


def authorize_now(caller, p: dict) -> dict:
    """Write the rules (one per CIDR and per allowed group; those that exist already are left
    out, as CloudStack does) and apply them to the affected hosts; a refusal removes them again."""
    group = db.session.get(SecurityGroup, p["group"])
    if group is None:
        raise NotFound("Unable to find security group", field="securitygroupid")
    same = select(SecurityGroupRule.id).where(
        SecurityGroupRule.security_group_id == group.id, SecurityGroupRule.type == p["direction"],
        SecurityGroupRule.protocol == p["protocol"], _eq(SecurityGroupRule.start_port, p["start"]),
        _eq(SecurityGroupRule.end_port, p["end"]), _eq(SecurityGroupRule.icmp_type, p["icmp_type"]),
        _eq(SecurityGroupRule.icmp_code, p["icmp_code"]))
    new: list[SecurityGroupRule] = []
    targets = [("group", g) for g in p["allowed"]] + [("cidr", c) for c in p["cidrs"]]
    for kind, value in targets:
        q = same.where(SecurityGroupRule.allowed_group_id == value) if kind == "group" else \
            same.where(SecurityGroupRule.cidr == value, SecurityGroupRule.allowed_group_id.is_(None))
        if db.session.scalar(q.limit(1)) is not None:
            continue
        rule = SecurityGroupRule(uuid=new_uuid(), security_group_id=group.id, type=p["direction"],
                                 protocol=p["protocol"], start_port=p["start"], end_port=p["end"],
                                 icmp_type=p["icmp_type"], icmp_code=p["icmp_code"],
                                 cidr=value if kind == "cidr" else None,
                                 allowed_group_id=value if kind == "group" else None)
        db.session.add(rule)
        new.append(rule)
    if not new:
        db.session.rollback()
        raise ServiceError(f"Failed to authorize security group {p['direction']} rule(s)")
    events.record(f"SG.AUTH.{p['direction'].upper()}", f"{len(new)} {p['direction']} rule(s) authorized in "
                  f"security group {group.name}", user=caller, account_id=group.account_id,
                  resource_type="SecurityGroup", resource_id=group.uuid)
    db.session.commit()
    new_ids = [r.id for r in new]

    def undo():
        db.session.execute(delete(SecurityGroupRule).where(SecurityGroupRule.id.in_(new_ids)))
        db.session.commit()
    reapply([group.id], undo=undo)
    rules = list(db.session.scalars(select(SecurityGroupRule).where(SecurityGroupRule.id.in_(new_ids))
                                    .order_by(SecurityGroupRule.id)))
    return describe([group], only_rules=rules)[0]


def _eq(column, value):
    return column.is_(None) if value is None else column == value


def revoke(caller, direction: str, rule_uuid: str):
    """revokeSecurityGroupIngress / Egress (a job): the rule goes and the hosts follow."""
    rule = db.session.scalar(select(SecurityGroupRule).where(SecurityGroupRule.uuid == rule_uuid))
    group = db.session.get(SecurityGroup, rule.security_group_id) if rule else None
    if rule is None or not access.can_see(caller, group.account_id):
        raise NotFound(f"Unable to find security rule with id {rule_uuid}", field="id")
    if rule.type != direction:
        raise InvalidParameter(f"Mismatch in rule type for security rule with id {rule_uuid}", field="id")
    return jobs.submit(f"revokeSecurityGroup{direction.capitalize()}", caller, "sg.revoke", {"rule": rule.id},
                       instance_type="SecurityGroup", instance_id=group.uuid)


@jobs.handler("sg.revoke")
def _run_revoke(job, params: dict) -> dict:
    from app.models import User
    revoke_now(db.session.get(User, job.user_id), params["rule"])
    return {"success": True}


def revoke_now(caller, rule_id: int) -> None:
    rule = db.session.get(SecurityGroupRule, rule_id)
    if rule is None:
        return  # revoked meanwhile
    group = db.session.get(SecurityGroup, rule.security_group_id)
    saved = {c.key: getattr(rule, c.key) for c in SecurityGroupRule.__table__.columns}
    db.session.delete(rule)
    events.record(f"SG.REVOKE.{rule.type.upper()}", f"A {rule.type} rule of security group {group.name} revoked",
                  user=caller, account_id=group.account_id, resource_type="SecurityGroup", resource_id=group.uuid)
    db.session.commit()

    def undo():
        db.session.add(SecurityGroupRule(**saved))
        db.session.commit()
    reapply([group.id], undo=undo)


# --- Members: the VMs' groups -----------------------------------------------------------

def groups_for_deploy(caller, account_id: int, group_uuids: list[str] | None,
                      group_names: list[str] | None) -> list[SecurityGroup]:
    """The groups a deploy names (securitygroupids or securitygroupnames, not both), each of
    the VM's account; none named: the account's default group. Not committed."""
    if group_uuids and group_names:
        raise InvalidParameter("securitygroupids parameter is mutually exclusive with securitygroupnames parameter",
                               field="securitygroupids")
    out: list[SecurityGroup] = []
    for uuid in group_uuids or []:
        g = db.session.scalar(select(SecurityGroup).where(SecurityGroup.uuid == uuid))
        if g is None or not access.can_see(caller, g.account_id):
            raise NotFound(f"Unable to find security group by id {uuid}", field="securitygroupids")
        if g.account_id != account_id:
            raise PermissionDenied(f"Security group {g.name} belongs to another account than the VM")
        out.append(g)
    for name in group_names or []:
        if name == DEFAULT_NAME:
            ensure_default(account_id)
        g = db.session.scalar(select(SecurityGroup).where(SecurityGroup.account_id == account_id,
                                                          SecurityGroup.name == name))
        if g is None:
            raise InvalidParameter(f"Unable to find group by name {name}", field="securitygroupnames")
        out.append(g)
    if not out:
        out.append(ensure_default(account_id))
    return list({g.id: g for g in out}.values())


def add_vm(vm: VirtualMachine, groups: list[SecurityGroup]) -> None:
    """security_group_vm_map rows (in the caller's transaction, with the VM's own rows)."""
    for g in groups:
        db.session.add(VmSecurityGroup(vm_id=vm.id, security_group_id=g.id))


def vm_group_ids(vm_id: int) -> list[int]:
    return list(db.session.scalars(select(VmSecurityGroup.security_group_id).where(VmSecurityGroup.vm_id == vm_id)))


def members_changed(group_ids: list[int], *, undo=None) -> None:
    """A member joined or left (deployed, expunged): the rules naming these groups change on
    every host running a VM that has them."""
    if group_ids:
        reapply(group_ids, undo=undo, members_only=True)


def clear_vm(vm_id: int) -> None:
    """The VM leaves its groups, in the caller's transaction (assignVirtualMachine: its new
    owner's groups replace them); the caller tells the hosts (members_changed) after commit."""
    db.session.execute(delete(VmSecurityGroup).where(VmSecurityGroup.vm_id == vm_id))


def forget_vm(vm: VirtualMachine) -> None:
    """The VM leaves its groups (expunge, failed deploy): committed, then the hosts follow
    (best effort: the VM is gone whatever a host says)."""
    ids = vm_group_ids(vm.id)
    if not ids:
        return
    db.session.execute(delete(VmSecurityGroup).where(VmSecurityGroup.vm_id == vm.id))
    db.session.commit()
    try:
        members_changed(ids)
    except ServiceError:
        pass


# --- Rulesets and the hosts --------------------------------------------------------------

def _sg_nics(vm_ids) -> dict[int, list[tuple[str, str, str | None]]]:
    """{vm id: [(nic uuid, mac, ip)]} of the VMs' NICs on security-group networks."""
    out: dict[int, list] = defaultdict(list)
    for vm_id, uuid, mac, ip in db.session.execute(
            select(Nic.vm_id, Nic.uuid, Nic.mac_address, Nic.ip_address)
            .join(Network, Network.id == Nic.network_id)
            .where(Nic.vm_id.in_(vm_ids), Nic.removed.is_(None), Network.security_groups.is_(True))
            .order_by(Nic.vm_id, Nic.device_id)):
        out[vm_id].append((uuid, mac, ip))
    return out


def rulesets(vm_ids: list[int]) -> dict[int, list[VmRuleset]]:
    """The rulesets of these VMs' NICs on security-group networks (a VM without such NICs is
    left out), read in a fixed number of queries."""
    if not vm_ids:
        return {}
    nics = _sg_nics(vm_ids)
    if not nics:
        return {}
    vm_groups: dict[int, set[int]] = defaultdict(set)
    for vm_id, gid in db.session.execute(select(VmSecurityGroup.vm_id, VmSecurityGroup.security_group_id)
                                         .where(VmSecurityGroup.vm_id.in_(list(nics)))):
        vm_groups[vm_id].add(gid)
    all_groups = set().union(*vm_groups.values()) if vm_groups else set()
    rules = list(db.session.scalars(select(SecurityGroupRule).where(
        SecurityGroupRule.security_group_id.in_(all_groups)).order_by(SecurityGroupRule.id))) if all_groups else []
    referenced = {r.allowed_group_id for r in rules if r.allowed_group_id}
    member_ips: dict[int, set[str]] = defaultdict(set)
    if referenced:
        for gid, ip in db.session.execute(
                select(VmSecurityGroup.security_group_id, Nic.ip_address)
                .join(VirtualMachine, VirtualMachine.id == VmSecurityGroup.vm_id)
                .join(Nic, Nic.vm_id == VirtualMachine.id).join(Network, Network.id == Nic.network_id)
                .where(VmSecurityGroup.security_group_id.in_(referenced), VirtualMachine.removed.is_(None),
                       VirtualMachine.state.not_in(_GONE), Nic.removed.is_(None), Nic.ip_address.is_not(None),
                       Network.security_groups.is_(True))):
            member_ips[gid].add(ip)
    by_group: dict[int, list[SecurityGroupRule]] = defaultdict(list)
    for r in rules:
        by_group[r.security_group_id].append(r)
    out: dict[int, list[VmRuleset]] = {}
    for vm_id, vm_nics in nics.items():
        merged: dict[tuple, set[str]] = defaultdict(set)
        for gid in vm_groups.get(vm_id, ()):
            for r in by_group[gid]:
                key = (r.type, r.protocol, r.start_port, r.end_port,
                       None if r.icmp_type in (None, -1) else r.icmp_type,
                       None if r.icmp_code in (None, -1) else r.icmp_code)
                if r.allowed_group_id:
                    cidrs = {f"{ip}/{128 if ':' in ip else 32}" for ip in member_ips.get(r.allowed_group_id, ())}
                else:
                    cidrs = {r.cidr}
                if cidrs:
                    merged[key] |= cidrs
        sg_rules = tuple(SgRule(direction=k[0], protocol=k[1], cidrs=tuple(sorted(v)), start_port=k[2],
                                end_port=k[3], icmp_type=k[4], icmp_code=k[5])
                         for k, v in sorted(merged.items(), key=lambda kv: tuple(str(x) for x in kv[0])))
        out[vm_id] = [VmRuleset(tap=nic_device(uuid), mac=mac, ips=(ip,) if ip else (), rules=sg_rules)
                      for uuid, mac, ip in vm_nics]
    return out


def _enforces(host: Host) -> bool:
    from app.services import hypervisors as hv
    return hv.resolve(host.hypervisor_type).capabilities.security_groups


def _driver(host: Host):
    from app.services import hypervisors as hv
    from app.services.hosts import connection_for
    return hv.driver_for(host.hypervisor_type, connection_for(host))


def _apply_on(host: Host, sets: list[VmRuleset]) -> None:
    if not sets or not _enforces(host):
        return
    driver = _driver(host)
    try:
        driver.sg_apply(sets)
    except DriverError as e:
        raise ResourceUnavailable(f"Security group rules could not be applied on host {host.name}: {e}") from None
    finally:
        driver.close()


def apply_for_vm(vm, host) -> None:
    """Enforce the VM's groups on its NICs on `host` (called when it starts there)."""
    sets = rulesets([vm.id]).get(vm.id)
    if sets:
        _apply_on(host, sets)


def remove_for_vm(vm, host) -> None:
    """Remove the VM's NIC rules from `host` (called when it stops or leaves)."""
    taps = [nic_device(uuid) for uuid, _mac, _ip in _sg_nics([vm.id]).get(vm.id, [])]
    if not taps or not _enforces(host):
        return
    driver = _driver(host)
    try:
        driver.sg_remove(taps)
    except DriverError as e:
        raise ResourceUnavailable(f"Security group rules could not be removed from host {host.name}: {e}") from None
    finally:
        driver.close()


def affected_vms(group_ids: list[int], members_only: bool = False) -> list[int]:
    """Running VMs whose rulesets depend on these groups: their members (rules changed) and the
    members of every group with a rule naming one of them (membership changed)."""
    referencing = select(SecurityGroupRule.security_group_id).where(SecurityGroupRule.allowed_group_id.in_(group_ids))
    groups = referencing if members_only else select(SecurityGroup.id).where(
        or_(SecurityGroup.id.in_(group_ids), SecurityGroup.id.in_(referencing)))
    return list(db.session.scalars(
        select(VirtualMachine.id).join(VmSecurityGroup, VmSecurityGroup.vm_id == VirtualMachine.id)
        .where(VmSecurityGroup.security_group_id.in_(groups), VirtualMachine.removed.is_(None),
               VirtualMachine.state == VMState.RUNNING, VirtualMachine.host_id.is_not(None))
        .distinct().order_by(VirtualMachine.id)))


def _by_host(vm_ids: list[int]) -> dict[int, list[VmRuleset]]:
    sets = rulesets(vm_ids)
    host_of = dict(db.session.execute(select(VirtualMachine.id, VirtualMachine.host_id)
                                      .where(VirtualMachine.id.in_(vm_ids))).all()) if vm_ids else {}
    out: dict[int, list[VmRuleset]] = defaultdict(list)
    for vm_id, s in sets.items():
        out[host_of[vm_id]].extend(s)
    return out


def reapply(group_ids: list[int], *, undo=None, members_only: bool = False) -> None:
    """Re-apply, at once, the rulesets of every running VM affected by a change of these
    groups, on each Up host. A host that refuses: `undo()` puts the database back, the hosts
    already changed get their previous rulesets again, and the refusal is raised (534)."""
    vm_ids = affected_vms(group_ids, members_only)
    if not vm_ids:
        return
    per_host = _by_host(vm_ids)
    hosts = {h.id: h for h in db.session.scalars(select(Host).where(Host.id.in_(list(per_host)),
                                                                    Host.state == HostState.UP))}
    db.session.commit()  # nothing held while the hosts work
    done: list[int] = []
    for host_id in sorted(hosts):
        try:
            _apply_on(hosts[host_id], per_host[host_id])
        except ServiceError:
            if undo is None:
                raise
            undo()
            before = _by_host(vm_ids)
            for prev in done:
                try:
                    _apply_on(hosts[prev], before.get(prev, []))
                except ServiceError:
                    pass  # the monitor's next check finds it
            raise
        done.append(host_id)


def count_for_account(account_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(SecurityGroup)
                             .where(SecurityGroup.account_id == account_id)) or 0
