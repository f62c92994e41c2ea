"""Disk offerings and volumes (CloudStack names and fields)."""
from __future__ import annotations

from app.api.registry import ADMIN, DOMAIN_ADMIN, Param, command
from app.jobs import service as jobs
from app.api.serializers import serialize
from app.services import volumes


@command("createDiskOffering", "Creates a disk offering", role=DOMAIN_ADMIN, response="diskoffering", params=[
    Param("name", "string", "the name", required=True), Param("displaytext", "string", "the display text"),
    Param("disksize", "long", "size in GiB (not for custom offerings)"),
    Param("customized", "boolean", "the size is chosen at volume creation"),
    Param("storagetype", "string", "shared (default) or local"),
    Param("tags", "string", "tags for the disk offering (storage tags, comma separated)"),
    Param("domainid", "list", "the ID of the containing domain(s), null for public offerings"),
    Param("zoneid", "list", "the ID of the containing zone(s), null for public offerings")])
def create_disk_offering(ctx, p):
    return volumes.create_disk_offering(ctx.user, name=p["name"], display_text=p.get("displaytext"),
                                        disk_size=p.get("disksize"), customized=p.get("customized", False),
                                        storage_type=p.get("storagetype", "shared"), tags=p.get("tags"),
                                        domain_ids=p.get("domainid"), zone_ids=p.get("zoneid"))


@command("updateDiskOffering", "Updates a disk offering", role=DOMAIN_ADMIN, response="diskoffering", params=[
    Param("id", "uuid", "ID of the disk offering", required=True), Param("name", "string", "updates name of the disk offering with this value"),
    Param("displaytext", "string", "updates alternate display text of the disk offering with this value"),
    Param("sortkey", "integer", "sort key of the disk offering, integer"),
    Param("tags", "string", "comma-separated list of tags for the disk offering, tags should match with "
          "existing storage pool tags"),
    Param("domainid", "string", "the ID of the containing domain(s) as comma separated string, public for public "
          "offerings"),
    Param("zoneid", "string", "the ID of the containing zone(s) as comma separated string, all for all zones "
          "offerings")])
def update_disk_offering(ctx, p):
    return volumes.update_disk_offering(ctx.user, p["id"], name=p.get("name"), display_text=p.get("displaytext"),
                                        sort_key=p.get("sortkey"), tags=p.get("tags"), domain_ids=p.get("domainid"),
                                        zone_ids=p.get("zoneid"))


@command("listDiskOfferings", "Lists disk offerings", response="diskoffering", list=True,
         params=[Param("name", "string", "the name"),
                 Param("zoneid", "uuid", "id of zone disk offering is associated with")])
def list_disk_offerings(ctx, p):
    from app.services import zones
    zone = zones.get_zone(p["zoneid"]) if p.get("zoneid") else None
    return volumes.list_disk_offerings(ctx.user, id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"),
                                       page=ctx.page, domainid=p.get("domainid"), recursive=p.get("isrecursive", False),
                                       zone=zone)


@command("deleteDiskOffering", "Deletes a disk offering", role=DOMAIN_ADMIN,
         params=[Param("id", "uuid", "the offering", required=True)])
def delete_disk_offering(ctx, p):
    volumes.delete_disk_offering(ctx.user, p["id"])
    return {"success": True}


# Volume actions are async in CloudStack: the checks that need no hypervisor run
# first (a bad id is a 431 at once), the work runs in the job.
def _async(ctx, cmd: str, action: str, params: dict, volume_uuid: str):
    volumes.get_volume(ctx.user, volume_uuid)
    return jobs.submit(cmd, ctx.user, "volume." + action, params, instance_type="Volume", instance_id=volume_uuid)


@command("createVolume", "Creates a data volume (allocated on primary storage at first attach), or one from a "
         "snapshot (written on the snapshot's volume's primary storage)", is_async=True,
         response="volume", async_returns_id=True, params=[
             Param("name", "string", "the name"), Param("zoneid", "uuid", "the zone (required without snapshotid)"),
             Param("diskofferingid", "uuid", "the disk offering (required without snapshotid)"),
             Param("snapshotid", "uuid", "the snapshot ID for the disk volume"),
             Param("size", "long", "size in GiB for a custom offering"),
             Param("account", "string", "the owner's account (admins; with domainid)"),
             Param("domainid", "uuid", "the owner's domain"),
             Param("projectid", "uuid", "the project that owns the volume")])
def create_volume(ctx, p):
    if p.get("snapshotid"):
        from app.services.snapshots import volume as snapshots
        return snapshots.submit_create_volume(ctx.user, p["snapshotid"], name=p.get("name"),
                                              zone_uuid=p.get("zoneid"), account=p.get("account"),
                                              domainid=p.get("domainid"), projectid=p.get("projectid"))
    v = volumes.create_volume(ctx.user, name=p.get("name"), zone_uuid=p.get("zoneid"),
                              disk_offering_uuid=p.get("diskofferingid"), size_gib=p.get("size"),
                              account=p.get("account"), domainid=p.get("domainid"))
    return jobs.submit("createVolume", ctx.user, "volume.show", {"id": v.uuid}, instance_type="Volume",
                       instance_id=v.uuid)


@command("attachVolume", "Attaches a data volume to a VM", is_async=True, response="volume", params=[
    Param("id", "uuid", "the volume", required=True), Param("virtualmachineid", "uuid", "the VM", required=True)])
def attach_volume(ctx, p):
    return _async(ctx, "attachVolume", "attach", {"id": p["id"], "vm": p["virtualmachineid"]}, p["id"])


@command("detachVolume", "Detaches a data volume from its VM", is_async=True, response="volume",
         params=[Param("id", "uuid", "the volume", required=True)])
def detach_volume(ctx, p):
    return _async(ctx, "detachVolume", "detach", {"id": p["id"]}, p["id"])


@command("resizeVolume", "Resizes a volume offline (never shrinks)", is_async=True, response="volume", params=[
    Param("id", "uuid", "the volume", required=True), Param("size", "long", "the new size in GiB"),
    Param("diskofferingid", "uuid", "a disk offering giving the new size"),
    Param("shrinkok", "boolean", "refused: volumes never shrink")])
def resize_volume(ctx, p):
    return _async(ctx, "resizeVolume", "resize", {"id": p["id"], "size": p.get("size"),
                                                   "offering": p.get("diskofferingid")}, p["id"])


@command("deleteVolume", "Deletes a detached data volume and its file", params=[
    Param("id", "uuid", "the volume", required=True)])
def delete_volume(ctx, p):
    volumes.delete_volume(ctx.user, p["id"])
    return {"success": True}


@command("listVolumes", "Lists volumes", response="volume", list=True, params=[
    Param("name", "string", "the name"), Param("virtualmachineid", "uuid", "the VM"),
    Param("zoneid", "uuid", "the zone"), Param("type", "string", "ROOT or DATADISK"), Param("tags", "map", "List resources by tags (key/value pairs): tags[0].key=...&tags[0].value=...")])
def list_volumes(ctx, p):
    return volumes.list_volumes(ctx.user, id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"),
                                vm_uuid=p.get("virtualmachineid"), zone_uuid=p.get("zoneid"), type_=p.get("type"),
                                tags=p.get("tags"), account=p.get("account"), domainid=p.get("domainid"),
                                page=ctx.page)


def _user(job):
    from app.extensions import db
    from app.models import User
    return db.session.get(User, job.user_id)


@jobs.handler("volume.show")
def _show(job, params):
    return {"volume": serialize("volume", volumes.get_volume(_user(job), params["id"]))}


@jobs.handler("volume.attach")
def _attach(job, params):
    return {"volume": serialize("volume", volumes.attach_volume(_user(job), params["id"], params["vm"]))}


@jobs.handler("volume.detach")
def _detach(job, params):
    return {"volume": serialize("volume", volumes.detach_volume(_user(job), params["id"]))}


@jobs.handler("volume.resize")
def _resize(job, params):
    return {"volume": serialize("volume", volumes.resize_volume(
        _user(job), params["id"], size_gib=params.get("size"), disk_offering_uuid=params.get("offering")))}
