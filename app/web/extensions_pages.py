"""Extensions (admins; CloudStack 4.21's Extensions menu): the list with each extension's
state ("Not Ready" with the reason when its executable is missing, not executable, outside
its directory or changed since its checksum was recorded), path and checksum; add, edit,
delete; an extension's page with its details (secrets masked), the clusters it serves
(register with a cluster, unregister) and its custom actions (add, edit, delete).

Every rule is app/services/extensions' (createExtension, updateExtension, deleteExtension,
registerExtension, unregisterExtension, addCustomAction, updateCustomAction,
deleteCustomAction). Details are typed one `name=value` a line; a secret comes back as
`name=******`, which keeps its stored value. The VM page's custom actions are
app/web/vm_actions.py's."""
from __future__ import annotations

from flask import Blueprint, abort, flash, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.datastructures import MultiDict
from wtforms import BooleanField, IntegerField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError

from app.extensions import db
from app.models import Cluster
from app.services.errors import NotFound, ServiceError
from app.services.extensions import actions, details, parameters, paths, registry
from app.web import admin_required
from app.web.forms import EmptyForm, attach_error
from app.web.infra import _redirect
from app.web.infra_forms import InfraForm, choices
from app.web.listing import wants_fragment
from app.web.portal import form_page

bp = Blueprint("extensions_pages", __name__, url_prefix="/admin/extensions")
MASK = "******"
PARAMETER_TYPES = ("STRING", "NUMBER", "BOOLEAN", "DATE")
ROLE_TYPES = actions.ROLE_TYPES


# --- Details and parameters as text -----------------------------------------------------

def details_lines(text: str | None) -> dict[str, str]:
    """`name=value` lines → {name: value} (blank lines and lines starting with # skipped)."""
    out: dict[str, str] = {}
    for n, line in enumerate((text or "").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"Line {n}: write name=value")
        out[name.strip()] = value.strip()
    return out


def details_text(owner_type: str, owner_id: int | None) -> str:
    """The owner's details as the form shows them: secrets as name=******."""
    shown = details.shown(owner_type, owner_id)
    lines = [f"{k}={v}" for k, v in shown.items()] + [f"{k}={MASK}" for k in details.secret_names(owner_type, owner_id)]
    return "\n".join(sorted(lines))


def details_entries(text: str | None, owner_type: str | None = None, owner_id: int | None = None) -> list[dict]:
    """The form's details as the API's map entries; `name=******` keeps a stored secret."""
    values = details_lines(text)
    if owner_type and any(v == MASK for v in values.values()):
        stored = details.values_of(owner_type, owner_id)
        values = {k: (stored.get(k, "") if v == MASK else v) for k, v in values.items()}
    return [{k: v} for k, v in values.items()]


def parameters_lines(text: str | None) -> list[dict]:
    """`name TYPE [required] [format=F] [options=a,b]` lines → addCustomAction's parameters map entries."""
    out = []
    for n, line in enumerate((text or "").splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        entry = {"name": words[0], "type": words[1].upper() if len(words) > 1 else "STRING", "required": "false"}
        for word in words[2:]:
            key, sep, value = word.partition("=")
            if word.lower() == "required":
                entry["required"] = "true"
            elif sep and key.lower() in ("format", "options"):
                entry["validationformat" if key.lower() == "format" else "valueoptions"] = value
            else:
                raise ValueError(f"Line {n}: after the type, only 'required', format=... or options=a,b")
        if entry["type"] not in PARAMETER_TYPES:
            raise ValueError(f"Line {n}: the type is one of {', '.join(PARAMETER_TYPES)}")
        out.append(entry)
    return out


def parameters_text(a) -> str:
    lines = []
    for p in parameters.loads(a.parameters):
        words = [p["name"], p.get("type") or "STRING"] + (["required"] if p.get("required") else [])
        if p.get("validationformat") not in (None, "NONE"):
            words.append(f"format={p['validationformat']}")
        if p.get("valueoptions"):
            words.append("options=" + ",".join(str(o) for o in p["valueoptions"]))
        lines.append(" ".join(words))
    return "\n".join(lines)


def _lines(parse):
    def check(form, field):
        try:
            parse(field.data)
        except ValueError as e:
            raise ValidationError(str(e)) from None
    return check


# --- Forms --------------------------------------------------------------------------------

STATE_CHOICES = choices([("Enabled", "Enabled"), ("Disabled", "Disabled")])


class ExtensionForm(InfraForm):
    title = submit = "Add an extension"
    dom_id = "extension-form"
    aliases = {"orchestratorrequirespreparevm": "orchestratorrequirespreparevm", "details": "details"}
    name = StringField("Name", validators=[DataRequired(), Length(max=64)],
                       description="also the name of its directory in the extensions directory")
    description = StringField("Description", validators=[Optional(), Length(max=4096)])
    path = StringField("Path", validators=[Optional(), Length(max=1024)],
                       description="the executable, relative to the extension's directory (empty: <name>.sh)")
    orchestratorrequirespreparevm = BooleanField("Call prepare before a VM's first start (its answer is kept "
                                                 "in the VM's details)")
    state = SelectField("State", choices=STATE_CHOICES)
    details = TextAreaField("Details", validators=[_lines(details_lines)], render_kw={"rows": 4},
                            description="one name=value a line, sent to the extension in every payload; "
                                        "names with password, secret, token or key are kept secret")


class EditExtensionForm(InfraForm):
    title = submit = "Save the extension"
    dom_id = "extension-edit-form"
    aliases = {"orchestratorrequirespreparevm": "orchestratorrequirespreparevm", "details": "details"}
    description = StringField("Description", validators=[Optional(), Length(max=4096)])
    orchestratorrequirespreparevm = BooleanField("Call prepare before a VM's first start")
    state = SelectField("State", choices=STATE_CHOICES,
                        description="Enabled again after a change of its executable: its new checksum is accepted")
    details = TextAreaField("Details", validators=[_lines(details_lines)], render_kw={"rows": 5},
                            description=f"one name=value a line; a secret shows as name={MASK} and keeps its value")


class RegisterForm(InfraForm):
    title = submit = "Register with a cluster"
    dom_id = "extension-register-form"
    aliases = {"resourceid": "cluster", "details": "details"}
    cluster = SelectField("Cluster", validators=[DataRequired()], choices=[],
                          description="External (or Custom) clusters that no extension serves yet")
    details = TextAreaField("Details", validators=[_lines(details_lines)], render_kw={"rows": 3},
                            description="the cluster's own name=value lines (the payload's resourcemap)")

    def prepare(self) -> None:
        taken = set(db.session.scalars(select(registry.ExtensionResourceMap.resource_id)))
        rows = db.session.scalars(select(Cluster).where(
            Cluster.removed.is_(None), Cluster.hypervisor_type.in_((registry.EXTERNAL, registry.CUSTOM)))
            .order_by(Cluster.name))
        self.offer(self.cluster, [(c.uuid, f"{c.name} ({c.zone.name})") for c in rows if c.id not in taken], blank="")


class CustomActionForm(InfraForm):
    title = submit = "Add a custom action"
    dom_id = "custom-action-form"
    aliases = {"rolesList": "roles", "roleslist": "roles", "parameters": "parameters",
               "successmessage": "successmessage", "errormessage": "errormessage"}
    name = StringField("Name", validators=[DataRequired(), Length(max=255)],
                       description="the action the extension is called with")
    description = StringField("Description", validators=[Optional(), Length(max=4096)])
    parameters = TextAreaField("Parameters", validators=[_lines(parameters_lines)], render_kw={"rows": 3},
                               description="one a line: its name, a type (STRING, NUMBER, BOOLEAN, DATE), then "
                                           "optionally 'required', format=UUID|EMAIL|PASSWORD|URL|DECIMAL and "
                                           "options=a,b,c (the values offered)")
    roles = SelectMultipleField("Allowed role types", choices=choices([(r, r) for r in ROLE_TYPES]),
                                default=["Admin"], description="Admin may always run it")
    timeout = IntegerField("Timeout (seconds)", validators=[Optional(), NumberRange(1, 3600)], default=60)
    successmessage = StringField("Success message", validators=[Optional(), Length(max=4096)])
    errormessage = StringField("Error message", validators=[Optional(), Length(max=4096)])
    enabled = BooleanField("Enabled (offered on the VM page and to runCustomAction)")


class EditCustomActionForm(CustomActionForm):
    title = submit = "Save the custom action"
    dom_id = "custom-action-edit-form"
    name = None  # updateCustomAction does not rename


# --- Pages ------------------------------------------------------------------------------

def _extension(uuid: str):
    try:
        return registry.get(uuid)
    except NotFound:
        abort(404)


@bp.route("/", methods=["GET", "POST"])
@admin_required
def index():
    def save(f: ExtensionForm):
        e = registry.create(current_user, name=f.name.data.strip(), type="Orchestrator",
                            description=f.description.data or None, path=f.path.data or None,
                            orchestrator_requires_prepare_vm=f.orchestratorrequirespreparevm.data,
                            state=f.state.data, details_map=details_entries(f.details.data))
        state = "ready" if e.path_ready else f"Not Ready: {e.path_reason}"
        return f"Extension {e.name} added ({state}).", url_for(".detail", uuid=e.uuid)
    rows = registry.list_extensions()[0]
    return form_page(ExtensionForm, save, template="extensions/index.html", rows=rows,
                     clusters={e.id: [c for _, c in registry.clusters_of(e)] for e in rows},
                     action_counts={e.id: actions.list_actions(current_user, extension_uuid=e.uuid)[1] for e in rows},
                     root=paths.root())


def _detail_context(e, **forms) -> dict:
    register = forms.get("register") or RegisterForm(formdata=None).setup(url_for(".register", uuid=e.uuid))
    add_action = forms.get("add_action") or CustomActionForm(formdata=None).setup(url_for(".add_action", uuid=e.uuid))
    return dict(e=e, st=registry.refresh_path(e), details=details.shown("Extension", e.id),
                secrets=details.secret_names("Extension", e.id),
                clusters=[(m, c, details.shown("ExtensionResourceMap", m.id),
                           details.secret_names("ExtensionResourceMap", m.id)) for m, c in registry.clusters_of(e)],
                custom_actions=actions.list_actions(current_user, extension_uuid=e.uuid)[0],
                declared=lambda a: parameters.loads(a.parameters),
                register=register, add_action=add_action, root=paths.root(), directory=paths.directory(e.name))


@bp.route("/<uuid>")
@admin_required
def detail(uuid: str):
    e = _extension(uuid)
    context = _detail_context(e)
    db.session.commit()  # refresh_path may have recorded a new state
    return render_template("extensions/detail.html", **context)


@bp.route("/<uuid>/edit", methods=["GET", "POST"])
@admin_required
def edit(uuid: str):
    e = _extension(uuid)
    preset = MultiDict(dict(description=e.description or "", state=e.state, details=details_text("Extension", e.id),
                            **({"orchestratorrequirespreparevm": "y"} if e.orchestrator_requires_prepare_vm else {})))

    def save(f: EditExtensionForm):
        x = registry.update(current_user, uuid, description=f.description.data or "",
                            orchestrator_requires_prepare_vm=f.orchestratorrequirespreparevm.data,
                            state=f.state.data, details_map=details_entries(f.details.data, "Extension", e.id),
                            cleanup_details=not details_lines(f.details.data))
        return f"Extension {x.name} saved.", url_for(".detail", uuid=uuid)
    return _edit_page(EditExtensionForm, preset, save, crumbs=[("Extensions", url_for(".index")),
                                                               (e.name, url_for(".detail", uuid=uuid))],
                      heading=f"Edit {e.name}")


def _edit_page(form_cls, preset: MultiDict, save, **context):
    """An edit form: GET shows it filled from the object (`preset`), POST is form_page's."""
    if request.method == "POST":
        return form_page(form_cls, save, **context)
    form = form_cls(formdata=preset).setup(url_for(request.endpoint, **request.view_args))
    return render_template("portal/form.html", form=form, **context)


def _button(call, done: str, then: str, refused: str | None = None):
    """A button's POST (CSRF-checked): the service call, its message, and back to a page
    (`refused`, if given, when the service says no)."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        call()
    except ServiceError as err:
        flash(err.message, "error")
        return _redirect(refused or then)
    flash(done, "success")
    return _redirect(then)


@bp.route("/<uuid>/delete", methods=["POST"])
@admin_required
def delete(uuid: str):
    e = _extension(uuid)
    return _button(lambda: registry.delete(current_user, uuid), f"Extension {e.name} deleted.",
                   url_for(".index"), url_for(".detail", uuid=uuid))


def _detail_form(e, key: str, form_cls, endpoint: str, save, **kw):
    """A form of the extension's page posted: saved, or the page again with its errors (422)."""
    form = form_cls().setup(url_for(endpoint, uuid=e.uuid, **kw))
    if form.validate_on_submit():
        try:
            message = save(form)
        except ServiceError as err:
            attach_error(err, form, aliases=form.aliases)
        else:
            flash(message, "success")
            return _redirect(url_for(".detail", uuid=e.uuid))
    if wants_fragment():
        return render_template("infra/_form.html", form=form), 422
    return render_template("extensions/detail.html", **_detail_context(e, **{key: form})), 422


@bp.route("/<uuid>/register", methods=["POST"])
@admin_required
def register(uuid: str):
    e = _extension(uuid)

    def save(f: RegisterForm):
        registry.register(current_user, extension_uuid=uuid, resource_id=f.cluster.data, resource_type="Cluster",
                          details_map=details_entries(f.details.data))
        return f"Extension {e.name} now serves its cluster."
    return _detail_form(e, "register", RegisterForm, ".register", save)


@bp.route("/<uuid>/unregister/<cluster>", methods=["POST"])
@admin_required
def unregister(uuid: str, cluster: str):
    e = _extension(uuid)
    return _button(lambda: registry.unregister(current_user, extension_uuid=uuid, resource_id=cluster,
                                               resource_type="Cluster"),
                   f"Extension {e.name} no longer serves that cluster.", url_for(".detail", uuid=uuid))


def _action_values(f: CustomActionForm) -> dict:
    return dict(description=f.description.data or "", allowed_role_types=f.roles.data or ["Admin"],
                parameters_map=parameters_lines(f.parameters.data), timeout=f.timeout.data,
                success_message=f.successmessage.data or "", error_message=f.errormessage.data or "",
                enabled=f.enabled.data)


@bp.route("/<uuid>/actions", methods=["POST"])
@admin_required
def add_action(uuid: str):
    e = _extension(uuid)

    def save(f: CustomActionForm):
        a = actions.add(current_user, extension_uuid=uuid, name=f.name.data.strip(), resource_type="VirtualMachine",
                        **_action_values(f))
        return f"Custom action {a.name} added{'' if a.enabled else ' (disabled)'}."
    return _detail_form(e, "add_action", CustomActionForm, ".add_action", save)


def _action(e, action_uuid: str):
    try:
        a = actions.get(action_uuid)
    except NotFound:
        abort(404)
    if a.extension_id != e.id:
        abort(404)
    return a


@bp.route("/<uuid>/actions/<action_uuid>/edit", methods=["GET", "POST"])
@admin_required
def edit_action(uuid: str, action_uuid: str):
    e = _extension(uuid)
    a = _action(e, action_uuid)
    preset = MultiDict(dict(description=a.description or "", parameters=parameters_text(a),
                            timeout=str(a.timeout), successmessage=a.success_message or "",
                            errormessage=a.error_message or "", **({"enabled": "y"} if a.enabled else {})))
    preset.setlist("roles", (a.allowed_role_types or "Admin").split(","))

    def save(f: EditCustomActionForm):
        values = _action_values(f)
        x = actions.update(current_user, action_uuid, cleanup_parameters=not values["parameters_map"], **values)
        return f"Custom action {x.name} saved.", url_for(".detail", uuid=uuid)
    return _edit_page(EditCustomActionForm, preset, save, crumbs=[("Extensions", url_for(".index")),
                                                                  (e.name, url_for(".detail", uuid=uuid))],
                      heading=f"Edit the custom action {a.name}")


@bp.route("/<uuid>/actions/<action_uuid>/delete", methods=["POST"])
@admin_required
def delete_action(uuid: str, action_uuid: str):
    a = _action(_extension(uuid), action_uuid)
    return _button(lambda: actions.delete(current_user, action_uuid), f"Custom action {a.name} deleted.",
                   url_for(".detail", uuid=uuid))
