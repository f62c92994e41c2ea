"""The browser console.

- POST /vms/<uuid>/console (CSRF) — a VNC VM: a fresh token and the console page
  (noVNC through the console proxy); a Hyper-V VM: its VMConnect .rdp file. The
  token is in the page only: never in a URL, a cookie or a log.
- GET /console/ — the page an API client's createConsoleEndpoint url opens (the
  token travels in the URL's fragment, which browsers never send to the server).
- /admin/consoles — active console sessions; an admin can end one.
"""
from __future__ import annotations

import secrets
from urllib.parse import quote

from flask import Blueprint, abort, current_app, flash, make_response, redirect, render_template, request, session, \
    url_for
from flask_login import current_user, login_required

from app.services import consoles, settings
from app.services.units import duration
from app.services.errors import NotFound, ServiceError
from app.web import admin_required
from app.web.forms import EmptyForm

bp = Blueprint("console", __name__)


def attachment(filename: str) -> str:
    """Content-Disposition for a download whose name may hold any character (a VM made
    before names were ASCII-only, a display name): an ASCII fallback plus RFC 6266's
    filename* in UTF-8, so no name can break the header or answer 500."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _private(response):
    """The console page holds a live token: never cached, never sent on as a referrer."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _page(**context):
    return _private(make_response(render_template("console/vnc.html", window=settings.get("console.reconnect.window"),
                                                  **context)))


@bp.route("/vms/<uuid>/console", methods=["POST"])
@login_required
def open_console(uuid: str):
    if not EmptyForm().validate_on_submit():
        abort(400)
    sid = session.setdefault(consoles.SESSION_KEY, secrets.token_urlsafe(24))
    try:
        opened = consoles.open_console(current_user, uuid, browser_session=sid, client_address=request.remote_addr)
    except NotFound:
        abort(404)
    except ServiceError as e:
        flash(e.message, "error")
        return redirect(url_for("vms.detail", uuid=uuid))
    if opened.rdp:
        name, text = opened.rdp
        response = make_response(text)
        response.headers["Content-Type"] = "application/x-rdp; charset=utf-8"
        response.headers["Content-Disposition"] = attachment(name)
        return _private(response)
    if opened.direct:
        return _page(vm=opened.vm, direct=opened.direct)
    return _page(vm=opened.vm, url=opened.url)


@bp.route("/console/")
def view():
    """For createConsoleEndpoint's url: the token is in the fragment (#token=...)."""
    return _page(vm=None, base=current_app.config["CONSOLE_PUBLIC_URL"])


@bp.route("/admin/consoles")
@admin_required
def sessions():
    return render_template("console/sessions.html", **_sessions())


def _sessions(**context) -> dict:
    rows, total = consoles.list_sessions(current_user, page=(1, 200))
    return dict(rows=rows, total=total, **context)


@bp.route("/admin/consoles/<uuid>/end", methods=["POST"])
@admin_required
def end(uuid: str):
    """Plain POST: back to the list (+ flash); HTMX: the list's card with the outcome."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    outcome = {"message": "The console session is ended: the proxy closes it within "
                          f"{duration(current_app.config['CONSOLE_CHECK_SECONDS'])}."}
    try:
        consoles.end_session(current_user, uuid)
    except NotFound:
        abort(404)
    except ServiceError as e:
        outcome = {"error": e.message}
    if request.htmx:
        return render_template("console/_sessions.html", **_sessions(**outcome)), 422 if "error" in outcome else 200
    flash(outcome.get("message") or outcome["error"], "success" if "message" in outcome else "error")
    return redirect(url_for(".sessions"))


@bp.app_template_global()
def console_unavailable(vm) -> str | None:
    """Why the VM page's Console button is disabled (None: it works)."""
    return consoles.unavailable(vm)
