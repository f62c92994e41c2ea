"""login, logout, listApis, listCapabilities."""
from __future__ import annotations

from flask import session

from app.api.registry import Param, all_commands, command
from app.services import accounts, roles, sessions
from app.services import hypervisors as hv

CLOUDSTACK_VERSION = "4.19.0"  # the API level Nubo follows


@command("login", "Logs a user into the API with a session key", anonymous=True, params=[
    Param("username", "string", "the user name", required=True),
    Param("password", "string", "the password", required=True),
    Param("domain", "string", "the domain path (only ROOT exists)"),
    Param("domainId", "long", "the domain id")])
def login(ctx, raw):
    from app.api.views import ApiError, login_session
    from flask import request
    if request.method != "POST":
        raise ApiError(405, "login must be sent by POST")
    try:
        user = accounts.authenticate(raw.get("username", ""), raw.get("password", ""))
    except accounts.LoginThrottled as e:
        raise ApiError(429, e.message) from None
    if user is None:
        # CloudStack answers a failed login with 531 (ACCOUNT_ERROR), never 401: clients
        # treat 401 as "bad signature" (CloudMonkey then printed the URL, password and all).
        raise ApiError(531, f"Failed to authenticate user {raw.get('username', '')} in domain 1; "
                            "please provide valid credentials")
    key = login_session(user)
    return {"sessionkey": key, "username": user.username, "userid": user.uuid,
            "account": user.account.name, "type": str(user.account.account_type),
            "domainid": user.account.domain.uuid, "timeout": str(sessions.timeout_seconds()),
            "firstname": user.firstname, "lastname": user.lastname}


@command("logout", "Logs out the user", changes_state=False)
def logout(ctx, p):
    # Ends the session that logs out (copies of its sessionkey and cookie too), no other;
    # a call signed with keys has no session and ends nothing (as CloudStack).
    if ctx.by_session:
        sessions.revoke(session, ctx.user)
        session.pop("api_sessionkey", None)
        session.pop("api_user", None)
    return {"description": "success"}


def _api_entry(c) -> dict:
    return {"name": c.name, "description": c.description, "isasync": c.is_async, "since": "4.19.0",
            "related": "", "type": "",
            "params": [{"name": p.name, "type": p.type, "required": p.required,
                        "description": p.description, "length": p.length} for p in c.params],
            "response": [{"name": c.response or "success", "description": f"the {c.response or 'result'}",
                          "type": "list" if c.list else "object"}]}


@command("listApis", "Lists all available APIs and their parameters", response="api", list=True,
         params=[Param("name", "string", "API name")])
def list_apis(ctx, p):
    visible = [c for c in all_commands() if roles.allowed(ctx.user, c)]
    if p.get("name"):
        visible = [c for c in visible if c.name.lower() == p["name"].lower()]
    return [_api_entry(c) for c in visible], len(visible)


@command("listCapabilities", "Lists capabilities", response="capability")
def list_capabilities(ctx, p):
    return {
        "cloudstackversion": CLOUDSTACK_VERSION, "customhypervisordisplayname": hv.display_name(hv.CUSTOM),
        "userpublictemplateenabled": True, "allowusercreateprojects": False, "apilimitinterval": 1,
        "apilimitmax": 25, "kvmsnapshotenabled": True, "securitygroupsenabled": False,
        "supportELB": "false", "dynamicrolesenabled": True, "kubernetesserviceenabled": False,
    }
