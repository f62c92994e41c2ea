"""Domains: CloudStack's tree of account groups (ROOT at the top). A domain admin manages
their domain's subtree (app/services/access.py decides who sees what)."""
from __future__ import annotations

from sqlalchemy import String, func, literal, select, update

from app.extensions import db
from app.models import DOMAIN_ID, DOMAIN_NAME, Account, Domain, DomainState, utcnow
from app.services import access, events, settings
from app.services.errors import InvalidParameter, NotFound, PermissionDenied, ResourceInUse

MAX_NAME = 255


def ensure_root() -> Domain:
    """The ROOT domain (uuid DOMAIN_ID, path "/"): made on first start."""
    root = db.session.scalar(select(Domain).where(Domain.uuid == DOMAIN_ID))
    if root is None:
        root = Domain(uuid=DOMAIN_ID, name=DOMAIN_NAME, path="/", level=0, state=DomainState.ACTIVE)
        db.session.add(root)
        db.session.flush()
    return root


def root() -> Domain:
    return ensure_root()


def display_path(d: Domain) -> str:
    """CloudStack's response path: "ROOT" for ROOT, "ROOT/child/grandchild" below it."""
    return DOMAIN_NAME + d.path.rstrip("/") if d.path != "/" else DOMAIN_NAME


def _check_name(name: str | None) -> str:
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidParameter("Domain name must be 1-255 characters", field="name")
    if "/" in name:
        raise InvalidParameter("Domain name can't contain the / character", field="name")
    return name


def _check_network_domain(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    labels = value.split(".")
    if len(value) > 255 or not all(lbl and len(lbl) <= 63 and lbl.replace("-", "").isalnum()
                                   and not lbl.startswith("-") and not lbl.endswith("-") for lbl in labels):
        raise InvalidParameter("Invalid network domain. Total length shouldn't exceed 190 chars. Each domain "
                               "label must be between 1 and 63 characters long, can contain ASCII letters 'a' "
                               "through 'z', the digits '0' through '9', and the hyphen ('-'); can't start or "
                               "end with \"-\"; can't start with digit", field="networkdomain")
    return value


def _sibling(parent: Domain, name: str, exclude: int | None = None) -> bool:
    q = select(Domain.id).where(Domain.parent_id == parent.id, func.lower(Domain.name) == name.lower(),
                                Domain.removed.is_(None))
    if exclude is not None:
        q = q.where(Domain.id != exclude)
    return db.session.scalar(q) is not None


def _manage(caller, d: Domain) -> None:
    """Root admins manage every domain; domain admins their subtree below their own domain."""
    if not access.can_see_domain(caller, d):
        raise NotFound("Unable to find domain by the specified id", field="id")
    if not access.is_any_admin(caller):
        raise PermissionDenied("Only administrators may manage domains")


def get(caller, uuid: str, field: str = "id") -> Domain:
    d = db.session.scalar(select(Domain).where(Domain.uuid == uuid, Domain.removed.is_(None)))
    if d is None or not access.can_see_domain(caller, d):
        raise NotFound("Unable to find domain by the specified id", field=field)
    return d


def create_domain(caller, name: str, parent_uuid: str | None = None, network_domain: str | None = None,
                  uuid: str | None = None) -> Domain:
    name = _check_name(name)
    network_domain = _check_network_domain(network_domain)
    parent = get(caller, parent_uuid, "parentdomainid") if parent_uuid else ensure_root()
    _manage(caller, parent)
    if parent.state != DomainState.ACTIVE:
        raise InvalidParameter(f"Unable to create domain {name}: the parent domain is not active",
                               field="parentdomainid")
    if _sibling(parent, name):
        raise InvalidParameter(f"Domain with name {name} already exists for the parent id={parent.uuid}",
                               field="name")
    if uuid and db.session.scalar(select(Domain.id).where(Domain.uuid == uuid)):
        raise InvalidParameter(f"Domain with uuid {uuid} already exists", field="domainid")
    d = Domain(name=name, parent_id=parent.id, path=f"{parent.path}{name}/", level=parent.level + 1,
               network_domain=network_domain, state=DomainState.ACTIVE)
    if uuid:
        d.uuid = uuid
    db.session.add(d)
    db.session.flush()
    events.record("DOMAIN.CREATE", f"Domain {display_path(d)} created", user=caller,
                  resource_type="Domain", resource_id=d.uuid)
    db.session.commit()
    return d


def list_domains(caller, *, id: str | None = None, name: str | None = None, level: int | None = None,
                 keyword: str | None = None, listall: bool = False, page=None):
    """listDomains: the caller's own domain, or (listall, or a domain id) every domain of their
    subtree that matches (a user sees only their own domain)."""
    from app.services.pagination import page_of
    q = select(Domain).where(Domain.removed.is_(None), access.visible_domains(caller)).order_by(Domain.path)
    if id:
        q = q.where(Domain.uuid == id)
    elif not listall:
        q = q.where(Domain.id == caller.account.domain_id)
    if name:
        q = q.where(Domain.name == name)
    if level is not None:
        q = q.where(Domain.level == level)
    if keyword:
        q = q.where(Domain.name.contains(keyword, autoescape=True))
    return page_of(q, page)


def list_children(caller, *, id: str | None = None, name: str | None = None, keyword: str | None = None,
                  recursive: bool = False, page=None):
    """listDomainChildren: the domains right below one (the caller's by default), or its whole
    subtree (isrecursive)."""
    from app.services.pagination import page_of
    parent = get(caller, id) if id else caller.account.domain
    if not access.is_any_admin(caller):
        raise PermissionDenied("Only administrators may list child domains")
    q = select(Domain).where(Domain.removed.is_(None), access.visible_domains(caller)).order_by(Domain.path)
    if recursive:
        q = q.where(Domain.path.startswith(parent.path, autoescape=True), Domain.id != parent.id)
    else:
        q = q.where(Domain.parent_id == parent.id)
    if name:
        q = q.where(Domain.name == name)
    if keyword:
        q = q.where(Domain.name.contains(keyword, autoescape=True))
    return page_of(q, page)


def has_children(ids: list[int]) -> set[int]:
    if not ids:
        return set()
    return set(db.session.scalars(select(Domain.parent_id).where(Domain.parent_id.in_(ids),
                                                                 Domain.removed.is_(None)).distinct()))


def update_domain(caller, uuid: str, *, name: str | None = None, network_domain: str | None = None) -> Domain:
    d = get(caller, uuid)
    _manage(caller, d)
    if name is not None:
        name = _check_name(name)
        if d.parent_id is None:
            raise InvalidParameter("ROOT domain can not be edited with a new name", field="name")
        if d.id == caller.account.domain_id and not access.is_root(caller):
            raise PermissionDenied("A domain admin may not rename their own domain")
        if name != d.name:
            if _sibling(d.parent, name, exclude=d.id):
                raise InvalidParameter(f"Domain with name {name} already exists for the parent id="
                                       f"{d.parent.uuid}", field="name")
            old, new = d.path, f"{d.parent.path}{name}/"
            # The whole subtree's paths start with the new one (one UPDATE, in the same transaction).
            db.session.execute(update(Domain).where(Domain.path.startswith(old, autoescape=True), Domain.id != d.id)
                               .values(path=literal(new, String) + func.substr(Domain.path, len(old) + 1))
                               .execution_options(synchronize_session=False))
            d.name, d.path = name, new
    if network_domain is not None:
        d.network_domain = _check_network_domain(network_domain)
    events.record("DOMAIN.UPDATE", f"Domain {display_path(d)} updated", user=caller,
                  resource_type="Domain", resource_id=d.uuid)
    db.session.commit()
    db.session.expire_all()
    return d


def subtree(d: Domain) -> list[Domain]:
    return list(db.session.scalars(select(Domain).where(Domain.path.startswith(d.path, autoescape=True),
                                                        Domain.removed.is_(None)).order_by(Domain.level.desc())))


def _accounts_in(domain_ids: list[int]) -> list[Account]:
    return list(db.session.scalars(select(Account).where(Account.domain_id.in_(domain_ids),
                                                         Account.removed.is_(None))))


def check_delete(caller, d: Domain, cleanup: bool) -> None:
    """Refuse (before any job starts) what deleteDomain would refuse."""
    _manage(caller, d)
    if d.parent_id is None:
        raise PermissionDenied("Can't delete the root domain")
    if d.id == caller.account.domain_id:
        raise PermissionDenied("You can't delete your own domain")
    if not cleanup:
        tree = subtree(d)
        if len(tree) > 1 or _accounts_in([x.id for x in tree]):
            raise ResourceInUse(f"Can't delete the domain yet because it has sub-domains or accounts "
                                f"(domain {display_path(d)}); use cleanup=true to remove them")


def delete_domain(caller, d: Domain, cleanup: bool) -> None:
    """deleteDomain (the job's work): with cleanup, every account of the subtree is removed
    through the account deletion, then the domains from the leaves up."""
    check_delete(caller, d, cleanup)
    tree = subtree(d)
    ids = [x.id for x in tree]
    for acct in _accounts_in(ids):
        remove_account(caller, acct)
    now = utcnow()
    for x in tree:  # leaves first
        x.removed, x.removed_key, x.state = now, x.id, DomainState.INACTIVE
        events.record("DOMAIN.DELETE", f"Domain {display_path(x)} deleted", user=caller,
                      resource_type="Domain", resource_id=x.uuid)
    from app.services import offering_domains
    offering_domains.forget_domains(caller, ids)  # offerings of these domains only: removed too
    settings.forget("domain", ids)
    db.session.commit()


def remove_account(caller, acct: Account) -> None:
    """An account of a domain being cleaned up: deleteAccount's steps (its VMs, volumes,
    templates, networks, addresses, groups, keys, project memberships; a project's account
    its project) run inside the domain's job; killed part way, each marked account is
    finished by the start-up repair and a new deleteDomain goes on from there."""
    from app.services import account_deletion
    account_deletion.run_now(caller, acct)


def owns_anything(account_id: int) -> str | None:
    """The first kind of live object this account still owns, or None."""
    # Not things an account owns: its own rows, history, and the change stream's outbox.
    skip = {"accounts", "users", "resource_counts", "resource_limits", "events", "async_jobs", "project_accounts", "changes",
            "security_groups", "security_group_rules", "event_buckets", "console_sessions", "projects",
            "revoked_sessions", "login_throttles"}
    for table in db.metadata.sorted_tables:
        if table.name in skip or "account_id" not in table.c:
            continue
        q = select(func.count()).select_from(table).where(table.c.account_id == account_id)
        if "removed" in table.c:
            q = q.where(table.c.removed.is_(None))
        if db.session.scalar(q):
            return table.name.replace("_", " ")
    return None
