"""Project invitations, as CloudStack's ProjectManagerImpl has them: with
project.invite.required on, addAccountToProject does not add the account but invites it
(or an email address, which gets a token by mail); the invited account accepts or
declines (updateProjectInvitation; by email: with the token, and then the caller's
account joins); a project's admins delete pending ones (deleteProjectInvitation).

States: Pending -> Completed (accepted) | Declined | Expired (older than
project.invite.timeout seconds: marked when next listed or answered, as CloudStack's
ExpiredInvitationsCleanup does on a timer). Accepting is one guarded UPDATE on the
Pending row, so two answers at once make one membership.
"""
from __future__ import annotations

import logging
import secrets
import smtplib
from datetime import timedelta
from email.message import EmailMessage

from sqlalchemy import false, or_, select, update

from app.extensions import db
from app.models import (Account, InvitationState, Project, ProjectAccount, ProjectInvitation, ProjectRole,
                        ProjectState, utcnow)
from app.services import access, events, settings
from app.services.errors import InvalidParameter, NotFound, ServiceError
from app.services.settings import Definition, define

log = logging.getLogger(__name__)

define(Definition("project.invite.timeout", "86400", "Invitation expiration time (in seconds). Default is 1 day "
                  "- 86400 seconds", category="Project Defaults", type="integer", min=1, max=10**9, unit="seconds"))
define(Definition("project.smtp.host", "", "SMTP hostname used for sending out email project invitations "
                  "(empty: invitations by email are refused)", category="Project Defaults"))
define(Definition("project.smtp.port", "25", "Port the SMTP server is listening on (plain SMTP; no "
                  "authentication)", category="Project Defaults", type="integer", min=1, max=65535))
define(Definition("project.email.sender", "nubo@localhost", "Sender of project invitation email",
                  category="Project Defaults"))
TOKEN_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # CloudStack's generateToken(10)


def _deadline():
    return utcnow() - timedelta(seconds=settings.get("project.invite.timeout"))


def expire_old() -> None:
    """Pending invitations older than project.invite.timeout become Expired."""
    db.session.execute(update(ProjectInvitation).where(ProjectInvitation.state == InvitationState.PENDING,
                                                       ProjectInvitation.created <= _deadline())
                       .values(state=InvitationState.EXPIRED).execution_options(synchronize_session=False))


def _pending(project: Project, *, account_id: int | None = None, email: str | None = None,
             token: str | None = None) -> ProjectInvitation | None:
    q = select(ProjectInvitation).where(ProjectInvitation.project_id == project.id,
                                        ProjectInvitation.state == InvitationState.PENDING)
    if token is not None:
        q = q.where(ProjectInvitation.token == token)
    elif email is not None:
        q = q.where(ProjectInvitation.email == email)
    else:
        q = q.where(ProjectInvitation.account_id == account_id)
    return db.session.scalar(q.order_by(ProjectInvitation.id.desc()).limit(1))


def invite(caller, project: Project, account: Account | None, email: str | None, role: str) -> ProjectInvitation:
    """addAccountToProject's work when invitations are required (the caller manages the project)."""
    expire_old()
    if account is not None:
        if _pending(project, account_id=account.id) is not None:
            raise InvalidParameter(f"There is already a pending invitation for account {account.name} to the "
                                   f"project id={project.uuid}", field="account")
        inv = ProjectInvitation(project_id=project.id, domain_id=project.domain_id, account_id=account.id, role=role)
    else:
        email = (email or "").strip()
        if "@" not in email or len(email) > 255:
            raise InvalidParameter("email must be an email address", field="email")
        if _pending(project, email=email) is not None:
            raise InvalidParameter(f"There is already a pending invitation for email {email} to the project "
                                   f"id={project.uuid}", field="email")
        if not settings.get("project.smtp.host"):
            raise InvalidParameter("Invitations by email need an SMTP server: set project.smtp.host", field="email")
        inv = ProjectInvitation(project_id=project.id, domain_id=project.domain_id, email=email, role=role,
                                token="".join(secrets.choice(TOKEN_CHARS) for _ in range(10)))
    db.session.add(inv)
    db.session.flush()
    if inv.email:
        try:
            _send(inv)
        except (OSError, smtplib.SMTPException) as e:  # CloudStack removes the invitation it could not send
            db.session.rollback()
            log.warning("project invitation to %s not sent: %s", inv.email, e)
            err = ServiceError(f"Failed to send the invitation to {email}: {e}")
            err.shown_to_users = True
            raise err from e
    events.record("PROJECT.INVITATION.CREATE", f"{account.name if account else email} invited to project "
                  f"{project.name}", user=caller, account_id=project.account_id, resource_type="Project",
                  resource_id=project.uuid)
    db.session.commit()
    return inv


def _send(inv: ProjectInvitation) -> None:
    """CloudStack's sendInvite: the token in a plain text mail."""
    msg = EmailMessage()
    msg["From"] = settings.get("project.email.sender")
    msg["To"] = inv.email
    msg["Subject"] = f"You are invited to join the project {inv.project.name}"
    msg.set_content(f"You've been invited to join the project {inv.project.name} (id={inv.project.uuid}). "
                    f"Please use token [{inv.token}] to complete registration "
                    f"(updateProjectInvitation projectid={inv.project.uuid} token={inv.token}).\n")
    with smtplib.SMTP(settings.get("project.smtp.host"), settings.get("project.smtp.port"), timeout=10) as smtp:
        smtp.send_message(msg)


def project_for_answer(caller, uuid: str, token: str | None = None, field: str = "projectid") -> Project:
    """The project an invitee answers or lists about: one the caller sees, or one that has
    invited the caller's account (or the holder of `token`). Any other is "not found", exactly
    like a missing one (an outsider learns nothing of it)."""
    p = db.session.scalar(select(Project).where(Project.uuid == uuid, Project.removed.is_(None)))
    if p is not None and (access.can_see_project(caller, p) or db.session.scalar(
            select(ProjectInvitation.id).where(ProjectInvitation.project_id == p.id,
                                               or_(ProjectInvitation.account_id == caller.account_id,
                                                   ProjectInvitation.token == token if token else false()))
            .limit(1)) is not None):
        return p
    raise InvalidParameter("Unable to find project by the specified id", field=field)


def answer(caller, project: Project, *, account: str | None = None, token: str | None = None,
           accept: bool = True) -> None:
    """updateProjectInvitation: the invited account (or someone acting for it: `account`, an
    admin over it) accepts or declines; with a token, the token's invitation is answered and
    the caller's account (or `account`) joins."""
    if account:
        acct = access.find_account(account, project.domain)
        if acct is None:
            raise InvalidParameter(f"Unable to find account name={account} in domain id={project.domain.uuid}",
                                   field="account")
        if acct.id != caller.account_id:
            access.owner_for(caller, account, project.domain.uuid)  # 531 unless the caller acts for it
    else:
        acct = caller.account
    inv = _pending(project, token=token) if token else _pending(project, account_id=acct.id)
    if inv is None:
        raise InvalidParameter(f"Unable to find invitation for account name={acct.name} to the project "
                               f"id={project.uuid}", field="token" if token else "account")
    if accept and inv.created <= _deadline():  # declining one that timed out still declines it, as CloudStack
        expire_old()
        db.session.commit()
        raise InvalidParameter(f"Invitation is expired for account {acct.name} to the project "
                               f"id={project.uuid}", field="projectid")
    if accept and project.state != ProjectState.ACTIVE:
        raise InvalidParameter(f"Can't join the project id={project.uuid} in state={project.state}: it is not "
                               "active", field="projectid")
    new = InvitationState.COMPLETED if accept else InvitationState.DECLINED
    done = db.session.execute(update(ProjectInvitation).where(ProjectInvitation.id == inv.id,
                                                              ProjectInvitation.state == InvitationState.PENDING)
                              .values(state=new, account_id=inv.account_id or acct.id)
                              .execution_options(synchronize_session=False))
    if done.rowcount != 1:  # answered by another request meanwhile
        db.session.rollback()
        raise InvalidParameter(f"Unable to find invitation for account name={acct.name} to the project "
                               f"id={project.uuid}", field="projectid")
    joiner = inv.account_id or acct.id
    if accept and db.session.scalar(select(ProjectAccount.id).where(ProjectAccount.project_id == project.id,
                                                                   ProjectAccount.account_id == joiner)) is None:
        if db.session.get(Account, joiner).is_project:
            db.session.rollback()
            raise InvalidParameter("A project can't join a project", field="account")
        db.session.add(ProjectAccount(project_id=project.id, account_id=joiner, role=inv.role or ProjectRole.REGULAR))
    events.record("PROJECT.INVITATION.UPDATE", f"Invitation to project {project.name} "
                  f"{'accepted' if accept else 'declined'} by {acct.name}", user=caller,
                  account_id=project.account_id, resource_type="Project", resource_id=project.uuid)
    db.session.commit()


def get(caller, uuid: str) -> ProjectInvitation:
    inv = db.session.scalar(select(ProjectInvitation).where(ProjectInvitation.uuid == uuid))
    if inv is None or inv.project.removed is not None or not (
            _manages(caller, inv.project) or inv.account_id == caller.account_id):
        raise NotFound(f"Unable to find project invitation by id {uuid}", field="id")
    return inv


def _manages(caller, project: Project) -> bool:
    from app.services import projects
    try:
        projects.check_delete(caller, project)
    except ServiceError:
        return False
    return True


def delete(caller, inv: ProjectInvitation) -> None:
    """deleteProjectInvitation: the project's admins (and admins over its domain) only."""
    from app.services import projects
    projects.check_delete(caller, inv.project)  # 531 for the invitee and regular members
    project = inv.project
    db.session.delete(inv)
    events.record("PROJECT.INVITATION.REMOVE", f"Invitation to project {project.name} removed", user=caller,
                  account_id=project.account_id, resource_type="Project", resource_id=project.uuid)
    db.session.commit()


def list_invitations(caller, *, id: str | None = None, projectid: str | None = None, state: str | None = None,
                     active_only: bool = False, account: str | None = None, domainid: str | None = None,
                     listall: bool = False, page=None):
    """listProjectInvitations: the invitations to the caller's account; with projectid, every
    invitation of a project the caller manages (its own only, for an invitee); admins with
    listall every one of their domain and below, or those of the account they name."""
    from app.services.pagination import page_of
    expire_old()
    db.session.commit()
    q = select(ProjectInvitation).join(Project, ProjectInvitation.project_id == Project.id).where(
        Project.removed.is_(None)).order_by(ProjectInvitation.id)
    if projectid:
        project = project_for_answer(caller, projectid)
        q = q.where(ProjectInvitation.project_id == project.id)
        if not _manages(caller, project):
            q = q.where(ProjectInvitation.account_id == caller.account_id)
    elif account:
        q = q.where(ProjectInvitation.account_id == access.owner_for(caller, account, domainid).id)
    elif listall and access.is_root(caller):
        pass
    elif listall and access.is_domain_admin(caller):
        q = q.where(ProjectInvitation.domain_id.in_(access.domain_ids_under(caller.account.domain.path)))
    else:
        q = q.where(ProjectInvitation.account_id == caller.account_id)
    if id:
        q = q.where(ProjectInvitation.uuid == id)
    if state:
        q = q.where(ProjectInvitation.state == state.capitalize())
    if active_only:
        q = q.where(ProjectInvitation.state == InvitationState.PENDING)
    return page_of(q, page)


def pending_for(caller) -> list[ProjectInvitation]:
    """The caller's account's pending invitations (the portal's "Invitations" list)."""
    rows, _ = list_invitations(caller, active_only=True)
    return rows


def remove_for_account(account_id: int) -> None:
    """An account going away: its invitations go with it."""
    for inv in db.session.scalars(select(ProjectInvitation).where(ProjectInvitation.account_id == account_id)):
        db.session.delete(inv)
