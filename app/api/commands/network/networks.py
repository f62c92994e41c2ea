"""Guest networks: createNetwork, updateNetwork, deleteNetwork, restartNetwork, listNetworks,
and the "network" serializer (CloudStack's NetworkResponse)."""
from __future__ import annotations

from app.api.registry import Param, command
from app.api.serializers import owner_fields, preload_tags, prefetch, serializer, tags_for
from app.models.base import DOMAIN_ID, DOMAIN_NAME
from app.services.network import networks, routers

ID = [Param("id", "uuid", "the network", required=True)]

# CloudStack's capabilities of the VirtualRouter's services (NetworkResponse service[].capability)
_CAPABILITIES = {
    "SourceNat": [("SupportedSourceNatTypes", "peraccount"), ("RedundantRouter", "false")],
    "Firewall": [("SupportedProtocols", "tcp,udp,icmp"), ("SupportedEgressProtocols", "tcp,udp,icmp, all"),
                 ("SupportedTrafficDirection", "ingress, egress"), ("MultipleIps", "true")],
    "Dns": [("AllowDnsSuffixModification", "true")],
    "StaticNat": [], "PortForwarding": [("SupportedProtocols", "tcp,udp")], "Dhcp": [("DhcpAccrossMultipleSubnets", "true")],
    "UserData": [], "SecurityGroup": [],
}


def _services(n) -> list[dict]:
    out = []
    for service, provider in sorted(routers.services_of(n).items()):
        out.append({"name": service, "provider": [{"name": provider}],
                    "capability": [{"name": k, "value": v, "canchooseservicecapability": False}
                                   for k, v in _CAPABILITIES.get(service, [])]})
    return out


# Ids answered for legacy networks while no offering row of that name exists (stable across calls).
_LEGACY_IDS = {True: "00000000-0000-0000-0000-00000000000a", False: "00000000-0000-0000-0000-00000000000b"}


def _offering_named(name: str):
    from sqlalchemy import select

    from app.extensions import db
    from app.models import NetworkOffering
    return db.session.scalar(select(NetworkOffering).where(NetworkOffering.name == name,
                                                           NetworkOffering.removed.is_(None)))


@serializer("network")
def network(n) -> dict:
    from app.extensions import db
    from app.models import Account
    off = n.offering
    kind = n.guest_type or ("Shared" if n.account_id is None else "Isolated")
    acct = db.session.get(Account, n.account_id) if n.account_id else None
    phys = routers.physical_of(n)
    vlan = n.vlan
    uri = n.broadcast_uri or (f"vlan://{vlan}" if vlan else None)
    out = {
        "id": n.uuid, "name": n.name, "displaytext": n.display_text, "zoneid": n.zone.uuid, "zonename": n.zone.name,
        "cidr": n.cidr, "gateway": n.gateway, "netmask": n.netmask, "startip": n.start_ip, "endip": n.end_ip,
        "vlan": str(vlan) if vlan is not None else None, "broadcasturi": uri,
        "broadcastdomaintype": ("Vxlan" if uri and uri.startswith("vxlan") else "Vlan") if vlan else "Native",
        "isdefault": n.is_default, "state": n.state, "type": kind, "traffictype": "Guest", "issystem": False,
        "acltype": "Domain" if n.account_id is None else "Account", "related": n.uuid,
        "dns1": n.dns1 or n.zone.dns1, "dns2": n.dns2 or n.zone.dns2,
        "networkdomain": n.network_domain or (routers.default_domain(n) if off is not None else None),
        "physicalnetworkid": phys.uuid if phys else None, "restartrequired": bool(n.restart_required),
        "specifyipranges": bool(off.specify_ip_ranges) if off else kind == "Shared",
        "canusefordeploy": n.state in ("Allocated", "Implementing", "Implemented"), "ispersistent": False,
        "redundantrouter": False, "strechedl2subnet": False, "displaynetwork": True,
        "tags": tags_for("Network", n.id),
        "egressdefaultpolicy": bool(off.egress_default_policy) if off else True,
        "internetprotocol": "IPv4", "service": _services(n), "details": {},
        "domainid": DOMAIN_ID, "domain": DOMAIN_NAME, "created": n.created,
    }
    if kind == "Shared":
        out["subdomainaccess"] = True
    if acct is not None:
        out.update(owner_fields(acct))
    if off is not None:
        out.update(networkofferingid=off.uuid, networkofferingname=off.name,
                   networkofferingdisplaytext=off.display_text, networkofferingconservemode=bool(off.conserve_mode),
                   networkofferingavailability=off.availability)
    else:  # a zone's legacy network (no offering, no router): CloudStack's default offering by name
        shared = kind == "Shared"
        name = "DefaultSharedNetworkOffering" if shared else "DefaultIsolatedNetworkOffering"
        row = _offering_named(name)
        out.update(networkofferingid=row.uuid if row else _LEGACY_IDS[shared], networkofferingname=name,
                   networkofferingdisplaytext=row.display_text if row else (
                       "Offering for Shared networks" if shared
                       else "Offering for Isolated networks with no Source Nat service"),
                   networkofferingconservemode=True, networkofferingavailability="Optional")
    return out


prefetch("network", lambda rows: preload_tags("Network", [n.id for n in rows]))


@command("createNetwork", "Creates a network", response="network", params=[
    Param("zoneid", "uuid", "the zone", required=True), Param("name", "string", "the name", required=True),
    Param("displaytext", "string", "the display text"),
    Param("networkofferingid", "uuid", "the network offering (default: the isolated one with source NAT; "
          "admins without one: a zone-wide network as before)"),
    Param("gateway", "string", "the gateway"), Param("netmask", "string", "the netmask"),
    Param("cidr", "string", "Nubo: the CIDR instead of gateway/netmask"),
    Param("startip", "string", "first guest address"), Param("endip", "string", "last guest address"),
    Param("vlan", "string", "the VLAN id or VNI (admins)"), Param("networkdomain", "string", "the DNS domain"),
    Param("acltype", "string", "Account or Domain"), Param("physicalnetworkid", "uuid", "the physical network"),
    Param("subdomainaccess", "boolean", "ignored (one domain)"),
    Param("displaynetwork", "boolean", "ignored"), Param("account", "string", "the owner (admins)"),
    Param("domainid", "uuid", "the owner's domain")])
def create_network(ctx, p):
    vlan = p.get("vlan")
    if vlan is not None:
        vlan = str(vlan).removeprefix("vlan://").removeprefix("vxlan://")
        if not vlan.isdigit():
            from app.services.errors import InvalidParameter
            raise InvalidParameter(f"Invalid vlan id {p.get('vlan')}", field="vlan")
        vlan = int(vlan)
    return networks.create_network(
        ctx.user, zone_uuid=p["zoneid"], name=p["name"], display_text=p.get("displaytext"),
        offering_uuid=p.get("networkofferingid"), cidr=p.get("cidr"), gateway=p.get("gateway"),
        netmask=p.get("netmask"), start_ip=p.get("startip"), end_ip=p.get("endip"), vlan=vlan,
        network_domain=p.get("networkdomain"), acl_type=p.get("acltype"), account_name=p.get("account"),
        physical_network_uuid=p.get("physicalnetworkid"))


@command("listNetworks", "Lists the guest networks the caller may use", response="network", list=True, params=[
    Param("zoneid", "uuid", "the zone"), Param("name", "string", "the name"),
    Param("type", "string", "Isolated, Shared or L2"), Param("guestiptype", "string", "Isolated, Shared or L2"),
    Param("issystem", "boolean", "system networks (none)"), Param("networkofferingid", "uuid", "the offering"),
    Param("physicalnetworkid", "uuid", "the physical network"), Param("traffictype", "string", "Guest"),
    Param("canusefordeploy", "boolean", "usable for a deploy"),
    Param("supportedservices", "list", "networks having all these services"),
    Param("restartrequired", "boolean", "needing a restart"), Param("acltype", "string", "Account or Domain"),
    Param("vpcid", "uuid", "the VPC (none)"), Param("forvpc", "boolean", "VPC tiers (none)"),
    Param("tags", "map", "List resources by tags (key/value pairs): tags[0].key=...&tags[0].value=..."), Param("displaynetwork", "boolean", "ignored")])
def list_networks(ctx, p):
    if p.get("forvpc"):
        return [], 0
    return networks.list_networks(
        ctx.user, id=p.get("id"), zone_uuid=p.get("zoneid"), name=p.get("name"), keyword=p.get("keyword"),
        page=ctx.page, guest_type=p.get("guestiptype") or p.get("type"), is_system=p.get("issystem"),
        account=p.get("account"), list_all=p.get("listall"), offering_uuid=p.get("networkofferingid"),
        physical_network_uuid=p.get("physicalnetworkid"), traffic_type=p.get("traffictype"),
        can_use_for_deploy=p.get("canusefordeploy"), supported_services=p.get("supportedservices"),
        restart_required=p.get("restartrequired"), acl_type=p.get("acltype"), vpc=p.get("vpcid"), tags=p.get("tags"))


@command("updateNetwork", "Updates a network", is_async=True, response="network", params=[
    *ID, Param("name", "string", "the new name"), Param("displaytext", "string", "the new display text"),
    Param("networkdomain", "string", "the new DNS domain"),
    Param("networkofferingid", "uuid", "a new offering of the same guest type"),
    Param("changecidr", "boolean", "ignored"), Param("displaynetwork", "boolean", "ignored")])
def update_network(ctx, p):
    return networks.submit_update(ctx.user, p["id"], name=p.get("name"), display_text=p.get("displaytext"),
                                  network_domain=p.get("networkdomain"), offering_uuid=p.get("networkofferingid"))


@command("deleteNetwork", "Deletes a network without VMs", is_async=True, params=[
    *ID, Param("forced", "boolean", "ignored")])
def delete_network(ctx, p):
    return networks.submit_delete(ctx.user, p["id"])


@command("restartNetwork", "Restarts a network: cleanup=true rebuilds its router", is_async=True,
         response="network", params=[*ID, Param("cleanup", "boolean", "rebuild the router"),
                                     Param("makeredundant", "boolean", "ignored")])
def restart_network(ctx, p):
    return networks.submit_restart(ctx.user, p["id"], cleanup=p.get("cleanup", False))
