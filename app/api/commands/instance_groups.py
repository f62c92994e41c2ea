"""Instance groups: createInstanceGroup, listInstanceGroups, updateInstanceGroup, deleteInstanceGroup."""
from __future__ import annotations

from app.api.registry import Param, command
from app.services import instance_groups


def owner(p) -> dict:
    """The owner a create names: account (+ domainid) or projectid (access.owner_for)."""
    return {"account": p.get("account"), "domainid": p.get("domainid"), "projectid": p.get("projectid")}

OWNER = [Param("account", "string", "the account (administrators; default: the caller's)"),
         Param("domainid", "uuid", "the account's domain"), Param("projectid", "uuid", "the project")]


@command("createInstanceGroup", "Creates a VM group", response="instancegroup", params=[
    Param("name", "string", "the name of the instance group", required=True), *OWNER])
def create(ctx, p):
    return instance_groups.create(ctx.user, p["name"], **owner(p))


@command("listInstanceGroups", "Lists VM groups", response="instancegroup", list=True, params=[
    Param("name", "string", "list instance groups by name")])
def list_groups(ctx, p):
    return instance_groups.list_groups(ctx.user, id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"),
                                       account=p.get("account"), domainid=p.get("domainid"), page=ctx.page)


@command("updateInstanceGroup", "Updates a VM group", response="instancegroup", params=[
    Param("id", "uuid", "Instance group ID", required=True), Param("name", "string", "new instance group name")])
def update(ctx, p):
    return instance_groups.update_group(ctx.user, p["id"], p.get("name"))


@command("deleteInstanceGroup", "Deletes a VM group (its VMs stay, in no group)", params=[
    Param("id", "uuid", "the ID of the instance group", required=True)])
def delete(ctx, p):
    instance_groups.delete(ctx.user, p["id"])
    return {"success": True}
