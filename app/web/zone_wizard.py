"""The zone wizard pages. Each step is a plain form page (POST, redirect) that
HTMX enhances: Next/Back swap the wizard card in place and push the step's URL.
All checking is done by app/services/zone_wizard.py; this module only maps
form fields to it and its errors back onto the fields."""
from __future__ import annotations

from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, PasswordField, RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice as C
from wtforms.validators import Length, Optional

from app.extensions import db
from app.models import AsyncJob, JobStatus
from app.services import hypervisors as hv
from app.services import zone_wizard as wizard
from app.services.errors import NotFound, ServiceError
from app.web import admin_required

bp = Blueprint("zone_wizard", __name__, url_prefix="/admin/zones/wizard")

_text = dict(validators=[Optional(), Length(max=255)])


class ZoneStep(FlaskForm):
    name = StringField("Zone name", **_text)
    description = StringField("Description", **_text)
    networktype = RadioField("Network type", choices=[C("Advanced", "Advanced (VLAN-isolated guest networks)"),
                                                      C("Basic", "Basic (one flat guest network per pod)")],
                             default="Advanced")
    hypervisor = SelectField("Hypervisor", choices=[])
    dns1 = StringField("DNS 1", **_text)
    dns2 = StringField("DNS 2", **_text)
    internaldns1 = StringField("Internal DNS 1", **_text)
    internaldns2 = StringField("Internal DNS 2", **_text)
    guestcidraddress = StringField("Guest CIDR", **_text)
    localstorageenabled = BooleanField("Use the hosts' local storage for VMs")


class NetworkStep(FlaskForm):
    isolationmethod = RadioField("Isolation of guest networks", default="VLAN", choices=[
        C("VLAN", "VLAN (802.1Q tags on the hosts' device)"), C("VXLAN", "VXLAN (VNIs over the hosts' IP network)")])
    vlan = StringField("Guest VLAN / VNI range", **_text)
    trafficlabel = StringField("Bridge or virtual switch on the hosts", **_text)


class PublicStep(FlaskForm):
    gateway = StringField("Public gateway", **_text)
    netmask = StringField("Public netmask", **_text)
    vlan = StringField("Public VLAN", **_text)
    startip = StringField("First public IP", **_text)
    endip = StringField("Last public IP", **_text)
    trafficlabel = StringField("Public bridge or virtual switch on the hosts", **_text)


class PodStep(FlaskForm):
    name = StringField("Pod name", **_text)
    gateway = StringField("Gateway", **_text)
    netmask = StringField("Netmask", **_text)
    startip = StringField("Host IP range start", **_text)
    endip = StringField("Host IP range end", **_text)
    gueststartip = StringField("Guest IP range start", **_text)
    guestendip = StringField("Guest IP range end", **_text)


class ClusterStep(FlaskForm):
    clustername = StringField("Cluster name", **_text)


class _StorageFields(FlaskForm):
    name = StringField("Name", **_text)
    server = StringField("Server", **_text)
    path = StringField("Path", validators=[Optional(), Length(max=1024)])
    share = StringField("Share", **_text)
    user = StringField("User name", **_text)
    password = PasswordField("Password", **_text)


class PrimaryStep(_StorageFields):
    kind = RadioField("Shared primary storage", default="nfs", choices=[
        C("nfs", "NFS"), C("smb", "SMB/CIFS"), C("dir", "Directory (already mounted on every host)"),
        C("none", "None: local storage only")])
    scope = SelectField("Scope", choices=[C("cluster", "Cluster"), C("zone", "Zone")], default="cluster")


class SecondaryStep(_StorageFields):
    provider = RadioField("Secondary storage", default="NFS", choices=[
        C("NFS", "NFS"), C("SMB", "SMB/CIFS"), C("Local", "Local directory on the management server")])


class ReviewStep(FlaskForm):
    pass


FORMS = {"zone": ZoneStep, "network": NetworkStep, "public": PublicStep, "pod": PodStep, "cluster": ClusterStep,
         "primary": PrimaryStep, "secondary": SecondaryStep, "review": ReviewStep}
# Service error fields that have no field of that name on the step's form.
FIELD_ALIASES = {"primary": {"url": "kind"}, "secondary": {"url": "path"}}
NOT_FORM = ("csrf_token", "action")


def _host_form(data: dict, formdata=None, values: dict | None = None):
    from app.web import hostform
    return hostform.form_for(wizard.type_of(data), formdata=formdata, data=values)


def _form(step: str, data: dict, formdata=None):
    saved = data.get(step, {})
    if step == "host":
        return _host_form(data, formdata, {k: v for k, v in saved.items() if not k.startswith("_")})
    form = FORMS[step](formdata=formdata, data=saved)
    if step == "zone":
        form.hypervisor.choices = [C("", "Choose…")] + [C(t.name, hv.display_name(t.name)) for t in hv.enabled_types()]
    return form


def _draft(uuid: str):
    try:
        return wizard.get_draft(current_user, uuid)
    except NotFound:
        abort(404)


def _render(draft, step: str, form, error: str | None = None, status: int = 200, facts=None, drafts=()):
    data = wizard.values(draft)
    ctx = dict(draft=draft, step=step, form=form, data=data, error=error, steps=wizard.STEPS, action=_url(draft, step),
               drafts=drafts,
               titles=wizard.TITLES, type_name=wizard.type_of(data), facts=facts,
               default_label=wizard.default_label(wizard.type_of(data)))
    if request.htmx:
        resp = make_response(render_template("zone_wizard/_wizard.html", **ctx), status)
        resp.headers["HX-Push-Url"] = _url(draft, step)
        return resp
    return render_template("zone_wizard/step.html", **ctx), status


def _url(draft, step: str) -> str:
    """A step's address; a draft not stored yet has only its first step, at the wizard's root."""
    return url_for(".step", uuid=draft.uuid, step=step) if draft.id is not None else url_for(".start")


def _go(draft, step: str):
    """After a successful POST: the next step (fragment for HTMX, redirect otherwise)."""
    if request.htmx:
        return _render(draft, step, _form(step, wizard.values(draft)))
    return redirect(url_for(".step", uuid=draft.uuid, step=step))


@bp.route("/", methods=["GET", "POST"])
@admin_required
def start():
    """The first step of a new wizard. GET stores nothing; the first valid POST
    stores the draft and goes on to /<uuid>/network (a draft is resumed by its URL)."""
    draft = wizard.new_draft(current_user)
    if request.method == "GET":  # unfinished wizards: resume or delete them
        return _render(draft, wizard.STEPS[0], _form(wizard.STEPS[0], {}), drafts=wizard.list_drafts(current_user))
    return _step(draft, wizard.STEPS[0])


@bp.route("/<uuid>/delete", methods=["POST"])
@admin_required
def delete_draft(uuid: str):
    """Give an unfinished wizard up; back to the wizard's start (HTMX: HX-Redirect there)."""
    if not ReviewStep().validate_on_submit():
        abort(400)
    try:
        wizard.delete_draft(current_user, uuid)
    except NotFound:
        abort(404)
    flash("The unfinished zone was deleted.", "success")
    if request.htmx:
        return "", 204, {"HX-Redirect": url_for(".start")}
    return redirect(url_for(".start"))


@bp.route("/<uuid>/<step>", methods=["GET", "POST"])
@admin_required
def step(uuid: str, step: str):
    draft = _draft(uuid)
    if step not in wizard.STEPS:
        abort(404)
    if not wizard.reachable(draft, step):
        return redirect(url_for(".step", uuid=uuid, step=draft.step))
    return _step(draft, step)


def _step(draft, step: str):
    data = wizard.values(draft)
    if request.method == "GET":
        return _render(draft, step, _form(step, data))
    form = _form(step, data, formdata=request.form)
    if not form.validate_on_submit():
        if form.errors.get("csrf_token"):
            abort(400)
        return _render(draft, step, form, status=422)
    values = _values(step, form)
    index = wizard.STEPS.index(step)
    if request.form.get("action") == "back" and index > 0:
        wizard.keep(draft, step, values)
        return _go(draft, wizard.STEPS[index - 1])
    try:
        nxt = wizard.save(draft, step, values)
    except ServiceError as e:
        # Every error the step found, each beside its field; those of no shown field on top.
        loose = [one.message for one in getattr(e, "errors", None) or [e] if not _with_error(step, form, one)]
        return _render(draft, step, form, error="; ".join(loose) or None, status=422)
    return _go(draft, nxt)


def _values(step: str, form) -> dict:
    if step == "host":
        return form.values()
    return {k: v for k, v in form.data.items() if k not in NOT_FORM}


def _field(step: str, form, e: ServiceError):
    name = FIELD_ALIASES.get(step, {}).get(e.field, e.field)
    return getattr(form, name, None) if name else None


def _with_error(step: str, form, e: ServiceError) -> bool:
    """Put the error beside its field; False when the step shows no such field."""
    field = _field(step, form, e)
    if field is None:
        return False
    # Services name the API parameter ("dns1 must be ..."); the page names the field it shows.
    message = e.message
    if e.field and message.startswith(e.field + " "):
        message = field.label.text + message[len(e.field):]
    field.errors = [*field.errors, message]
    return True


@bp.route("/<uuid>/host/test", methods=["POST"])
@admin_required
def test_connection(uuid: str):
    draft = _draft(uuid)
    data = wizard.values(draft)
    form = _host_form(data, formdata=request.form)
    values = form.values()
    try:
        facts, error = wizard.test_connection(draft, values), None
    except ServiceError as e:
        facts, error = None, e.message
    # The whole card again (HTMX too): only this test's answer shows, so an error of an earlier
    # Next does not stay beside a green "Connected".
    return _render(draft, "host", form, error=error, facts=facts)


@bp.route("/<uuid>/launch", methods=["POST"])
@admin_required
def launch(uuid: str):
    draft = _draft(uuid)
    if not ReviewStep().validate_on_submit():
        abort(400)
    try:
        job = wizard.launch(current_user, draft)
    except ServiceError as e:
        flash(e.message, "error")
        return redirect(url_for(".step", uuid=uuid, step=draft.step))
    target = url_for(".progress", job_uuid=job.uuid)
    if request.htmx:
        resp = make_response("")
        resp.headers["HX-Redirect"] = target
        return resp
    return redirect(target)


@bp.route("/launch/<job_uuid>")
@admin_required
def progress(job_uuid: str):
    job = db.session.scalar(select(AsyncJob).where(AsyncJob.uuid == job_uuid, AsyncJob.cmd == "launchZone"))
    if job is None:
        abort(404)
    ctx = dict(job=job, steps=wizard.progress_of(job), running=job.status == JobStatus.PENDING,
               result=wizard.launch_result(job))
    if request.htmx:
        return render_template("zone_wizard/_progress.html", **ctx)
    return render_template("zone_wizard/launch.html", **ctx)
