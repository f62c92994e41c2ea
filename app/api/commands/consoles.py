"""Consoles: createConsoleEndpoint (CloudStack 4.18's shape) and listConsoleSessions."""
from __future__ import annotations

from flask import url_for

from app.api.registry import Param, command
from app.services import consoles


@command("createConsoleEndpoint", "Creates a console endpoint for a running VM: a single-use websocket token "
         "valid for console.token.ttl seconds", response="consoleendpoint", params=[
             Param("virtualmachineid", "uuid", "the VM", required=True)])
def create_endpoint(ctx, p):
    return consoles.endpoint(ctx.user, p["virtualmachineid"], client_address=ctx.source,
                             page_url=url_for("console.view", _external=True))


@command("listConsoleSessions", "Lists console sessions (admins: all; users: their own)", response="consolesession",
         list=True, params=[
             Param("vmid", "uuid", "sessions of this VM"),
             Param("activeonly", "boolean", "only sessions connected now (default true)")])
def list_sessions(ctx, p):
    return consoles.list_sessions(ctx.user, active_only=p.get("activeonly", True), vm_uuid=p.get("vmid"),
                                  uuid=p.get("id"), page=ctx.page)
