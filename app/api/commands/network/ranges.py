"""IP ranges: createVlanIpRange, listVlanIpRanges, deleteVlanIpRange (CloudStack's `vlan` response)."""
from __future__ import annotations

from app.api.registry import ADMIN, Param, command
from app.api.serializers import serializer
from app.extensions import db
from app.models import DOMAIN_ID, Account, Network, PhysicalNetwork
from app.services import accounts
from app.services.errors import NotFound
from app.services.network import ranges


@serializer("vlaniprange")
@serializer("vlan")
def vlan(r) -> dict:
    net = db.session.get(Network, r.network_id) if r.network_id else None
    phys = db.session.get(PhysicalNetwork, r.physical_network_id) if r.physical_network_id else None
    acct = db.session.get(Account, r.account_id) if r.account_id else None
    out = {"id": r.uuid, "forvirtualnetwork": r.for_virtual_network, "zoneid": r.zone.uuid,
           "vlan": f"vlan://{r.vlan}", "gateway": r.gateway, "netmask": r.netmask, "startip": r.start_ip,
           "endip": r.end_ip, "cidr": _cidr(r), "description": f"{r.start_ip}-{r.end_ip}",
           "networkid": net.uuid if net else None, "physicalnetworkid": phys.uuid if phys else None,
           "forsystemvms": False, "domainid": DOMAIN_ID, "domain": "ROOT"}
    if acct is not None:
        out.update(account=acct.name, accountid=acct.uuid)
    return out


def _cidr(r) -> str:
    import ipaddress
    return str(ipaddress.IPv4Network(f"{r.gateway}/{r.netmask}", strict=False))


@command("createVlanIpRange", "Creates a VLAN IP range (public, or a shared network's)", role=ADMIN,
         response="vlan", params=[
             Param("zoneid", "uuid", "the Zone ID of the VLAN IP range"),
             Param("podid", "uuid", "optional parameter (Basic zones; accepted, not used)"),
             Param("networkid", "uuid", "the network id (a shared network's range)"),
             Param("physicalnetworkid", "uuid", "the physical network id"),
             Param("vlan", "string", "the ID or VID of the VLAN, or untagged (vlan:// prefix accepted)"),
             Param("gateway", "string", "the gateway of the VLAN IP range", required=True),
             Param("netmask", "string", "the netmask of the VLAN IP range", required=True),
             Param("startip", "string", "the beginning IP address in the VLAN IP range", required=True),
             Param("endip", "string", "the ending IP address in the VLAN IP range"),
             Param("forvirtualnetwork", "boolean", "true if VLAN is of Virtual type (public), false if Direct"),
             Param("account", "string", "account who will own the VLAN (dedicated public range)"),
             Param("domainid", "uuid", "domain ID of the account owning a VLAN")])
def create_vlan_ip_range(ctx, p):
    account_id = None
    if p.get("account"):
        acct = accounts.get_account(p["account"])
        if acct is None:
            raise NotFound(f"Unable to find account {p['account']}", field="account")
        account_id = acct.id
    return ranges.create_range(ctx.user, zone_uuid=p.get("zoneid"), network_uuid=p.get("networkid"),
                               physical_network_uuid=p.get("physicalnetworkid"), vlan=p.get("vlan"),
                               gateway=p["gateway"], netmask=p["netmask"], start_ip=p["startip"],
                               end_ip=p.get("endip"), for_virtual_network=p.get("forvirtualnetwork"),
                               account_id=account_id)


@command("listVlanIpRanges", "Lists all VLAN IP ranges", role=ADMIN, response="vlaniprange", list=True, params=[
    Param("zoneid", "uuid", "the Zone ID of the VLAN IP range"), Param("networkid", "uuid", "network id"),
    Param("physicalnetworkid", "uuid", "physical network id"), Param("vlan", "string", "the ID or VID of the VLAN"),
    Param("forvirtualnetwork", "boolean", "true if VLAN is of Virtual type, false if Direct"),
    Param("podid", "uuid", "the Pod ID (accepted, not used)")])
def list_vlan_ip_ranges(ctx, p):
    return ranges.list_ranges(id=p.get("id"), zone_uuid=p.get("zoneid"), network_uuid=p.get("networkid"),
                              physical_network_uuid=p.get("physicalnetworkid"), vlan=p.get("vlan"),
                              for_virtual_network=p.get("forvirtualnetwork"), keyword=p.get("keyword"),
                              page=ctx.page)


@command("deleteVlanIpRange", "Deletes a VLAN IP range none of whose addresses is in use", role=ADMIN,
         params=[Param("id", "uuid", "the id of the VLAN IP range", required=True)])
def delete_vlan_ip_range(ctx, p):
    ranges.delete_range(ctx.user, p["id"])
    return {"success": True}
