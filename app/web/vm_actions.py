"""The VM page's custom actions: those of the extension that runs the VM (an External VM's,
or a Custom one bound to an extension) that are enabled and allowed to the caller's role
type, each a form built from the action's declared parameters (a STRING a text box, a
NUMBER a number, a BOOLEAN a check box, a DATE a date and time, value options a choice).
Running one is runCustomAction (app/services/extensions/actions.py): an async job whose
panel on the VM page shows its progress and then the extension's answer.

The card is outside the part of the VM page that its poller replaces (templates/vms/
detail.html), so what is typed in a form survives the page's live updates."""
from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, abort, flash, redirect, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, DateTimeLocalField, DecimalField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Optional

from app.services import vms as vms_service
from app.services.errors import NotFound, ServiceError
from app.services.extensions import actions, parameters, registry
from app.web.infra_forms import choices

bp = Blueprint("vm_actions", __name__, url_prefix="/vms")
PREFIX = "p_"  # form field names: a parameter may be called "data" or "meta", FlaskForm's own words


def _field(p: dict):
    label, required = p["name"], bool(p.get("required"))
    kind = str(p.get("type") or "STRING").upper()
    options = [str(o) for o in (p.get("valueoptions") or [])]
    check = [DataRequired()] if required else [Optional()]
    if kind == "BOOLEAN":
        return BooleanField(label)
    if options:
        return SelectField(label, choices=choices(([] if required else [("", "")]) + [(o, o) for o in options]),
                           validators=[InputRequired()] if required else [Optional()])
    if kind == "NUMBER":
        return DecimalField(label, validators=[InputRequired()] if required else [Optional()])
    if kind == "DATE":
        return DateTimeLocalField(label, format="%Y-%m-%dT%H:%M", validators=check)
    if str(p.get("validationformat") or "").upper() == "PASSWORD":
        return PasswordField(label, validators=check)
    return StringField(label, validators=check)


def form_class(a) -> type[FlaskForm]:
    """A form with one field per declared parameter of the custom action `a`."""
    attrs = {PREFIX + p["name"]: _field(p) for p in parameters.loads(a.parameters)}
    return type("CustomActionRunForm", (FlaskForm,), attrs)


def parameters_of(a, form: FlaskForm) -> dict[str, str]:
    """The form's values as runCustomAction's parameters (empty optional ones left out)."""
    out = {}
    for p in parameters.loads(a.parameters):
        f = form[PREFIX + p["name"]]
        if isinstance(f, BooleanField):
            out[p["name"]] = "true" if f.data else "false"
        elif f.data not in (None, ""):
            out[p["name"]] = f.data.strftime("%Y-%m-%d %H:%M:%S") if hasattr(f.data, "strftime") else str(f.data)
    return out


@dataclass
class Card:
    extension: object
    forms: list  # (custom action, its form)


def offered(vm) -> list:
    """The enabled custom actions of the VM's extension that the caller may run (none for a
    VM that no extension runs)."""
    if vm.hypervisor_type not in (registry.EXTERNAL, registry.CUSTOM):
        return []
    try:
        return actions.list_actions(current_user, resource_type="VirtualMachine", resource_id=vm.uuid,
                                    enabled=True)[0]
    except ServiceError:  # no extension runs it
        return []


def card(vm) -> Card | None:
    """The VM page's custom actions card, or None when its extension offers the caller none."""
    rows = offered(vm)
    if not rows:
        return None
    return Card(rows[0].extension, [(a, form_class(a)(formdata=None)) for a in sorted(rows, key=lambda a: a.name)])


@bp.route("/<uuid>/custom-actions/<action_uuid>", methods=["POST"])
@login_required
def run(uuid: str, action_uuid: str):
    try:
        vm = vms_service.get_vm(current_user, uuid)
    except NotFound:
        abort(404)
    a = next((x for x in offered(vm) if x.uuid == action_uuid), None) or abort(404)
    form = form_class(a)()
    here = url_for("vms.detail", uuid=uuid)
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400)
        problems = "; ".join(f"{name[len(PREFIX):]}: {e}" for name, errors in form.errors.items() for e in errors)
        flash(f"{a.name} was not run: {problems}", "error")
        return redirect(f"{here}#custom-action-{a.uuid}")
    try:
        job = actions.run(current_user, action_uuid=action_uuid, resource_id=vm.uuid,
                          parameter_map=[{k: v} for k, v in parameters_of(a, form).items()])
    except ServiceError as e:
        flash(f"{a.name} was not run: {e.message}", "error")
        return redirect(f"{here}#custom-action-{a.uuid}")
    return redirect(url_for("vms.detail", uuid=uuid, job=job.uuid))
