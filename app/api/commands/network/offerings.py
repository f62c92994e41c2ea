"""Network offerings (CloudStack's names, parameters and response fields)."""
from __future__ import annotations

import uuid

from app.api.registry import ADMIN, Param, command
from app.api.serializers import serializer
from app.models import Service
from app.services.network import offerings

# What Nubo's providers can do, in CloudStack's capability names (the values it reports).
CAPABILITIES = {
    Service.SOURCE_NAT.value: [("SupportedSourceNatTypes", "peraccount"), ("RedundantRouter", "false")],
    Service.STATIC_NAT.value: [("ElasticIp", "false"), ("AssociatePublicIP", "false")],
    Service.FIREWALL.value: [("SupportedProtocols", "tcp,udp,icmp"), ("SupportedEgressProtocols", "tcp,udp,icmp,all"),
                             ("SupportedTrafficDirection", "ingress, egress"), ("MultipleIps", "true")],
    Service.DNS.value: [("AllowDnsSuffixModification", "true")],
}

# CloudStack reports on every offering the system service offering of its virtual routers
# ("System Offering For Software Router"); Libcloud's ex_list_network_offerings reads it
# unconditionally. Nubo's routers are namespaces without an offering: a fixed id stands for it.
ROUTER_OFFERING_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "nubo:system-offering:router"))


def service_list(services: dict[str, str]) -> list[dict]:
    return [{"name": svc, "provider": [{"name": provider}],
             "capability": [{"name": n, "value": v, "canchooseservicecapability": False}
                            for n, v in CAPABILITIES.get(svc, [])]}
            for svc, provider in services.items()]


@serializer("networkoffering")
def networkoffering(o) -> dict:
    return {"id": o.uuid, "name": o.name, "displaytext": o.display_text, "tags": o.tags, "created": o.created,
            "traffictype": o.traffic_type, "guestiptype": o.guest_ip_type, "isdefault": o.is_default,
            "specifyvlan": o.specify_vlan, "specifyipranges": o.specify_ip_ranges, "conservemode": o.conserve_mode,
            "egressdefaultpolicy": o.egress_default_policy, "availability": o.availability, "state": o.state,
            "networkrate": o.network_rate, "maxconnections": o.max_connections, "forvpc": False, "fornsx": False,
            "ispersistent": False, "supportsstrechedl2subnet": False, "supportspublicaccess": False,
            "internetprotocol": "IPv4", "serviceofferingid": ROUTER_OFFERING_ID,
            "service": service_list(offerings.services_of(o))}


@command("listNetworkOfferings", "Lists all available network offerings", response="networkoffering", list=True,
         params=[Param("name", "string", "list network offerings by name"),
                 Param("displaytext", "string", "list network offerings by display text"),
                 Param("traffictype", "string", "list by traffic type"),
                 Param("guestiptype", "string", "list network offerings by guest type: Shared, Isolated or L2"),
                 Param("zoneid", "uuid", "list network offerings available for network creation in this zone"),
                 Param("state", "string", "list network offerings by state"),
                 Param("forvpc", "boolean", "offerings for VPC networks (Nubo has none)"),
                 Param("isdefault", "boolean", "true to list only default network offerings"),
                 Param("specifyvlan", "boolean", "the tags for the network offering"),
                 Param("specifyipranges", "boolean", "offerings that support specifying ip ranges"),
                 Param("availability", "string", "the availability of network offering"),
                 Param("supportedservices", "list", "list network offerings supporting certain services"),
                 Param("sourcenatsupported", "boolean", "only offerings where source nat is supported"),
                 Param("networkid", "uuid", "offerings the network can be changed to"),
                 Param("tags", "string", "list network offerings by tags")])
def list_network_offerings(ctx, p):
    return offerings.list_offerings(
        ctx.user, id=p.get("id"), name=p.get("name"), guest_ip_type=p.get("guestiptype"),
        traffic_type=p.get("traffictype"), zone_uuid=p.get("zoneid"), state=p.get("state"), for_vpc=p.get("forvpc"),
        is_default=p.get("isdefault"), specify_vlan=p.get("specifyvlan"),
        specify_ip_ranges=p.get("specifyipranges"), supported_services=p.get("supportedservices"),
        source_nat_supported=p.get("sourcenatsupported"), network_uuid=p.get("networkid"),
        availability=p.get("availability"), display_text=p.get("displaytext"), tags=p.get("tags"),
        keyword=p.get("keyword"), page=ctx.page)


@command("createNetworkOffering", "Creates a network offering (Disabled until updated to Enabled)", role=ADMIN,
         response="networkoffering", params=[
             Param("name", "string", "the name of the network offering", required=True),
             Param("displaytext", "string", "the display text of the network offering"),
             Param("guestiptype", "string", "guest type of the network offering: Shared, Isolated or L2",
                   required=True),
             Param("traffictype", "string", "the traffic type for the network offering (Guest)", required=True),
             Param("supportedservices", "list", "services supported by the network offering"),
             Param("serviceproviderlist", "map", "provider to service mapping: serviceproviderlist[0].service="
                   "Dhcp&serviceproviderlist[0].provider=VirtualRouter"),
             Param("specifyvlan", "boolean", "true if network offering supports vlans"),
             Param("specifyipranges", "boolean", "true if network offering supports specifying ip ranges"),
             Param("egressdefaultpolicy", "boolean", "true if guest network default egress policy is allow; false "
                   "if default egress policy is deny"),
             Param("conservemode", "boolean", "true if the network offering is IP conserve mode enabled"),
             Param("availability", "string", "the availability of network offering: Optional or Required"),
             Param("networkrate", "integer", "data transfer rate in megabits per second allowed"),
             Param("maxconnections", "integer", "maximum number of concurrent connections"),
             Param("tags", "string", "the tags for the network offering"),
             Param("forvpc", "boolean", "true if network offering is meant to be used for VPC (not supported)"),
             Param("ispersistent", "boolean", "true if network offering supports persistent networks (not supported)"),
             Param("servicecapabilitylist", "map", "desired service capabilities (accepted, not used)")])
def create_network_offering(ctx, p):
    return offerings.create_offering(
        ctx.user, name=p["name"], display_text=p.get("displaytext"), guest_ip_type=p["guestiptype"],
        traffic_type=p["traffictype"], supported_services=p.get("supportedservices"),
        service_provider_list=p.get("serviceproviderlist"), specify_vlan=p.get("specifyvlan", False),
        specify_ip_ranges=p.get("specifyipranges"), egress_default_policy=p.get("egressdefaultpolicy", True),
        conserve_mode=p.get("conservemode", True), availability=p.get("availability"),
        network_rate=p.get("networkrate"), tags=p.get("tags"), for_vpc=p.get("forvpc", False),
        is_persistent=p.get("ispersistent", False), max_connections=p.get("maxconnections"))


@command("updateNetworkOffering", "Updates a network offering", role=ADMIN, response="networkoffering", params=[
    Param("id", "uuid", "the id of the network offering", required=True),
    Param("name", "string", "the name of the network offering"),
    Param("displaytext", "string", "the display text of the network offering"),
    Param("state", "string", "update state for the network offering: Enabled or Disabled"),
    Param("availability", "string", "the availability of network offering: Optional or Required"),
    Param("tags", "string", "the tags for the network offering"),
    Param("maxconnections", "integer", "maximum number of concurrent connections"),
    Param("sortkey", "integer", "sort key (accepted, not used)")])
def update_network_offering(ctx, p):
    return offerings.update_offering(ctx.user, p["id"], name=p.get("name"), display_text=p.get("displaytext"),
                                     state=p.get("state"), availability=p.get("availability"), tags=p.get("tags"),
                                     max_connections=p.get("maxconnections"))


@command("deleteNetworkOffering", "Deletes a network offering no network uses", role=ADMIN,
         params=[Param("id", "uuid", "the ID of the network offering", required=True)])
def delete_network_offering(ctx, p):
    offerings.delete_offering(ctx.user, p["id"])
    return {"success": True}
