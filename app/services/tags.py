"""Resource tags (CloudStack's TaggedResourceManagerImpl and listTags): createTags,
deleteTags, listTags, the tags of objects for their responses, and the `tags[i].key=...&
tags[i].value=...` filter of the list commands.

Which objects take tags is a registry of CloudStack's resource type names
(ResourceTag.ResourceObjectType) → the table, its owner column, and when a row still
counts as existing. Other areas register their own:

    tags.register(tags.TaggedType("Snapshot", Snapshot, live=lambda: Snapshot.removed.is_(None)))

A tag is kept with the internal id AND the uuid of its object; every read (listTags, the
responses) checks the object still exists (`live`) with that uuid, so the tags of a removed
object are hidden at once whatever path removed it, and `purge()` (periodic) deletes them.
Objects whose row comes back to life (a public IP released and acquired again) call
`forget()` when they go.

For services:
    q = tags.matching(q, "Volume", Volume.id, tag_filter)   # the list filter, in SQL
    tags.of("Volume", [v.id for v in page])                 # {id: [(ResourceTag, Account|None)]}
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import ColumnElement, Select, and_, delete, false, func, or_, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import (Account, FirewallRule, Network, PublicIpAddress, ResourceTag, SecurityGroup, Snapshot,
                        SnapshotPolicy, Template, User, VirtualMachine, Volume)
from app.services import access, events
from app.services.errors import InvalidParameter, PermissionDenied, ServiceError
from app.services.pagination import page_of

MAX_LENGTH = 255  # CloudStack's resource_tags.key / value columns
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class TaggedType:
    """One taggable kind of object. `owner`: its account_id column (None: never owned);
    `live`: a WHERE on the model for "still exists"; `public`: whether a row is visible to
    every account (tagging someone else's public object is refused, not "not found")."""
    name: str
    model: Any
    owner: Callable[[], Any] | None = None
    live: Callable[[], ColumnElement] | None = None
    public: Callable[[Any], bool] | None = None

    def owner_column(self):
        return self.owner() if self.owner else self.model.account_id


_TYPES: dict[str, TaggedType] = {}  # by lower-case name


def register(t: TaggedType) -> None:
    _TYPES[t.name.lower()] = t


# CloudStack's ResourceObjectType names and whether each takes tags (resourceTagsSupport).
# A known name Nubo has no objects of is "not found"; one without tag support is refused.
CLOUDSTACK_TYPES = {
    "VMInstance": True, "UserVm": True, "Template": True, "VnfTemplate": True, "ISO": True, "Volume": True,
    "Snapshot": True, "Backup": True, "Network": True, "DomainRouter": False, "Nic": False, "LoadBalancer": True,
    "PortForwardingRule": True, "FirewallRule": True, "SecurityGroup": True, "SecurityGroupRule": True,
    "PublicIpAddress": True, "Project": True, "Account": True, "Vpc": True, "NetworkACL": True,
    "StaticRoute": True, "VMSnapshot": True, "RemoteAccessVpn": True, "Zone": False, "ServiceOffering": False,
    "Storage": False, "PrivateGateway": False, "NetworkACLList": False, "VpnGateway": False,
    "CustomerGateway": False, "VpnConnection": False, "User": True, "DiskOffering": False,
    "AutoScaleVmProfile": False, "AutoScaleVmGroup": False, "LBStickinessPolicy": False,
    "LBHealthCheckPolicy": False, "SnapshotPolicy": True, "GuestOs": False, "NetworkOffering": False,
    "VpcOffering": True, "Domain": False,
}
_CS_NAMES = {n.lower(): n for n in CLOUDSTACK_TYPES}

register(TaggedType("UserVm", VirtualMachine, live=lambda: VirtualMachine.removed.is_(None)))
register(TaggedType("Volume", Volume, live=lambda: Volume.removed.is_(None)))
register(TaggedType("Template", Template, live=lambda: and_(Template.is_iso.is_(False), Template.removed.is_(None)),
                    public=lambda t: bool(t.is_public)))
register(TaggedType("ISO", Template, live=lambda: and_(Template.is_iso.is_(True), Template.removed.is_(None)),
                    public=lambda t: bool(t.is_public)))
register(TaggedType("Network", Network, live=lambda: Network.removed.is_(None),
                    public=lambda n: n.account_id is None))
# A released address is Free with no owner (and its tags forgotten: the row is taken again later)
register(TaggedType("PublicIpAddress", PublicIpAddress,
                    live=lambda: and_(PublicIpAddress.state != "Free", PublicIpAddress.account_id.is_not(None))))
register(TaggedType("FirewallRule", FirewallRule, live=lambda: FirewallRule.purpose == "Firewall"))
register(TaggedType("PortForwardingRule", FirewallRule, live=lambda: FirewallRule.purpose == "PortForwarding"))
register(TaggedType("SecurityGroup", SecurityGroup))
register(TaggedType("Account", Account, owner=lambda: Account.id, live=lambda: Account.removed.is_(None)))
register(TaggedType("User", User, live=lambda: User.removed.is_(None)))
register(TaggedType("Snapshot", Snapshot, live=lambda: Snapshot.removed.is_(None)))
register(TaggedType("SnapshotPolicy", SnapshotPolicy))  # deleted with its row


def tagged_type(name: str | None) -> TaggedType:
    """The registered type for CloudStack's name (any case): 431 for an unknown name or one
    without tag support; a CloudStack type Nubo has no objects of gives a type nothing matches."""
    canonical = _CS_NAMES.get((name or "").lower())
    if canonical is None and (name or "").lower() not in _TYPES:
        raise InvalidParameter(f"Invalid resource type {name}", field="resourcetype")
    if canonical is not None and not CLOUDSTACK_TYPES[canonical]:
        raise InvalidParameter(f"The resource type {canonical} doesn't support resource tags", field="resourcetype")
    t = _TYPES.get((name or "").lower())
    return t if t is not None else TaggedType(canonical, None)


def type_names() -> list[str]:
    return sorted(t.name for t in _TYPES.values())


# --- Input ---------------------------------------------------------------------------------

def _text(value, what: str, field: str) -> str:
    value = "" if value is None else str(value)
    if len(value) > MAX_LENGTH:
        raise InvalidParameter(f"The {what} of a tag is longer than {MAX_LENGTH} characters", field=field)
    if _CONTROL.search(value):
        raise InvalidParameter(f"The {what} of a tag may not contain control characters", field=field)
    return value


def parse_pairs(entries: list[dict] | None, *, values_required: bool = True, field: str = "tags") \
        -> list[tuple[str, str | None]]:
    """[(key, value)] from CloudStack's map parameter (tags[0].key, tags[0].value, ...).
    A missing value is 431 where CloudStack requires one (the list filters, createTags)."""
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for entry in entries or []:
        key = _text(entry.get("key"), "key", field).strip()
        value = entry.get("value")
        if not key:
            raise InvalidParameter(f"No key is passed in for {field}", field=field)
        if value is None and values_required:
            raise InvalidParameter(f"No value is passed in for key {key}", field=field)
        if value is not None:
            value = _text(value, "value", field)
        if key.lower() in seen:
            raise InvalidParameter(f"Duplicate key {key} in {field}", field=field)
        seen.add(key.lower())
        out.append((key, value))
    return out


# --- What the caller may tag ------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    id: int
    uuid: str
    account_id: int | None


def _not_found(t: TaggedType, rid: str) -> InvalidParameter:
    return InvalidParameter(f"Unable to find resource by uuid {rid} and type {t.name}", field="resourceids")


def _targets(caller, t: TaggedType, resource_ids: list[str], *, for_change: bool = True) -> list[Target]:
    """The objects named, each one the caller may see (else "not found", as for a missing one);
    a public one of another account (a shared template or network) is 531 when changed."""
    ids = list(dict.fromkeys(r.strip() for r in resource_ids or [] if r and r.strip()))
    if not ids:
        raise InvalidParameter("Unable to execute API command due to missing parameter resourceids",
                               field="resourceids")
    if t.model is None:
        raise _not_found(t, ids[0])
    m = t.model
    q = select(m, t.owner_column()).where(m.uuid.in_(ids))
    if t.live is not None:
        q = q.where(t.live())
    rows = {r.uuid: (r, owner) for r, owner in db.session.execute(q)}
    out = []
    for rid in ids:
        row, owner = rows.get(rid, (None, None))
        if row is None:
            raise _not_found(t, rid)
        if not access.can_see(caller, owner):
            if t.public is not None and t.public(row):
                if for_change:
                    raise PermissionDenied(f"Account '{caller.account.name}' doesn't have permissions to "
                                           f"create tags for resource '{rid}'")
            else:
                raise _not_found(t, rid)
        out.append(Target(row.id, row.uuid, owner))
    return out


# --- createTags / deleteTags --------------------------------------------------------------

def check_create(caller, resource_ids: list[str], resource_type: str, tags: list[dict]) -> TaggedType:
    """Everything createTags checks, before its job (431/531 at once)."""
    t = tagged_type(resource_type)
    pairs = parse_pairs(tags)
    if not pairs:
        raise InvalidParameter("Unable to execute API command createtags due to missing parameter tags", field="tags")
    for key, value in pairs:
        if not value:
            raise InvalidParameter(f"Value for the key {key} is either null or empty", field="tags")
    targets = _targets(caller, t, resource_ids)
    _check_free(t, targets, [k for k, _ in pairs])
    return t


def _check_free(t: TaggedType, targets: list[Target], keys: list[str]) -> None:
    by_id = {x.id: x for x in targets}
    taken = db.session.execute(select(ResourceTag.resource_id, ResourceTag.key).where(
        ResourceTag.resource_type == t.name, ResourceTag.resource_id.in_(list(by_id)),
        func.lower(ResourceTag.key).in_([k.lower() for k in keys])).order_by(ResourceTag.id).limit(1)).first()
    if taken is not None:
        raise InvalidParameter(f"tag {taken[1]} already on {t.name} with id {by_id[taken[0]].uuid}", field="tags")


def create(caller, resource_ids: list[str], resource_type: str, tags: list[dict],
           customer: str | None = None) -> list[ResourceTag]:
    """createTags (the job): every key on every object, all or nothing."""
    t = check_create(caller, resource_ids, resource_type, tags)
    if customer is not None:
        customer = _text(customer, "customer", "customer") or None
    pairs = parse_pairs(tags)
    made = []
    for x in _targets(caller, t, resource_ids):
        for key, value in pairs:
            tag = ResourceTag(key=key, value=value, resource_type=t.name, resource_id=x.id, resource_uuid=x.uuid,
                              account_id=x.account_id, customer=customer)
            db.session.add(tag)
            made.append(tag)
    try:
        db.session.flush()
    except IntegrityError:  # another request added one of these keys meanwhile
        db.session.rollback()
        _check_free(t, _targets(caller, t, resource_ids), [k for k, _ in pairs])
        raise InvalidParameter("One of these tags was added by another request meanwhile", field="tags") from None
    events.record("CREATE_TAGS", f"Tags {', '.join(k for k, _ in pairs)} added to {t.name} "
                  f"{', '.join(x.uuid for x in made[::len(pairs)])}", user=caller, resource_type=t.name,
                  resource_id=made[0].resource_uuid)
    db.session.commit()
    return made


def check_delete(caller, resource_ids: list[str], resource_type: str, tags: list[dict] | None) -> TaggedType:
    t = tagged_type(resource_type)
    parse_pairs(tags, values_required=False)
    _targets(caller, t, resource_ids, for_change=False)
    return t


def delete_tags(caller, resource_ids: list[str], resource_type: str, tags: list[dict] | None = None) -> int:
    """deleteTags (the job): the tags of these objects with these keys (any case), and these
    values when given; every tag of them when no key is given. Nothing matched is
    CloudStack's "Failed to delete tags"."""
    t = check_delete(caller, resource_ids, resource_type, tags)
    pairs = parse_pairs(tags, values_required=False)
    targets = _targets(caller, t, resource_ids, for_change=False)
    q = select(ResourceTag).where(ResourceTag.resource_type == t.name,
                                  ResourceTag.resource_id.in_([x.id for x in targets]),
                                  ResourceTag.resource_uuid.in_([x.uuid for x in targets]))
    if pairs:
        q = q.where(or_(*(and_(func.lower(ResourceTag.key) == k.lower(),
                               func.lower(ResourceTag.value) == v.lower() if v is not None else True)
                          for k, v in pairs)))
    found = list(db.session.scalars(q.order_by(ResourceTag.id)))
    if not found:
        raise ServiceError("Failed to delete tags")
    for tag in found:
        if not access.can_see(caller, tag.account_id):
            raise PermissionDenied(f"Account '{caller.account.name}' doesn't have permissions to delete the tags "
                                   f"of resource '{tag.resource_uuid}'")
    for tag in found:
        db.session.delete(tag)
    events.record("DELETE_TAGS", f"Tags {', '.join(sorted({t_.key for t_ in found}))} removed from {t.name} "
                  f"{', '.join(sorted({t_.resource_uuid for t_ in found}))}", user=caller, resource_type=t.name,
                  resource_id=found[0].resource_uuid)
    db.session.commit()
    return len(found)


# --- Async: the jobs ------------------------------------------------------------------------

def submit_create(caller, resource_ids, resource_type, tags, customer=None):
    from app.jobs import service as jobs
    t = check_create(caller, resource_ids, resource_type, tags)
    return jobs.submit("createTags", caller, "tags.create",
                       {"ids": list(resource_ids), "type": t.name, "tags": tags, "customer": customer})


def submit_delete(caller, resource_ids, resource_type, tags=None):
    from app.jobs import service as jobs
    t = check_delete(caller, resource_ids, resource_type, tags)
    return jobs.submit("deleteTags", caller, "tags.delete", {"ids": list(resource_ids), "type": t.name,
                                                             "tags": tags or []})


def _register_jobs() -> None:
    from flask import g

    from app.jobs import service as jobs

    @jobs.handler("tags.create")
    def _create(job, params):
        create(g.caller, params["ids"], params["type"], params["tags"], params.get("customer"))
        return {"success": True}

    @jobs.handler("tags.delete")
    def _delete(job, params):
        delete_tags(g.caller, params["ids"], params["type"], params.get("tags") or None)
        return {"success": True}


_register_jobs()


# --- Reads ----------------------------------------------------------------------------------

def _alive(t: TaggedType) -> ColumnElement[bool]:
    """The tag's object (of type t) still exists with the tag's uuid (a correlated EXISTS)."""
    m = t.model
    if m is None:
        return false()
    conds = [m.id == ResourceTag.resource_id, m.uuid == ResourceTag.resource_uuid]
    if t.live is not None:
        conds.append(t.live())
    return and_(ResourceTag.resource_type == t.name, select(m.id).where(*conds).exists())


def list_tags(caller, *, resource_type: str | None = None, resource_id: str | None = None, key: str | None = None,
              value: str | None = None, customer: str | None = None, account: str | None = None,
              listall: bool = False, page=None):
    """listTags: the caller's tags (admins: an account's with account=, everyone's with
    listall=true), of objects that still exist."""
    q = select(ResourceTag).order_by(ResourceTag.id)
    if account:
        from app.services import accounts
        q = q.where(ResourceTag.account_id == accounts.named_account(caller, account).id)
    elif listall:
        q = q.where(access.owned(caller, ResourceTag.account_id))
    else:
        q = q.where(ResourceTag.account_id == caller.account_id)
    if resource_type:
        t = _TYPES.get(resource_type.lower())
        q = q.where(_alive(t) if t is not None else false())
    else:
        q = q.where(or_(*(_alive(t) for t in _TYPES.values())))
    if resource_id:
        q = q.where(ResourceTag.resource_uuid == resource_id)
    if key:
        q = q.where(func.lower(ResourceTag.key) == key.lower())
    if value:
        q = q.where(func.lower(ResourceTag.value) == value.lower())
    if customer:
        q = q.where(ResourceTag.customer == customer)
    return page_of(q, page)


def with_owners(rows: list[ResourceTag]) -> list[tuple[ResourceTag, Account | None]]:
    """Each tag with its owner (one query for the page)."""
    ids = {t.account_id for t in rows if t.account_id is not None}
    owners = {a.id: a for a in db.session.scalars(select(Account).where(Account.id.in_(ids)))} if ids else {}
    return [(t, owners.get(t.account_id)) for t in rows]


def of(resource_type: str, ids) -> dict[int, list[tuple[ResourceTag, Account | None]]]:
    """The tags of these objects (ids of one type), with their owners: one query, for a
    whole page of responses."""
    if not isinstance(ids, Select):  # a subquery of ids stays one (a whole list: no bound value per row)
        ids = list(ids)
    out: dict[int, list] = {} if isinstance(ids, Select) else {i: [] for i in ids}
    t = _TYPES.get(resource_type.lower())
    if (not isinstance(ids, Select) and not ids) or t is None:
        return out
    m = t.model
    rows = db.session.execute(
        select(ResourceTag, Account).join(m, and_(m.id == ResourceTag.resource_id, m.uuid == ResourceTag.resource_uuid))
        .outerjoin(Account, Account.id == ResourceTag.account_id)
        .where(ResourceTag.resource_type == t.name, ResourceTag.resource_id.in_(ids)).order_by(ResourceTag.id))
    for tag, acct in rows:
        out.setdefault(tag.resource_id, []).append((tag, acct))
    return out


def matching(query, resource_type: str, id_column, tag_filter: list[dict] | None):
    """`query` narrowed to the objects carrying ANY of the asked key/value pairs (CloudStack
    ORs the pairs; keys and values compare in any case), as an EXISTS: paging and totals
    stay right. No filter: the query unchanged."""
    pairs = parse_pairs(tag_filter)
    if not pairs:
        return query
    t = tagged_type(resource_type)
    match = or_(*(and_(func.lower(ResourceTag.key) == k.lower(), func.lower(ResourceTag.value) == (v or "").lower())
                  for k, v in pairs))
    return query.where(select(ResourceTag.id).where(ResourceTag.resource_type == t.name,
                                                    ResourceTag.resource_id == id_column, match).exists())


# --- Housekeeping -------------------------------------------------------------------------------

def forget(resource_type: str, ids) -> None:
    """Delete the tags of these objects (uncommitted: part of the caller's removal)."""
    ids = list(ids)
    if ids:
        db.session.execute(delete(ResourceTag).where(ResourceTag.resource_type == resource_type,
                                                     ResourceTag.resource_id.in_(ids))
                           .execution_options(synchronize_session=False))


def purge() -> int:
    """Delete the tags of objects that no longer exist (the periodic sweep). Commits."""
    gone = 0
    for t in _TYPES.values():
        ids = list(db.session.scalars(select(ResourceTag.id).where(ResourceTag.resource_type == t.name,
                                                                   ~_alive(t)).limit(10000)))
        if ids:
            gone += db.session.execute(delete(ResourceTag).where(ResourceTag.id.in_(ids))
                                       .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return gone


# --- The pages' Tags card --------------------------------------------------------------------------

@dataclass
class Card:
    """One object's tags as its page shows them; `editable`: the caller may add and remove
    (its owner and admins; a public object of another account is shown read-only)."""
    type: str
    uuid: str
    tags: list
    editable: bool


def card(caller, resource_type: str, uuid: str) -> Card:
    t = tagged_type(resource_type)
    target = _targets(caller, t, [uuid], for_change=False)[0]
    return Card(t.name, target.uuid, of(t.name, [target.id])[target.id], access.can_see(caller, target.account_id))


def remove(caller, resource_type: str, uuid: str, tag_uuid: str) -> None:
    """One tag of an object, by its id (the pages' Remove)."""
    t = tagged_type(resource_type)
    target = _targets(caller, t, [uuid], for_change=False)[0]
    tag = db.session.scalar(select(ResourceTag).where(ResourceTag.uuid == tag_uuid, ResourceTag.resource_type == t.name,
                                                      ResourceTag.resource_id == target.id))
    if tag is None:
        raise InvalidParameter("Unable to find the tag", field="tag")
    delete_tags(caller, [uuid], t.name, [{"key": tag.key, "value": tag.value}])
