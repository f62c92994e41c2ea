"""VM snapshots on the VM page (templates/vms/_snapshots.html, included by vms/_vm.html):
the VM's snapshots, take one (with or without memory), revert to one, delete one. Each POST
answers like the VM page's own actions (app/web/vms.py _answer): the page body for HTMX, a
redirect with a flash otherwise; the VM, busy with the job, polls until it is done."""
from __future__ import annotations

from flask import Blueprint, abort
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField
from wtforms.validators import Length, Optional

from app.models import VMState
from app.services.errors import NotFound, ServiceError
from app.services.snapshots import vm_snapshots
from app.web.forms import EmptyForm
from app.web.vms import JobView, _answer, _vm, capabilities

bp = Blueprint("vmsnapshots", __name__)


class TakeForm(FlaskForm):
    name = StringField("Name", validators=[Optional(), Length(max=255)])
    description = StringField("Description", validators=[Optional(), Length(max=255)])
    memory = BooleanField("Include the memory (the VM keeps running; a revert resumes it)")


@bp.app_template_global()
def vm_snapshot_panel(vm) -> dict | None:
    """What the VM page's snapshot card shows (None: its type takes no VM snapshots)."""
    caps = capabilities(vm)
    if not caps.vm_snapshots:
        return None
    return {"snapshots": vm_snapshots.of_vm(vm), "form": TakeForm(),
            "can_take": vm.state in (VMState.RUNNING, VMState.STOPPED),
            "memory_only": vm.state == VMState.RUNNING and not caps.vm_snapshot_disk_running}


def _job_answer(vm, call):
    try:
        job = call()
    except ServiceError as e:
        return _answer(vm.uuid, vm.name, error=e.message)
    return _answer(vm.uuid, vm.name, job=JobView(job))


@bp.route("/vms/<uuid>/snapshots", methods=["POST"])
@login_required
def take(uuid: str):
    vm = _vm(uuid)
    form = TakeForm()
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400)
        return _answer(vm.uuid, vm.name, error="; ".join(e for errs in form.errors.values() for e in errs))
    return _job_answer(vm, lambda: vm_snapshots.create(current_user, vm.uuid, name=form.name.data or None,
                                                       description=form.description.data or None,
                                                       memory=bool(form.memory.data)))


def _snapshot(uuid: str):
    try:
        return vm_snapshots.get(current_user, uuid)
    except NotFound:
        abort(404)


@bp.route("/vmsnapshots/<uuid>/<action>", methods=["POST"])
@login_required
def act(uuid: str, action: str):
    if action not in ("revert", "delete"):
        abort(404)
    snap = _snapshot(uuid)
    vm = snap.vm
    if not EmptyForm().validate_on_submit():
        abort(400)
    run = vm_snapshots.revert if action == "revert" else vm_snapshots.delete
    return _job_answer(vm, lambda: run(current_user, snap.uuid))
