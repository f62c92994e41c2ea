"""/admin/alerts: open and archived alerts, filtered by type; archive or delete one or many
(a POST form that works without JavaScript; with HTMX the list section is answered). The
navigation's badge (the count of open alerts) is a fragment of its own, so no page pays for it."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app.services import alerts
from app.services.errors import ServiceError
from app.web import admin_required
from app.web.listing import FilterSelect, listing, wants_fragment

bp = Blueprint("alerts", __name__, url_prefix="/admin/alerts")
VIEWS = [("open", "Open"), ("archived", "Archived")]


def _fetch(*, keyword, sort, page, type_, view):  # noqa: ARG001 - one order: newest first
    return alerts.list_alerts(type=type_, keyword=keyword, archived={"open": False, "archived": True}.get(view),
                              page=page)


def _types() -> list[tuple[str, str]]:
    seen: dict[int, str] = {}
    for t in alerts.ALERT_TYPES:
        seen.setdefault(t.id, t.name)
    return [(str(i), f"{name} ({i})") for i, name in sorted(seen.items())]


def _listing():
    return listing("alerts.index", "alerts", _fetch, sorts=(), default_sort="",
                   filters={"type": "type_", "view": "view"})


@bp.route("/")
@admin_required
def index():
    lst = _listing()
    shown = {k: v for k, v in request.args.items() if k in ("view", "type", "q", "page") and v}
    if wants_fragment():
        return render_template("alerts/_list.html", lst=lst, shown=shown), {"HX-Push-Url": lst.url()}
    selects = [FilterSelect("view", "Show", VIEWS), FilterSelect("type", "Type", _types())]
    return render_template("alerts/index.html", lst=lst, selects=selects, shown=shown)


@bp.route("/act", methods=["POST"])
@admin_required
def act():
    """Archive or delete the alerts ticked (or the one whose row button was pressed)."""
    action = request.args.get("action") or request.form.get("action")
    ids = [request.args["alert"]] if request.args.get("alert") else request.form.getlist("ids")
    message, category = None, "success"
    if action not in ("archive", "delete"):
        message, category = "Choose Archive or Delete.", "error"
    elif not ids:
        message, category = "Tick the alerts to act on first.", "error"
    else:
        try:
            n = (alerts.archive if action == "archive" else alerts.delete_alerts)(current_user, ids=ids)
            message = f"{n} alert{'s' if n != 1 else ''} {'archived' if action == 'archive' else 'deleted'}."
        except ServiceError as e:
            message, category = e.message, "error"
    # The form posts to this URL with the list's filters in its query string: the answer is that list.
    shown = {k: v for k, v in request.args.items() if k in ("view", "type", "q", "page") and v}
    if wants_fragment():
        return render_template("alerts/_list.html", lst=_listing(), message=message, category=category,
                               shown=shown), 422 if category == "error" else 200, {"HX-Trigger": "alerts-changed"}
    flash(message, category)
    return redirect(url_for("alerts.index", **shown))


@bp.route("/badge")
@admin_required
def badge():
    """The badge's fragment (HTMX); opened as a page, the open alerts themselves."""
    if not wants_fragment():
        return redirect(url_for("alerts.index", view="open"))
    return render_template("_partials/alert_badge.html", open_alerts=alerts.open_count(), fragment=True)
