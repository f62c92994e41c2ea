"""Regions (CloudStack's RegionManagerImpl): addRegion, updateRegion, removeRegion (root admins)
and listRegions (everyone). A region is a row with an id the admin chooses, a unique name and
an endpoint (another management server's API). Region 1 is this management server: made at
first start, its endpoint when unset is the address the client used; Nubo refuses to
remove it (CloudStack would remove the row and leave itself without its own region)."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Region
from app.services import access, events
from app.services.errors import InvalidParameter, PermissionDenied

LOCAL_ID = 1
LOCAL_NAME = "Local"  # CloudStack's name for the region of a single management server
MAX_ID = 2**31 - 1  # CloudStack's region.id is an int


def ensure_local() -> None:
    """Region 1, this management server (made on first start; uncommitted)."""
    if db.session.get(Region, LOCAL_ID) is None:
        db.session.add(Region(id=LOCAL_ID, name=LOCAL_NAME, endpoint=None))
        db.session.flush()


def _root(caller) -> None:
    if not access.is_root(caller):  # the API's role rules refuse first; the portal and jobs meet this
        raise PermissionDenied("Only root admins manage regions")


def _id(value) -> int:
    try:
        rid = int(value)
    except (TypeError, ValueError):
        raise InvalidParameter(f"Invalid region id: {value}", field="id") from None
    if not 1 <= rid <= MAX_ID:
        raise InvalidParameter(f"Invalid region id: {value}", field="id")
    return rid


def _text(value, field: str, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise InvalidParameter(f"Unable to execute API command due to missing parameter {field}", field=field)
        return None
    value = str(value).strip()
    if not value or len(value) > 255 or any(ord(c) < 32 for c in value):
        raise InvalidParameter(f"Invalid {field}: it must be 1 to 255 printable characters", field=field)
    return value


def _by_name(name: str) -> Region | None:
    return db.session.scalar(select(Region).where(func.lower(Region.name) == name.lower()))


def list_regions(*, id=None, name: str | None = None, keyword: str | None = None) -> list[Region]:
    """listRegions: by id, else by name, else every region (CloudStack's order of the filters)."""
    if id is not None:
        r = db.session.get(Region, _id(id))
        return [r] if r is not None else []
    if name:
        r = _by_name(name)
        return [r] if r is not None else []
    q = select(Region).order_by(Region.id)
    if keyword:
        q = q.where(func.lower(Region.name).contains(keyword.lower(), autoescape=True))
    return list(db.session.scalars(q))


def add_region(caller, id, name: str, endpoint: str) -> Region:
    _root(caller)
    rid = _id(id)
    name = _text(name, "name", required=True)
    endpoint = _text(endpoint, "endpoint", required=True)
    if db.session.get(Region, rid) is not None:
        raise InvalidParameter(f"Region with id: {rid} already exists", field="id")
    if _by_name(name) is not None:
        raise InvalidParameter(f"Region with name: {name} already exists", field="name")
    region = Region(id=rid, name=name, endpoint=endpoint)
    db.session.add(region)
    return _commit(caller, region, "REGION.ADD", f"Region {rid} ({name}) added",
                   f"Region with id: {rid} or name: {name} already exists")


def update_region(caller, id, name: str | None = None, endpoint: str | None = None) -> Region:
    _root(caller)
    rid = _id(id)
    region = db.session.get(Region, rid)
    if region is None:
        raise InvalidParameter(f"Region with id: {rid} does not exist", field="id")
    name = _text(name, "name", required=False)
    endpoint = _text(endpoint, "endpoint", required=False)
    if name is not None:
        other = _by_name(name)
        if other is not None and other.id != rid:
            raise InvalidParameter(f"Region with name: {name} already exists", field="name")
        region.name = name
    if endpoint is not None:
        region.endpoint = endpoint
    return _commit(caller, region, "REGION.UPDATE", f"Region {rid} updated",
                   f"Region with name: {name} already exists")


def _commit(caller, region: Region, event: str, description: str, taken: str) -> Region:
    """Flush (the same id or name written meanwhile by another request: 431 `taken`), record, commit."""
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise InvalidParameter(taken, field="id") from None
    events.record(event, description, user=caller, resource_type="Region", resource_id=str(region.id))
    db.session.commit()
    return region


def remove_region(caller, id) -> None:
    _root(caller)
    rid = _id(id)
    region = db.session.get(Region, rid)
    if region is None:
        raise InvalidParameter(f"Failed to delete Region: {rid}, Region not found", field="id")
    if rid == LOCAL_ID:
        raise InvalidParameter("Region 1 is this management server's own region and cannot be removed", field="id")
    db.session.delete(region)
    events.record("REGION.DELETE", f"Region {rid} ({region.name}) removed", user=caller, resource_type="Region",
                  resource_id=str(rid))
    db.session.commit()
