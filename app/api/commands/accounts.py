"""Users, accounts and API keys."""
from __future__ import annotations

from app.api import serializers
from app.api.registry import ADMIN, Param, command
from app.api.serializers import DOMAIN_ID, serialize
from app.jobs import service as jobs
from app.services import accounts, limits
from app.services.errors import NotFound


def root_domain(p: dict) -> None:
    """Nubo has one domain, ROOT: a domainid naming any other is not found."""
    if p.get("domainid") and p["domainid"] != DOMAIN_ID:
        raise NotFound("Unable to find domain by the specified id", field="domainid")


@command("listUsers", "Lists user accounts", response="user", list=True, params=[
    Param("username", "string", "List user by the username"),
    Param("state", "string", "List users by state (enabled, disabled)")])
def list_users(ctx, p):
    return accounts.list_users(ctx.user, id=p.get("id"), username=p.get("username"),
                               account=p.get("account"), state=p.get("state"),
                               keyword=p.get("keyword"), listall=p.get("listall", False), page=ctx.page)


@command("listAccounts", "Lists accounts, with their resource usage and limits", response="account", list=True,
         params=[Param("name", "string", "List account by account name")])
def list_accounts(ctx, p):
    root_domain(p)
    rows, total = accounts.list_accounts(ctx.user, id=p.get("id"), name=p.get("name"),
                                         keyword=p.get("keyword"), page=ctx.page)
    totals = limits.account_totals(rows)  # vmtotal, vmlimit, ... for the whole page at once
    return [serializers.account(a, totals[a.id]) for a in rows], total


@command("createAccount", "Creates an account with its first user", role=ADMIN, response="account", params=[
    Param("username", "string", "the user's name (unique)", required=True),
    Param("password", "string", "the user's password", required=True),
    Param("email", "string", "email", required=True),
    Param("firstname", "string", "first name", required=True),
    Param("lastname", "string", "last name", required=True),
    Param("account", "string", "the account's name (default: the user name)"),
    Param("accounttype", "integer", "0 user, 1 root admin"),
    Param("domainid", "uuid", "the domain (only ROOT)")])
def create_account(ctx, p):
    root_domain(p)
    role = "admin" if p.get("accounttype") == 1 else "user"
    name = p.get("account") or p["username"]
    if accounts.get_account(name):
        from app.services.errors import InvalidParameter
        raise InvalidParameter(f"An account named {name} already exists", field="account")
    user = accounts.create_user(p["username"], p["password"], role=role, account=name,
                                email=p.get("email"), firstname=p.get("firstname"), lastname=p.get("lastname"))
    return user.account


@command("createUser", "Creates a user in an existing account", role=ADMIN, response="user", params=[
    Param("username", "string", "the user's name (unique)", required=True),
    Param("password", "string", "the user's password", required=True),
    Param("account", "string", "the account to add the user to", required=True),
    Param("email", "string", "email", required=True),
    Param("firstname", "string", "first name", required=True),
    Param("lastname", "string", "last name", required=True),
    Param("domainid", "uuid", "the domain (only ROOT)")])
def create_user(ctx, p):
    root_domain(p)
    if accounts.get_account(p["account"]) is None:
        raise NotFound(f"Unable to find account {p['account']}", field="account")
    return accounts.create_user(p["username"], p["password"], account=p["account"], email=p.get("email"),
                                firstname=p.get("firstname"), lastname=p.get("lastname"))


@command("disableUser", "Disables a user (async, as in CloudStack)", role=ADMIN, response="user",
         is_async=True, params=[Param("id", "uuid", "the user", required=True)])
def disable_user(ctx, p):
    user = accounts.visible_user(ctx.user, p["id"])
    return jobs.submit("org.apache.cloudstack.api.command.admin.user.DisableUserCmd", ctx.user,
                       "user.disable", {"id": user.uuid}, instance_type="User", instance_id=user.uuid)


@jobs.handler("user.disable")
def _disable_job(job, params):
    user = accounts.user_by_uuid(params["id"])
    return {"user": serialize("user", accounts.set_user_state(user, enabled=False))}


@command("enableUser", "Enables a user", role=ADMIN, response="user",
         params=[Param("id", "uuid", "the user", required=True)])
def enable_user(ctx, p):
    return accounts.set_user_state(accounts.visible_user(ctx.user, p["id"]), enabled=True)


@command("deleteUser", "Deletes a user", role=ADMIN, params=[Param("id", "uuid", "the user", required=True)])
def delete_user(ctx, p):
    accounts.delete_user(ctx.user, accounts.visible_user(ctx.user, p["id"]))
    return {"success": True}


@command("registerUserKeys", "Generates a new API key and secret key for a user", response="userkeys",
         params=[Param("id", "uuid", "the user", required=True)], changes_state=True)
def register_user_keys(ctx, p):
    api_key, secret = accounts.register_keys(accounts.visible_user(ctx.user, p["id"]))
    return {"apikey": api_key, "secretkey": secret}


@command("getUserKeys", "Returns a user's API key and secret key", response="userkeys",
         params=[Param("id", "uuid", "the user", required=True)])
def get_user_keys(ctx, p):
    keys = accounts.get_keys(accounts.visible_user(ctx.user, p["id"]))
    return {"apikey": keys[0], "secretkey": keys[1]} if keys else {}


@command("updateUser", "Updates a user's names, email or password (users: themselves)", response="user", params=[
    Param("id", "uuid", "the user", required=True), Param("username", "string", "new user name (admins)"),
    Param("firstname", "string", "first name"), Param("lastname", "string", "last name"),
    Param("email", "string", "email"), Param("password", "string", "the new password"),
    Param("currentpassword", "string", "the current password (needed to change your own)"),
    Param("timezone", "string", "accepted and ignored")])
def update_user(ctx, p):
    return accounts.update_user(ctx.user, accounts.visible_user(ctx.user, p["id"]), username=p.get("username"),
                                firstname=p.get("firstname"), lastname=p.get("lastname"), email=p.get("email"),
                                password=p.get("password"), current_password=p.get("currentpassword"))


@command("listDomains", "Lists domains: Nubo has one, ROOT", response="domain", list=True, params=[
    Param("name", "string", "the domain's name"), Param("level", "integer", "the domain's level")])
def list_domains(ctx, p):
    root = {"id": DOMAIN_ID, "name": serializers.DOMAIN_NAME, "level": 0, "path": serializers.DOMAIN_NAME,
            "haschild": False, "state": "Active"}
    wanted = (p.get("id") in (None, DOMAIN_ID) and p.get("name") in (None, root["name"])
              and p.get("level") in (None, 0))
    return ([root], 1) if wanted else ([], 0)
