"""Offerings restricted to domains (CloudStack 4.13+: createServiceOffering / createDiskOffering /
update*Offering `domainid`, stored as the offerings' "domainid" details; here OfferingDomain rows).

An offering without domains is public. One with domains is seen and used by the accounts of
those domains and of every domain below them (DomainChecker.checkAccess: the account's domain is
a child of one of the offering's); root admins see and use every offering. Lists (QueryManagerImpl.
searchForServiceOfferingsInternal) show a non-root caller the public offerings and those of their
domain or an ancestor of it; a domain admin with isrecursive=true also those of their subtree.
A domain admin makes and edits offerings only for domains of their subtree (never public ones).
Zones likewise (`zoneid`, OfferingZone rows): an offering with zones serves only those zones
(deploy and createVolume there); without any, every zone.
"""
from __future__ import annotations

from sqlalchemy import ColumnElement, delete, literal, or_, select, true, union_all

from app.extensions import db
from app.models import Account, DiskOffering, Domain, OfferingDomain, OfferingZone, ServiceOffering, Zone, utcnow
from app.services import access, events
from app.services.errors import InvalidParameter, PermissionDenied

PUBLIC = "public"  # update*Offering's domainid=public: make the offering public again


def _type(model_or_row) -> str:
    model = model_or_row if isinstance(model_or_row, type) else type(model_or_row)
    return "ServiceOffering" if model is ServiceOffering else "DiskOffering"


def _what(o) -> str:
    return "service offering" if isinstance(o, ServiceOffering) else "disk offering"


def domains_of(o) -> list[Domain]:
    """The live domains an offering is restricted to ([]: public), by id."""
    return list(db.session.scalars(
        select(Domain).join(OfferingDomain, OfferingDomain.domain_id == Domain.id)
        .where(OfferingDomain.offering_type == _type(o), OfferingDomain.offering_id == o.id,
               Domain.removed.is_(None)).order_by(Domain.id)))


def domains_by_offering(model, ids) -> dict[int, list[Domain]]:
    """domains_of for many offerings of one kind in one query (the lists)."""
    out: dict[int, list[Domain]] = {}
    if not ids:
        return out
    rows = db.session.execute(
        select(OfferingDomain.offering_id, Domain).join(Domain, OfferingDomain.domain_id == Domain.id)
        .where(OfferingDomain.offering_type == _type(model), OfferingDomain.offering_id.in_(list(ids)),
               Domain.removed.is_(None)).order_by(Domain.id)).all()
    for offering_id, d in rows:
        out.setdefault(offering_id, []).append(d)
    return out


def _ancestor_ids(domain: Domain) -> list[int]:
    """The domain and every domain above it up to ROOT."""
    ids, d = [], domain
    while d is not None:
        ids.append(d.id)
        d = db.session.get(Domain, d.parent_id) if d.parent_id else None
    return ids


def _restricted(model):
    return select(OfferingDomain.offering_id).where(OfferingDomain.offering_type == _type(model))


def usable_by(account: Account, model) -> ColumnElement[bool]:
    """A WHERE criterion on `model` (ServiceOffering or DiskOffering): the offerings this account may
    use (a VM or volume it owns made from it): root admin accounts every one; others the public ones
    and those of their domain or an ancestor."""
    if account.role_type == "Admin":
        return true()
    return or_(model.id.not_in(_restricted(model)),
               model.id.in_(_restricted(model).where(OfferingDomain.domain_id.in_(_ancestor_ids(account.domain)))))


def visible(caller, model, *, recursive: bool = False, domainid: str | None = None) -> ColumnElement[bool]:
    """A WHERE criterion on `model`: what list*Offerings shows the caller (see the module's note);
    domainid: only the offerings restricted to that domain (one the caller may see)."""
    crit = true() if access.is_root(caller) else usable_by(caller.account, model)  # root: no account to read
    if recursive and access.is_domain_admin(caller):
        crit = or_(crit, model.id.in_(_restricted(model).where(
            OfferingDomain.domain_id.in_(access.domain_ids_under(access.caller_domain(caller).path)))))
    if domainid:
        d = access.domain_by_uuid(caller, domainid)
        crit = crit & model.id.in_(_restricted(model).where(OfferingDomain.domain_id == d.id))
    return crit


def check_use(owner: Account, o, zone: Zone | None = None) -> None:
    """Refuse an offering the owner of a new VM or volume may not use, or not in this zone
    (CloudStack's checkAccess: domains, then zones; 531). The offering's live domains and zones
    are read in one query (every deploy runs this)."""
    if o is None:
        return
    admin = owner.role_type == "Admin"
    parts = [] if admin else [
        select(literal("d"), OfferingDomain.domain_id).join(Domain, Domain.id == OfferingDomain.domain_id)
        .where(OfferingDomain.offering_type == _type(o), OfferingDomain.offering_id == o.id, Domain.removed.is_(None))]
    if zone is not None:
        parts.append(select(literal("z"), OfferingZone.zone_id).join(Zone, Zone.id == OfferingZone.zone_id)
                     .where(OfferingZone.offering_type == _type(o), OfferingZone.offering_id == o.id,
                            Zone.removed.is_(None)))
    if not parts:
        return
    ids: dict[str, set[int]] = {"d": set(), "z": set()}
    for kind, ident in db.session.execute(parts[0] if len(parts) == 1 else union_all(*parts)):
        ids[kind].add(ident)
    allowed = admin or not ids["d"] or bool(set(_ancestor_ids(owner.domain)).intersection(ids["d"]))
    if allowed and zone is not None:
        allowed = not ids["z"] or zone.id in ids["z"]
    if not allowed:
        raise PermissionDenied(f"There's no way to confirm account {owner.name} has access to {_what(o)} "
                               f"{o.name}" + (f" in zone {zone.name}" if zone is not None else ""))


def _uuids(value, everything: str | None) -> list[str] | None:
    """The ids a create's list or an update's comma-separated string names, each once (None: not
    given; [] for update's word for "no restriction", `everything`: public, all)."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        if everything and value.strip().lower() == everything:
            return []
        value = value.split(",")
    return list(dict.fromkeys(str(v).strip() for v in value if str(v).strip()))


def parse(value, *, field: str = "domainid", allow_public: bool = False) -> list[Domain] | None:
    """The domains a create or update names: a list or comma-separated string of domain ids (None:
    not given; update's "public": []). Every id must name a live domain; a domain below another one
    named is dropped (its parent's subtree covers it: CloudStack's filterChildSubDomains)."""
    uuids = _uuids(value, PUBLIC if allow_public else None)
    if not uuids:
        return uuids
    found = {d.uuid: d for d in db.session.scalars(select(Domain).where(Domain.uuid.in_(uuids),
                                                                        Domain.removed.is_(None)))}
    for u in uuids:
        if u not in found:
            raise InvalidParameter("Please specify a valid domain id", field=field)
    domains = [found[u] for u in uuids]
    return [d for d in domains
            if not any(o.id != d.id and d.path.startswith(o.path) for o in domains)]


def is_root(caller) -> bool:
    """A root admin, or no caller (the system: seeding, the demo)."""
    return caller is None or access.is_root(caller)


def check_caller(caller, o, domains: list[Domain] | None, *, creating: bool) -> None:
    """Who may restrict (or make public) an offering: root admins any; a domain admin only to
    domains of their subtree, never a public one (ConfigurationManagerImpl's messages, 431)."""
    if is_root(caller):
        return
    what, mine = _what(o), access.caller_domain(caller)
    if not access.is_domain_admin(caller):
        raise PermissionDenied(f"Unable to {'create' if creating else 'update'} {what} by user "
                               f"{caller.username} because it is not root-admin or domain-admin")
    existing = [] if creating else domains_of(o)
    if creating and not domains:
        raise InvalidParameter(f"Unable to create public {what} by admin: {caller.username} because it is "
                               "domain-admin", field="domainid")
    if not creating:
        if not existing:
            raise InvalidParameter(f"Unable to update public {what}: {o.uuid} by user: {caller.username} "
                                   "because it is domain-admin", field="id")
        if domains == []:
            raise InvalidParameter(f"Unable to update {what}: {o.uuid} to a public offering by user: "
                                   f"{caller.username} because it is domain-admin", field="domainid")
        if any(not d.path.startswith(mine.path) for d in existing):
            raise InvalidParameter(f"Unable to update {what}: {o.uuid} as it has linked domain(s) which are not "
                                   f"child domain for domain-admin: {caller.username}", field="id")
    for d in domains or []:
        if not d.path.startswith(mine.path):
            raise InvalidParameter(f"Unable to {'create' if creating else 'update'} {what} by domain-admin: "
                                   f"{caller.username} with domain: {d.uuid} which is not a child domain",
                                   field="domainid")


def may_manage(caller, o) -> bool:
    """An offering a domain admin may edit or delete: restricted, and only to domains of their subtree."""
    if is_root(caller):
        return True
    ds = domains_of(o)
    return access.is_domain_admin(caller) and bool(ds) and all(
        d.path.startswith(access.caller_domain(caller).path) for d in ds)


def set_domains(o, domains: list[Domain] | None) -> None:
    """Restrict the offering (flushed, not committed) to these domains ([]: public; None: unchanged)."""
    if domains is None:
        return
    if o.id is None:
        db.session.flush()
    t = _type(o)
    db.session.execute(delete(OfferingDomain).where(OfferingDomain.offering_type == t,
                                                    OfferingDomain.offering_id == o.id))
    db.session.add_all(OfferingDomain(offering_type=t, offering_id=o.id, domain_id=d.id) for d in domains)
    db.session.flush()


def response_fields(o) -> dict:
    """The response's domainid and domain, zoneid and zone: comma-separated ids and names (absent
    when public, when in every zone)."""
    out = {}
    ds, zs = domains_of(o), zones_of(o)
    if ds:
        out |= {"domainid": ",".join(d.uuid for d in ds), "domain": ",".join(d.name for d in ds)}
    if zs:
        out |= {"zoneid": ",".join(z.uuid for z in zs), "zone": ",".join(z.name for z in zs)}
    return out


# --- Zones ------------------------------------------------------------------------------

ALL_ZONES = "all"  # update*Offering's zoneid=all: every zone again


def zones_of(o) -> list[Zone]:
    return list(db.session.scalars(
        select(Zone).join(OfferingZone, OfferingZone.zone_id == Zone.id)
        .where(OfferingZone.offering_type == _type(o), OfferingZone.offering_id == o.id, Zone.removed.is_(None))
        .order_by(Zone.id)))


def zones_by_offering(model, ids) -> dict[int, list[Zone]]:
    out: dict[int, list[Zone]] = {}
    if ids:
        for offering_id, z in db.session.execute(
                select(OfferingZone.offering_id, Zone).join(Zone, OfferingZone.zone_id == Zone.id)
                .where(OfferingZone.offering_type == _type(model), OfferingZone.offering_id.in_(list(ids)),
                       Zone.removed.is_(None)).order_by(Zone.id)).all():
            out.setdefault(offering_id, []).append(z)
    return out


def in_zone(model, zone: Zone) -> ColumnElement[bool]:
    """A WHERE criterion on `model`: the offerings that serve this zone."""
    restricted = select(OfferingZone.offering_id).where(OfferingZone.offering_type == _type(model))
    return or_(model.id.not_in(restricted), model.id.in_(restricted.where(OfferingZone.zone_id == zone.id)))


def listed(model, caller=None, *, id=None, name=None, keyword=None, domainid=None, recursive=False,
           owner=None, zone=None):
    """The query of list{Service,Disk}Offerings: live offerings of `model` the caller may see (no
    caller: every one), or with owner those that account may use, in zone, by id, name or keyword."""
    q = select(model).where(model.removed.is_(None)).order_by(model.sort_key, model.id)
    if owner is not None:
        q = q.where(usable_by(owner, model))
    if zone is not None:
        q = q.where(in_zone(model, zone))
    if caller is not None:
        q = q.where(visible(caller, model, recursive=recursive, domainid=domainid))
    if id:
        q = q.where(model.uuid == id)
    if name:
        q = q.where(model.name == name)
    if keyword:
        q = q.where(model.name.contains(keyword, autoescape=True))
    return q


def zone_by_uuid(uuid: str, field: str = "zoneid") -> Zone:
    z = db.session.scalar(select(Zone).where(Zone.uuid == uuid, Zone.removed.is_(None)))
    if z is None:
        raise InvalidParameter("Please specify a valid zone id", field=field)
    return z


def parse_zones(value, *, allow_all: bool = False) -> list[Zone] | None:
    """The zones a create or update names (None: not given; update's "all": [])."""
    uuids = _uuids(value, ALL_ZONES if allow_all else None)
    return uuids if not uuids else [zone_by_uuid(u) for u in uuids]


def set_zones(caller, o, zones: list[Zone] | None, *, creating: bool = False) -> None:
    """Restrict the offering to these zones ([]: every zone; None: unchanged). A domain admin may not
    change an existing offering's zones (CloudStack's message, 431)."""
    if zones is None:
        return
    if o.id is None:
        db.session.flush()
    if not creating and not is_root(caller) and sorted(z.id for z in zones) != sorted(z.id for z in zones_of(o)):
        raise InvalidParameter(f"Unable to update zone(s) for {_what(o)}: {o.uuid} by admin: {caller.username} as "
                               "it is domain-admin", field="zoneid")
    t = _type(o)
    db.session.execute(delete(OfferingZone).where(OfferingZone.offering_type == t, OfferingZone.offering_id == o.id))
    db.session.add_all(OfferingZone(offering_type=t, offering_id=o.id, zone_id=z.id) for z in zones)
    db.session.flush()


def zone_choices() -> list[tuple[str, str]]:
    return [(z.uuid, z.name) for z in db.session.scalars(select(Zone).where(Zone.removed.is_(None)).order_by(Zone.name))]


def domain_path(d: Domain) -> str:
    """A domain as CloudStack's lists name it: ROOT, ROOT/sales, ROOT/sales/emea."""
    return "ROOT" + d.path.rstrip("/") if d.path != "/" else "ROOT"


def domain_choices(caller) -> list[tuple[str, str]]:
    """The domains the caller may restrict an offering to: (uuid, path), by path."""
    rows = db.session.scalars(select(Domain).where(Domain.removed.is_(None), access.visible_domains(caller)))
    return sorted(((d.uuid, domain_path(d)) for d in rows), key=lambda c: c[1])


def forget_domains(caller, domain_ids: list[int]) -> None:
    """Domains being deleted (deleteDomain): an offering restricted only to them is removed (CloudStack's
    cleanupDomainOfferings makes it Inactive: no account of a live domain could use it, and it must
    not turn public); one with other domains too just loses these (flushed, not committed)."""
    rows = db.session.execute(select(OfferingDomain.offering_type, OfferingDomain.offering_id, OfferingDomain.domain_id)
                              .where(OfferingDomain.offering_id.in_(
                                  select(OfferingDomain.offering_id).where(OfferingDomain.domain_id.in_(domain_ids))))
                              ).all()
    by_offering: dict[tuple[str, int], set[int]] = {}
    for t, oid, did in rows:
        by_offering.setdefault((t, oid), set()).add(did)
    gone = set(domain_ids)
    for (t, oid), ds in by_offering.items():
        if not ds & gone:
            continue  # the subquery matched another kind's offering with the same id
        model = ServiceOffering if t == "ServiceOffering" else DiskOffering
        o = db.session.get(model, oid)
        if ds <= gone and o is not None and o.removed is None:
            o.removed = utcnow()
            kind = "SERVICE.OFFERING.DELETE" if t == "ServiceOffering" else "DISK.OFFERING.DELETE"
            events.record(kind, f"{_what(o).capitalize()} {o.name} deleted with its domain", user=caller,
                          resource_type=t, resource_id=o.uuid)
        else:
            db.session.execute(delete(OfferingDomain).where(OfferingDomain.offering_type == t,
                                                            OfferingDomain.offering_id == oid,
                                                            OfferingDomain.domain_id.in_(domain_ids)))
    db.session.flush()
