"""VM snapshots (CloudStack 4.2+: CreateVMSnapshotCmd, ListVMSnapshotCmd, RevertToVMSnapshotCmd,
DeleteVMSnapshotCmd) and their response object (VMSnapshotResponse)."""
from __future__ import annotations

from app.api.registry import Param, command
from app.api.serializers import hypervisor_name, owner_fields, prefetch, preload_tags, serializer, tags_for
from app.services.snapshots import vm_snapshots


@serializer("vmsnapshot")
@serializer("vmSnapshot")  # listVMSnapshot names its list so (ListVMSnapshotCmd's object name)
def vmsnapshot(s) -> dict:
    vm, parent = s.vm, s.parent
    return {"id": s.uuid, "name": s.name, "displayname": s.display_name, "description": s.description,
            "state": s.state, "type": s.snapshot_type, "current": bool(s.current), "created": s.created,
            "parent": parent.uuid if parent is not None else None,
            "parentName": parent.display_name if parent is not None else None,
            "virtualmachineid": vm.uuid, "virtualmachinename": vm.display_name or vm.name,
            "zoneid": vm.zone.uuid, "zonename": vm.zone.name, "hypervisor": hypervisor_name(vm.hypervisor_type),
            **owner_fields(s.account), "tags": tags_for("VMSnapshot", s.id)}


prefetch("vmSnapshot", lambda rows: preload_tags("VMSnapshot", [s.id for s in rows]))


@command("createVMSnapshot", "Creates snapshot for a vm.", is_async=True, response="vmsnapshot",
         async_returns_id=True, params=[
             Param("virtualmachineid", "uuid", "The ID of the vm", required=True),
             Param("name", "string", "The display name of the snapshot"),
             Param("description", "string", "The description of the snapshot"),
             Param("snapshotmemory", "boolean", "snapshot memory if true"),
             Param("quiescevm", "boolean", "quiesce vm if true")])
def create(ctx, p):
    return vm_snapshots.create(ctx.user, p["virtualmachineid"], name=p.get("name"), description=p.get("description"),
                               memory=bool(p.get("snapshotmemory", False)), quiesce=bool(p.get("quiescevm", False)))


@command("listVMSnapshot", "List virtual machine snapshot by conditions", response="vmSnapshot", list=True,
         changes_state=False, params=[
             Param("vmsnapshotid", "uuid", "The ID of the VM snapshot"),
             Param("vmsnapshotids", "list", "the IDs of the vm snapshots, mutually exclusive with vmsnapshotid",
                   item_type="uuid"),
             Param("state", "string", "state of the virtual machine snapshot"),
             Param("virtualmachineid", "uuid", "the ID of the vm"),
             Param("name", "string", "lists snapshot by snapshot name or display name"),
             Param("tags", "map", "List resources by tags (key/value pairs): tags[0].key=...&tags[0].value=...")])
def list_(ctx, p):
    return vm_snapshots.list_snapshots(ctx.user, id=p.get("vmsnapshotid") or p.get("id"), ids=p.get("vmsnapshotids"),
                                       vm_uuid=p.get("virtualmachineid"), name=p.get("name"), state=p.get("state"),
                                       keyword=p.get("keyword"), account=p.get("account"), tags=p.get("tags"),
                                       page=ctx.page)


@command("revertToVMSnapshot", "Revert VM from a vmsnapshot.", is_async=True, response="virtualmachine",
         params=[Param("vmsnapshotid", "uuid", "The ID of the vm snapshot", required=True)])
def revert(ctx, p):
    return vm_snapshots.revert(ctx.user, p["vmsnapshotid"])


@command("deleteVMSnapshot", "Deletes a vmsnapshot.", is_async=True,
         params=[Param("vmsnapshotid", "uuid", "The ID of the VM snapshot", required=True)])
def delete(ctx, p):
    return vm_snapshots.delete(ctx.user, p["vmsnapshotid"])
