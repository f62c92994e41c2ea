"""Volumes (users: their own; admins: all) and disk offerings (admins).

- /volumes/ — the list: name, type, size, state, zone, VM (and pool, account for
  admins); search and filters.
- /volumes/new — create a data volume (zone, disk offering, size for a custom one).
- /volumes/<uuid> — the volume page with what its state allows: attach (to one of the
  owner's VMs in its zone), detach, resize (offline, never smaller), delete.
  POST /volumes/<uuid>/<action> answers HTMX with the page's body (volumes/_volume.html)
  and a plain POST with a redirect and a message.
- /volumes/offerings — disk offerings: list, create, delete (admins).
Every rule is app/services/volumes.py's.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from app.models import DiskOffering, VMState, VolumeType
from app.services import deploy_options, offering_domains, volumes
from app.services import vms as vms_service
from app.services.errors import NotFound, ServiceError
from app.services.transfers import extracts, volume_uploads
from app.web import admin_required
from app.web.forms import EmptyForm, attach_error
from app.web.infra import _redirect
from app.web.infra_forms import InfraForm, choices
from app.web.listing import FilterSelect, listing, wants_fragment
from app.web.offerings_pages import DomainsForm, chosen_domains, chosen_zones, domains_field, zones_field
from app.web.portal import form_page

bp = Blueprint("volumes", __name__, url_prefix="/volumes")


def _size(o) -> str:
    return "custom size" if o.is_custom else f"{o.disk_size} GiB"


# --- List and create --------------------------------------------------------------

def _fetch(*, keyword, sort, page, zone_uuid, type_):  # noqa: ARG001 - one order: oldest first
    return volumes.list_volumes(current_user, keyword=keyword, zone_uuid=zone_uuid, type_=type_, page=page)


@bp.route("/")
@login_required
def index():
    lst = listing("volumes.index", "volumes", _fetch, sorts=(), default_sort="",
                  filters={"zone": "zone_uuid", "type": "type_"})
    if wants_fragment():
        return render_template("volumes/_list.html", lst=lst), {"HX-Push-Url": lst.url()}
    selects = [FilterSelect("zone", "Zone", [(z.uuid, z.name) for z in deploy_options.zones_for(current_user)]),
               FilterSelect("type", "Type", [("DATADISK", "Data"), ("ROOT", "Root")])]
    return render_template("volumes/index.html", lst=lst, selects=selects)


class VolumeForm(InfraForm):
    title = submit = "Create a volume"
    intro = ("A data volume takes space on primary storage when it is first attached to a VM; it counts "
             "against your account's volume and storage limits from now on.")
    dom_id = "volume-form"
    aliases = {"zoneid": "zone", "diskofferingid": "diskoffering"}
    name = StringField("Name", validators=[Optional(), Length(max=255)], description="empty: one is made up")
    zone = SelectField("Zone", validators=[DataRequired("Choose a zone")])
    diskoffering = SelectField("Disk offering", validators=[DataRequired("Choose a disk offering")])
    size = IntegerField("Size (GiB)", validators=[Optional(), NumberRange(1, 65536)],
                        description="only for a custom-size offering")

    def prepare(self) -> None:
        self.offer(self.zone, [(z.uuid, z.name) for z in deploy_options.zones_for(current_user)], "Choose a zone")
        self.offer(self.diskoffering, [(o.uuid, f"{o.name} ({_size(o)})")
                                       for o in volumes.list_disk_offerings(current_user)[0]], "Choose a disk offering")


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create():
    def save(f: VolumeForm):
        v = volumes.create_volume(current_user, name=f.name.data, zone_uuid=f.zone.data,
                                  disk_offering_uuid=f.diskoffering.data, size_gib=f.size.data)
        return f"Volume {v.name} created.", url_for(".detail", uuid=v.uuid)
    return form_page(VolumeForm, save, crumbs=[("Volumes", url_for(".index"))])


# --- Upload (uploadVolume from a URL; getUploadParamsForVolume + static/js/upload.js) ----

class VolumeUploadForm(InfraForm):
    """uploadVolume (with a URL) and getUploadParamsForVolume (the file from this computer)."""
    title = submit = "Upload a volume"
    dom_id = "volume-upload-form"
    upload = True  # the file from this computer; False: from a URL
    aliases = {"zoneid": "zone", "diskofferingid": "diskoffering"}
    url = StringField("URL", validators=[DataRequired(), Length(max=2048)],
                      description="http:// or https://; Nubo fetches it into secondary storage")
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    zone = SelectField("Zone", validators=[DataRequired("Choose a zone")])
    format = SelectField("Format", choices=choices([(f, f) for f in volume_uploads.FORMATS]))
    diskoffering = SelectField("Disk offering", description="optional; a custom-size one")
    checksum = StringField("Checksum", validators=[Optional(), Length(max=255)],
                           description="{SHA-256}… (or {MD5}, {SHA-1}, {SHA-512}) or a plain MD5; checked "
                                       "before the image is accepted")

    def prepare(self) -> None:
        if self.upload:
            del self["url"]
        self.offer(self.zone, [(z.uuid, z.name) for z in deploy_options.zones_for(current_user)], "Choose a zone")
        self.offer(self.diskoffering, [(o.uuid, o.name) for o in volumes.list_disk_offerings(current_user)[0] if o.is_custom],
                   "—")

    def service_args(self) -> dict:
        return dict(name=self.name.data, format=self.format.data, zone_uuid=self.zone.data,
                    checksum=self.checksum.data or None, disk_offering_uuid=self.diskoffering.data or None)


class VolumeUrlForm(VolumeUploadForm):
    upload = False
    dom_id = "volume-url-form"


@bp.route("/upload", methods=["GET", "POST"])
@login_required
def upload():
    """As the template upload page: POST (from the page's script) issues the volume row and the
    signed URL, carried in data- attributes for static/js/upload.js, which POSTs the file."""
    action = url_for(".upload")
    params, status = None, 200
    if request.method == "POST":
        form = VolumeUploadForm().setup(action)
        status = 422
        if form.validate_on_submit():
            try:
                params, status = volume_uploads.upload_params(current_user, **form.service_args()), 200
            except ServiceError as e:
                attach_error(e, form, aliases=form.aliases)
    else:
        form = VolumeUploadForm(formdata=request.args or None).setup(action)
    return render_template("volumes/_upload_form.html" if wants_fragment() else "volumes/upload.html", form=form,
                           params=params), status


@bp.route("/upload-url", methods=["GET", "POST"])
@login_required
def upload_url():
    def save(f: VolumeUrlForm):
        job = volume_uploads.submit_upload(current_user, url=f.url.data, **f.service_args())
        return f"Volume {f.name.data}: Nubo is fetching it.", url_for(".detail", uuid=job.instance_id)
    return form_page(VolumeUrlForm, save, crumbs=[("Volumes", url_for(".index"))])


# --- The volume page and its actions ------------------------------------------------

class AttachForm(FlaskForm):
    vm = SelectField("VM", validate_choice=False, validators=[DataRequired("Choose a VM")])


class ResizeForm(FlaskForm):
    size = IntegerField("New size (GiB)", validators=[DataRequired("Give the new size"), NumberRange(1, 65536)])


@dataclass(frozen=True)
class VolumeAction:
    label: str
    run: Callable[[str, FlaskForm], Any]
    done: str
    form: type[FlaskForm] = EmptyForm
    offered: Callable[[Any], bool] = lambda v: True
    confirm: str | None = None
    danger: bool = False


def _data(v) -> bool:
    return v.volume_type == VolumeType.DATADISK


ACTIONS = {
    "attach": VolumeAction("Attach", lambda uuid, f: volumes.attach_volume(current_user, uuid, f.vm.data),
                           "Volume {name} attached.", AttachForm, lambda v: _data(v) and v.vm_id is None),
    "detach": VolumeAction("Detach", lambda uuid, f: volumes.detach_volume(current_user, uuid),
                           "Volume {name} detached.", offered=lambda v: _data(v) and v.vm_id is not None,
                           confirm="Detach {name} from its VM?"),
    "resize": VolumeAction("Resize", lambda uuid, f: volumes.resize_volume(current_user, uuid, size_gib=f.size.data),
                           "Volume {name} resized.", ResizeForm),
    "delete": VolumeAction("Delete", lambda uuid, f: volumes.delete_volume(current_user, uuid),
                           "Volume {name} deleted.", offered=lambda v: _data(v) and v.vm_id is None,
                           confirm="Delete {name} and everything on it?", danger=True),
}


def _volume(uuid: str):
    try:
        return volumes.get_volume(current_user, uuid)
    except NotFound:
        abort(404)


def _vm_choices(v) -> list[tuple[str, str]]:
    """The owner's VMs in the volume's zone that can take a volume now (Running or Stopped)."""
    rows = vms_service.list_vms(current_user, zone_uuid=v.zone.uuid, page=(1, 500))[0]
    return [(vm.uuid, f"{vm.name} ({vm.state})") for vm in rows
            if vm.account_id == v.account_id and vm.state in (VMState.RUNNING, VMState.STOPPED)]


def _page(v, **context) -> dict:
    attach = AttachForm(formdata=None)
    attach.vm.choices = choices([("", "Choose a VM")] + _vm_choices(v)) if ACTIONS["attach"].offered(v) else []
    resize = ResizeForm(formdata=None, data={"size": -(-v.size // volumes.GIB)})
    return dict(v=v, actions={k: a for k, a in ACTIONS.items() if a.offered(v)}, attach=attach, resize=resize,
                may_extract=extracts.may_extract_volume(current_user, v),
                upload=volume_uploads.ref_of(v) if v.state in volume_uploads.UPLOAD_STATES else None, **context)


@bp.route("/<uuid>")
@login_required
def detail(uuid: str):
    context = _page(_volume(uuid))
    return render_template("volumes/_volume.html" if wants_fragment() else "volumes/detail.html", **context)


@bp.route("/<uuid>/<action>", methods=["POST"])
@login_required
def act(uuid: str, action: str):
    a = ACTIONS.get(action) or abort(404)
    v = _volume(uuid)
    name = v.name
    form = a.form()
    error = None
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400)
        error = "; ".join(e for errors in form.errors.values() for e in errors)
    else:
        try:
            a.run(v.uuid, form)
        except ServiceError as e:
            error = e.message
    message = error or a.done.format(name=name)
    if action == "delete" and not error:
        flash(message, "success")
        return _redirect(url_for(".index"))
    if not request.htmx:
        flash(message, "error" if error else "success")
        return redirect(url_for(".detail", uuid=uuid))
    v = _volume(uuid)
    return render_template("volumes/_volume.html", **_page(v, error=error, message=None if error else message)), \
        422 if error else 200


# --- Disk offerings (admins) --------------------------------------------------------

class DiskOfferingForm(DomainsForm):
    title = submit = "Add a disk offering"
    dom_id = "offering-form"
    aliases = {"disksize": "disksize", "storagetype": "storagetype"}
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    displaytext = StringField("Description", validators=[Optional(), Length(max=4096)])
    disksize = IntegerField("Size (GiB)", validators=[Optional(), NumberRange(1, 65536)],
                            description="empty for a custom size, chosen when the volume is made")
    customized = BooleanField("Custom size")
    storagetype = SelectField("Storage", choices=choices([("shared", "Shared"), ("local", "Local to the host")]))
    tags = StringField("Storage tags", validators=[Optional(), Length(max=4096)],
                       description="comma separated: its volumes go to primary storage with all of them")
    domainid = domains_field()
    zoneid = zones_field()


class EditDiskOfferingForm(DomainsForm):
    title = submit = "Save the disk offering"
    dom_id = "offering-edit-form"
    aliases = {"displaytext": "displaytext", "sortkey": "sortkey"}
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    displaytext = StringField("Description", validators=[Optional(), Length(max=4096)])
    tags = StringField("Storage tags", validators=[Optional(), Length(max=4096)],
                       description="comma separated; empty: any primary storage. Volumes made from now on follow them")
    sortkey = IntegerField("Sort key", validators=[Optional(), NumberRange(-2**31, 2**31 - 1)],
                           description="lists show offerings by ascending sort key")
    domainid = domains_field()
    zoneid = zones_field()


@bp.route("/offerings", methods=["GET", "POST"])
@admin_required
def offerings():
    def save(f: DiskOfferingForm):
        o = volumes.create_disk_offering(current_user, name=f.name.data, display_text=f.displaytext.data,
                                         disk_size=f.disksize.data, customized=f.customized.data,
                                         storage_type=f.storagetype.data, tags=f.tags.data or None,
                                         domain_ids=chosen_domains(f, editing=False),
                                         zone_ids=chosen_zones(f, editing=False))
        return f"Disk offering {o.name} added.", url_for(".offerings")
    rows = volumes.list_disk_offerings()[0]
    return form_page(DiskOfferingForm, save, template="volumes/offerings.html", rows=rows, size=_size,
                     domains=offering_domains.domains_by_offering(DiskOffering, [o.id for o in rows]),
                     zones=offering_domains.zones_by_offering(DiskOffering, [o.id for o in rows]),
                     domain_path=offering_domains.domain_path)


@bp.route("/offerings/<uuid>/edit", methods=["GET", "POST"])
@admin_required
def edit_offering(uuid: str):
    """updateDiskOffering's page (the list's Edit link presets the fields)."""
    try:
        o = volumes.get_disk_offering(uuid, "id")
    except NotFound:
        abort(404)

    def save(f: EditDiskOfferingForm):
        o = volumes.update_disk_offering(current_user, uuid, name=f.name.data, display_text=f.displaytext.data or "",
                                         sort_key=f.sortkey.data, tags=f.tags.data or "",
                                         domain_ids=chosen_domains(f, editing=True),
                                         zone_ids=chosen_zones(f, editing=True))
        return f"Disk offering {o.name} saved.", url_for(".offerings")
    return form_page(EditDiskOfferingForm, save, crumbs=[("Disk offerings", url_for(".offerings"))],
                     heading=f"Edit {o.name}")


@bp.route("/offerings/<uuid>/delete", methods=["POST"])
@admin_required
def delete_offering(uuid: str):
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        volumes.delete_disk_offering(current_user, uuid)
    except NotFound:
        abort(404)
    flash("Disk offering deleted.", "success")
    return _redirect(url_for(".offerings"))
