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
