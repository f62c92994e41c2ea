"""Security groups (users: their own; admins: every account's).

- /securitygroups/ — the list (its default group made by the service when missing); create.
- /securitygroups/<uuid> — its Ingress and Egress rules: add (protocol, ports or ICMP type
  and code, a CIDR or another group of the account), revoke; delete the group.
Adding and revoking are CloudStack's async commands: the page submits the job and shows its
outcome (done at once in immediate mode; otherwise "being applied" until the hosts have it).
"""
from __future__ import annotations

import json

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from app.models import JobStatus
from app.services.errors import NotFound, ServiceError
from app.services.network import secgroups
from app.web.forms import EmptyForm, attach_error
from app.web.infra import _redirect
from app.web.infra_forms import InfraForm, choices
from app.web.listing import listing, wants_fragment
from app.web.portal import form_page

bp = Blueprint("secgroups", __name__, url_prefix="/securitygroups")

ALIASES = {"startport": "start_port", "endport": "end_port", "icmptype": "icmp_type", "icmpcode": "icmp_code",
           "cidrlist": "cidr", "usersecuritygrouplist": "group", "protocol": "protocol"}


def _fetch(*, keyword, sort, page):  # noqa: ARG001 - one order: oldest first
    return secgroups.list_groups(current_user, keyword=keyword, listall=current_user.is_admin, page=page)


@bp.route("/")
@login_required
def index():
    lst = listing("secgroups.index", "securitygroups", _fetch, sorts=(), default_sort="")
    lst.rows = list(zip(lst.rows, secgroups.describe(list(lst.rows)), strict=True))
    if wants_fragment():
        return render_template("network/_secgroups.html", lst=lst), {"HX-Push-Url": lst.url()}
    return render_template("network/secgroups.html", lst=lst)


class GroupForm(InfraForm):
    title = submit = "Create a security group"
    intro = ("A security group's Ingress rules say what may reach its VMs, its Egress rules what they may send "
             "(no Egress rule: everything). A VM joins its groups when it is deployed on a network with "
             "security groups.")
    dom_id = "secgroup-form"
    name = StringField("Name", validators=[DataRequired("Give the group a name"), Length(max=255)])
    description = StringField("Description", validators=[Optional(), Length(max=4096)])


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create():
    def save(f: GroupForm):
        g = secgroups.create_group(current_user, name=f.name.data, description=f.description.data)
        return f"Security group {g.name} created.", url_for(".detail", uuid=g.uuid)
    return form_page(GroupForm, save, crumbs=[("Security groups", url_for(".index"))])


class SgRuleForm(FlaskForm):
    protocol = SelectField("Protocol", choices=choices([("tcp", "TCP"), ("udp", "UDP"), ("icmp", "ICMP"),
                                                       ("all", "All")]))
    start_port = IntegerField("Start port", validators=[Optional(), NumberRange(1, 65535)])
    end_port = IntegerField("End port", validators=[Optional(), NumberRange(1, 65535)],
                            description="empty: the start port")
    icmp_type = IntegerField("ICMP type", validators=[Optional(), NumberRange(-1, 255)])
    icmp_code = IntegerField("ICMP code", validators=[Optional(), NumberRange(-1, 255)])
    cidr = StringField("CIDR", validators=[Optional(), Length(max=1024)], description="comma-separated")
    group = SelectField("or another group", validate_choice=False)


def _group(uuid: str):
    try:
        return secgroups.get_group(current_user, uuid)
    except NotFound:
        abort(404)


def _page(g, *, forms: dict | None = None, **context) -> dict:
    forms = forms or {}
    others = [o for o in secgroups.list_groups(current_user, account=_account_name(g), page=(1, 500))[0]]
    out = {}
    for direction in (secgroups.INGRESS, secgroups.EGRESS):
        f = forms.get(direction) or SgRuleForm(formdata=None, prefix=direction)
        f.group.choices = choices([("", "—")] + [(o.name, o.name) for o in others])
        out[direction] = f
    return dict(g=g, d=secgroups.describe([g])[0], forms=out, **context)


def _account_name(g) -> str | None:
    """The group's account, for an admin looking at another account's group."""
    return secgroups.describe([g])[0]["account"] if current_user.is_admin else None


@bp.route("/<uuid>")
@login_required
def detail(uuid: str):
    context = _page(_group(uuid))
    return render_template("network/_secgroup.html" if wants_fragment() else "network/secgroup.html", **context)


def _outcome(job) -> tuple[str | None, bool]:
    """(the job's error, still running)."""
    if job.status == JobStatus.FAILED:
        return (json.loads(job.result or "{}").get("errortext") or "The change failed"), False
    return None, job.status == JobStatus.PENDING


@bp.route("/<uuid>/<action>", methods=["POST"])
@login_required
def act(uuid: str, action: str):
    g = _group(uuid)
    name = g.name
    forms: dict = {}
    error = None
    message = ""
    if action == "delete":
        if not EmptyForm().validate_on_submit():
            abort(400)
        try:
            secgroups.delete_group(current_user, uuid=g.uuid)
        except ServiceError as e:
            error = e.message
        else:
            flash(f"Security group {name} deleted.", "success")
            return _redirect(url_for(".index"))
    elif action in ("ingress", "egress"):
        f = forms[action] = SgRuleForm(prefix=action)
        f.group.choices = []
        if not f.validate_on_submit():
            if "csrf_token" in f.errors:
                abort(400)
            error = "; ".join(e for errors in f.errors.values() for e in errors)
        else:
            cidrs = [c.strip() for c in (f.cidr.data or "").split(",") if c.strip()]
            try:
                job = secgroups.authorize(
                    current_user, action, group_uuid=g.uuid, protocol=f.protocol.data, start_port=f.start_port.data,
                    end_port=f.end_port.data or f.start_port.data, icmp_type=f.icmp_type.data, icmp_code=f.icmp_code.data, cidrs=cidrs,
                    user_groups=[{"group": f.group.data, "account": _owner_name(g)}] if f.group.data else None)
            except ServiceError as e:
                attach_error(e, f, aliases=ALIASES)
                error = e.message
            else:
                error, running = _outcome(job)
                message = f"{action.capitalize()} rule {'being applied' if running else 'added'}."
    elif action in ("revoke-ingress", "revoke-egress"):
        if not EmptyForm().validate_on_submit():
            abort(400)
        try:
            job = secgroups.revoke(current_user, action.split("-")[1], request.form.get("rule", ""))
        except ServiceError as e:
            error = e.message
        else:
            error, running = _outcome(job)
            message = f"Rule {'being revoked' if running else 'revoked'}."
    else:
        abort(404)
    page = _page(_group(uuid), forms=forms if error else None)
    if not request.htmx:
        if error is None:
            flash(message, "success")
            return redirect(url_for(".detail", uuid=uuid))
        return render_template("network/secgroup.html", error=error, **page), 422
    return render_template("network/_secgroup.html", error=error, message=None if error else message, **page), \
        422 if error else 200


def _owner_name(g) -> str:
    return secgroups.describe([g])[0]["account"]
