"""The audit log: who did what, when, and how it ended."""
from __future__ import annotations

import logging

from flask import has_request_context, request

from app.extensions import db
from app.models import Event

log = logging.getLogger("nubo.events")


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


def list_events(caller, *, type_=None, level=None, start=None, end=None, keyword=None, resource_id=None,
                page=None):
    """Users see their account's events; admins see all. Newest first."""
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload

    from app.services.pagination import page_of
    q = select(Event).options(joinedload(Event.user), joinedload(Event.account)).order_by(Event.id.desc())
    if not caller.is_admin:
        q = q.where(Event.account_id == caller.account_id)
    if type_:
        q = q.where(Event.type == type_)
    if level:
        q = q.where(Event.level == level.upper())
    if start:
        q = q.where(Event.created >= start)
    if end:
        q = q.where(Event.created <= end)
    if keyword:
        q = q.where(Event.description.contains(keyword, autoescape=True))
    if resource_id:
        q = q.where(Event.resource_id == resource_id)
    return page_of(q, page)
