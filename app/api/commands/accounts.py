"""Users, accounts and API keys."""
from __future__ import annotations

from app.api import serializers
from app.api.registry import DOMAIN_ADMIN, Param, command
from app.api.serializers import serialize
from app.extensions import db
from app.jobs import service as jobs
from app.services import account_deletion, accounts, limits


@command("listUsers", "Lists user accounts", response="user", list=True, params=[
    Param("username", "string", "List user by the username"),
    Param("accounttype", "integer", "List users by account type (0 user, 1 root admin, 2 domain admin)"),
    Param("state", "string", "List users by state (enabled, disabled)")])
def list_users(ctx, p):
    return accounts.list_users(ctx.user, id=p.get("id"), username=p.get("username"),
                               account=p.get("account"), state=p.get("state"),
                               keyword=p.get("keyword"), listall=p.get("listall", False),
                               domainid=p.get("domainid"), isrecursive=p.get("isrecursive", False),
                               accounttype=p.get("accounttype"), page=ctx.page)


@command("listAccounts", "Lists accounts, with their resource usage and limits", response="account", list=True,
         params=[Param("name", "string", "List account by account name"),
                 Param("accounttype", "integer", "List accounts by account type"),
                 Param("state", "string", "List accounts by state"),
                 Param("details", "list", "accepted (all details are returned)")])
def list_accounts(ctx, p):
    rows, total = accounts.list_accounts(ctx.user, id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"),
                                         domainid=p.get("domainid"), isrecursive=p.get("isrecursive", False),
                                         listall=p.get("listall", False), accounttype=p.get("accounttype"),
                                         state=p.get("state"), page=ctx.page)
    totals = limits.account_totals(rows)  # vmtotal, vmlimit, ... for the whole page at once
    return [serializers.account(a, totals[a.id]) for a in rows], total


@command("createAccount", "Creates an account with its first user", role=DOMAIN_ADMIN, response="account", params=[
    Param("username", "string", "the user's name (unique)", required=True),
    Param("password", "string", "the user's password", required=True),
    Param("email", "string", "email", required=True),
    Param("firstname", "string", "first name", required=True),
    Param("lastname", "string", "last name", required=True),
    Param("account", "string", "the account's name (default: the user name)"),
    Param("accounttype", "integer", "0 user, 1 root admin, 2 domain admin (default: from roleid, else 0)"),
    Param("roleid", "uuid", "Creates the account under the specified role."),
    Param("domainid", "uuid", "the domain (default: the caller's)"),
    Param("networkdomain", "string", "Network domain for the account's networks"),
    Param("timezone", "string", "accepted and ignored")])
def create_account(ctx, p):
    return accounts.create_account_with_user(
        ctx.user, username=p["username"], password=p["password"], account=p.get("account"),
        accounttype=p.get("accounttype"), role_uuid=p.get("roleid"), domainid=p.get("domainid"),
        network_domain=p.get("networkdomain"), email=p.get("email"), firstname=p.get("firstname"),
        lastname=p.get("lastname"))


@command("createUser", "Creates a user in an existing account", role=DOMAIN_ADMIN, response="user", params=[
    Param("username", "string", "the user's name (unique)", required=True),
    Param("password", "string", "the user's password", required=True),
    Param("account", "string", "the account to add the user to", required=True),
    Param("email", "string", "email", required=True),
    Param("firstname", "string", "first name", required=True),
    Param("lastname", "string", "last name", required=True),
    Param("domainid", "uuid", "the account's domain (default: the caller's)"),
    Param("timezone", "string", "accepted and ignored")])
def create_user(ctx, p):
    return accounts.create_user_in(ctx.user, p["username"], p["password"], account=p["account"],
                                   domainid=p.get("domainid"), email=p.get("email"),
                                   firstname=p.get("firstname"), lastname=p.get("lastname"))


@command("disableUser", "Disables a user (async, as in CloudStack)", role=DOMAIN_ADMIN, response="user",
         is_async=True, params=[Param("id", "uuid", "the user", required=True)])
def disable_user(ctx, p):
    user = accounts.manageable_user(ctx.user, p["id"])
    return jobs.submit("org.apache.cloudstack.api.command.admin.user.DisableUserCmd", ctx.user,
                       "user.disable", {"id": user.uuid}, instance_type="User", instance_id=user.uuid)


@jobs.handler("user.disable")
def _disable_job(job, params):
    user = accounts.user_by_uuid(params["id"])
    caller = accounts.user_by_id(job.user_id)
    return {"user": serialize("user", accounts.set_user_state(user, enabled=False, caller=caller))}


@command("enableUser", "Enables a user", role=DOMAIN_ADMIN, response="user",
         params=[Param("id", "uuid", "the user", required=True)])
def enable_user(ctx, p):
    return accounts.set_user_state(accounts.manageable_user(ctx.user, p["id"]), enabled=True, caller=ctx.user)


@command("lockUser", "Locks a user account", role=DOMAIN_ADMIN, response="user",
         params=[Param("id", "uuid", "Locks user by user ID.", required=True)])
def lock_user(ctx, p):
    return accounts.lock_user(ctx.user, accounts.manageable_user(ctx.user, p["id"]))


@command("deleteUser", "Deletes a user", role=DOMAIN_ADMIN, params=[Param("id", "uuid", "the user", required=True)])
def delete_user(ctx, p):
    accounts.delete_user(ctx.user, accounts.manageable_user(ctx.user, p["id"]))
    return {"success": True}


@command("registerUserKeys", "Generates a new API key and secret key for a user", response="userkeys",
         params=[Param("id", "uuid", "the user", required=True)], changes_state=True)
def register_user_keys(ctx, p):
    api_key, secret = accounts.register_keys(accounts.visible_user(ctx.user, p["id"]), caller=ctx.user)
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
    return accounts.update_user(ctx.user, accounts.manageable_user(ctx.user, p["id"]), username=p.get("username"),
                                firstname=p.get("firstname"), lastname=p.get("lastname"), email=p.get("email"),
                                password=p.get("password"), current_password=p.get("currentpassword"))


ACCOUNT_REF = [Param("id", "uuid", "Account id"),
               Param("account", "string", "the account's name (with domainid)"),
               Param("domainid", "uuid", "the domain of the account")]


def _account(ctx, p):
    return accounts.manageable_account(ctx.user, id=p.get("id"), name=p.get("account"), domainid=p.get("domainid"))


@command("updateAccount", "Updates account information for the authenticated user", role=DOMAIN_ADMIN,
         response="account", params=[
             *ACCOUNT_REF, Param("newname", "string", "new name for the account"),
             Param("networkdomain", "string", "Network domain for the account's networks"),
             Param("roleid", "uuid", "The UUID of the dynamic role to set for the account"),
             Param("details", "map", "Details for the account (accepted and ignored)")])
def update_account(ctx, p):
    return accounts.update_account(ctx.user, _account(ctx, p), newname=p.get("newname"),
                                   network_domain=p.get("networkdomain"), role_uuid=p.get("roleid"))


@command("disableAccount", "Disables an account", role=DOMAIN_ADMIN, response="account", is_async=True, params=[
    *ACCOUNT_REF, Param("lock", "boolean", "If true, only lock the account; else disable the account",
                        required=True)])
def disable_account(ctx, p):
    acct = _account(ctx, p)
    accounts.check_disable(ctx.user, acct)
    return jobs.submit("org.apache.cloudstack.api.command.admin.account.DisableAccountCmd", ctx.user,
                       "account.disable", {"id": acct.uuid, "lock": bool(p["lock"])},
                       instance_type="Account", instance_id=acct.uuid)


@jobs.handler("account.disable")
def _disable_account_job(job, params):
    from app.models import User
    caller = db.session.get(User, job.user_id)
    acct = accounts.find_account(caller, id=params["id"])
    done = (accounts.lock_account if params["lock"] else accounts.disable_account)(caller, acct)
    return {"account": jobs.ObjectResult("account", done)}


@command("enableAccount", "Enables an account", role=DOMAIN_ADMIN, response="account", params=ACCOUNT_REF)
def enable_account(ctx, p):
    return accounts.enable_account(ctx.user, _account(ctx, p))


@command("lockAccount", "Locks an account: its users cannot log in", role=DOMAIN_ADMIN, response="account",
         params=[Param("account", "string", "Locks the specified account.", required=True),
                 Param("domainid", "uuid", "Locks the specified account on this domain.", required=True)])
def lock_account(ctx, p):
    return accounts.lock_account(ctx.user, _account(ctx, p))


@command("deleteAccount", "Deletes an account and all its users, VMs, volumes, templates, networks, "
         "addresses, security groups and key pairs", role=DOMAIN_ADMIN, is_async=True,
         params=[Param("id", "uuid", "Account id", required=True)])
def delete_account(ctx, p):
    return account_deletion.start(ctx.user, accounts.manageable_account(ctx.user, id=p["id"]))


@command("moveUser", "Moves a user to another account in the same domain", role=DOMAIN_ADMIN, params=[
    Param("id", "uuid", "id of the user to be moved.", required=True),
    Param("account", "string", "Moves the user under the specified account. If no account name is "
                               "specified, it is necessary to provide an account id."),
    Param("accountid", "uuid", "Moves the user under the specified account. If no account id is "
                               "specified, it is necessary to provide an account name.")])
def move_user(ctx, p):
    if not p.get("account") and not p.get("accountid"):
        from app.services.errors import InvalidParameter
        raise InvalidParameter("Please specify either account or accountid", field="account")
    user = accounts.manageable_user(ctx.user, p["id"])
    # CloudStack: the same domain as the user's (by name: the user's domain).
    target = accounts.manageable_account(ctx.user, id=p.get("accountid"), name=p.get("account"),
                                         domainid=None if p.get("accountid") else user.account.domain.uuid)
    accounts.move_user(ctx.user, user, target)
    return {"success": True}

