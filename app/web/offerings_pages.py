"""Compute offerings (admins): the list with what each gives (vCPUs × MHz, memory, storage, root
disk, HA, host and storage tags) and how many VMs use it; add, edit (name, description, tags,
sort key: what updateServiceOffering changes), delete (refused while VMs use it). Every rule is
app/services/offerings.py's (createServiceOffering, updateServiceOffering, deleteServiceOffering).
Disk offerings are volumes_pages.py's (/volumes/offerings)."""
from __future__ import annotations

from flask import Blueprint, abort, flash, url_for
from flask_login import current_user
from sqlalchemy import func, select
from wtforms import BooleanField, IntegerField, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from app.extensions import db
from app.models import ServiceOffering, VirtualMachine
from app.services import offering_domains, offerings
from app.services.errors import NotFound, ServiceError
from app.web import admin_required
from app.web.forms import EmptyForm
from app.web.infra import _redirect
from app.web.infra_forms import InfraForm, choices
from app.web.portal import form_page

bp = Blueprint("offerings_pages", __name__, url_prefix="/admin/offerings")


def domains_field() -> SelectMultipleField:
    """The offering's domains (createServiceOffering's domainid): none chosen is a public offering."""
    return SelectMultipleField("Domains", choices=[], validate_choice=False,
                               description="none chosen: public. Chosen (Ctrl or ⌘ for several): only the accounts "
                                           "of these domains and of the domains below them see and use it")


def zones_field() -> SelectMultipleField:
    """The offering's zones (zoneid): none chosen serves every zone."""
    return SelectMultipleField("Zones", choices=[], validate_choice=False,
                               description="none chosen: every zone. Chosen: VMs and volumes of it only there")


class DomainsForm(InfraForm):
    """An offering form with its domains and zones (both kinds, add and edit)."""
    def prepare(self) -> None:
        self.domainid.choices = offering_domains.domain_choices(current_user)
        self.zoneid.choices = offering_domains.zone_choices()


def chosen_domains(f, *, editing: bool):
    """The domains chosen, as the service takes them: None (add: public), "public" (edit: none chosen)."""
    return f.domainid.data or ("public" if editing else None)


def chosen_zones(f, *, editing: bool):
    """The zones chosen: None (add: every zone), "all" (edit: none chosen)."""
    return f.zoneid.data or ("all" if editing else None)


class ComputeOfferingForm(DomainsForm):
    title = submit = "Add a compute offering"
    dom_id = "compute-offering-form"
    aliases = {"cpunumber": "cpunumber", "cpuspeed": "cpuspeed", "memory": "memory", "storagetype": "storagetype",
               "mincpunumber": "mincpunumber", "maxcpunumber": "maxcpunumber", "minmemory": "minmemory",
               "maxmemory": "maxmemory", "customized": "customized",
               "rootdisksize": "rootdisksize", "hosttags": "hosttags", "tags": "storagetags"}
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    displaytext = StringField("Description", validators=[Optional(), Length(max=4096)])
    cpunumber = IntegerField("vCPUs", validators=[Optional(), NumberRange(1, 256)],
                             description="empty for a custom size")
    cpuspeed = IntegerField("MHz per vCPU", validators=[DataRequired(), NumberRange(100, 100000)])
    memory = IntegerField("Memory (MiB)", validators=[Optional(), NumberRange(32, 16 * 1024 * 1024)],
                          description="empty for a custom size")
    customized = BooleanField("Custom size: vCPUs and memory chosen at deploy, within the bounds below")
    mincpunumber = IntegerField("Least vCPUs", validators=[Optional(), NumberRange(1, 256)])
    maxcpunumber = IntegerField("Most vCPUs", validators=[Optional(), NumberRange(1, 256)])
    minmemory = IntegerField("Least memory (MiB)", validators=[Optional(), NumberRange(32, 16 * 1024 * 1024)])
    maxmemory = IntegerField("Most memory (MiB)", validators=[Optional(), NumberRange(32, 16 * 1024 * 1024)])
    storagetype = SelectField("Root disk storage", choices=choices([("shared", "Shared"), ("local", "Local to the host")]))
    rootdisksize = IntegerField("Root disk (GiB)", validators=[Optional(), NumberRange(1, 65536)],
                                description="empty: the template's size")
    offerha = BooleanField("Offer HA (restarted on another host when its host fails)")
    hosttags = StringField("Host tags", validators=[Optional(), Length(max=4096)],
                           description="comma separated: its VMs run on hosts with all of them")
    storagetags = StringField("Storage tags", validators=[Optional(), Length(max=4096)],
                              description="comma separated: root volumes go to primary storage with all of them")
    domainid = domains_field()
    zoneid = zones_field()


class EditComputeOfferingForm(DomainsForm):
    title = submit = "Save the compute offering"
    dom_id = "compute-offering-edit-form"
    aliases = {"displaytext": "displaytext", "sortkey": "sortkey", "hosttags": "hosttags",
               "storagetags": "storagetags"}
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    displaytext = StringField("Description", validators=[Optional(), Length(max=4096)])
    hosttags = StringField("Host tags", validators=[Optional(), Length(max=4096)],
                           description="comma separated; empty: any host. VMs follow them from their next start")
    storagetags = StringField("Storage tags", validators=[Optional(), Length(max=4096)],
                              description="comma separated; empty: any primary storage")
    sortkey = IntegerField("Sort key", validators=[Optional(), NumberRange(-2**31, 2**31 - 1)],
                           description="lists show offerings by ascending sort key")
    domainid = domains_field()
    zoneid = zones_field()


def _vm_counts() -> dict[int, int]:
    return dict(db.session.execute(
        select(VirtualMachine.service_offering_id, func.count()).where(VirtualMachine.removed.is_(None))
        .group_by(VirtualMachine.service_offering_id)).all())


@bp.route("/", methods=["GET", "POST"])
@admin_required
def index():
    def save(f: ComputeOfferingForm):
        o = offerings.create(current_user, name=f.name.data, display_text=f.displaytext.data,
                             cpu_number=f.cpunumber.data, cpu_speed=f.cpuspeed.data, memory=f.memory.data,
                             storage_type=f.storagetype.data, root_disk_size=f.rootdisksize.data,
                             offer_ha=f.offerha.data, host_tags=f.hosttags.data or None,
                             storage_tags=f.storagetags.data or None, customized=f.customized.data,
                             min_cpu_number=f.mincpunumber.data, max_cpu_number=f.maxcpunumber.data,
                             min_memory=f.minmemory.data, max_memory=f.maxmemory.data,
                             domain_ids=chosen_domains(f, editing=False), zone_ids=chosen_zones(f, editing=False))
        return f"Compute offering {o.name} added.", url_for(".index")
    rows = offerings.list_offerings()[0]
    return form_page(ComputeOfferingForm, save, template="offerings/compute.html", rows=rows, vms=_vm_counts(),
                     domains=offering_domains.domains_by_offering(ServiceOffering, [o.id for o in rows]),
                     zones=offering_domains.zones_by_offering(ServiceOffering, [o.id for o in rows]),
                     domain_path=offering_domains.domain_path)


@bp.route("/<uuid>/edit", methods=["GET", "POST"])
@admin_required
def edit(uuid: str):
    """updateServiceOffering's page (the list's Edit link presets the fields)."""
    try:
        o = offerings.get(uuid)
    except NotFound:
        abort(404)

    def save(f: EditComputeOfferingForm):
        o = offerings.update(current_user, uuid, name=f.name.data, display_text=f.displaytext.data or "",
                             sort_key=f.sortkey.data, host_tags=f.hosttags.data or "",
                             storage_tags=f.storagetags.data or "", domain_ids=chosen_domains(f, editing=True),
                             zone_ids=chosen_zones(f, editing=True))
        return f"Compute offering {o.name} saved.", url_for(".index")
    return form_page(EditComputeOfferingForm, save, crumbs=[("Compute offerings", url_for(".index"))],
                     heading=f"Edit {o.name}")


@bp.route("/<uuid>/delete", methods=["POST"])
@admin_required
def delete(uuid: str):
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        offerings.delete(current_user, uuid)
    except NotFound:
        abort(404)
    except ServiceError as e:
        flash(e.message, "error")
    else:
        flash("Compute offering deleted.", "success")
    return _redirect(url_for(".index"))
