"""Projects, as CloudStack has them: a project owns its resources through its own account
(role "project", in the project's domain); its members (ProjectAccount: Admin or Regular)
see and use them when they name the project (projectid). Invitations are off by default
(project.invite.required): an account is added at once; with them on, it is invited
(app/services/project_invitations.py)."""
from __future__ import annotations

import re

from sqlalchemy import func, select, update

from app.extensions import db
from app.models import (Account, AccountState, Project, ProjectAccount, ProjectRole, ProjectState, Role,
                        VirtualMachine, VMState, new_uuid, utcnow)
from app.services import access, events, settings
from app.services.errors import InvalidParameter, NotFound, PermissionDenied, ResourceInUse
from app.services.settings import Definition, define

NAME_RE = re.compile(r"^[^\x00-\x1f]{1,255}$")

define(Definition("project.invite.required", "false", "If invitation confirmation is required when an account "
                  "is added to a project",
                  category="Project Defaults", type="boolean"))
define(Definition("allow.user.create.projects", "true", "If regular users can create a project",
                  category="Project Defaults", type="boolean"))
define(Definition("max.project.projects", "-1", "Default number of projects an account may own (-1: no limit); "
                  "counted as the projects it is Admin of.", category="Limits", type="integer", min=-1, max=10**9))


def of_account(account_id: int) -> Project | None:
    """The project whose resources this (project) account owns."""
    return db.session.scalar(select(Project).where(Project.account_id == account_id))


def remove_account_project_rows(acct: Account) -> None:
    """An account going away leaves the projects it was a member of."""
    from app.services import project_invitations
    for m in db.session.scalars(select(ProjectAccount).where(ProjectAccount.account_id == acct.id)):
        db.session.delete(m)
    project_invitations.remove_for_account(acct.id)


def remove_project_rows(caller, acct: Account) -> None:
    """A project's own account being deleted: its project goes (members first)."""
    project = of_account(acct.id)
    if project is None or project.removed is not None:
        return
    for m in list(project.members):
        db.session.delete(m)
    project.removed, project.state = utcnow(), ProjectState.DISABLED
    events.record("PROJECT.DELETE", f"Project {project.name} deleted", user=caller, account_id=acct.id,
                  resource_type="Project", resource_id=project.uuid)


def _membership(project: Project, account_id: int) -> ProjectAccount | None:
    return db.session.scalar(select(ProjectAccount).where(ProjectAccount.project_id == project.id,
                                                         ProjectAccount.account_id == account_id))


def get(caller, uuid: str, field: str = "id") -> Project:
    p = db.session.scalar(select(Project).where(Project.uuid == uuid, Project.removed.is_(None)))
    if p is None or not access.can_see_project(caller, p):
        raise NotFound("Unable to find project by the specified id", field=field)
    return p


def _manage(caller, project: Project) -> None:
    """Project admins (members with role Admin) and admins over its domain manage it."""
    if access.is_root(caller) or (access.is_domain_admin(caller)
                                  and project.domain.path.startswith(caller.account.domain.path)):
        return
    m = _membership(project, caller.account_id)
    if m is None or m.role != ProjectRole.ADMIN:
        raise PermissionDenied(f"Account {caller.account.name} can't manage project {project.name}: "
                               f"it is not the project's admin")


def _check_name(name: str | None) -> str:
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise InvalidParameter("Project name must be 1-255 characters", field="name")
    return name


def check_create(caller, name: str, display_text: str | None = None, account: str | None = None,
                 domainid: str | None = None) -> tuple[str, Account]:
    """What createProject refuses, before its job: the name and the owning account."""
    name = _check_name(name)
    if not access.is_any_admin(caller) and not settings.get("allow.user.create.projects"):
        raise PermissionDenied("Regular users are not allowed to create projects")
    owner = access.owner_for(caller, account, domainid) if (account or domainid) else caller.account
    if owner.is_project:
        raise InvalidParameter("A project can't own a project", field="account")
    if db.session.scalar(select(Project.id).where(func.lower(Project.name) == name.lower(),
                                                  Project.domain_id == owner.domain_id, Project.removed.is_(None))):
        raise InvalidParameter(f"Project with name {name} already exists in domain id={owner.domain.uuid}",
                               field="name")
    if display_text is not None and len(display_text) > 255:
        raise InvalidParameter("displaytext is at most 255 characters", field="displaytext")
    _check_limit(owner)
    return name, owner


def _check_limit(owner: Account) -> None:
    limit = settings.get("max.project.projects")
    if limit >= 0 and not owner.is_admin:
        owned = db.session.scalar(select(func.count()).select_from(ProjectAccount).join(Project).where(
            ProjectAccount.account_id == owner.id, ProjectAccount.role == ProjectRole.ADMIN,
            Project.removed.is_(None)))
        if owned >= limit:
            from app.services.errors import ResourceLimitExceeded
            raise ResourceLimitExceeded(f"Maximum number of resources of type 'project' for account "
                                        f"name={owner.name} has been exceeded ({limit})")


def _lock_owner(owner: Account) -> None:
    """Creates for one owner, one at a time: a no-op UPDATE of its account row takes the row's
    lock (PostgreSQL, MariaDB) or SQLite's write lock until the commit, so the count of its
    projects read after it is not stale when two createProject race at the limit."""
    owner_id = owner.id  # read before the commit: after it, reading `owner` would SELECT the row and,
    # on MariaDB (REPEATABLE READ), fix the transaction's snapshot before the lock is held
    db.session.commit()  # a fresh transaction whose first statement takes the lock
    db.session.execute(update(Account).where(Account.id == owner_id).values(state=Account.state))


def create_project(caller, name: str, display_text: str | None = None, account: str | None = None,
                   domainid: str | None = None) -> Project:
    """The project, its account (role "project", in the owner's domain) and the owner as its
    Admin member, in one transaction."""
    from app.services import accounts
    name, owner = check_create(caller, name, display_text, account, domainid)
    _lock_owner(owner)
    try:
        _check_limit(owner)  # again, now that no other create of this owner's can pass it
    except Exception:
        db.session.rollback()
        raise
    acct = accounts.create_account(f"PrjAcct-{name}-{new_uuid()[:8]}", Role.PROJECT, domain=owner.domain,
                                   commit=False)
    p = Project(name=name, display_text=display_text or name, domain_id=owner.domain_id, account_id=acct.id,
                state=ProjectState.ACTIVE)
    db.session.add(p)
    db.session.flush()
    db.session.add(ProjectAccount(project_id=p.id, account_id=owner.id, role=ProjectRole.ADMIN))
    from app.services.network import secgroups
    secgroups.ensure_default(acct.id)  # a project's VMs have their "default" group too
    events.record("PROJECT.CREATE", f"Project {name} created", user=caller, account_id=acct.id,
                  resource_type="Project", resource_id=p.uuid)
    db.session.commit()
    return p


def list_projects(caller, *, id: str | None = None, name: str | None = None, display_text: str | None = None,
                  state: str | None = None, keyword: str | None = None, account: str | None = None,
                  domainid: str | None = None, listall: bool = False, isrecursive: bool = False, page=None):
    """listProjects: a user's projects (those their account is a member of); admins every
    project of their domain and below (root admins: all), or those of the account named."""
    from app.services.pagination import page_of
    q = select(Project).where(Project.removed.is_(None)).order_by(Project.id)
    if account:
        member = access.owner_for(caller, account, domainid)
        q = q.where(Project.id.in_(select(ProjectAccount.project_id).where(ProjectAccount.account_id == member.id)))
    elif access.is_root(caller):
        pass
    elif access.is_domain_admin(caller):
        q = q.where(Project.domain_id.in_(access.domain_ids_under(caller.account.domain.path)))
    else:
        q = q.where(Project.id.in_(select(ProjectAccount.project_id)
                                   .where(ProjectAccount.account_id == caller.account_id)))
    if domainid and not account:
        d = access.domain_by_uuid(caller, domainid)
        q = q.where(Project.domain_id.in_(access.domain_ids_under(d.path)) if (isrecursive or listall)
                    else Project.domain_id == d.id)
    if id:
        q = q.where(Project.uuid == id)
    if name:
        q = q.where(Project.name == name)
    if display_text:
        q = q.where(Project.display_text == display_text)
    if state:
        q = q.where(func.lower(Project.state) == state.lower())
    if keyword:
        q = q.where(Project.name.contains(keyword, autoescape=True))
    return page_of(q, page)


def owners(project: Project) -> list[ProjectAccount]:
    return [m for m in project.members if m.role == ProjectRole.ADMIN]


def update_project(caller, project: Project, *, display_text: str | None = None, name: str | None = None,
                   account: str | None = None) -> Project:
    """updateProject: the display text, the name, or a new owner (an account made the project's
    Admin; the former owner stays a Regular member)."""
    _manage(caller, project)
    if name is not None and name != project.name:
        name = _check_name(name)
        if db.session.scalar(select(Project.id).where(func.lower(Project.name) == name.lower(),
                                                      Project.domain_id == project.domain_id,
                                                      Project.removed.is_(None), Project.id != project.id)):
            raise InvalidParameter(f"Project with name {name} already exists in domain", field="name")
        project.name = name
    if display_text is not None:
        if len(display_text) > 255:
            raise InvalidParameter("displaytext is at most 255 characters", field="displaytext")
        project.display_text = display_text
    if account:
        new = access.find_account(account, project.domain)
        if new is None or new.is_project:
            raise InvalidParameter(f"Unable to find account name={account} in domain id={project.domain.uuid}",
                                   field="account")
        for m in owners(project):
            m.role = ProjectRole.REGULAR
        m = _membership(project, new.id)
        if m is None:
            db.session.add(ProjectAccount(project_id=project.id, account_id=new.id, role=ProjectRole.ADMIN))
        else:
            m.role = ProjectRole.ADMIN
    events.record("PROJECT.UPDATE", f"Project {project.name} updated", user=caller, account_id=project.account_id,
                  resource_type="Project", resource_id=project.uuid)
    db.session.commit()
    return project


def set_state(caller, project: Project, state: str) -> Project:
    """activateProject / suspendProject. Suspending powers the project's running VMs off
    (a VM busy with another action is left to it) and makes nothing new in it."""
    _manage(caller, project)
    if state == ProjectState.SUSPENDED:
        if project.state == ProjectState.SUSPENDED:
            raise InvalidParameter(f"Project {project.name} is already suspended", field="id")
        project.state = ProjectState.SUSPENDED
        project.account.state = AccountState.DISABLED
        events.record("PROJECT.SUSPEND", f"Project {project.name} suspended", user=caller,
                      account_id=project.account_id, resource_type="Project", resource_id=project.uuid)
        db.session.commit()
        stop_vms(caller, project)
    else:
        if project.state == ProjectState.ACTIVE:
            raise InvalidParameter(f"Project {project.name} is already active", field="id")
        project.state = ProjectState.ACTIVE
        project.account.state = AccountState.ENABLED
        events.record("PROJECT.ACTIVATE", f"Project {project.name} activated", user=caller,
                      account_id=project.account_id, resource_type="Project", resource_id=project.uuid)
        db.session.commit()
    return project


def stop_vms(caller, project: Project) -> None:
    from app.services import vms
    from app.services.errors import ServiceError
    running = list(db.session.scalars(select(VirtualMachine).where(
        VirtualMachine.account_id == project.account_id, VirtualMachine.removed.is_(None),
        VirtualMachine.state == VMState.RUNNING)))
    for vm in running:  # within this call: when suspendProject answers, they are Stopped
        try:
            vms.stop_now(vm, f"project {project.name} suspended")
        except ServiceError:  # the host would not power it off: it runs on; the project makes nothing new
            db.session.rollback()


def check_delete(caller, project: Project) -> None:
    _manage(caller, project)


def delete_project(caller, project: Project, cleanup: bool = False) -> None:
    """deleteProject (the job's work): without cleanup a project that still owns something is
    refused; with it its resources go first (through the account deletion when it exists)."""
    from app.services import domains
    _manage(caller, project)
    left = domains.owns_anything(project.account_id)
    if left and not cleanup:
        raise ResourceInUse(f"Can't delete project {project.name}: it still owns {left}")
    if left:  # deleteAccount's steps on its account: its resources, then the project (remove_project_rows)
        from app.services import account_deletion
        account_deletion.run_now(caller, project.account)
        return
    now = utcnow()
    for m in list(project.members):
        db.session.delete(m)
    project.removed, project.state = now, ProjectState.DISABLED
    acct = project.account
    if acct.removed is None:
        acct.removed = now
    events.record("PROJECT.DELETE", f"Project {project.name} deleted", user=caller, account_id=acct.id,
                  resource_type="Project", resource_id=project.uuid)
    db.session.commit()


# --- Members ------------------------------------------------------------------------------

def add_account(caller, project: Project, account: str | None, role: str | None = None,
                email: str | None = None) -> ProjectAccount | None:
    """addAccountToProject: the account, of the project's domain, joins at once; with
    project.invite.required on it (or the email address) is invited instead (None returned)."""
    _manage(caller, project)
    role = {None: ProjectRole.REGULAR, "regular": ProjectRole.REGULAR, "admin": ProjectRole.ADMIN}.get(
        (role or "").lower() or None)
    if role is None:
        raise InvalidParameter("roletype must be Admin or Regular", field="roletype")
    if project.state != ProjectState.ACTIVE:
        raise InvalidParameter(f"Can't add account to the specified project id in state={project.state} as it's "
                               "no longer active", field="projectid")
    if not account and not email:
        raise InvalidParameter("Either accountName or email is required", field="account")
    acct = None
    if account:
        acct = access.find_account(account, project.domain)
        if acct is None or acct.is_project:
            raise InvalidParameter(f"Unable to find account name={account} in domain id={project.domain.uuid}",
                                   field="account")
        if _membership(project, acct.id) is not None:
            raise InvalidParameter(f"Account {account} is already assigned to the project id={project.uuid}",
                                   field="account")
    if settings.get("project.invite.required"):
        from app.services import project_invitations
        project_invitations.invite(caller, project, acct, email, role)
        return None
    if acct is None:
        raise InvalidParameter("Account information is required for assigning account to the project",
                               field="account")
    m = ProjectAccount(project_id=project.id, account_id=acct.id, role=role)
    db.session.add(m)
    events.record("PROJECT.ACCOUNT.ADD", f"Account {acct.name} added to project {project.name}", user=caller,
                  account_id=project.account_id, resource_type="Project", resource_id=project.uuid)
    db.session.commit()
    return m


def remove_account(caller, project: Project, account: str) -> None:
    """deleteAccountFromProject: any member but the project's only Admin."""
    _manage(caller, project)
    acct = access.find_account(account, project.domain)
    m = _membership(project, acct.id) if acct else None
    if m is None:
        raise InvalidParameter(f"Account {account} is not assigned to the project id={project.uuid}",
                               field="account")
    if m.role == ProjectRole.ADMIN and len(owners(project)) == 1:
        raise InvalidParameter("Unable to delete account " + account + " from the project: it is the project's "
                               "only admin; make another account its admin first", field="account")
    db.session.delete(m)
    events.record("PROJECT.ACCOUNT.REMOVE", f"Account {acct.name} removed from project {project.name}",
                  user=caller, account_id=project.account_id, resource_type="Project", resource_id=project.uuid)
    db.session.commit()


def list_members(caller, project: Project, *, account: str | None = None, role: str | None = None, page=None):
    from app.services.pagination import page_of
    q = (select(ProjectAccount).join(Account, ProjectAccount.account_id == Account.id)
         .where(ProjectAccount.project_id == project.id).order_by(ProjectAccount.id))
    if account:
        q = q.where(Account.name == account)
    if role:
        q = q.where(func.lower(ProjectAccount.role) == role.lower())
    return page_of(q, page)


SWITCHER_SIZE = 50


def projects_of(caller) -> list[Project]:
    """The first SWITCHER_SIZE projects the caller may switch to in the portal (member projects;
    admins: those they may see). Every page's navigation asks, so it is one page, not all of
    a large cloud's projects; the Projects page lists (and switches to) the rest."""
    rows, _ = list_projects(caller, page=(1, SWITCHER_SIZE))
    return rows
