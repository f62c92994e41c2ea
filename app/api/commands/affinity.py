"""Affinity groups (CloudStack's names; create, delete and updateVMAffinityGroup are async, as there)."""
from __future__ import annotations

from app.api.registry import Param, command
from app.api.serializers import owner_fields, serializer
from app.services import affinity


@serializer("affinitygroup")
def affinitygroup(g, vm_ids: list[str] | None = None) -> dict:
    if vm_ids is None:
        vm_ids = affinity.vm_uuids([g.id])[g.id]
    return {"id": g.uuid, "name": g.name, "description": g.description, "type": g.type,
            **owner_fields(g.account), "virtualmachineIds": vm_ids or None}  # none: left out, as CloudStack


OWNER = [Param("account", "string", "an account for the affinity group. Must be used with domainId."),
         Param("domainid", "uuid", "domainId of the account owning the affinity group"),
         Param("projectid", "uuid", "the project of the affinity group")]


@command("createAffinityGroup", "Creates an affinity/anti-affinity group", is_async=True, response="affinitygroup",
         async_returns_id=True, params=[
             Param("name", "string", "name of the affinity group", required=True, length=255),
             Param("type", "string", "Type of the affinity group from the available affinity/anti-affinity group "
                   "types", required=True),
             Param("description", "string", "optional description of the affinity group"), *OWNER])
def create_group(ctx, p):
    return affinity.submit_create(ctx.user, name=p["name"], type_=p["type"], description=p.get("description"),
                                  account=p.get("account"), domainid=p.get("domainid"), projectid=p.get("projectid"))


@command("deleteAffinityGroup", "Deletes affinity group", is_async=True, params=[
    Param("id", "uuid", "The ID of the affinity group. Mutually exclusive with name parameter"),
    Param("name", "string", "The name of the affinity group. Mutually exclusive with ID parameter"), *OWNER])
def delete_group(ctx, p):
    return affinity.submit_delete(ctx.user, uuid=p.get("id"), name=p.get("name"), account=p.get("account"),
                                  domainid=p.get("domainid"), projectid=p.get("projectid"))


@command("listAffinityGroups", "Lists affinity groups", response="affinitygroup", list=True, params=[
    Param("name", "string", "lists affinity groups by name"),
    Param("type", "string", "lists affinity groups by type"),
    Param("virtualmachineid", "uuid", "lists affinity groups by virtual machine ID"),
    Param("projectid", "uuid", "list objects by project")])
def list_groups(ctx, p):
    rows, total = affinity.list_groups(ctx.user, id=p.get("id"), name=p.get("name"), type_=p.get("type"),
                                       vm_uuid=p.get("virtualmachineid"), account=p.get("account"),
                                       listall=p.get("listall", False), keyword=p.get("keyword"), page=ctx.page)
    vm_ids = affinity.vm_uuids([g.id for g in rows])
    return [affinitygroup(g, vm_ids[g.id]) for g in rows], total


@command("listAffinityGroupTypes", "Lists affinity group types available", response="affinityGroupType", list=True)
def list_types(ctx, p):
    rows = [{"type": t} for t in affinity.types()]
    return rows, len(rows)


@command("updateVMAffinityGroup", "Updates the affinity/anti-affinity group associations of a virtual machine. "
         "The VM has to be stopped and restarted for the new properties to take effect.", is_async=True,
         response="virtualmachine", params=[
             Param("id", "uuid", "The ID of the virtual machine", required=True),
             Param("affinitygroupids", "list", "comma separated list of affinity groups id that are going to be "
                   "applied to the virtual machine. Mutually exclusive with affinitygroupnames parameter",
                   item_type="uuid", empty_means_none=True),
             Param("affinitygroupnames", "list", "comma separated list of affinity groups names that are going to "
                   "be applied to the virtual machine. Mutually exclusive with affinitygroupids parameter",
                   empty_means_none=True)])
def update_vm(ctx, p):
    return affinity.submit_update_vm(ctx.user, p["id"], p.get("affinitygroupids"), p.get("affinitygroupnames"))
