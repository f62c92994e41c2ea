"""Public IP addresses and static NAT: associateIpAddress, disassociateIpAddress,
listPublicIpAddresses, enableStaticNat, disableStaticNat (CloudStack's names, parameters
and IPAddressResponse)."""
from __future__ import annotations

from app.api.registry import Param, command
from app.api.serializers import (DOMAIN_ID, DOMAIN_NAME, caller_is_admin, owner_fields, preload_tags, prefetch,
                                 serialize, serializer, tags_for)
from app.jobs import service as jobs
from app.services.network import public_ips


def _user(job):
    from app.extensions import db
    from app.models import User
    return db.session.get(User, job.user_id)


@serializer("publicipaddress")
def ipaddress(v: public_ips.IpView) -> dict:
    """CloudStack's IPAddressResponse (ApiResponseHelper.createIPAddressResponse)."""
    ip, vm, net = v.ip, v.vm, v.network
    public_net = v.range_network.uuid if v.range_network else public_ips.public_network_id(v.zone)
    admin = caller_is_admin()
    return {
        "id": ip.uuid, "ipaddress": ip.address, "allocated": ip.allocated, "zoneid": v.zone.uuid,
        "zonename": v.zone.name, "issourcenat": ip.is_source_nat, "isstaticnat": ip.vm_id is not None,
        "issystem": False, "isportable": False, "forvirtualnetwork": v.vlan.for_virtual_network,
        **owner_fields(v.account),
        "virtualmachineid": vm.uuid if vm else None, "virtualmachinename": vm.name if vm else None,
        "virtualmachinedisplayname": (vm.display_name or vm.name) if vm else None,
        "vmipaddress": ip.vm_ip if vm else None,
        "associatednetworkid": net.uuid if net else None, "associatednetworkname": net.name if net else None,
        "networkid": public_net, "networkname": v.range_network.name if v.range_network else None,
        "physicalnetworkid": v.physical_network_uuid,
        "state": ip.state,
        # The range is the admins' business (CloudStack's full view only)
        "vlanid": v.vlan.uuid if admin else None, "vlanname": v.vlan.vlan if admin else None,
        "fordisplay": True, "forsystemvms": False, "hasrules": v.has_rules, "hasannotations": False,
        "tags": tags_for("PublicIpAddress", ip.id),
    }


serializer("ipaddress")(ipaddress)
prefetch("publicipaddress", lambda rows: preload_tags("PublicIpAddress", [v.ip.id for v in rows]))  # associateIpAddress answers {"ipaddress": {...}} (libcloud reads that key)


@command("associateIpAddress", "Acquires and associates a public IP to an account's isolated network", is_async=True,
         response="ipaddress", async_returns_id=True, params=[
             Param("networkid", "uuid", "the network the address is associated with"),
             Param("zoneid", "uuid", "the zone to take the address from (the account's one isolated network there)"),
             Param("ipaddress", "string", "a specific free address to take", length=64),
             Param("account", "string", "the account to associate the address with (admins)"),
             Param("domainid", "uuid", "the domain of that account"),
             Param("fordisplay", "boolean", "show the address to the end user (always true)")])
def associate_ip_address(ctx, p):
    ip = public_ips.associate_ip(ctx.user, network_uuid=p.get("networkid"), zone_uuid=p.get("zoneid"),
                                 address=p.get("ipaddress"), account=p.get("account"))
    return jobs.submit("associateIpAddress", ctx.user, "publicip.associate", {"id": ip.uuid},
                       instance_type="IpAddress", instance_id=ip.uuid)


@jobs.handler("publicip.associate")
def _associate(job, params):
    ip = public_ips.finish_associate(_user(job), params["id"])
    return {"ipaddress": serialize("ipaddress", public_ips.view(ip))}


@command("disassociateIpAddress", "Disassociates a public IP address from the account", is_async=True, params=[
    Param("id", "uuid", "the public IP address"),
    Param("ipaddress", "string", "the address itself (instead of id)", length=64)])
def disassociate_ip_address(ctx, p):
    uuid = _by_id_or_address(ctx, p)
    return jobs.submit("disassociateIpAddress", ctx.user, "publicip.disassociate", {"id": uuid},
                       instance_type="IpAddress", instance_id=uuid)


def _by_id_or_address(ctx, p) -> str:
    from app.services.errors import InvalidParameter
    if p.get("id") and p.get("ipaddress"):
        raise InvalidParameter("id parameter is mutually exclusive with ipaddress parameter", field="id")
    if p.get("id"):
        return public_ips.get_ip(ctx.user, p["id"]).uuid
    if p.get("ipaddress"):
        rows, _ = public_ips.list_public_ips(ctx.user, address=p["ipaddress"], listall=True)
        if not rows:
            raise InvalidParameter(f"Unable to find IP address by IP address={p['ipaddress']}", field="ipaddress")
        return rows[0].ip.uuid
    raise InvalidParameter("Please specify either IP address or IP address ID", field="id")


@jobs.handler("publicip.disassociate")
def _disassociate(job, params):
    public_ips.disassociate_ip(_user(job), params["id"])
    return {"success": True}


@command("listPublicIpAddresses", "Lists public IP addresses", response="publicipaddress", list=True, params=[
    Param("ipaddress", "string", "this address", length=64), Param("zoneid", "uuid", "the zone"),
    Param("associatednetworkid", "uuid", "addresses associated with this network"),
    Param("networkid", "uuid", "addresses of this (public or shared) network"),
    Param("isstaticnat", "boolean", "static NAT addresses only"),
    Param("issourcenat", "boolean", "source NAT addresses only"),
    Param("allocatedonly", "boolean", "allocated addresses only (default true)"),
    Param("forvirtualnetwork", "boolean", "addresses of public ranges (true) or shared networks' (false)"),
    Param("vlanid", "uuid", "addresses of this range"), Param("physicalnetworkid", "uuid", "the physical network"),
    Param("state", "string", "Free, Allocating, Allocated or Releasing"),
    Param("forloadbalancing", "boolean", "ignored (no load balancers)"), Param("fordisplay", "boolean", "ignored"),
    Param("vpcid", "uuid", "ignored (no VPCs)"), Param("isrecursive", "boolean", "ignored (one domain)"), Param("tags", "map", "List resources by tags (key/value pairs): tags[0].key=...&tags[0].value=...")])
def list_public_ip_addresses(ctx, p):
    return public_ips.list_public_ips(
        ctx.user, id=p.get("id"), address=p.get("ipaddress"), zone_uuid=p.get("zoneid"),
        associated_network_uuid=p.get("associatednetworkid"), network_uuid=p.get("networkid"),
        is_static_nat=p.get("isstaticnat"), is_source_nat=p.get("issourcenat"), allocated_only=p.get("allocatedonly"),
        for_virtual_network=p.get("forvirtualnetwork"), vlan_uuid=p.get("vlanid"),
        physical_network_uuid=p.get("physicalnetworkid"), state=p.get("state"), keyword=p.get("keyword"),
        account=p.get("account"), listall=p.get("listall", False), tags=p.get("tags"), page=ctx.page)


@command("enableStaticNat", "Enables static NAT for the given public IP address", params=[
    Param("ipaddressid", "uuid", "the public IP address", required=True),
    Param("virtualmachineid", "uuid", "the VM", required=True),
    Param("networkid", "uuid", "the VM's network (the address's)"),
    Param("vmguestip", "string", "the VM's address on that network", length=64)])
def enable_static_nat(ctx, p):
    public_ips.enable_static_nat(ctx.user, ip_uuid=p["ipaddressid"], vm_uuid=p["virtualmachineid"],
                                 network_uuid=p.get("networkid"), vm_guest_ip=p.get("vmguestip"))
    return {"success": True}


@command("disableStaticNat", "Disables static NAT for the given public IP address", is_async=True, params=[
    Param("ipaddressid", "uuid", "the public IP address", required=True)])
def disable_static_nat(ctx, p):
    ip = public_ips.get_ip(ctx.user, p["ipaddressid"], "ipaddressid")
    return jobs.submit("disableStaticNat", ctx.user, "publicip.disablestaticnat", {"id": ip.uuid},
                       instance_type="IpAddress", instance_id=ip.uuid)


@jobs.handler("publicip.disablestaticnat")
def _disable_static_nat(job, params):
    public_ips.disable_static_nat(_user(job), params["id"])
    return {"success": True}
