"""The audit log: who did what, when, and how it ended."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import NamedTuple

from flask import g, has_app_context, has_request_context, request
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Event, EventBucket, utcnow
from app.services import settings
from app.services.settings import Definition, define
from app.services.units import duration

log = logging.getLogger("nubo.events")

define(Definition("event.unauthenticated.window", "60", "Events caused by unauthenticated requests (failed "
                  "logins, refused console connections) are aggregated per kind and source address over "
                  "windows of this many seconds (see event.unauthenticated.burst).", category="Security",
                  type="integer", min=1, max=86400, unit="seconds"))
define(Definition("event.unauthenticated.burst", "5", "Events of one kind and source address recorded "
                  "one by one per window before the rest are aggregated into one.", category="Security",
                  type="integer", min=0, max=1000))
define(Definition("event.unauthenticated.max.sources", "100", "Source addresses that get their own "
                  "aggregated event per kind and window; the rest share one event (source *).",
                  category="Security", type="integer", min=1, max=100000))


def record(type: str, description: str, *, user=None, account_id: int | None = None,
           level: str = "INFO", resource_type: str | None = None, resource_id: str | None = None,
           source_address: str | None = None, commit: bool = False) -> Event:
    """Add an event to the session (committed with the caller's transaction unless commit)."""
    if source_address is None and has_request_context():
        source_address = request.remote_addr
    ev = Event(type=type, description=description, level=level,
               user_id=getattr(user, "id", None),
               account_id=account_id if account_id is not None else getattr(user, "account_id", None),
               resource_type=resource_type, resource_id=resource_id, source_address=source_address)
    db.session.add(ev)
    log.log(logging.WARNING if level != "INFO" else logging.INFO, "%s %s (user=%s from %s)",
            type, description, getattr(user, "username", None), source_address)
    if commit:
        db.session.commit()
    return ev


def actor():
    """Who is acting now: the caller of the job being run or of the API call being answered
    (flask.g.caller), else the logged-in user of a page request; None for the system (the
    monitor, the sweepers). CloudStack's event: userid is who acted, accountid whose
    resource it is — callers pass the owner's account_id beside it."""
    if has_app_context() and g.get("caller") is not None:
        return g.caller
    if has_request_context():
        from flask_login import current_user
        if getattr(current_user, "is_authenticated", False):
            return current_user._get_current_object()
    return None


def _window_start(now: datetime, seconds: int) -> datetime:
    epoch = datetime(2000, 1, 1)
    return epoch + timedelta(seconds=(int((now - epoch).total_seconds()) // seconds) * seconds)


def record_unauthenticated(type: str, description: str, *, source_address: str | None = None,
                           level: str = "WARN") -> None:
    """An event caused by an unauthenticated request, with bounded rows: per window
    of `event.unauthenticated.window` seconds and (type, source), the first
    `event.unauthenticated.burst` are recorded one by one, the rest as one event
    whose description carries the count (the last one's text). At most
    `event.unauthenticated.max.sources` sources get their own; the others share
    source "*". The count is an atomic UPDATE of the window's bucket. Commits."""
    if source_address is None and has_request_context():
        source_address = request.remote_addr
    source = (source_address or "unknown")[:64]
    seconds = settings.get("event.unauthenticated.window")
    burst = settings.get("event.unauthenticated.burst")
    now = utcnow()
    start = _window_start(now, seconds)
    for _ in range(20):  # a lost insert race is retried as an update
        bucket_id = db.session.scalar(select(EventBucket.id).where(
            EventBucket.kind == type, EventBucket.source == source, EventBucket.window_start == start))
        if bucket_id is None and source != "*":
            used = db.session.scalar(select(func.count()).select_from(EventBucket).where(
                EventBucket.kind == type, EventBucket.window_start == start))
            if used >= settings.get("event.unauthenticated.max.sources"):
                source = "*"
                continue
        try:
            if bucket_id is None:
                db.session.add(EventBucket(kind=type, source=source, window_start=start, count=1))
                # Old buckets are only bookkeeping (their events stay): forget them after a day.
                db.session.execute(delete(EventBucket).where(EventBucket.window_start < now - timedelta(days=1)))
                count, event_id = 1, None
            else:
                db.session.execute(update(EventBucket).where(EventBucket.id == bucket_id)
                                   .values(count=EventBucket.count + 1))
                count, event_id = db.session.execute(select(EventBucket.count, EventBucket.event_id)
                                                     .where(EventBucket.id == bucket_id)).one()
            shown_source = None if source == "*" else source
            if count <= burst:  # one by one, as an authenticated action's event
                db.session.add(Event(type=type, description=description, level=level,
                                     source_address=(source_address or "")[:64] or None))
            elif event_id is None:  # the first past the burst: the window's aggregate event
                ev = Event(type=type, level=level, source_address=shown_source,
                           description=_aggregate_text(description, count, source, start, seconds))
                db.session.add(ev)
                db.session.flush()
                db.session.execute(update(EventBucket).where(EventBucket.id == bucket_id).values(event_id=ev.id))
            else:
                db.session.execute(update(Event).where(Event.id == event_id).values(
                    description=_aggregate_text(description, count, source, start, seconds)))
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            continue
        if count <= burst or count & (count - 1) == 0:  # the log gets powers of two, not the flood
            log.warning("%s %s (from %s; %d in this window)", type, description, source_address, count)
        return
    db.session.rollback()
    log.warning("%s %s (from %s; not recorded: contention)", type, description, source)


def _aggregate_text(description: str, count: int, source: str, start: datetime, seconds: int) -> str:
    where = "from other addresses" if source == "*" else f"from {source}"
    return f"{description} [{count} times {where} in the {duration(seconds)} from {start:%Y-%m-%d %H:%M:%S} UTC; the last shown]"


def _conditions(caller, *, type_=None, level=None, start=None, end=None, keyword=None, resource_id=None) -> list:
    """Users see their account's events; admins see all (access.owned)."""
    from app.services import access
    conditions = [access.owned(caller, Event.account_id)]
    if type_:
        conditions.append(Event.type == type_)
    if level:
        conditions.append(Event.level == level.upper())
    if start:
        conditions.append(Event.created >= start)
    if end:
        conditions.append(Event.created <= end)
    if keyword:
        conditions.append(Event.description.contains(keyword, autoescape=True))
    if resource_id:
        conditions.append(Event.resource_id == resource_id)
    return conditions


def list_events(caller, *, page=None, **filters):
    """Events as objects (the portal's pages), newest first; filters: _conditions'."""
    from sqlalchemy.orm import joinedload, lazyload, load_only

    from app.models import User
    from app.services.pagination import page_of
    # The user's name only: without lazyload, the user's own account, role and domain were
    # joined too (User.account is lazy="joined"), 8 tables for each page of events.
    q = select(Event).options(joinedload(Event.user).options(load_only(User.username), lazyload(User.account)),
                              joinedload(Event.account)).order_by(Event.id.desc())
    return page_of(q.where(*_conditions(caller, **filters)), page)


class EventView(NamedTuple):
    """An event as listEvents answers it (serializers.event reads it like an Event)."""
    uuid: str
    type: str
    level: str
    state: str
    description: str
    created: datetime
    resource_type: str | None
    resource_id: str | None
    username: str | None
    account: object | None  # vm_views.AccountRef


def event_views(caller, *, page=None, **filters) -> tuple[list[EventView], int]:
    """listEvents: the same events as list_events, as rows (no objects: a page of 50 cost 27
    million instructions as objects). A page is found by its ids (page_ids), then read with its
    users' names and owners in one statement."""
    from app.models import User
    from app.services.pagination import page_ids
    from app.services.vm_views import OWNER, AccountRef, with_owner
    conditions = _conditions(caller, **filters)
    newest_first = Event.id.desc()
    rows = with_owner(select(Event.uuid, Event.type, Event.level, Event.state, Event.description, Event.created,
                             Event.resource_type, Event.resource_id, User.username, *OWNER)
                      .select_from(Event).outerjoin(User, User.id == Event.user_id),
                      Event.account_id, outer=True).order_by(newest_first)
    if page is None:
        found = db.session.connection().execute(rows.where(*conditions)).all()
        total = len(found)
    else:
        ids, total = page_ids(select(Event).where(*conditions).order_by(newest_first), page)
        found = db.session.connection().execute(rows.where(Event.id.in_(ids))).all() if ids else []
    owners: dict[str, AccountRef] = {}  # one per account on the page (r[10]: its uuid, None: no account)
    return [EventView(*r[:9], None if r[10] is None else owners.get(r[10]) or owners.setdefault(
        r[10], AccountRef(*r[9:]))) for r in found], total
