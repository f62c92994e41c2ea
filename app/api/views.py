"""/client/api: parse, authenticate, validate, dispatch, answer in CloudStack's shapes."""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import orjson
from flask import Blueprint, Response, g, request, session

from app import engine
from app.api import ratelimit, signing
from app.api.params import validate
from app.api.registry import NOT_SCOPE, Command, lookup
from app.api.serializers import clean, prefetched, serialize
from app.extensions import csrf, db
from app.models import AsyncJob, User
from app.services import access, accounts, callers, roles, sessions, settings
from app.services.callers import Caller
from app.services.errors import InvalidParameter, ServiceError
from app.services.settings import Definition, define

log = logging.getLogger("nubo.api")
bp = Blueprint("api", __name__)

define(Definition("enforce.post.requests.and.timestamps", "false",
                  "Signed API requests must carry signatureVersion=3 and an expiry at most 15 minutes "
                  "ahead, and commands that change state must be sent by POST.", category="API",
                  type="boolean"))

MAX_EXPIRY = timedelta(minutes=15)
AUTH_FAILED = "unable to verify user credentials and/or request signature"


class ApiError(Exception):
    def __init__(self, code: int, text: str, cs_code: int = 9999):
        self.code, self.text, self.cs_code = code, text, cs_code


@dataclass
class Context:
    user: User | Caller  # an API call's caller is a row (app/services/callers.py)
    command: Command
    page: tuple[int, int] | None = None  # (page, pagesize)
    raw: dict = field(default_factory=dict)
    source: str | None = None
    by_session: bool = False  # authenticated by a login's sessionkey (not by signed keys)

    @property
    def is_admin(self) -> bool:
        return self.user.is_admin


def _params() -> dict[str, str]:
    """Query string and form body merged; for a repeated name the first value wins."""
    out: dict[str, str] = {}
    for source in (request.args, request.form):
        for key in source.keys():
            out.setdefault(key, source.getlist(key)[0])
    return out


def _answer(cmd_name: str, body: dict, status: int = 200) -> Response:
    # orjson: a 20-VM listVirtualMachines answer encodes in ~0.02 ms instead of ~0.14 ms with
    # json.dumps; UTF-8 as json.dumps(ensure_ascii=False) gave, keys that are not strings
    # (an id) turned into strings as json.dumps did.
    payload = {f"{cmd_name.lower()}response": body}
    return Response(orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS), status=status,
                    content_type="application/json; charset=UTF-8")


def _header_safe(text: str) -> str:
    """A message fit for a header value: one line, Latin-1, bounded."""
    line = " ".join(str(text or "").split())
    return line.encode("latin-1", "replace").decode("latin-1")[:1024]


def _error(cmd_name: str, code: int, text: str, cs_code: int = 9999) -> Response:
    resp = _answer(cmd_name or "error", {"uuidList": [], "errorcode": code, "cserrorcode": cs_code,
                                         "errortext": text}, status=code)
    # CloudStack's ApiServlet sets X-Description to the error's text; CloudMonkey prints
    # "Error <code>: <X-Description>" from it.
    resp.headers["X-Description"] = _header_safe(text)
    return resp


def _parse_expires(value: str) -> datetime:
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            pass
    raise ApiError(401, AUTH_FAILED)


def _authenticate(params: dict[str, str], cmd: Command | None) -> Caller:
    api_key = params.get("apiKey") or params.get("apikey")
    if api_key:
        user = callers.by_api_key(api_key)  # a row; the User itself only if a command asks
        signature = params.get("signature", "")
        enforce = settings.get("enforce.post.requests.and.timestamps")
        if user is None or not signature:
            raise ApiError(401, AUTH_FAILED)
        version = params.get("signatureVersion")
        expires = params.get("expires")
        if version == "3" or enforce:
            if not expires or (enforce and version != "3"):
                raise ApiError(401, AUTH_FAILED)
            when = _parse_expires(expires)
            now = datetime.now(timezone.utc)
            if when <= now or (enforce and when - now > MAX_EXPIRY):
                raise ApiError(401, AUTH_FAILED)
        keys = accounts.get_keys(user)
        if keys is None or not signing.verify(params, keys[1], signature):
            raise ApiError(401, AUTH_FAILED)
        if enforce and cmd is not None and cmd.changes_state and request.method != "POST":
            raise ApiError(405, f"Command {cmd.name} must be sent by POST")
    else:
        # Session login: the cookie alone never authorises (no CSRF hole); the
        # sessionkey it was issued with must come along.
        key = params.get("sessionkey") or request.headers.get("sessionkey")
        stored = session.get("api_sessionkey")
        uid = session.get("api_user")
        if not key or not stored or not secrets.compare_digest(key, stored) or not uid:
            raise ApiError(401, AUTH_FAILED)
        user = sessions.load_caller(session, uid)
        if user is None:  # logged out, password changed, expired
            raise ApiError(401, AUTH_FAILED)
    if not user.is_active:
        raise ApiError(401, AUTH_FAILED)
    return user


def _paging(cmd: Command, p: dict) -> tuple[int, int] | None:
    if not cmd.list:
        return None
    page, size = p.get("page"), p.get("pagesize")
    if page is not None and page < 1:
        raise InvalidParameter("page must be 1 or more", field="page")
    if size is not None and not 1 <= size <= 5000:
        raise InvalidParameter("pagesize must be between 1 and 5000", field="pagesize")
    if page is None and size is None:
        return None
    return (page or 1, size or 500)


_BARE = {"success", "displaytext", "details"}


def _render(cmd: Command, result) -> dict:
    if cmd.is_async:
        job: AsyncJob = result
        body = {"jobid": job.uuid}
        if cmd.async_returns_id and job.instance_id:
            body["id"] = job.instance_id
        return body
    if cmd.list or cmd.returns_list_of_one:
        if cmd.list:
            rows, total = result
        else:  # one object, or one per zone (registerTemplate)
            rows = result if isinstance(result, list) else [result]
            total = len(rows)
        if not rows:
            return {}
        with prefetched(cmd.response, rows):  # a page's resource tags in one query
            return {"count": total, cmd.response: [serialize(cmd.response, r) for r in rows]}
    if result is None:
        return {"success": True}
    # A bare {"success": true(, "displaytext": ...)} answer stands alone; an object that merely
    # has a success field (createConsoleEndpoint's) is nested under its response name.
    if isinstance(result, dict) and (cmd.response is None or ("success" in result and set(result) <= _BARE)):
        return clean(result)
    return {cmd.response: serialize(cmd.response, result)}


# With and without the trailing slash (httpx-based clients send /client/api/). Every
# method is routed here so that a wrong one gets the API's own error shape.
@bp.route("/client/api", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
@bp.route("/client/api/", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
@csrf.exempt  # authenticated by signature or sessionkey, never by the cookie alone
def api():
    params = _params()
    name = params.get("command", "")
    cmd = lookup(name)
    if cmd is not None:
        g.api_command = cmd.name  # for the per-command latency metric
    if request.method not in ("GET", "POST"):
        return _error(name, 405, "method not allowed")
    try:
        if cmd is not None and cmd.anonymous:
            return _answer(cmd.name, cmd.handler(None, params))
        if cmd is not None and cmd.reads_only:
            engine.read_only(db.session())  # from its first statement, the caller's read
        user = _authenticate(params, cmd)
        if cmd is None:
            # CloudStack answers an unknown command like bad credentials.
            raise ApiError(401, AUTH_FAILED)
        if not roles.allowed(user, cmd):  # the caller's role rules (DynamicRoleBasedAPIAccessChecker)
            raise ApiError(432, roles.denied_text(cmd.name, user.account), 9999)
        if not ratelimit.allow(user.id):
            raise ApiError(429, "There are too many API calls, please try again later", 9999)
        typed = validate(cmd, params)
        g.caller = user  # serializers show admin-only fields (a VM's host) to admins only
        ctx = Context(user=user, command=cmd, page=_paging(cmd, typed), raw=params,
                      source=request.remote_addr, by_session=not (params.get("apiKey") or params.get("apikey")))
        # The request's project (projectid; -1: every project of the caller), for the access layer.
        access.enter_scope(user, None if cmd.lower in NOT_SCOPE else typed.get("projectid"), listing=cmd.list,
                           domainid=typed.get("domainid"))
        result = cmd.handler(ctx, typed)
        return _answer(cmd.name, _render(cmd, result))
    except ApiError as e:
        db.session.rollback()
        return _error(name, e.code, e.text, e.cs_code)
    except ServiceError as e:
        db.session.rollback()
        text = e.message
        if e.code == 530 and not getattr(e, "shown_to_users", False) and not (locals().get("user") and user.is_admin):
            text = "Internal error executing command, please contact your system administrator"
        return _error(name, e.code, text, e.cs_code)
    except Exception:  # noqa: BLE001
        db.session.rollback()
        log.exception("API command %s failed", name)
        is_admin = bool(locals().get("user")) and getattr(locals().get("user"), "is_admin", False)
        return _error(name, 530, "Internal error executing command" + (
            "; see the management server log" if is_admin else ", please contact your system administrator"),
            4250)


def login_session(user: User) -> str:
    key = secrets.token_urlsafe(32)
    session["api_sessionkey"] = key
    session["api_user"] = user.uuid
    sessions.begin(session, user)
    return key
