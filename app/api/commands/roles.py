"""Dynamic roles and their rules (CloudStack 4.9+ acl commands)."""
from __future__ import annotations

from app.api.registry import ADMIN, Param, command
from app.services import roles

ADMINS = ("Admin", "ResourceAdmin", "DomainAdmin")


@command("listRoles", "Lists dynamic roles in CloudStack", response="role", list=True, authorized=ADMINS, params=[
    Param("name", "string", "List role by role name."), Param("type", "string", "List role by role type"),
    Param("state", "string", "List role by state (Enabled, Disabled)")])
def list_roles(ctx, p):
    return roles.list_roles(ctx.user, id=p.get("id"), name=p.get("name"), type=p.get("type"),
                            keyword=p.get("keyword"), page=ctx.page)


@command("createRole", "Creates a role", role=ADMIN, response="role", params=[
    Param("name", "string", "Creates a role with this unique name", required=True),
    Param("type", "string", "The type of the role, valid options are: Admin, ResourceAdmin, DomainAdmin, User"),
    Param("roleid", "uuid", "ID of the role to be cloned from. Either roleid or type must be passed in"),
    Param("description", "string", "The description of the role"),
    Param("ispublic", "boolean", "Indicates whether the role will be visible to all users (accepted; always true)")])
def create_role(ctx, p):
    return roles.create_role(ctx.user, name=p["name"], type=p.get("type"), roleid=p.get("roleid"),
                             description=p.get("description"))


@command("updateRole", "Updates a role", role=ADMIN, response="role", params=[
    Param("id", "uuid", "ID of the role", required=True),
    Param("name", "string", "creates a role with this unique name"),
    Param("type", "string", "The type of the role, valid options are: Admin, ResourceAdmin, DomainAdmin, User"),
    Param("description", "string", "The description of the role"),
    Param("ispublic", "boolean", "accepted; roles are always public")])
def update_role(ctx, p):
    return roles.update_role(ctx.user, roles.get_role(ctx.user, p["id"]), name=p.get("name"),
                             type=p.get("type"), description=p.get("description"))


@command("deleteRole", "Deletes a role", role=ADMIN, params=[Param("id", "uuid", "ID of the role", required=True)])
def delete_role(ctx, p):
    roles.delete_role(ctx.user, roles.get_role(ctx.user, p["id"]))
    return {"success": True}


@command("listRolePermissions", "Lists role permissions", role=ADMIN, response="rolepermission", list=True, params=[
    Param("roleid", "uuid", "ID of the role")])
def list_role_permissions(ctx, p):
    role = roles.get_role(ctx.user, p["roleid"], field="roleid") if p.get("roleid") else None
    rows = roles.list_permissions(ctx.user, role)
    return rows, len(rows)


@command("createRolePermission", "Adds an API permission to a role", role=ADMIN, response="rolepermission", params=[
    Param("roleid", "uuid", "ID of the role", required=True),
    Param("rule", "string", "The API name or wildcard rule such as list*", required=True),
    Param("permission", "string", "The rule permission, allow or deny. Default: deny.", required=True),
    Param("description", "string", "The description of the role permission")])
def create_role_permission(ctx, p):
    return roles.create_permission(ctx.user, roles.get_role(ctx.user, p["roleid"], field="roleid"),
                                   rule=p["rule"], permission=p["permission"], description=p.get("description"))


@command("updateRolePermission", "Updates a role permission order", role=ADMIN, params=[
    Param("roleid", "uuid", "ID of the role", required=True),
    Param("ruleorder", "list", "The parent role permission uuid, use 0 to move this rule at the top of the list",
          item_type="uuid"),
    Param("ruleid", "uuid", "Role permission rule id"),
    Param("permission", "string", "Rule permission, can be: allow or deny")])
def update_role_permission(ctx, p):
    roles.update_permission(ctx.user, roles.get_role(ctx.user, p["roleid"], field="roleid"),
                            order=p.get("ruleorder"), ruleid=p.get("ruleid"), permission=p.get("permission"))
    return {"success": True}


@command("deleteRolePermission", "Deletes a role permission", role=ADMIN, params=[
    Param("id", "uuid", "ID of the role permission", required=True)])
def delete_role_permission(ctx, p):
    roles.delete_permission(ctx.user, roles.get_permission(ctx.user, p["id"]))
    return {"success": True}
