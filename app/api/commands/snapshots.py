"""Volume snapshots, snapshot policies, and volumes and templates made from them
(CloudStack's names, parameters and response fields)."""
from __future__ import annotations

from app.api.registry import Param, command
from app.services.snapshots import policies
from app.services.snapshots import volume as snapshots


@command("createSnapshot", "Creates an instant snapshot of a volume", is_async=True, response="snapshot",
         async_returns_id=True, params=[
             Param("volumeid", "uuid", "the ID of the disk volume", required=True),
             Param("name", "string", "the name of the snapshot"),
             Param("account", "string", "the account of the snapshot (with domainid)"),
             Param("domainid", "uuid", "the domain ID of the snapshot"),
             Param("policyid", "uuid", "policy id of the snapshot (ignored: scheduled snapshots are the worker's)"),
             Param("quiescevm", "boolean", "quiesce vm if true (not supported: crash-consistent copy)"),
             Param("asyncbackup", "boolean", "asynchronous backup if true"),
             Param("locationtype", "string", "Primary or Secondary (snapshots are kept on secondary storage)")])
def create_snapshot(ctx, p):
    return snapshots.submit_create(ctx.user, p["volumeid"], name=p.get("name"), account=p.get("account"))


@command("listSnapshots", "Lists all available snapshots for the account", response="snapshot", list=True, params=[
    Param("ids", "list", "the IDs of the snapshots", item_type="uuid"),
    Param("name", "string", "lists snapshot by snapshot name"),
    Param("volumeid", "uuid", "the ID of the disk volume"),
    Param("snapshottype", "string", "valid values are MANUAL or RECURRING"),
    Param("intervaltype", "string", "valid values are HOURLY, DAILY, WEEKLY, and MONTHLY"),
    Param("zoneid", "uuid", "list snapshots by zone id"),
    Param("tags", "map", "List resources by tags (key/value pairs): tags[0].key=...&tags[0].value=...")], changes_state=False)
def list_snapshots(ctx, p):
    return snapshots.list_snapshots(ctx.user, id=p.get("id"), ids=p.get("ids"), name=p.get("name"),
                                    keyword=p.get("keyword"), volume_uuid=p.get("volumeid"),
                                    snapshot_type=p.get("snapshottype"), interval_type=p.get("intervaltype"),
                                    zone_uuid=p.get("zoneid"), tags=p.get("tags"), page=ctx.page)


@command("deleteSnapshot", "Deletes a snapshot of a disk volume", is_async=True,
         params=[Param("id", "uuid", "the ID of the snapshot", required=True)])
def delete_snapshot(ctx, p):
    return snapshots.submit_delete(ctx.user, p["id"])


@command("revertSnapshot", "Reverts a volume to a snapshot (its VM stopped)", is_async=True, response="snapshot",
         params=[Param("id", "uuid", "the ID of the snapshot", required=True)])
def revert_snapshot(ctx, p):
    return snapshots.submit_revert(ctx.user, p["id"])


@command("createSnapshotPolicy", "Creates a snapshot policy for the account", response="snapshotpolicy", params=[
    Param("volumeid", "uuid", "the ID of the disk volume", required=True),
    Param("intervaltype", "string", "valid values are HOURLY, DAILY, WEEKLY, and MONTHLY", required=True),
    Param("maxsnaps", "integer", "maximum number of snapshots to retain", required=True),
    Param("schedule", "string", "time the snapshot is scheduled to be taken. Format is: * if HOURLY, MM * if "
          "DAILY, MM:HH * if WEEKLY, MM:HH:DD (1-7) * if MONTHLY, MM:HH:DD (1-28)", required=True),
    Param("timezone", "string", "Specifies a timezone for this command", required=True),
    Param("fordisplay", "boolean", "an optional field, whether to the display the policy to the end user or not")])
def create_snapshot_policy(ctx, p):
    return policies.create_policy(ctx.user, volume_uuid=p["volumeid"], interval_type=p["intervaltype"],
                                  schedule=p["schedule"], timezone=p.get("timezone"), max_snaps=p["maxsnaps"],
                                  display=p.get("fordisplay"))


@command("updateSnapshotPolicy", "Updates the snapshot policy", response="snapshotpolicy", params=[
    Param("id", "uuid", "the ID of the snapshot policy", required=True),
    Param("fordisplay", "boolean", "an optional field, whether to the display the snapshot policy to the end user"),
    Param("customid", "string", "an optional field, in case you want to set a custom id to the resource")])
def update_snapshot_policy(ctx, p):
    return policies.update_policy(ctx.user, p["id"], display=p.get("fordisplay"))


@command("deleteSnapshotPolicies", "Deletes snapshot policies for the account", params=[
    Param("id", "uuid", "the Id of the snapshot policy"),
    Param("ids", "list", "list of snapshots policy IDs separated by comma", item_type="uuid")])
def delete_snapshot_policies(ctx, p):
    policies.delete_policies(ctx.user, id=p.get("id"), ids=p.get("ids"))
    return {"success": True}


@command("listSnapshotPolicies", "Lists snapshot policies", response="snapshotpolicy", list=True, params=[
    Param("volumeid", "uuid", "the ID of the disk volume"),
    Param("fordisplay", "boolean", "list resources by display flag"),
    Param("tags", "map", "List resources by tags (key/value pairs): tags[0].key=...&tags[0].value=...")], changes_state=False)
def list_snapshot_policies(ctx, p):
    return policies.list_policies(ctx.user, id=p.get("id"), volume_uuid=p.get("volumeid"),
                                  display=p.get("fordisplay"), tags=p.get("tags"), page=ctx.page)


@command("createTemplate", "Creates a template of a virtual machine's volume or of a snapshot", is_async=True,
         response="template", async_returns_id=True, params=[
             Param("name", "string", "the name of the template", required=True),
             Param("displaytext", "string", "the display text of the template"),
             Param("ostypeid", "uuid", "the ID of the OS Type that best represents the OS of this template",
                   required=True),
             Param("snapshotid", "uuid", "the ID of the snapshot the template is being created from"),
             Param("volumeid", "uuid", "the ID of the disk volume the template is being created from (its VM "
                   "stopped)"),
             Param("virtualmachineid", "uuid", "the VM the volume belongs to (optional)"),
             Param("ispublic", "boolean", "true if this template is a public template"),
             Param("isfeatured", "boolean", "true if this template is a featured template"),
             Param("passwordenabled", "boolean", "true if the template supports the password reset feature"),
             Param("isdynamicallyscalable", "boolean", "true if the template supports dynamic scaling"),
             Param("requireshvm", "boolean", "true if the template requires HVM"),
             Param("bits", "integer", "32 or 64 bit"),
             Param("zoneid", "uuid", "the zone for the template (the snapshot's or volume's)"),
             Param("projectid", "uuid", "create template for the project")])
def create_template(ctx, p):
    return snapshots.submit_create_template(
        ctx.user, name=p["name"], display_text=p.get("displaytext"), os_type_uuid=p["ostypeid"],
        snapshot_uuid=p.get("snapshotid"), volume_uuid=p.get("volumeid"), is_public=p.get("ispublic", False),
        featured=p.get("isfeatured", False), projectid=p.get("projectid"))
