"""User data objects (CloudStack 4.18+): registerUserData, listUserData, deleteUserData."""
from __future__ import annotations

from flask import request

from app.api.commands.instance_groups import owner
from app.api.registry import Param, command
from app.services import userdata

OWNER = [Param("account", "string", "the account (administrators; default: the caller's)"),
         Param("domainid", "uuid", "the account's domain"), Param("projectid", "uuid", "the project")]


@command("registerUserData", "Register a new userdata.", response="userdata", params=[
    Param("name", "string", "Name of the userdata", required=True),
    Param("userdata", "string", "Base64 encoded userdata content (4 KB by GET, up to vm.userdata.max.length by "
          "POST)", required=True, length=1048576),
    Param("params", "string", "comma separated list of variables declared in userdata content"), *OWNER])
def register(ctx, p):
    return userdata.register(ctx.user, p["name"], p["userdata"], params=p.get("params"), **owner(p),
                             http_method=request.method)


@command("listUserData", "List registered userdatas", response="userdata", list=True, params=[
    Param("name", "string", "Name of the userdata")])
def list_userdata(ctx, p):
    return userdata.list_userdata(ctx.user, id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"),
                                  account=p.get("account"), domainid=p.get("domainid"), page=ctx.page)


@command("deleteUserData", "Deletes a userdata", params=[
    Param("id", "uuid", "the ID of the Userdata", required=True), *OWNER])
def delete(ctx, p):
    userdata.delete(ctx.user, p["id"])
    return {"success": True}


@command("linkUserDataToTemplate", "Link or unlink a userdata to a template.", response="template", params=[
    Param("templateid", "uuid", "the ID of the template for the virtual machine"),
    Param("isoid", "uuid", "the ID of the ISO for the virtual machine"),
    Param("userdataid", "uuid", "the ID of the userdata that has to be linked to template/ISO. If not provided "
          "existing userdata will be unlinked from the template/ISO"),
    Param("userdatapolicy", "string", "an optional override policy of the userdata. Possible values are - "
          "ALLOWOVERRIDE, APPEND, DENYOVERRIDE. Default policy is allowoverride")])
def link_to_template(ctx, p):
    return userdata.link_to_template(ctx.user, template_uuid=p.get("templateid"), iso_uuid=p.get("isoid"),
                                     userdata_uuid=p.get("userdataid"), policy=p.get("userdatapolicy"))
