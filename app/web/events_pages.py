"""/events: the audit log. Users see their account's events, admins everyone's; both can
filter by type and level and search the descriptions (the list helper of app/web/listing.py)."""
from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required
from sqlalchemy import select

from app.extensions import db
from app.models import Event
from app.services import events
from app.web.listing import FilterSelect, listing, wants_fragment

bp = Blueprint("events", __name__, url_prefix="/events")
LEVELS = [("INFO", "INFO"), ("WARN", "WARN"), ("ERROR", "ERROR")]


def _fetch(*, keyword, sort, page, type_, level):  # noqa: ARG001 - one order: newest first
    return events.list_events(current_user, type_=type_, level=level, keyword=keyword, page=page)


def _types() -> list[tuple[str, str]]:
    """The event types the caller has events of (one query)."""
    q = select(Event.type).distinct().order_by(Event.type)
    from app.services import access
    q = q.where(access.owned(current_user, Event.account_id))
    return [(t, t) for t in db.session.scalars(q)]


@bp.route("/")
@login_required
def index():
    lst = listing("events.index", "events", _fetch, sorts=(), default_sort="",
                  filters={"type": "type_", "level": "level"})
    if wants_fragment():
        return render_template("events/_list.html", lst=lst), {"HX-Push-Url": lst.url()}
    selects = [FilterSelect("type", "Type", _types()), FilterSelect("level", "Level", LEVELS)]
    return render_template("events/index.html", lst=lst, selects=selects)
