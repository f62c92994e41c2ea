"""Affinity groups (users: their own; admins: every account's).

- /affinitygroups/ — the list with each group's VMs; create (name, type, description); delete.
- /affinitygroups/vm/<uuid> — POST: a Stopped VM's groups replaced (the VM page's form).
Creating, deleting and changing a VM's groups are CloudStack's async commands: the page
submits the job and says how it ended (or that it runs).
"""
from __future__ import annotations

import json

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from app.models import JobStatus
from app.services import affinity
from app.services.errors import NotFound, ServiceError
from app.web.forms import EmptyForm
from app.web.infra import _redirect
from app.web.infra_forms import InfraForm, choices
from app.web.listing import listing, wants_fragment
from app.web.portal import delete_page, form_page

bp = Blueprint("affinity", __name__, url_prefix="/affinitygroups")

KINDS = {"host anti-affinity": "Host anti-affinity: its VMs run on different hosts",
         "host affinity": "Host affinity: its VMs run on the same host"}


def _fetch(*, keyword, sort, page):  # noqa: ARG001 - one order: oldest first
    return affinity.list_groups(current_user, keyword=keyword, listall=current_user.is_admin, page=page)


@bp.route("/")
@login_required
def index():
    lst = listing("affinity.index", "affinity groups", _fetch, sorts=(), default_sort="")
    members = affinity.vm_uuids([g.id for g in lst.rows])
    lst.rows = [(g, members.get(g.id, [])) for g in lst.rows]
    if wants_fragment():
        return render_template("affinity/_groups.html", lst=lst), {"HX-Push-Url": lst.url()}
    return render_template("affinity/groups.html", lst=lst)


class GroupForm(InfraForm):
    title = submit = "Create an affinity group"
    intro = ("The planner places a group's VMs by its type, at every deploy, start and migration. A VM joins "
             "groups when it is deployed, or later while it is Stopped (on its page).")
    dom_id = "affinity-form"
    name = StringField("Name", validators=[DataRequired("Give the group a name"), Length(max=255)])
    type = SelectField("Type", choices=choices(list(KINDS.items())))
    description = StringField("Description", validators=[Optional(), Length(max=4096)])


def _job_error(job) -> str | None:
    if job.status == JobStatus.FAILED:
        return json.loads(job.result or "{}").get("errortext") or "The change failed"
    return None


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create():
    def save(f: GroupForm):
        affinity.submit_create(current_user, name=f.name.data, type_=f.type.data,
                               description=f.description.data or None)
        return f"Affinity group {f.name.data.strip()} created.", url_for(".index")
    return form_page(GroupForm, save, crumbs=[("Affinity groups", url_for(".index"))])


@bp.route("/<uuid>/delete", methods=["POST"])
@login_required
def delete(uuid: str):
    def remove(g):
        name = g.name
        job = affinity.submit_delete(current_user, uuid=uuid)
        error = _job_error(job)
        if error:
            flash(error, "error")
            return None
        return (f"Affinity group {name} {'deleted' if job.status == JobStatus.SUCCEEDED else 'being deleted'}; "
                "its VMs stay where they run.")
    return delete_page(lambda: affinity.get(current_user, uuid), remove, url_for(".index"))


def vm_context(vm) -> dict:
    """The VM page's "Affinity groups" card: its groups, and the account's groups to choose from."""
    mine = affinity.groups_of_vms([vm.id]).get(vm.id, [])
    owner = vm.account.name if current_user.is_admin else None
    offered = affinity.list_groups(current_user, account=owner, page=(1, 500))[0]
    return {"groups": mine, "offered": offered, "chosen": {g.id for g in mine}}


@bp.route("/vm/<uuid>", methods=["POST"])
@login_required
def update_vm(uuid: str):
    if not EmptyForm().validate_on_submit():
        abort(400)
    wanted = [u for u in request.form.getlist("group") if u]
    back = url_for("vms.detail", uuid=uuid)
    try:
        job = affinity.submit_update_vm(current_user, uuid, wanted, None)
    except NotFound:
        abort(404)
    except ServiceError as e:
        flash(e.message, "error")
        return redirect(back, 303)
    error = _job_error(job)
    flash(error or ("Affinity groups changed: the planner uses them from the VM's next start."
                    if job.status == JobStatus.SUCCEEDED else "Affinity groups being changed."),
          "error" if error else "success")
    return redirect(back, 303)
