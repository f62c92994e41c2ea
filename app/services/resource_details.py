"""Resource details (CloudStack's ResourceMetaDataManagerImpl and QueryManagerImpl.listResourceDetails):
addResourceDetail, removeResourceDetail (both asynchronous, as in CloudStack), listResourceDetails,
and the details of a VM (updateVirtualMachine details, listVirtualMachines `details`).

Which objects take details is a registry of CloudStack's resource type names
(ResourceMetaDataManagerImpl's s_daoMap) that Nubo has objects of → the model, its owner
column and when a row still counts as existing:

    resource_details.register(resource_details.DetailType("Volume", Volume, live=...))

Every detail is one row of resource_details; a VM's details ARE its UserVm rows (no other copy).

Who may do what (CloudStack checks nothing here, its AddResourceDetailCmd owner is a FIXME):
- an owned object (a VM, a volume, a template, a network, ...): the accounts that may see its
  owner (access.can_see) read and change its details; anyone else gets "not found", except
  for a public object (a public template, a shared network): its displayed details are
  readable by all, changing them is 531;
- an object of no account (a zone, an offering, a primary storage, a guest OS): root admins
  change its details; users read the displayed details of the ones they may list
  (zones, offerings, guest OSes) and do not find primary storage.
- `display` (fordisplay=false): such details are shown to admins only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import ColumnElement, Select, and_, delete, func, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import (DiskOffering, FirewallRule, Network, NetworkOffering, OsType, PublicIpAddress, ResourceDetail,
                        ServiceOffering, SnapshotPolicy, StoragePool, Template, User, VirtualMachine, Volume, Zone)
from app.services import access, events
from app.services.errors import InvalidParameter, PermissionDenied
from app.services.pagination import page_of

MAX_KEY = 255
MAX_VALUE = 5120  # CloudStack's user_vm_details.value
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class DetailType:
    """One kind of object that takes details. `owner`: its account_id column (None: an object
    of no account, changed by root admins only); `live`: a WHERE for "still exists";
    `public`: a row whose displayed details everyone may read; `listed`: for an object of no
    account, whether users may read its displayed details at all."""
    name: str
    model: Any
    owner: Callable[[], Any] | None = None
    live: Callable[[], ColumnElement] | None = None
    public: Callable[[Any], bool] | None = None
    listed: bool = True


_TYPES: dict[str, DetailType] = {}  # by lower-case name


def register(t: DetailType) -> None:
    _TYPES[t.name.lower()] = t


# CloudStack's ResourceObjectType names with metadata support (ResourceMetaDataManagerImpl's
# s_daoMap). A known name Nubo has no objects of is "not found"; one without support is refused.
CLOUDSTACK_TYPES = ("UserVm", "Volume", "Template", "Network", "Nic", "ServiceOffering", "Zone", "Storage",
                    "FirewallRule", "PublicIpAddress", "PortForwardingRule", "LoadBalancer", "RemoteAccessVpn",
                    "Vpc", "PrivateGateway", "NetworkACLList", "NetworkACL", "VpnGateway", "CustomerGateway",
                    "VpnConnection", "DiskOffering", "User", "AutoScaleVmProfile", "AutoScaleVmGroup",
                    "LBStickinessPolicy", "LBHealthCheckPolicy", "SnapshotPolicy", "GuestOs", "NetworkOffering",
                    "ObjectStore")
_CS_NAMES = {n.lower(): n for n in CLOUDSTACK_TYPES}


def _removed_is_none(m):
    return lambda: m.removed.is_(None)


def _owned(name, model, **kw):
    register(DetailType(name, model, owner=lambda: model.account_id, **kw))


_owned("UserVm", VirtualMachine, live=_removed_is_none(VirtualMachine))
_owned("Volume", Volume, live=_removed_is_none(Volume))
_owned("Template", Template, live=_removed_is_none(Template), public=lambda t: bool(t.is_public))
_owned("Network", Network, live=_removed_is_none(Network), public=lambda n: n.account_id is None)
_owned("PublicIpAddress", PublicIpAddress,
       live=lambda: and_(PublicIpAddress.state != "Free", PublicIpAddress.account_id.is_not(None)))
_owned("FirewallRule", FirewallRule, live=lambda: FirewallRule.purpose == "Firewall")
_owned("PortForwardingRule", FirewallRule, live=lambda: FirewallRule.purpose == "PortForwarding")
_owned("User", User, live=_removed_is_none(User))
_owned("SnapshotPolicy", SnapshotPolicy)
register(DetailType("Zone", Zone, live=_removed_is_none(Zone)))
register(DetailType("ServiceOffering", ServiceOffering, live=_removed_is_none(ServiceOffering)))
register(DetailType("DiskOffering", DiskOffering, live=_removed_is_none(DiskOffering)))
register(DetailType("NetworkOffering", NetworkOffering, live=_removed_is_none(NetworkOffering)))
register(DetailType("GuestOs", OsType))
register(DetailType("Storage", StoragePool, live=_removed_is_none(StoragePool), listed=False))


def detail_type(name: str | None) -> DetailType:
    """The registered type for CloudStack's name (any case): 431 for an unknown name or one
    without metadata support; a supported CloudStack type Nubo has no objects of finds nothing."""
    key = (name or "").strip().lower()
    if key in _TYPES:
        return _TYPES[key]
    if key in _CS_NAMES:
        return DetailType(_CS_NAMES[key], None)
    from app.services.tags import CLOUDSTACK_TYPES as KNOWN  # every ResourceObjectType name
    if any(key == n.lower() for n in KNOWN):
        raise InvalidParameter(f"ResourceType {name} doesn't support metadata", field="resourcetype")
    raise InvalidParameter(f"Invalid resource type: {name}", field="resourcetype")


def type_names() -> list[str]:
    return sorted(t.name for t in _TYPES.values())


# --- Input ---------------------------------------------------------------------------------

def _text(value, what: str, limit: int) -> str:
    value = "" if value is None else str(value)
    if len(value) > limit:
        raise InvalidParameter(f"The {what} of a detail is longer than {limit} characters", field="details")
    if _CONTROL.search(value):
        raise InvalidParameter(f"The {what} of a detail may not contain control characters", field="details")
    return value


def parse_details(entries) -> dict[str, str]:
    """{key: value} from CloudStack's map parameter (details[0].key=..&details[0].value=..).
    A later pair with the same key (any case) wins, as CloudStack's map does."""
    out: dict[str, str] = {}
    for entry in entries or []:
        key = _text(entry.get("key"), "key", MAX_KEY).strip()
        value = entry.get("value")
        if not key:
            raise InvalidParameter("No key is passed in for details", field="details")
        if value is None or str(value) == "":
            raise InvalidParameter(f"Value for the key {key} is either null or empty", field="details")
        for k in [k for k in out if k.lower() == key.lower()]:
            del out[k]
        out[key] = _text(value, "value", MAX_VALUE)
    return out


# --- Whose details the caller may read and change -------------------------------------------

@dataclass(frozen=True)
class Target:
    type: DetailType
    id: int
    uuid: str
    account_id: int | None
    full: bool  # the caller also sees the details not for display (admins)


def _not_found(t: DetailType, rid: str) -> InvalidParameter:
    return InvalidParameter(f"Unable to find resource by uuid {rid} and type {t.name}", field="resourceid")


def target(caller, resource_type: str, resource_id: str | None, *, for_change: bool) -> Target:
    t = detail_type(resource_type)
    rid = (resource_id or "").strip()
    if not rid:
        raise InvalidParameter("Unable to execute API command due to missing parameter resourceid",
                               field="resourceid")
    if t.model is None:
        raise _not_found(t, rid)
    m = t.model
    q = select(m).where(m.uuid == rid)
    if t.live is not None:
        q = q.where(t.live())
    row = db.session.scalar(q)
    if row is None:
        raise _not_found(t, rid)
    denied = PermissionDenied(f"Account '{caller.account.name}' doesn't have permissions to change the details "
                              f"of {t.name} '{rid}'")
    if t.owner is None:  # an object of no account
        if access.is_root(caller):
            return Target(t, row.id, row.uuid, None, True)
        if not t.listed:
            raise _not_found(t, rid)
        if for_change:
            raise denied
        return Target(t, row.id, row.uuid, None, False)
    owner = row.account_id
    if access.can_see(caller, owner):
        return Target(t, row.id, row.uuid, owner, access.is_any_admin(caller))
    if t.public is not None and t.public(row):
        if for_change:
            raise denied
        return Target(t, row.id, row.uuid, owner, False)
    raise _not_found(t, rid)


# --- addResourceDetail / removeResourceDetail ----------------------------------------------------

def check_add(caller, resource_id: str, resource_type: str, details) -> Target:
    """Everything addResourceDetail checks, before its job (431/531 at once)."""
    pairs = parse_details(details)
    if not pairs:
        raise InvalidParameter("Unable to execute API command addresourcedetail due to missing parameter details",
                               field="details")
    return target(caller, resource_type, resource_id, for_change=True)


def _write(t_name: str, resource_id: int, pairs: dict[str, str], display: bool) -> None:
    """Set these keys (replacing a key of any case) on one object (uncommitted)."""
    if not pairs:
        return
    db.session.execute(delete(ResourceDetail).where(
        ResourceDetail.resource_type == t_name, ResourceDetail.resource_id == resource_id,
        func.lower(ResourceDetail.name).in_([k.lower() for k in pairs])).execution_options(synchronize_session=False))
    db.session.add_all(ResourceDetail(resource_type=t_name, resource_id=resource_id, name=k, value=v, display=display)
                       for k, v in pairs.items())
    db.session.flush()


def add(caller, resource_id: str, resource_type: str, details, display: bool | None = True) -> None:
    """addResourceDetail (the job): every pair on the object, an existing key replaced; all or
    nothing. Commits."""
    x = check_add(caller, resource_id, resource_type, details)
    pairs = parse_details(details)
    for attempt in (1, 2):  # another request may add one of these keys meanwhile: once more
        try:
            _write(x.type.name, x.id, pairs, display is not False)
            break
        except IntegrityError:
            db.session.rollback()
            if attempt == 2:
                raise
    events.record("CREATE_RESOURCE_DETAILS", f"Details {', '.join(pairs)} added to {x.type.name} {x.uuid}",
                  user=caller, resource_type=x.type.name, resource_id=x.uuid)
    db.session.commit()


def check_remove(caller, resource_id: str, resource_type: str) -> Target:
    return target(caller, resource_type, resource_id, for_change=True)


def remove(caller, resource_id: str, resource_type: str, key: str | None = None) -> int:
    """removeResourceDetail (the job): the detail with this key (any case), or every detail of
    the object without one. A key the object has not is no error (as CloudStack). Commits."""
    x = check_remove(caller, resource_id, resource_type)
    q = delete(ResourceDetail).where(ResourceDetail.resource_type == x.type.name, ResourceDetail.resource_id == x.id)
    if key:
        q = q.where(func.lower(ResourceDetail.name) == key.strip().lower())
    n = db.session.execute(q.execution_options(synchronize_session=False)).rowcount
    events.record("DELETE_RESOURCE_DETAILS", f"Details {key or '(all)'} removed from {x.type.name} {x.uuid}",
                  user=caller, resource_type=x.type.name, resource_id=x.uuid)
    db.session.commit()
    return n


def submit_add(caller, resource_id, resource_type, details, display=True):
    from app.jobs import service as jobs
    x = check_add(caller, resource_id, resource_type, details)
    return jobs.submit("addResourceDetail", caller, "details.add",
                       {"id": x.uuid, "type": x.type.name, "details": details, "display": display is not False})


def submit_remove(caller, resource_id, resource_type, key=None):
    from app.jobs import service as jobs
    x = check_remove(caller, resource_id, resource_type)
    return jobs.submit("removeResourceDetail", caller, "details.remove",
                       {"id": x.uuid, "type": x.type.name, "key": key})


def _register_jobs() -> None:
    from flask import g

    from app.jobs import service as jobs

    @jobs.handler("details.add")
    def _add(job, params):
        add(g.caller, params["id"], params["type"], params["details"], params.get("display", True))
        return {"success": True}

    @jobs.handler("details.remove")
    def _remove(job, params):
        remove(g.caller, params["id"], params["type"], params.get("key"))
        return {"success": True}


_register_jobs()


# --- listResourceDetails ------------------------------------------------------------------------

def list_details(caller, resource_type: str, *, resource_id: str | None = None, key: str | None = None,
                 value: str | None = None, for_display: bool | None = None, page=None):
    """listResourceDetails: the details of one object (resourceid), or (admins) the objects of a
    type with key=value. Rows: (ResourceDetail, the object's uuid, type name)."""
    t = detail_type(resource_type)
    admin = access.is_any_admin(caller)
    if not admin:  # value and fordisplay are Admin parameters in CloudStack: ignored for others
        value, for_display = None, None
    if not resource_id and value is None:
        raise InvalidParameter("Insufficient parameters passed for listing by resourceId OR key,value pair. "
                               "Please check your params and try again.", field="resourceid")
    if value is not None and not key:
        raise InvalidParameter("Listing by (key, value) but key is null. Please check the params and try again",
                               field="key")
    if t.model is None:
        if resource_id:
            raise _not_found(t, resource_id)
        return [], 0
    m = t.model
    q = (select(ResourceDetail, m.uuid).join(m, m.id == ResourceDetail.resource_id)
         .where(ResourceDetail.resource_type == t.name).order_by(ResourceDetail.id))
    if resource_id:
        x = target(caller, t.name, resource_id, for_change=False)
        q = q.where(ResourceDetail.resource_id == x.id)
        full = x.full
    else:  # admins: every object of the type they may see
        if t.live is not None:
            q = q.where(t.live())
        if t.owner is not None:
            q = q.where(access.owned(caller, t.owner()))
        elif not access.is_root(caller):
            q = q.where(ResourceDetail.display.is_(True))
        full = True
    if not full:
        q = q.where(ResourceDetail.display.is_(True))
    if for_display is not None:
        q = q.where(ResourceDetail.display.is_(bool(for_display)))
    if key:
        q = q.where(func.lower(ResourceDetail.name) == key.strip().lower())
    if value is not None:
        q = q.where(ResourceDetail.value == value)
    rows, total = page_of(q, page, scalars=False)
    return [(d, uuid, t.name) for d, uuid in rows], total


# --- A VM's details (updateVirtualMachine, listVirtualMachines) -------------------------------------

def display_maps(resource_type: str, ids) -> dict[int, dict[str, str]]:
    """{object id: {key: value}} of the displayed details of these objects (one query): what
    an object's own response shows (listVirtualMachines `details`, as CloudStack's UserVmJoinDao)."""
    if not isinstance(ids, Select):  # a subquery of ids stays one (no bound value per row)
        ids = list(ids)
        if not ids:
            return {}
    out: dict[int, dict[str, str]] = {}
    for d in db.session.scalars(select(ResourceDetail).where(
            ResourceDetail.resource_type == resource_type, ResourceDetail.resource_id.in_(ids),
            ResourceDetail.display.is_(True)).order_by(ResourceDetail.name)):
        out.setdefault(d.resource_id, {})[d.name] = d.value
    return out


def replace_displayed(resource_type: str, resource_id: int, pairs: dict[str, str]) -> None:
    """updateVirtualMachine details / cleanupdetails: the object's displayed details become
    `pairs`; the ones not for display stay unless a key is given again (uncommitted)."""
    db.session.execute(delete(ResourceDetail).where(
        ResourceDetail.resource_type == resource_type, ResourceDetail.resource_id == resource_id,
        ResourceDetail.display.is_(True)).execution_options(synchronize_session=False))
    _write(resource_type, resource_id, pairs, True)


# --- Housekeeping ---------------------------------------------------------------------------------

def forget(resource_type: str, ids) -> None:
    """Delete the details of these objects (uncommitted: part of the caller's removal)."""
    ids = list(ids)
    if ids:
        db.session.execute(delete(ResourceDetail).where(ResourceDetail.resource_type == resource_type,
                                                        ResourceDetail.resource_id.in_(ids))
                           .execution_options(synchronize_session=False))


def forget_account(account_id: int) -> None:
    """The details of every object of an account (deleteAccount's last step; uncommitted)."""
    for t in _TYPES.values():
        if t.owner is not None:
            forget(t.name, db.session.scalars(select(t.model.id).where(t.owner() == account_id)))


def purge() -> int:
    """Delete the details of objects that no longer exist (the periodic sweep). Commits."""
    gone = 0
    for t in _TYPES.values():
        m = t.model
        conds = [m.id == ResourceDetail.resource_id] + ([t.live()] if t.live is not None else [])
        ids = list(db.session.scalars(select(ResourceDetail.id).where(
            ResourceDetail.resource_type == t.name, ~select(m.id).where(*conds).exists()).limit(10000)))
        if ids:
            gone += db.session.execute(delete(ResourceDetail).where(ResourceDetail.id.in_(ids))
                                       .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return gone
