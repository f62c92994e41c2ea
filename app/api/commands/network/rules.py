"""Firewall, port forwarding, ip forwarding and egress rules: create (async: the rule is
written in state Add at once, the job applies the router and makes it Active), delete (async),
list. Response shapes: CloudStack's FirewallResponse ("firewallrule"), FirewallRuleResponse
("portforwardingrule": its ports are strings) and IpForwardingRuleResponse ("ipforwardingrule")."""
from __future__ import annotations

from app.api.registry import Param, command
from app.api.serializers import preload_tags, prefetch, serialize, serializer, tags_for
from app.jobs import service as jobs
from app.models import RulePurpose
from app.services.network import rules


def _user(job):
    from app.extensions import db
    from app.models import User
    return db.session.get(User, job.user_id)


def _state(rule) -> str:
    return "Deleting" if rule.state == "Revoke" else rule.state  # CloudStack's getFirewallState


@serializer("firewallrule")
def firewallrule(v: rules.RuleView) -> dict:
    r = v.rule
    return {"id": r.uuid, "protocol": r.protocol, "startport": r.start_port, "endport": r.end_port,
            "ipaddressid": v.ip.uuid if v.ip else None, "ipaddress": v.ip.address if v.ip else None,
            "networkid": v.network.uuid, "state": _state(r), "cidrlist": r.source_cidrs or "",
            "destcidrlist": r.dest_cidrs or "", "icmptype": r.icmp_type, "icmpcode": r.icmp_code,
            "traffictype": r.traffic_type, "fordisplay": True, "tags": tags_for("FirewallRule", r.id)}


@serializer("portforwardingrule")
def portforwardingrule(v: rules.RuleView) -> dict:
    r, vm = v.rule, v.vm
    return {"id": r.uuid, "protocol": r.protocol,
            "privateport": str(r.private_start_port), "privateendport": str(r.private_end_port),
            "publicport": str(r.start_port), "publicendport": str(r.end_port),
            "ipaddressid": v.ip.uuid if v.ip else None, "ipaddress": v.ip.address if v.ip else None,
            "virtualmachineid": vm.uuid if vm else None, "virtualmachinename": vm.name if vm else None,
            "virtualmachinedisplayname": (vm.display_name or vm.name) if vm else None,
            "vmguestip": r.vm_ip, "networkid": v.network.uuid, "cidrlist": r.source_cidrs or "",
            "state": _state(r), "fordisplay": True, "tags": tags_for("PortForwardingRule", r.id)}


prefetch("firewallrule", lambda rows: preload_tags("FirewallRule", [v.rule.id for v in rows]))
prefetch("portforwardingrule", lambda rows: preload_tags("PortForwardingRule", [v.rule.id for v in rows]))


@serializer("ipforwardingrule")
def ipforwardingrule(v: rules.RuleView) -> dict:
    r, vm = v.rule, v.vm
    return {"id": r.uuid, "protocol": r.protocol, "startport": r.start_port, "endport": r.end_port,
            "ipaddressid": v.ip.uuid if v.ip else None, "ipaddress": v.ip.address if v.ip else None,
            "virtualmachineid": vm.uuid if vm else None, "virtualmachinename": vm.name if vm else None,
            "virtualmachinedisplayname": (vm.display_name or vm.name) if vm else None,
            "vmguestip": r.vm_ip, "state": _state(r)}


def _submit(ctx, cmd: str, rule) -> object:
    return jobs.submit(cmd, ctx.user, "rule.activate", {"id": rule.uuid, "kind": _KIND[rule.purpose]},
                       instance_type="FirewallRule", instance_id=rule.uuid)


_KIND = {RulePurpose.FIREWALL: "firewallrule", RulePurpose.PORT_FORWARDING: "portforwardingrule",
         RulePurpose.STATIC_NAT: "ipforwardingrule"}


@jobs.handler("rule.activate")
def _activate(job, params):
    rule = rules.activate(_user(job), params["id"])
    return {params["kind"]: serialize(params["kind"], rules.views([rule])[0])}


def _reaped(job) -> None:
    """A create whose worker died: its rule never reached the router; delete it."""
    import json

    from app.extensions import db
    from app.models import FirewallRule, RuleState
    uuid = json.loads(job.params or "{}").get("params", {}).get("id")
    rule = db.session.query(FirewallRule).filter_by(uuid=uuid).one_or_none() if uuid else None
    if rule is not None and rule.state == RuleState.ADD:
        rules._delete_rows([r for r in rules._batch(rule) if r.state == RuleState.ADD])
        db.session.commit()


jobs.on_reap("rule.activate", _reaped)


def _delete(ctx, cmd: str, fn_name: str, uuid: str, purpose: str, traffic: str = rules.INGRESS):
    rules.get_rule(ctx.user, uuid, purpose, traffic)  # 431/531 at once
    return jobs.submit(cmd, ctx.user, "rule.delete", {"id": uuid, "fn": fn_name},
                       instance_type="FirewallRule", instance_id=uuid)


_DELETES = {"firewall": rules.delete_firewall_rule, "portforwarding": rules.delete_port_forwarding_rule,
            "ipforwarding": rules.delete_ip_forwarding_rule, "egress": rules.delete_egress_rule}


@jobs.handler("rule.delete")
def _delete_job(job, params):
    _DELETES[params["fn"]](_user(job), params["id"])
    return {"success": True}


_LIST = [Param("ipaddressid", "uuid", "rules of this public IP address"),
         Param("networkid", "uuid", "rules of this network"), Param("fordisplay", "boolean", "ignored"),
         Param("isrecursive", "boolean", "ignored (one domain)"),
         Param("tags", "map", "List resources by tags (key/value pairs): tags[0].key=...&tags[0].value=...")]


def _list_args(ctx, p) -> dict:
    return dict(id=p.get("id"), ip_uuid=p.get("ipaddressid"), network_uuid=p.get("networkid"),
                account=p.get("account"), listall=p.get("listall", False), tags=p.get("tags"), page=ctx.page)


# --- Firewall ----------------------------------------------------------------------------------

@command("createFirewallRule", "Creates a firewall rule for a given IP address", is_async=True,
         response="firewallrule", async_returns_id=True, params=[
             Param("ipaddressid", "uuid", "the public IP address", required=True),
             Param("protocol", "string", "TCP, UDP or ICMP", required=True),
             Param("startport", "integer", "the first port"), Param("endport", "integer", "the last port"),
             Param("cidrlist", "list", "the source CIDRs (default 0.0.0.0/0)"),
             Param("icmptype", "integer", "ICMP type (-1: any)"), Param("icmpcode", "integer", "ICMP code (-1: any)"),
             Param("type", "string", "user (system rules are not supported)"),
             Param("fordisplay", "boolean", "ignored")])
def create_firewall_rule(ctx, p):
    rule = rules.create_firewall_rule(ctx.user, ip_uuid=p["ipaddressid"], protocol=p["protocol"],
                                      start_port=p.get("startport"), end_port=p.get("endport"),
                                      cidrs=p.get("cidrlist"), icmp_type=p.get("icmptype"),
                                      icmp_code=p.get("icmpcode"))
    return _submit(ctx, "createFirewallRule", rule)


@command("deleteFirewallRule", "Deletes a firewall rule", is_async=True,
         params=[Param("id", "uuid", "the rule", required=True)])
def delete_firewall_rule(ctx, p):
    return _delete(ctx, "deleteFirewallRule", "firewall", p["id"], RulePurpose.FIREWALL)


@command("listFirewallRules", "Lists the firewall rules of public IP addresses", response="firewallrule", list=True,
         params=_LIST)
def list_firewall_rules(ctx, p):
    return rules.list_firewall_rules(ctx.user, **_list_args(ctx, p))


# --- Port forwarding ------------------------------------------------------------------------------

@command("createPortForwardingRule", "Creates a port forwarding rule", is_async=True, response="portforwardingrule",
         async_returns_id=True, params=[
             Param("ipaddressid", "uuid", "the public IP address", required=True),
             Param("privateport", "integer", "the first port on the VM", required=True),
             Param("privateendport", "integer", "the last port on the VM"),
             Param("publicport", "integer", "the first public port", required=True),
             Param("publicendport", "integer", "the last public port"),
             Param("protocol", "string", "TCP or UDP", required=True),
             Param("virtualmachineid", "uuid", "the VM", required=True),
             Param("vmguestip", "string", "the VM's address on the network", length=64),
             Param("openfirewall", "boolean", "also create the firewall rule for 0.0.0.0/0 (default true)"),
             Param("cidrlist", "list", "source CIDRs (kept with the rule; the firewall rules decide)"),
             Param("networkid", "uuid", "the VM's network (the address's)"),
             Param("fordisplay", "boolean", "ignored")])
def create_port_forwarding_rule(ctx, p):
    rule = rules.create_port_forwarding_rule(
        ctx.user, ip_uuid=p["ipaddressid"], protocol=p["protocol"], public_port=p["publicport"],
        public_end_port=p.get("publicendport"), private_port=p["privateport"],
        private_end_port=p.get("privateendport"), vm_uuid=p["virtualmachineid"], vm_guest_ip=p.get("vmguestip"),
        open_firewall=p.get("openfirewall"), cidrs=p.get("cidrlist"))
    return _submit(ctx, "createPortForwardingRule", rule)


@command("deletePortForwardingRule", "Deletes a port forwarding rule (and the firewall rule made with it)",
         is_async=True, params=[Param("id", "uuid", "the rule", required=True)])
def delete_port_forwarding_rule(ctx, p):
    return _delete(ctx, "deletePortForwardingRule", "portforwarding", p["id"], RulePurpose.PORT_FORWARDING)


@command("listPortForwardingRules", "Lists port forwarding rules", response="portforwardingrule", list=True,
         params=_LIST)
def list_port_forwarding_rules(ctx, p):
    return rules.list_port_forwarding_rules(ctx.user, **_list_args(ctx, p))


# --- IP forwarding (static NAT) --------------------------------------------------------------------

@command("createIpForwardingRule", "Creates an IP forwarding rule on a static NAT address", is_async=True,
         response="ipforwardingrule", async_returns_id=True, params=[
             Param("ipaddressid", "uuid", "the public IP address (static NAT enabled)", required=True),
             Param("protocol", "string", "TCP or UDP", required=True),
             Param("startport", "integer", "the first port", required=True),
             Param("endport", "integer", "the last port"),
             Param("openfirewall", "boolean", "also create the firewall rule for 0.0.0.0/0 (default true)"),
             Param("cidrlist", "list", "deprecated: refused")])
def create_ip_forwarding_rule(ctx, p):
    rule = rules.create_ip_forwarding_rule(ctx.user, ip_uuid=p["ipaddressid"], protocol=p["protocol"],
                                           start_port=p["startport"], end_port=p.get("endport"),
                                           open_firewall=p.get("openfirewall"), cidrs=p.get("cidrlist"))
    return _submit(ctx, "createIpForwardingRule", rule)


@command("deleteIpForwardingRule", "Deletes an IP forwarding rule", is_async=True,
         params=[Param("id", "uuid", "the rule", required=True)])
def delete_ip_forwarding_rule(ctx, p):
    return _delete(ctx, "deleteIpForwardingRule", "ipforwarding", p["id"], RulePurpose.STATIC_NAT)


@command("listIpForwardingRules", "Lists IP forwarding rules", response="ipforwardingrule", list=True, params=[
    Param("ipaddressid", "uuid", "rules of this public IP address"),
    Param("virtualmachineid", "uuid", "rules of this VM"), Param("isrecursive", "boolean", "ignored")])
def list_ip_forwarding_rules(ctx, p):
    return rules.list_ip_forwarding_rules(ctx.user, id=p.get("id"), ip_uuid=p.get("ipaddressid"),
                                          vm_uuid=p.get("virtualmachineid"), account=p.get("account"),
                                          listall=p.get("listall", False), page=ctx.page)


# --- Egress ------------------------------------------------------------------------------------------

@command("createEgressFirewallRule", "Creates an egress firewall rule for a network", is_async=True,
         response="firewallrule", async_returns_id=True, params=[
             Param("networkid", "uuid", "the network", required=True),
             Param("protocol", "string", "TCP, UDP, ICMP or ALL", required=True),
             Param("startport", "integer", "the first port"), Param("endport", "integer", "the last port"),
             Param("cidrlist", "list", "source CIDRs inside the network (default: the network's CIDR)"),
             Param("destcidrlist", "list", "destination CIDRs (default: anywhere)"),
             Param("icmptype", "integer", "ICMP type (-1: any)"), Param("icmpcode", "integer", "ICMP code (-1: any)"),
             Param("type", "string", "user (system rules are not supported)"),
             Param("fordisplay", "boolean", "ignored")])
def create_egress_firewall_rule(ctx, p):
    rule = rules.create_egress_rule(ctx.user, network_uuid=p["networkid"], protocol=p["protocol"],
                                    start_port=p.get("startport"), end_port=p.get("endport"), cidrs=p.get("cidrlist"),
                                    dest_cidrs=p.get("destcidrlist"), icmp_type=p.get("icmptype"),
                                    icmp_code=p.get("icmpcode"))
    return _submit(ctx, "createEgressFirewallRule", rule)


@command("deleteEgressFirewallRule", "Deletes an egress firewall rule", is_async=True,
         params=[Param("id", "uuid", "the rule", required=True)])
def delete_egress_firewall_rule(ctx, p):
    return _delete(ctx, "deleteEgressFirewallRule", "egress", p["id"], RulePurpose.FIREWALL, rules.EGRESS)


@command("listEgressFirewallRules", "Lists the egress firewall rules of networks", response="firewallrule",
         list=True, params=_LIST)
def list_egress_firewall_rules(ctx, p):
    return rules.list_egress_rules(ctx.user, **_list_args(ctx, p))
