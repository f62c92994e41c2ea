"""Resource details (addResourceDetail and removeResourceDetail, async as in CloudStack;
listResourceDetails, answered as CloudStack's ResourceDetailResponse "resourcedetail") and
regions (addRegion, updateRegion, removeRegion for root admins; listRegions for everyone)."""
from __future__ import annotations

from flask import request

from app.api.registry import ADMIN, Param, command
from app.api.serializers import serializer
from app.services import regions, resource_details

TYPES = "UserVm, Volume, Template, Network, PublicIpAddress, FirewallRule, PortForwardingRule, User, " \
        "SnapshotPolicy, Zone, ServiceOffering, DiskOffering, NetworkOffering, GuestOs, Storage"


@serializer("resourcedetail")
def resource_detail(row) -> dict:
    d, uuid, type_name = row
    return {"resourceid": uuid, "resourcetype": type_name, "key": d.name, "value": d.value,
            "fordisplay": bool(d.display)}


@command("addResourceDetail", "Adds detail for the Resource.", is_async=True, params=[
    Param("details", "map", "Map of (key/value pairs): details[0].key=...&details[0].value=...", required=True),
    Param("resourcetype", "string", f"type of the resource ({TYPES})", required=True),
    Param("resourceid", "uuid", "resource id to create the details for", required=True),
    Param("fordisplay", "boolean", "pass false if you want this detail to be disabled for the regular user. "
          "True by default")])
def add_resource_detail(ctx, p):
    return resource_details.submit_add(ctx.user, p["resourceid"], p["resourcetype"], p["details"],
                                       p.get("fordisplay"))


@command("removeResourceDetail", "Removes detail for the Resource.", is_async=True, params=[
    Param("key", "string", "Delete details matching key/value pairs"),
    Param("resourcetype", "string", "Delete detail by resource type", required=True),
    Param("resourceid", "uuid", "Delete details for resource id", required=True)])
def remove_resource_detail(ctx, p):
    return resource_details.submit_remove(ctx.user, p["resourceid"], p["resourcetype"], p.get("key"))


@command("listResourceDetails", "List resource detail(s)", response="resourcedetail", list=True, params=[
    Param("resourcetype", "string", "List by resource type", required=True),
    Param("resourceid", "uuid", "List by resource ID"),
    Param("key", "string", "List by key"),
    Param("value", "string", "List by key, value. Needs to be passed only along with key (admins)"),
    Param("fordisplay", "boolean", "If set to true, only details marked with display=true, are returned (admins)")])
def list_resource_details(ctx, p):
    return resource_details.list_details(ctx.user, p["resourcetype"], resource_id=p.get("resourceid"),
                                         key=p.get("key"), value=p.get("value"), for_display=p.get("fordisplay"),
                                         page=ctx.page)


# --- Regions ------------------------------------------------------------------------------------

@serializer("region")
def region(r) -> dict:
    # Region 1 without an endpoint of its own: the address the client used (this server's API).
    endpoint = r.endpoint or (request.url_root.rstrip("/") + "/client/")
    return {"id": r.id, "name": r.name, "endpoint": endpoint, "gslbserviceenabled": False,
            "portableipserviceenabled": False}


@command("listRegions", "Lists Regions", response="region", list=True, params=[
    Param("id", "integer", "List Region by region ID."),
    Param("name", "string", "List Region by region name.")])
def list_regions(ctx, p):
    rows = regions.list_regions(id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"))
    return rows, len(rows)


@command("addRegion", "Adds a Region", role=ADMIN, response="region", params=[
    Param("id", "integer", "Id of the Region", required=True),
    Param("name", "string", "Name of the region", required=True),
    Param("endpoint", "string", "Region service endpoint", required=True)])
def add_region(ctx, p):
    return regions.add_region(ctx.user, p["id"], p["name"], p["endpoint"])


@command("updateRegion", "Updates a region", role=ADMIN, response="region", params=[
    Param("id", "integer", "Id of region to update", required=True),
    Param("name", "string", "Updates region with this name"),
    Param("endpoint", "string", "Updates region with this end point")])
def update_region(ctx, p):
    return regions.update_region(ctx.user, p["id"], p.get("name"), p.get("endpoint"))


@command("removeRegion", "Removes specified region", role=ADMIN, params=[
    Param("id", "integer", "ID of the region to delete", required=True)])
def remove_region(ctx, p):
    regions.remove_region(ctx.user, p["id"])
    return {"success": True}
