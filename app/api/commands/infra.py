"""Zones, pods, clusters and hosts (CloudStack names and fields)."""
from __future__ import annotations

from app.api.registry import ADMIN, Param, command
from app.services import hosts, zones

ZONE_PARAMS = [Param("name", "string", "the zone's name"), Param("description", "string", "description"),
               Param("dns1", "string", "first DNS for guests"), Param("dns2", "string", "second DNS"),
               Param("internaldns1", "string", "first internal DNS"), Param("internaldns2", "string", "second internal DNS"),
               Param("allocationstate", "string", "Enabled or Disabled"),
               Param("localstorageenabled", "boolean", "local storage offerings on")]


@command("createZone", "Creates a zone", role=ADMIN, response="zone", params=[
    *[Param(p.name, p.type, p.description, required=p.name in ("name", "dns1", "internaldns1")) for p in ZONE_PARAMS],
    Param("networktype", "string", "Basic or Advanced", required=True),
    Param("guestcidraddress", "string", "the guest CIDR (Advanced zones)"),
    Param("hypervisor", "string", "the zone's hypervisor type (display name)")])
def create_zone(ctx, p):
    return zones.create_zone(ctx.user, name=p["name"], description=p.get("description"),
                             network_type=p["networktype"], dns1=p.get("dns1"), dns2=p.get("dns2"),
                             internal_dns1=p.get("internaldns1"), internal_dns2=p.get("internaldns2"),
                             guest_cidr=p.get("guestcidraddress"), local_storage=p.get("localstorageenabled", False),
                             hypervisor=p.get("hypervisor"), allocation_state=p.get("allocationstate"))


@command("updateZone", "Updates a zone", role=ADMIN, response="zone",
         params=[Param("id", "uuid", "the zone", required=True), *ZONE_PARAMS])
def update_zone(ctx, p):
    return zones.update_zone(ctx.user, p["id"], name=p.get("name"), description=p.get("description"),
                             allocation_state=p.get("allocationstate"), dns1=p.get("dns1"), dns2=p.get("dns2"),
                             local_storage=p.get("localstorageenabled"))


@command("deleteZone", "Deletes an empty zone", role=ADMIN, params=[Param("id", "uuid", "the zone", required=True)])
def delete_zone(ctx, p):
    zones.delete_zone(ctx.user, p["id"])
    return {"success": True}


@command("listZones", "Lists zones", response="zone", list=True, params=[Param("name", "string", "the zone's name")])
def list_zones(ctx, p):
    return zones.list_zones(id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"), page=ctx.page)


@command("createPod", "Creates a pod in a zone", role=ADMIN, response="pod", params=[
    Param("zoneid", "uuid", "the zone", required=True), Param("name", "string", "the pod's name", required=True),
    Param("gateway", "string", "the pod's gateway", required=True),
    Param("netmask", "string", "the pod's netmask", required=True),
    Param("startip", "string", "first IP of the host range", required=True),
    Param("endip", "string", "last IP of the host range"), Param("allocationstate", "string", "Enabled or Disabled")])
def create_pod(ctx, p):
    return zones.create_pod(ctx.user, zone_uuid=p["zoneid"], name=p["name"], gateway=p["gateway"],
                            netmask=p["netmask"], start_ip=p["startip"], end_ip=p.get("endip"),
                            allocation_state=p.get("allocationstate"))


@command("updatePod", "Updates a pod", role=ADMIN, response="pod", params=[
    Param("id", "uuid", "the pod", required=True), Param("name", "string", "new name"),
    Param("allocationstate", "string", "Enabled or Disabled")])
def update_pod(ctx, p):
    return zones.update_pod(ctx.user, p["id"], name=p.get("name"), allocation_state=p.get("allocationstate"))


@command("deletePod", "Deletes an empty pod", role=ADMIN, params=[Param("id", "uuid", "the pod", required=True)])
def delete_pod(ctx, p):
    zones.delete_pod(ctx.user, p["id"])
    return {"success": True}


@command("listPods", "Lists pods", role=ADMIN, response="pod", list=True, params=[
    Param("zoneid", "uuid", "the zone"), Param("name", "string", "the pod's name")])
def list_pods(ctx, p):
    return zones.list_pods(id=p.get("id"), zone_uuid=p.get("zoneid"), name=p.get("name"),
                           keyword=p.get("keyword"), page=ctx.page)


@command("addCluster", "Adds a cluster of one hypervisor type to a pod", role=ADMIN, response="cluster",
         returns_list_of_one=True, params=[
             Param("zoneid", "uuid", "the zone", required=True), Param("podid", "uuid", "the pod", required=True),
             Param("clustername", "string", "the cluster's name", required=True),
             Param("hypervisor", "string", "the hypervisor type (display name)", required=True),
             Param("clustertype", "string", "CloudManaged or ExternalManaged", required=True),
             Param("allocationstate", "string", "Enabled or Disabled"),
             Param("extensionid", "uuid", "UUID of the extension (External clusters, or Custom bound to one)")])
def add_cluster(ctx, p):
    return zones.add_cluster(ctx.user, zone_uuid=p["zoneid"], pod_uuid=p["podid"], name=p["clustername"],
                             hypervisor=p["hypervisor"], cluster_type=p["clustertype"],
                             allocation_state=p.get("allocationstate"), extension_uuid=p.get("extensionid"))


@command("updateCluster", "Updates a cluster", role=ADMIN, response="cluster", params=[
    Param("id", "uuid", "the cluster", required=True), Param("clustername", "string", "new name"),
    Param("allocationstate", "string", "Enabled or Disabled")])
def update_cluster(ctx, p):
    return zones.update_cluster(ctx.user, p["id"], name=p.get("clustername"), allocation_state=p.get("allocationstate"))


@command("deleteCluster", "Deletes an empty cluster", role=ADMIN, params=[Param("id", "uuid", "the cluster", required=True)])
def delete_cluster(ctx, p):
    zones.delete_cluster(ctx.user, p["id"])
    return {"success": True}


@command("listClusters", "Lists clusters", role=ADMIN, response="cluster", list=True, params=[
    Param("zoneid", "uuid", "the zone"), Param("podid", "uuid", "the pod"),
    Param("hypervisor", "string", "the hypervisor type"), Param("name", "string", "the cluster's name")])
def list_clusters(ctx, p):
    return zones.list_clusters(id=p.get("id"), zone_uuid=p.get("zoneid"), pod_uuid=p.get("podid"),
                               hypervisor=p.get("hypervisor"), name=p.get("name"), keyword=p.get("keyword"),
                               page=ctx.page)


@command("addHost", "Adds a host to a cluster after checking it", role=ADMIN, response="host",
         returns_list_of_one=True, params=[
             Param("zoneid", "uuid", "the zone", required=True), Param("podid", "uuid", "the pod", required=True),
             Param("clusterid", "uuid", "the cluster", required=True),
             Param("url", "string", "libvirt URI, host address, simulator://NAME?..., or the Hyper-V host", required=True),
             Param("username", "string", "user name"), Param("password", "string", "password"),
             Param("hypervisor", "string", "the hypervisor type (must match the cluster's)"),
             Param("hosttags", "list", "list of tags to be added to the host"),
             Param("details", "map", "type-specific fields, e.g. details[0].transport=ssl"),
             Param("externaldetails", "map", "Details in key/value pairs using format externaldetails[i].keyname="
                   "keyvalue (External hosts: sent to the extension)")])
def add_host(ctx, p):
    fields = {"username": p.get("username"), "password": p.get("password")}
    for entry in p.get("details", []):
        fields.update(entry)
    return hosts.add_host(ctx.user, cluster_uuid=p["clusterid"], pod_uuid=p["podid"], zone_uuid=p["zoneid"],
                          url=p["url"], fields=fields, hypervisor=p.get("hypervisor"), host_tags=p.get("hosttags"),
                          external_details=p.get("externaldetails"))


@command("updateHost", "Enables or disables a host, renames it, sets its host tags", role=ADMIN, response="host",
         params=[Param("id", "uuid", "the host", required=True),
                 Param("allocationstate", "string", "Enable or Disable"), Param("name", "string", "new name"),
                 Param("hosttags", "list", "list of host tags to be applied to the host (replacing its tags; "
                       "empty: none)")])
def update_host(ctx, p):
    return hosts.update_host(ctx.user, p["id"], allocation_state=p.get("allocationstate"), name=p.get("name"),
                             host_tags=p.get("hosttags"))


@command("prepareHostForMaintenance", "Moves a host's VMs off (live migration, else stop) and puts it into "
         "maintenance", role=ADMIN, response="host", is_async=True,
         params=[Param("id", "uuid", "the host", required=True)])
def prepare_maintenance(ctx, p):
    return hosts.prepare_maintenance(ctx.user, p["id"])


@command("cancelHostMaintenance", "Takes a host out of maintenance", role=ADMIN, response="host",
         params=[Param("id", "uuid", "the host", required=True)])
def cancel_maintenance(ctx, p):
    return hosts.cancel_maintenance(ctx.user, p["id"])


@command("reconnectHost", "Checks a host again", role=ADMIN, response="host",
         params=[Param("id", "uuid", "the host", required=True)])
def reconnect_host(ctx, p):
    return hosts.reconnect(ctx.user, p["id"])


@command("deleteHost", "Removes an empty host", role=ADMIN, params=[Param("id", "uuid", "the host", required=True)])
def delete_host(ctx, p):
    hosts.delete_host(ctx.user, p["id"])
    return {"success": True}


@command("listHosts", "Lists hosts", role=ADMIN, response="host", list=True, params=[
    Param("zoneid", "uuid", "the zone"), Param("podid", "uuid", "the pod"), Param("clusterid", "uuid", "the cluster"),
    Param("state", "string", "Up, Down, Alert, ..."), Param("resourcestate", "string", "Enabled, Maintenance, ..."),
    Param("hypervisor", "string", "the hypervisor type"), Param("name", "string", "the host's name"),
    Param("type", "string", "Routing (the only type)")])
def list_hosts(ctx, p):
    return hosts.list_hosts(id=p.get("id"), zone_uuid=p.get("zoneid"), pod_uuid=p.get("podid"),
                            cluster_uuid=p.get("clusterid"), state=p.get("state"), hypervisor=p.get("hypervisor"),
                            name=p.get("name"), keyword=p.get("keyword"), resource_state=p.get("resourcestate"),
                            page=ctx.page)
