"""Virtual routers: listRouters, rebootRouter, startRouter, stopRouter, destroyRouter and the
"router" serializer (CloudStack's DomainRouterResponse)."""
from __future__ import annotations

import ipaddress

from app.api.registry import ADMIN, Param, command
from app.api.serializers import serializer
from app.models.base import DOMAIN_ID, DOMAIN_NAME
from app.services.network import routers

ID = [Param("id", "uuid", "the router", required=True)]


@serializer("router")
def router(r) -> dict:
    from app.extensions import db
    from app.models import Account, PublicIpAddress, VlanIpRange
    net, host, zone = r.network, r.host, r.zone
    acct = db.session.get(Account, net.account_id) if net.account_id else None
    pub = db.session.get(PublicIpAddress, r.public_ip_id) if r.public_ip_id else None
    rng = db.session.get(VlanIpRange, pub.vlan_range_id) if pub else None
    out = {
        "id": r.uuid, "name": r.name, "state": r.state, "zoneid": zone.uuid, "zonename": zone.name,
        "dns1": zone.dns1, "dns2": zone.dns2, "networkdomain": net.network_domain or routers.default_domain(net),
        "gateway": rng.gateway if rng else net.gateway,
        "guestipaddress": r.guest_ip, "guestmacaddress": r.guest_mac, "guestnetmask": net.netmask,
        "guestnetworkid": net.uuid, "guestnetworkname": net.name,
        "hostid": host.uuid if host else None, "hostname": host.name if host else None,
        "hypervisor": host.hypervisor_type if host else None, "podid": None,
        "role": "VIRTUAL_ROUTER", "requiresupgrade": False, "redundantstate": "UNKNOWN",
        "isredundantrouter": False, "version": "nubo", "softwareversion": "nubo",
        "healthcheckfailed": r.state == "Alert", "healthchecks": [{
            "checkname": "router_status", "checktype": "basic", "success": r.state != "Alert",
            "lastupdated": r.last_checked, "details": r.state_reason or ""}],
        "created": r.created, "domainid": acct.domain.uuid if acct else DOMAIN_ID,
        "domain": acct.domain.name if acct else DOMAIN_NAME, "account": acct.name if acct else "system",
    }
    nics = [{"id": f"{r.uuid}-guest", "networkid": net.uuid, "networkname": net.name, "ipaddress": r.guest_ip,
             "macaddress": r.guest_mac, "netmask": net.netmask, "gateway": net.gateway, "traffictype": "Guest",
             "type": net.guest_type, "isdefault": pub is None, "broadcasturi": net.broadcast_uri,
             "isolationuri": net.broadcast_uri}]
    if pub is not None:
        out.update(publicip=pub.address, publicmacaddress=r.public_mac, publicnetmask=rng.netmask)
        nics.append({"id": f"{r.uuid}-public", "ipaddress": pub.address, "macaddress": r.public_mac,
                     "netmask": rng.netmask, "gateway": rng.gateway, "traffictype": "Public", "isdefault": True,
                     "broadcasturi": f"vlan://{rng.vlan}", "isolationuri": f"vlan://{rng.vlan}"})
        out["publicnetworkid"] = str(ipaddress.IPv4Network(f"{pub.address}/{rng.netmask}", strict=False))
    out["nic"] = nics
    return out


@command("listRouters", "Lists virtual routers", response="router", list=True, params=[
    Param("name", "string", "the name"), Param("zoneid", "uuid", "the zone"), Param("networkid", "uuid", "the network"),
    Param("hostid", "uuid", "the host"), Param("state", "string", "the state"),
    Param("forvpc", "boolean", "VPC routers (none)"), Param("podid", "uuid", "ignored"),
    Param("clusterid", "uuid", "ignored"), Param("version", "string", "ignored"),
    Param("fetchhealthcheckresults", "boolean", "include health checks")])
def list_routers(ctx, p):
    if p.get("forvpc"):
        return [], 0
    return routers.list_routers(ctx.user, id=p.get("id"), name=p.get("name"), zone_uuid=p.get("zoneid"),
                                network_uuid=p.get("networkid"), host_uuid=p.get("hostid"), state=p.get("state"),
                                keyword=p.get("keyword"), account=p.get("account"), page=ctx.page)


@command("rebootRouter", "Restarts a router's processes and applies its configuration again", is_async=True,
         response="router", role=ADMIN, params=[*ID, Param("forced", "boolean", "ignored")])
def reboot_router(ctx, p):
    return routers.submit(ctx.user, p["id"], "reboot")


@command("stopRouter", "Stops a router (removed from its host)", is_async=True, response="router", role=ADMIN,
         params=[*ID, Param("forced", "boolean", "ignored")])
def stop_router(ctx, p):
    return routers.submit(ctx.user, p["id"], "stop")


@command("startRouter", "Starts a stopped router", is_async=True, response="router", role=ADMIN, params=ID)
def start_router(ctx, p):
    return routers.submit(ctx.user, p["id"], "start")


@command("destroyRouter", "Destroys a router (the next VM start or restartNetwork makes a new one)",
         is_async=True, response="router", role=ADMIN, params=ID)
def destroy_router(ctx, p):
    return routers.submit(ctx.user, p["id"], "destroy")
