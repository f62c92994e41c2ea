"""Projects in the portal (users and admins), as CloudStack's UI has them.

- The project switcher (every page's navigation, templates/projects/_switcher.html):
  "Default view" or one of the caller's projects. The choice is kept in the session and
  entered as the request's project scope (access.enter_scope, what the API's projectid
  does) before every page: in a project, every list shows the project's objects only and
  every create makes them for the project; in the default view lists skip projects'
  objects, as CloudStack's lists do without projectid.
- /projects/ — my projects, my pending invitations (accept, decline), create a project.
- /projects/<uuid> — a project: its members with their roles (add, remove), its
  invitations (delete a pending one), what it uses against its limits.

Every page and action is checked against the caller's role rules for the API command it
stands for (PAGE_COMMANDS in app/web/__init__.py), exactly like the API; the services decide
the rest (only a project's admins manage it; outsiders get 404).
"""
from __future__ import annotations

from flask import Blueprint, abort, flash, render_template, request, session, url_for
from flask_login import current_user, login_required
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from app.services import access, limits, project_invitations, projects, roles, settings
from app.services.errors import NotFound, ServiceError
from app.web.forms import EmptyForm, attach_error
from app.web.infra import _redirect
from app.web.infra_forms import InfraForm, choices
from app.web.listing import wants_fragment
from app.web.portal import form_page

bp = Blueprint("projects", __name__, url_prefix="/projects")
SESSION_KEY = "project"  # the switcher's choice: a project's uuid, absent for the default view


def enter_project_scope() -> None:
    """Before every page: the switcher's project as the request's scope (a project the caller
    may no longer see drops back to the default view). GET pages list: without a project they
    skip projects' objects, as CloudStack's lists do; actions look objects up by id."""
    if request.blueprint in (None, "api", "static") or not current_user.is_authenticated:
        return
    listing = request.method == "GET"
    try:
        access.enter_scope(current_user, session.get(SESSION_KEY) or None, listing=listing)
    except ServiceError:
        session.pop(SESSION_KEY, None)
        access.enter_scope(current_user, None, listing=listing)


def switcher() -> dict:
    """The navigation's switcher: the projects to choose from and the current one."""
    current = access.current_project()
    try:
        choices = projects.projects_of(current_user) if roles.allowed_name(current_user, "listProjects") else []
    except ServiceError:
        choices = []
    if current is not None and all(p.id != current.id for p in choices):
        choices = [current, *choices]  # chosen from the Projects page, beyond the switcher's page
    return {"choices": choices, "current": current}


def _project(uuid: str):
    try:
        return projects.get(current_user, uuid)
    except NotFound:
        abort(404)


def _manages(project) -> bool:
    try:
        projects.check_delete(current_user, project)
    except ServiceError:
        return False
    return True


def _check_csrf() -> None:
    if not EmptyForm().validate_on_submit():
        abort(400)


@bp.route("/switch", methods=["POST"])
@login_required
def switch():
    _check_csrf()
    uuid = request.form.get("project", "").strip()
    if uuid:
        try:
            p = access.project_by_uuid(current_user, uuid)
        except ServiceError:
            abort(404)
        session[SESSION_KEY] = p.uuid
        flash(f"Project {p.name}: lists and new objects are the project's.", "success")
    else:
        session.pop(SESSION_KEY, None)
        flash("Default view: your own objects.", "success")
    return _redirect(url_for("portal.my_vms"))


@bp.route("/")
@login_required
def index():
    rows, _ = projects.list_projects(current_user, page=None)  # members: theirs; admins: those they see
    roles_of = {m.project_id: m.role for p in rows for m in p.members if m.account_id == current_user.account_id}
    invites = project_invitations.pending_for(current_user) \
        if roles.allowed_name(current_user, "listProjectInvitations") else []
    context = dict(rows=rows, roles_of=roles_of, invites=invites,
                   can_create=roles.allowed_name(current_user, "createProject"),
                   can_answer=roles.allowed_name(current_user, "updateProjectInvitation"))
    if wants_fragment():
        return render_template("projects/_index.html", **context)
    return render_template("projects/index.html", **context)


class ProjectForm(InfraForm):
    title = submit = "Create a project"
    intro = ("A project owns its VMs, volumes, networks and keys through its own account; its members use them "
             "when they switch to it in the navigation. You become its admin.")
    dom_id = "project-form"
    name = StringField("Name", validators=[DataRequired("Give the project a name"), Length(max=255)])
    displaytext = StringField("Display text", validators=[Optional(), Length(max=255)])


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create():

    def save(f: ProjectForm):
        p = projects.create_project(current_user, f.name.data, f.displaytext.data or None)
        return f"Project {p.name} created.", url_for(".detail", uuid=p.uuid)
    return form_page(ProjectForm, save, crumbs=[("Projects", url_for(".index"))])


class MemberForm(InfraForm):
    title = "Add an account"
    submit = "Add"
    dom_id = "member-form"
    account = StringField("Account", validators=[Optional(), Length(max=255)])
    email = StringField("or an email address (invitations by email)", validators=[Optional(), Length(max=255)])
    roletype = SelectField("Role", choices=choices([("Regular", "Regular"), ("Admin", "Admin")]))


def _detail_context(p, member_form: MemberForm | None = None) -> dict:
    manages = _manages(p)
    invites = project_invitations.list_invitations(current_user, projectid=p.uuid)[0] if manages else []
    return dict(project=p, members=sorted(p.members, key=lambda m: (m.role != "Admin", m.account.name)),
                manages=manages, invites=invites, usage=limits.of_account(p.account),
                invite_required=bool(settings.get("project.invite.required")),
                form=member_form or MemberForm().setup(url_for(".add_member", uuid=p.uuid)),
                can_add=manages and roles.allowed_name(current_user, "addAccountToProject"),
                can_remove=manages and roles.allowed_name(current_user, "deleteAccountFromProject"),
                can_delete_invite=manages and roles.allowed_name(current_user, "deleteProjectInvitation"))


@bp.route("/<uuid>")
@login_required
def detail(uuid: str):
    p = _project(uuid)
    context = _detail_context(p)
    if wants_fragment():
        return render_template("projects/_members.html", **context)
    return render_template("projects/project.html", **context)


@bp.route("/<uuid>/members", methods=["POST"])
@login_required
def add_member(uuid: str):
    p = _project(uuid)
    form = MemberForm().setup(url_for(".add_member", uuid=p.uuid))
    if form.validate_on_submit():
        try:
            account, email = (form.account.data or "").strip(), (form.email.data or "").strip()
            added = projects.add_account(current_user, p, account or None, form.roletype.data, email=email or None)
        except ServiceError as e:
            attach_error(e, form)
        else:
            who = account or email
            flash(f"{who} added to the project." if added else f"{who} invited to the project.", "success")
            return _redirect(url_for(".detail", uuid=p.uuid))
    if wants_fragment():  # the form alone: it is its own HTMX target (infra/_form.html)
        return render_template("infra/_form.html", form=form), 422
    return render_template("projects/project.html", **_detail_context(p, form)), 422


@bp.route("/<uuid>/members/<account_uuid>/remove", methods=["POST"])
@login_required
def remove_member(uuid: str, account_uuid: str):
    _check_csrf()
    p = _project(uuid)
    m = next((m for m in p.members if m.account.uuid == account_uuid), None)
    if m is None:
        abort(404)
    try:
        projects.remove_account(current_user, p, m.account.name)
        flash(f"{m.account.name} removed from the project.", "success")
    except ServiceError as e:
        flash(e.message, "error")
    return _redirect(url_for(".detail", uuid=p.uuid))


@bp.route("/<uuid>/invitation", methods=["POST"])
@login_required
def answer(uuid: str):
    """The caller's account accepts (accept=1) or declines its invitation to the project."""
    _check_csrf()
    try:
        p = project_invitations.project_for_answer(current_user, uuid)
    except ServiceError:
        abort(404)
    accept = request.form.get("accept") == "1"
    try:
        project_invitations.answer(current_user, p, accept=accept)
        flash(f"You joined the project {p.name}." if accept else f"Invitation to {p.name} declined.", "success")
    except ServiceError as e:
        flash(e.message, "error")
    return _redirect(url_for(".detail", uuid=p.uuid) if accept else url_for(".index"))


@bp.route("/<uuid>/invitations/<inv_uuid>/delete", methods=["POST"])
@login_required
def delete_invitation(uuid: str, inv_uuid: str):
    _check_csrf()
    p = _project(uuid)
    try:
        inv = project_invitations.get(current_user, inv_uuid)
    except NotFound:
        abort(404)
    if inv.project_id != p.id:
        abort(404)
    try:
        project_invitations.delete(current_user, inv)
        flash("Invitation deleted.", "success")
    except ServiceError as e:
        flash(e.message, "error")
    return _redirect(url_for(".detail", uuid=p.uuid))
