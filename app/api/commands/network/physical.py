"""Physical networks, traffic types, network service providers and the virtual router element
(CloudStack's names, parameters and response fields). The async ones (as in CloudStack) do their
work at once, so a bad value is a 431 straight away, and answer with a job holding the result."""
from __future__ import annotations

import json

from app.api.registry import ADMIN, Param, command
from app.api.serializers import serialize, serializer
from app.jobs import service as jobs
from app.models import DOMAIN_ID
from app.services.network import physical


@serializer("physicalnetwork")
def physicalnetwork(n) -> dict:
    return {"id": n.uuid, "name": n.name, "zoneid": n.zone.uuid, "zonename": n.zone.name, "state": n.state,
            "vlan": n.vlan_range, "isolationmethods": n.isolation_method, "tags": n.tags,
            "broadcastdomainrange": n.broadcast_domain_range, "domainid": DOMAIN_ID}


@serializer("traffictype")
def traffictype(t) -> dict:
    labels = physical.labels_of(t)
    out = {"id": t.uuid, "traffictype": t.traffic_type, "physicalnetworkid": t.physical_network.uuid,
           "isolationmethods": t.physical_network.isolation_method, "vlan": t.vlan}
    for param, type_name in physical.LABEL_PARAMS.items():
        if labels.get(type_name):
            out[param] = labels[type_name]
    return out


@serializer("networkserviceprovider")
def networkserviceprovider(p) -> dict:
    return {"id": p.uuid, "name": p.name, "physicalnetworkid": p.physical_network.uuid, "state": p.state,
            "servicelist": json.loads(p.services or "[]"), "canenableindividualservice": False,
            "destinationphysicalnetworkid": None}


@serializer("virtualrouterelement")
def virtualrouterelement(p) -> dict:
    return {"id": p.element_uuid, "nspid": p.uuid, "enabled": p.element_enabled, "account": "system",
            "domainid": DOMAIN_ID, "domain": "ROOT"}


def _done(ctx, cmd: str, kind: str, obj, instance_type: str):
    """The async answer: a job whose result is the object (or success)."""
    result = {kind: serialize(kind, obj)} if obj is not None else {"success": True}
    return jobs.submit(cmd, ctx.user, "network.result", {"result": result}, instance_type=instance_type,
                       instance_id=getattr(obj, "uuid", None))


@jobs.handler("network.result")
def _result(job, params):
    return params["result"]


@command("createPhysicalNetwork", "Creates a physical network", role=ADMIN, is_async=True,
         response="physicalnetwork", async_returns_id=True, params=[
             Param("zoneid", "uuid", "the Zone ID for the physical network", required=True),
             Param("name", "string", "the name of the physical network", required=True),
             Param("isolationmethods", "list", "the isolation method for the physical network: VLAN or VXLAN"),
             Param("vlan", "string", "the VLAN/VNI range for guest networks, e.g. 100-199,300-310"),
             Param("tags", "list", "tag for the physical network (one)"),
             Param("broadcastdomainrange", "string", "ZONE (Advanced zones) or POD (Basic zones)"),
             Param("networkspeed", "string", "the speed for the physical network (accepted, not used)"),
             Param("domainid", "uuid", "domain ID (only ROOT exists)")])
def create_physical_network(ctx, p):
    n = physical.create_physical_network(
        ctx.user, zone_uuid=p["zoneid"], name=p["name"], isolation_method=p.get("isolationmethods"),
        vlan=p.get("vlan"), tags=",".join(p.get("tags") or []) or None,
        broadcast_domain_range=p.get("broadcastdomainrange"))
    return _done(ctx, "createPhysicalNetwork", "physicalnetwork", n, "PhysicalNetwork")


@command("listPhysicalNetworks", "Lists physical networks", role=ADMIN, response="physicalnetwork", list=True,
         params=[Param("zoneid", "uuid", "the Zone ID"), Param("name", "string", "the name")])
def list_physical_networks(ctx, p):
    return physical.list_physical_networks(id=p.get("id"), zone_uuid=p.get("zoneid"), name=p.get("name"),
                                           keyword=p.get("keyword"), page=ctx.page)


@command("updatePhysicalNetwork", "Updates a physical network", role=ADMIN, is_async=True,
         response="physicalnetwork", params=[
             Param("id", "uuid", "physical network id", required=True),
             Param("vlan", "string", "the whole new VLAN/VNI range (may grow; a part may go while unused)"),
             Param("state", "string", "Enabled or Disabled"), Param("tags", "list", "tag for the physical network"),
             Param("networkspeed", "string", "the speed (accepted, not used)")])
def update_physical_network(ctx, p):
    n = physical.update_physical_network(ctx.user, p["id"], vlan=p.get("vlan"), state=p.get("state"),
                                         tags=",".join(p["tags"]) if "tags" in p else None)
    return _done(ctx, "updatePhysicalNetwork", "physicalnetwork", n, "PhysicalNetwork")


@command("deletePhysicalNetwork", "Deletes a physical network without networks", role=ADMIN, is_async=True,
         params=[Param("id", "uuid", "the ID of the physical network", required=True)])
def delete_physical_network(ctx, p):
    physical.delete_physical_network(ctx.user, p["id"])
    return _done(ctx, "deletePhysicalNetwork", "success", None, "PhysicalNetwork")


LABEL_PARAMS = [Param(name, "string", f"the network label for {t} hosts on this physical network")
                for name, t in physical.LABEL_PARAMS.items()]


def _labels(p) -> dict[str, str]:
    return {t: p[name] for name, t in physical.LABEL_PARAMS.items() if name in p}


@command("addTrafficType", "Adds a traffic type to a physical network", role=ADMIN, is_async=True,
         response="traffictype", async_returns_id=True, params=[
             Param("physicalnetworkid", "uuid", "the Physical Network ID", required=True),
             Param("traffictype", "string", "Guest, Public, Management or Storage", required=True),
             Param("vlan", "string", "the VLAN id to be used for Management traffic"),
             Param("isolationmethod", "string", "accepted for compatibility (the physical network's method applies)"),
             *LABEL_PARAMS])
def add_traffic_type(ctx, p):
    t = physical.add_traffic_type(ctx.user, p["physicalnetworkid"], p["traffictype"], _labels(p), vlan=p.get("vlan"))
    return _done(ctx, "addTrafficType", "traffictype", t, "TrafficType")


@command("updateTrafficType", "Updates the labels of a traffic type", role=ADMIN, is_async=True,
         response="traffictype", params=[Param("id", "uuid", "traffic type id", required=True), *LABEL_PARAMS])
def update_traffic_type(ctx, p):
    t = physical.update_traffic_type(ctx.user, p["id"], _labels(p))
    return _done(ctx, "updateTrafficType", "traffictype", t, "TrafficType")


@command("deleteTrafficType", "Deletes a traffic type of a physical network", role=ADMIN, is_async=True,
         params=[Param("id", "uuid", "traffic type id", required=True)])
def delete_traffic_type(ctx, p):
    physical.delete_traffic_type(ctx.user, p["id"])
    return _done(ctx, "deleteTrafficType", "success", None, "TrafficType")


@command("listTrafficTypes", "Lists the traffic types of a physical network", role=ADMIN, response="traffictype",
         list=True, params=[Param("physicalnetworkid", "uuid", "the Physical Network ID", required=True)])
def list_traffic_types(ctx, p):
    return physical.list_traffic_types(p["physicalnetworkid"], page=ctx.page)


@command("listNetworkServiceProviders", "Lists network service providers of physical networks", role=ADMIN,
         response="networkserviceprovider", list=True, params=[
             Param("physicalnetworkid", "uuid", "the Physical Network ID"),
             Param("name", "string", "the provider name"), Param("state", "string", "Enabled, Disabled or Shutdown")])
def list_network_service_providers(ctx, p):
    return physical.list_providers(physical_network_uuid=p.get("physicalnetworkid"), name=p.get("name"),
                                   state=p.get("state"), page=ctx.page)


@command("updateNetworkServiceProvider", "Updates a network service provider's state", role=ADMIN, is_async=True,
         response="networkserviceprovider", params=[
             Param("id", "uuid", "network service provider id", required=True),
             Param("state", "string", "Enabled, Disabled or Shutdown"),
             Param("servicelist", "list", "accepted for compatibility (the provider's services are fixed)")])
def update_network_service_provider(ctx, p):
    n = physical.update_provider(ctx.user, p["id"], state=p.get("state"))
    return _done(ctx, "updateNetworkServiceProvider", "networkserviceprovider", n, "NetworkServiceProvider")


@command("listVirtualRouterElements", "Lists virtual router elements", role=ADMIN, response="virtualrouterelement",
         list=True, params=[Param("nspid", "uuid", "the network service provider id"),
                            Param("enabled", "boolean", "list enabled or disabled elements")])
def list_virtual_router_elements(ctx, p):
    return physical.list_vr_elements(id=p.get("id"), nsp_uuid=p.get("nspid"), enabled=p.get("enabled"),
                                     page=ctx.page)


@command("configureVirtualRouterElement", "Enables or disables a virtual router element", role=ADMIN,
         is_async=True, response="virtualrouterelement", params=[
             Param("id", "uuid", "the ID of the virtual router provider", required=True),
             Param("enabled", "boolean", "enabled/disabled the service provider", required=True)])
def configure_virtual_router_element(ctx, p):
    n = physical.configure_vr_element(ctx.user, p["id"], p["enabled"])
    result = {"virtualrouterelement": serialize("virtualrouterelement", n)}
    return jobs.submit("configureVirtualRouterElement", ctx.user, "network.result", {"result": result},
                       instance_type="VirtualRouterElement", instance_id=n.element_uuid)
