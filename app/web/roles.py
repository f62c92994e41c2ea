"""Roles and their rules (admins), under /admin/roles.

- / — the roles with their type; create one (of a type, or a copy of another's rules).
- /<uuid> — one role: edit (name, type, description), its rules in order with allow/deny,
  move up/down and delete, add a rule; delete the role. Default roles are read-only, as in
  CloudStack. Rules live in app/services/roles.py.
"""
from __future__ import annotations

from flask import Blueprint, abort, flash, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from app.extensions import db
from app.models import Account, RoleType
from app.services import roles
from app.services.errors import NotFound, ServiceError
from app.web import admin_required
from app.web.forms import EmptyForm
from app.web.infra import _redirect
from app.web.infra_forms import InfraForm, choices
from app.web.portal import form_page

bp = Blueprint("roles", __name__, url_prefix="/admin/roles")
TYPES = [(t.value, t.value) for t in RoleType]


def _crumbs(role=None) -> list[tuple[str, str]]:
    out = [("Roles", url_for(".index"))]
    return out + [(role.name, url_for(".role", uuid=role.uuid))] if role else out


def _role(uuid: str):
    try:
        return roles.get_role(current_user, uuid)
    except NotFound:
        abort(404)


@bp.route("/")
@admin_required
def index():
    rows, _ = roles.list_roles(current_user)
    in_use = dict(db.session.execute(select(Account.role_id, func.count()).where(Account.removed.is_(None))
                                     .group_by(Account.role_id)).all())
    return render_template("roles/index.html", roles=rows, in_use=in_use)


class RoleForm(InfraForm):
    title = submit = "Create a role"
    intro = ("A role decides which API commands (and page actions) its accounts may use: its rules are "
             "tried in order, the first that matches a command's name allows or denies it.")
    dom_id = "role-form"
    aliases = {"name": "name", "type": "type", "roleid": "source", "description": "description"}
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    type = SelectField("Type", choices=choices(TYPES), default=RoleType.USER.value)
    source = SelectField("Copy the rules of", description="empty: start with no rules (the type's own commands "
                                                          "stay open until a rule denies them)")
    description = StringField("Description", validators=[Optional(), Length(max=4096)])

    def prepare(self) -> None:
        rows, _ = roles.list_roles(current_user)
        self.source.choices = choices([("", "—")] + [(r.uuid, f"{r.name} ({r.role_type})") for r in rows])


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def create():
    def save(f: RoleForm):
        role = roles.create_role(current_user, name=f.name.data, type=None if f.source.data else f.type.data,
                                 roleid=f.source.data or None, description=f.description.data or None)
        return f"Role {role.name} created.", url_for(".role", uuid=role.uuid)
    return form_page(RoleForm, save, crumbs=_crumbs())


class EditRoleForm(InfraForm):
    title, submit, dom_id = "Edit", "Save", "edit-role-form"
    aliases = {"name": "name", "type": "type", "description": "description"}
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    type = SelectField("Type", choices=choices(TYPES), description="only while no account has the role")
    description = TextAreaField("Description", validators=[Optional(), Length(max=4096)])


class RuleForm(InfraForm):
    title, submit, dom_id = "Add a rule", "Add the rule", "rule-form"
    aliases = {"rule": "rule", "permission": "permission", "description": "description"}
    rule = StringField("API command or wildcard", validators=[DataRequired(), Length(max=255)],
                       description='e.g. destroyVirtualMachine, list*, *')
    permission = SelectField("Permission", choices=choices([("allow", "Allow"), ("deny", "Deny")]))
    description = StringField("Description", validators=[Optional(), Length(max=4096)])


def _page(role, status: int = 200, **context):
    edit = context.pop("edit_form", None) or EditRoleForm(
        formdata=None, data={"name": role.name, "type": role.role_type, "description": role.description})
    edit.setup(url_for(".edit", uuid=role.uuid))
    rule_form = context.pop("rule_form", None) or RuleForm(formdata=None)
    rule_form.setup(url_for(".add_rule", uuid=role.uuid))
    return render_template("roles/role.html", role=role, rules=roles.list_permissions(current_user, role),
                           edit_form=edit, rule_form=rule_form, action_form=EmptyForm(), crumbs=_crumbs(),
                           **context), status


def _submit(r, form, field: str, save):
    """One of the role page's forms posted: saved (its message flashed, back to the page), or
    the page again (422) with the form and the service's refusal beside it."""
    if form.validate_on_submit():
        try:
            done = save(form)
        except ServiceError as e:
            form.form_errors.append(e.message)
        else:
            flash(done, "success")
            return _redirect(url_for(".role", uuid=r.uuid))
    return _page(r, 422, **{field: form})


@bp.route("/<uuid>")
@admin_required
def role(uuid: str):
    return _page(_role(uuid))


@bp.route("/<uuid>/edit", methods=["POST"])
@admin_required
def edit(uuid: str):
    r = _role(uuid)

    def save(form):
        roles.update_role(current_user, r, name=form.name.data, type=form.type.data,
                          description=form.description.data or None)
        return f"Role {r.name} saved."
    return _submit(r, EditRoleForm().setup(url_for(".edit", uuid=uuid)), "edit_form", save)


@bp.route("/<uuid>/delete", methods=["POST"])
@admin_required
def delete(uuid: str):
    r = _role(uuid)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        roles.delete_role(current_user, r)
    except ServiceError as e:
        flash(e.message, "error")
        return _redirect(url_for(".role", uuid=uuid))
    flash(f"Role {r.name} deleted.", "success")
    return _redirect(url_for(".index"))


@bp.route("/<uuid>/rules", methods=["POST"])
@admin_required
def add_rule(uuid: str):
    r = _role(uuid)

    def save(form):
        roles.create_permission(current_user, r, rule=form.rule.data, permission=form.permission.data,
                                description=form.description.data or None)
        return f"Rule {form.rule.data.strip()} added."
    return _submit(r, RuleForm().setup(url_for(".add_rule", uuid=uuid)), "rule_form", save)


RULE_ACTIONS = ("allow", "deny", "up", "down", "delete")


@bp.route("/<uuid>/rules/<rule_uuid>/<action>", methods=["POST"])
@admin_required
def rule_action(uuid: str, rule_uuid: str, action: str):
    if action not in RULE_ACTIONS:
        abort(404)
    r = _role(uuid)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        perm = roles.get_permission(current_user, rule_uuid)
    except NotFound:
        abort(404)
    if perm.role_id != r.id:
        abort(404)
    try:
        if action == "delete":
            roles.delete_permission(current_user, perm)
        elif action in ("allow", "deny"):
            roles.update_permission(current_user, r, ruleid=perm.uuid, permission=action)
        else:
            order = [p.uuid for p in roles.list_permissions(current_user, r)]
            i = order.index(perm.uuid)
            j = i - 1 if action == "up" else i + 1
            if 0 <= j < len(order):
                order[i], order[j] = order[j], order[i]
                roles.update_permission(current_user, r, order=order)
    except ServiceError as e:
        flash(e.message, "error")
    return _redirect(url_for(".role", uuid=uuid) + f"#rule-{rule_uuid}" * (action != "delete"))
