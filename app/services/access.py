"""The one access layer: which accounts' objects a caller may see and act on, and whose
name a create call makes something in. Every service filters its queries through
`owned(...)` and picks owners through `owner_for(...)`, so that domains, projects and
roles change the rule here, once, for every object kind.

The rule (CloudStack's), on the caller's account's role_type:
- Admin (root admin): every account.
- DomainAdmin / ResourceAdmin: the accounts of their domain and of every domain below it;
  nothing above or beside.
- User: their own account.
- Projects: a project's resources belong to its own account (role "project"). Its members
  act on them by id; lists show them only when the request names the project (`projectid`,
  or -1 for every project the caller is a member of), as CloudStack's lists skip project
  resources otherwise. The API layer (and the portal's project switcher) sets that scope
  for the request with `enter_scope(...)`; outside a request (jobs) only the rule above
  plus the caller's projects applies.
"""
from __future__ import annotations

from flask import g, has_app_context
from sqlalchemy import ColumnElement, and_, false, or_, select, true

from app.extensions import db
from app.models import Account, Domain, Project, ProjectAccount, Role
from app.services.errors import InvalidParameter, NotFound, PermissionDenied

ALL_PROJECTS = "-1"  # CloudStack's projectid=-1: every project the caller may see
_DOMAIN_ROLES = ("DomainAdmin", "ResourceAdmin")


# --- Who the caller is ------------------------------------------------------------------

def is_root(caller) -> bool:
    return caller is not None and caller.role_type == "Admin"


def is_domain_admin(caller) -> bool:
    return caller is not None and caller.role_type in _DOMAIN_ROLES


def is_any_admin(caller) -> bool:
    """Root and domain admins: those who manage accounts (of every domain, of their subtree)."""
    return is_root(caller) or is_domain_admin(caller)


def caller_domain(caller) -> Domain:
    return caller.account.domain


# --- Domains ------------------------------------------------------------------------------

def domain_ids_under(path: str):
    """A subquery: the ids of the live domains at `path` and below."""
    return select(Domain.id).where(Domain.path.startswith(path, autoescape=True), Domain.removed.is_(None))


def can_see_domain(caller, domain: Domain) -> bool:
    """Root admins see every domain; others their own domain's subtree (a user: their own domain)."""
    if is_root(caller):
        return True
    mine = caller_domain(caller)
    if is_domain_admin(caller):
        return domain.path.startswith(mine.path)
    return domain.id == mine.id


def visible_domains(caller) -> ColumnElement[bool]:
    """A WHERE criterion on Domain: the domains the caller may see."""
    if is_root(caller):
        return true()
    mine = caller_domain(caller)
    if is_domain_admin(caller):
        return Domain.path.startswith(mine.path, autoescape=True)
    return Domain.id == mine.id


def domain_by_uuid(caller, uuid: str | None, field: str = "domainid") -> Domain | None:
    """The domain a call names (None when none is named); one the caller may not see is
    "not found", exactly like a missing one."""
    if not uuid:
        return None
    d = db.session.scalar(select(Domain).where(Domain.uuid == uuid, Domain.removed.is_(None)))
    if d is None or not can_see_domain(caller, d):
        raise InvalidParameter("Unable to find domain by the specified id", field=field)
    return d


# --- Projects -----------------------------------------------------------------------------

def member_project_accounts(caller):
    """A subquery: the accounts of the live projects the caller's account is a member of."""
    return (select(Project.account_id).join(ProjectAccount, ProjectAccount.project_id == Project.id)
            .where(ProjectAccount.account_id == caller.account_id, Project.removed.is_(None)))


def _project_accounts():
    return select(Account.id).where(Account.role == Role.PROJECT)


def _subtree_accounts(caller, projects: bool | None = None):
    """Accounts of the caller's domain and below; projects: True only project accounts,
    False no project accounts, None both."""
    q = select(Account.id).where(Account.domain_id.in_(domain_ids_under(caller_domain(caller).path)))
    if projects is True:
        q = q.where(Account.role == Role.PROJECT)
    elif projects is False:
        q = q.where(Account.role != Role.PROJECT)
    return q


def can_see_project(caller, project: Project) -> bool:
    if project.removed is not None:
        return False
    if is_root(caller):
        return True
    if is_domain_admin(caller) and project.domain.path.startswith(caller_domain(caller).path):
        return True
    return db.session.scalar(select(ProjectAccount.id).where(ProjectAccount.project_id == project.id,
                                                            ProjectAccount.account_id == caller.account_id)) is not None


def project_by_uuid(caller, uuid: str | None, field: str = "projectid") -> Project | None:
    if not uuid:
        return None
    p = db.session.scalar(select(Project).where(Project.uuid == uuid, Project.removed.is_(None)))
    if p is None or not can_see_project(caller, p):
        raise InvalidParameter("Unable to find project by the specified id", field=field)
    return p


def enter_scope(caller, projectid: str | None, *, listing: bool, domainid: str | None = None) -> None:
    """The request's project scope (API: its `projectid`; the portal: the project switcher).
    listing: the request lists objects (lists skip project resources unless a project is named);
    a list's domainid must name a domain the caller may see (431 otherwise)."""
    if listing and domainid:
        domain_by_uuid(caller, domainid)
    project = ALL_PROJECTS if projectid == ALL_PROJECTS else project_by_uuid(caller, projectid)
    g.nubo_scope = (project, listing)


def leave_scope() -> None:
    g.pop("nubo_scope", None)


def _scope():
    if not has_app_context():
        return None, False
    return g.get("nubo_scope", (None, False))


def current_project() -> Project | None:
    """The project the current request names (None: none, or every project)."""
    project, _ = _scope()
    return project if isinstance(project, Project) else None


def listing_projects() -> bool:
    """The request lists the objects of every project of the caller (projectid=-1)."""
    project, _ = _scope()
    return project == ALL_PROJECTS


# --- The rule -----------------------------------------------------------------------------

def own_account_id(caller) -> int:
    """The caller's "own" account for self filters: the project's when the request names one."""
    project = current_project()
    return project.account_id if project is not None else caller.account_id


def owned(caller, column) -> ColumnElement[bool]:
    """A WHERE criterion on an `account_id` column: the rows the caller may see.
    Use it in every query that lists or looks up an account's objects:

        select(Snapshot).where(access.owned(caller, Snapshot.account_id))
    """
    project, listing = _scope()
    if isinstance(project, Project):  # the request names one project: its objects only
        return column == project.account_id
    if project == ALL_PROJECTS:  # every project the caller may see
        if is_root(caller):
            return column.in_(_project_accounts())
        if is_domain_admin(caller):
            return column.in_(_subtree_accounts(caller, projects=True))
        return column.in_(member_project_accounts(caller))
    if listing:  # a list without a project: no project's objects, as CloudStack
        if is_root(caller):
            return or_(column.is_(None), column.not_in(_project_accounts()))
        if is_domain_admin(caller):
            return column.in_(_subtree_accounts(caller, projects=False))
        return column == caller.account_id
    # A lookup (by id), or outside a request: the caller's rule plus their projects.
    if is_root(caller):
        return true()
    if is_domain_admin(caller):
        return column.in_(_subtree_accounts(caller))
    return or_(column == caller.account_id, column.in_(member_project_accounts(caller)))


def plainly_owned(caller, account_id: int | None) -> bool:
    """True when `owned(caller, column)` admits a row of `account_id` for a lookup by id, and
    that is plain without a query: root, or the caller's own account, with no project named.
    False means only that it is not plain: ask `owned` in the row's query."""
    project, listing = _scope()
    if project is not None or listing:
        return False
    return is_root(caller) or (account_id is not None and account_id == caller.account_id)


def named_rows(caller, model, *, id=None, name=None, keyword=None, account=None, domainid=None):
    """A SELECT of an account-owned model with a `name` (user data, instance groups, ...) as
    CloudStack's list commands filter it: what the caller may see, by id, exact name, keyword in
    the name, account (+ domainid); oldest first."""
    q = select(model).where(owned(caller, model.account_id)).order_by(model.id)
    if id:
        q = q.where(model.uuid == id)
    if name:
        q = q.where(model.name == name)
    if keyword:
        q = q.where(model.name.contains(keyword, autoescape=True))
    if account or domainid:
        q = q.where(list_owner(caller, model.account_id, account=account, domainid=domainid))
    return q


def list_owner(caller, column, *, account: str | None = None, domainid: str | None = None,
               listall: bool = False) -> ColumnElement[bool]:
    """CloudStack's owner rule of a list command: the account named (account + domainid) or the
    project named; every project of the caller (projectid=-1) or, with listall, everything the
    caller may see (a user: their own); else only the caller's own account's objects."""
    if account or current_project() is not None:
        return column == owner_for(caller, account, domainid).id
    if domainid and is_any_admin(caller):  # every account of that domain
        d = domain_by_uuid(caller, domainid)
        return and_(column.in_(select(Account.id).where(Account.domain_id == d.id)), owned(caller, column))
    if listall or listing_projects():
        return owned(caller, column)
    return and_(column == caller.account_id, owned(caller, column))


def can_see(caller, account_id: int | None) -> bool:
    """The same rule for one row already loaded (account_id None: not owned by anyone)."""
    if account_id is None:
        return is_root(caller)
    project, _ = _scope()
    if project is None and (is_root(caller) or account_id == caller.account_id):
        return True
    return db.session.scalar(select(Account.id).where(Account.id == account_id,
                                                      owned(caller, Account.id))) is not None


def accounts_visible(caller) -> ColumnElement[bool]:
    """A WHERE criterion on Account: the (non-project) accounts the caller may see."""
    base = Account.role != Role.PROJECT
    if is_root(caller):
        return base
    if is_domain_admin(caller):
        return and_(base, Account.domain_id.in_(domain_ids_under(caller_domain(caller).path)))
    return Account.id == caller.account_id


def find_account(name: str, domain: Domain) -> Account | None:
    return db.session.scalar(select(Account).where(Account.name == name, Account.domain_id == domain.id,
                                                   Account.removed.is_(None)))


def owner_for(caller, account: str | None = None, domainid: str | None = None,
              projectid: str | None = None) -> Account:
    """The account a create call makes its object for: CloudStack's `account` (+ `domainid`)
    or `projectid` (else the project the request names); the caller's own account when none
    is named. Naming another account is refused for those who may not act in it (531); an
    unknown one is "not found" (431)."""
    if account and (projectid or current_project() is not None):
        raise InvalidParameter("Account and projectId can't be specified together", field="projectid")
    project = project_by_uuid(caller, projectid) if projectid else (None if account else current_project())
    if project is not None:
        return project_owner(caller, project)
    if not account:
        if domainid and not is_any_admin(caller):
            domain_by_uuid(caller, domainid)
        return caller.account
    domain = domain_by_uuid(caller, domainid) if domainid else caller_domain(caller)
    if account == caller.account.name and domain.id == caller.account.domain_id:
        return caller.account
    if not is_any_admin(caller):
        raise PermissionDenied(f"You may only act in your own account, {caller.account.name}")
    acct = find_account(account, domain)
    if acct is None or acct.is_project or not can_see_domain(caller, domain):
        raise InvalidParameter(f"Unable to find account {account} in domain {domain.name}", field="account")
    return acct


def project_owner(caller, project: Project) -> Account:
    """A project's account, for a caller who may make things in the project (a member, or an
    admin over its domain); a suspended project makes nothing (CloudStack's message)."""
    if not can_see_project(caller, project):
        raise InvalidParameter("Unable to find project by the specified id", field="projectid")
    if project.state != "Active":
        raise PermissionDenied(f"Can't create resources in project {project.name} as it's not in Active state")
    return project.account


def none() -> ColumnElement[bool]:
    return false()
