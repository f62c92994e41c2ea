"""Guest networking for admins: /admin/network/.

- / — zones (each with its physical networks and public IP ranges), links to offerings and routers.
- /zones/<uuid> — the zone's physical networks (isolation method, VLAN/VNI range, traffic
  types and their labels, providers with enable/disable) and public IP ranges (used/free;
  add, delete).
- /offerings — network offerings (services and providers, state): create, enable, disable, delete.
- /routers — virtual routers (name, network, account, host, guest and public IP, state as the
  monitor last saw it, Alert with its reason): reboot, restart the network (with clean-up).
Every rule is app/services/network's.
"""
from __future__ import annotations

import ipaddress
import json

from flask import Blueprint, abort, flash, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, Optional

from app.models import JobStatus
from app.services import zones
from app.services.errors import NotFound, ServiceError
from app.services.network import networks, offerings, physical, public_ips, ranges, routers
from app.web import admin_required
from app.web.forms import EmptyForm, attach_error
from app.web.infra import _redirect
from app.web.network.guest import owners
from app.web.infra_forms import InfraForm, choices
from app.web.portal import form_page

bp = Blueprint("netadmin", __name__, url_prefix="/admin/network")

SERVICES = ["Dhcp", "Dns", "UserData", "SourceNat", "StaticNat", "PortForwarding", "Firewall", "SecurityGroup"]


@bp.route("/")
@admin_required
def index():
    rows = []
    for z in zones.list_zones(page=(1, 500))[0]:
        rows.append((z, physical.list_physical_networks(zone_uuid=z.uuid, page=(1, 50))[0],
                     ranges.list_ranges(zone_uuid=z.uuid, for_virtual_network=True, page=(1, 500))[0]))
    return render_template("network/admin_index.html", rows=rows)


# --- A zone: physical networks and public IP ranges -------------------------------------------

class RangeForm(FlaskForm):
    gateway = StringField("Gateway", validators=[DataRequired("Give the gateway"), Length(max=64)])
    netmask = StringField("Netmask", validators=[DataRequired("Give the netmask"), Length(max=64)])
    vlan = StringField("VLAN", validators=[Optional(), Length(max=32)], description="empty: untagged")
    start_ip = StringField("Start IP", validators=[DataRequired("Give the first address"), Length(max=64)])
    end_ip = StringField("End IP", validators=[Optional(), Length(max=64)])


RANGE_ALIASES = {"startip": "start_ip", "endip": "end_ip", "gateway": "gateway", "netmask": "netmask", "vlan": "vlan"}


def _zone(uuid: str):
    try:
        return zones.get_zone(uuid)
    except NotFound:
        abort(404)


def _zone_page(z, *, form: RangeForm | None = None, **context) -> dict:
    phys = []
    for p in physical.list_physical_networks(zone_uuid=z.uuid, page=(1, 50))[0]:
        types = [(t, physical.labels_of(t)) for t in physical.list_traffic_types(p.uuid, page=(1, 50))[0]]
        providers = [(nsp, ", ".join(json.loads(nsp.services or "[]")))
                     for nsp in physical.list_providers(physical_network_uuid=p.uuid, page=(1, 50))[0]]
        phys.append((p, types, providers))
    rng = []
    for r in ranges.list_ranges(zone_uuid=z.uuid, for_virtual_network=True, page=(1, 500))[0]:
        size = int(ipaddress.IPv4Address(r.end_ip)) - int(ipaddress.IPv4Address(r.start_ip)) + 1
        free = ranges.free_count(r)
        rng.append((r, size - free, free))
    return dict(z=z, phys=phys, ranges=rng, form=form or RangeForm(formdata=None), **context)


@bp.route("/zones/<uuid>")
@admin_required
def zone(uuid: str):
    return render_template("network/admin_zone.html", **_zone_page(_zone(uuid)))


@bp.route("/zones/<uuid>/<action>", methods=["POST"])
@admin_required
def zone_act(uuid: str, action: str):
    z = _zone(uuid)
    form = None
    error, message = None, ""
    try:
        if action == "range":
            form = RangeForm()
            if not form.validate_on_submit():
                if "csrf_token" in form.errors:
                    abort(400)
                error = "; ".join(e for errs in form.errors.values() for e in errs)
            else:
                try:
                    r = ranges.create_range(current_user, zone_uuid=z.uuid, gateway=form.gateway.data.strip(),
                                            netmask=form.netmask.data.strip(), vlan=form.vlan.data or None,
                                            start_ip=form.start_ip.data.strip(), end_ip=(form.end_ip.data or "").strip()
                                            or None, for_virtual_network=True)
                except ServiceError as e:
                    attach_error(e, form, aliases=RANGE_ALIASES)
                    raise
                message = f"Public IP range {r.start_ip}-{r.end_ip} added."
        elif action == "range-delete":
            if not EmptyForm().validate_on_submit():
                abort(400)
            ranges.delete_range(current_user, request.form.get("range", ""))
            message = "Public IP range deleted."
        elif action in ("provider-enable", "provider-disable"):
            if not EmptyForm().validate_on_submit():
                abort(400)
            nsp = physical.update_provider(current_user, request.form.get("provider", ""),
                                           state="Enabled" if action == "provider-enable" else "Disabled")
            message = f"Provider {nsp.name} {nsp.state.lower()}."
        else:
            abort(404)
    except ServiceError as e:
        error = e.message
    if error is None:
        flash(message, "success")
        return _redirect(url_for(".zone", uuid=uuid))
    return render_template("network/admin_zone.html", error=error, **_zone_page(z, form=form)), 422


# --- Network offerings ------------------------------------------------------------------------

class OfferingForm(InfraForm):
    title = submit = "Create a network offering"
    intro = "A new offering is Disabled until you enable it (as in CloudStack)."
    dom_id = "offering-form"
    aliases = {"guestiptype": "guest_type", "supportedservices": "services", "serviceproviderlist": "services",
               "displaytext": "display_text", "specifyvlan": "specify_vlan", "egressdefaultpolicy": "egress_allow"}
    name = StringField("Name", validators=[DataRequired("Give the offering a name"), Length(max=255)])
    display_text = StringField("Description", validators=[Optional(), Length(max=1024)])
    guest_type = SelectField("Guest type", choices=choices([("Isolated", "Isolated"), ("Shared", "Shared"),
                                                           ("L2", "L2")]))
    services = SelectMultipleField("Services", choices=choices([(s, s) for s in SERVICES]),
                                   description="each by the VirtualRouter (SecurityGroup by its provider)")
    specify_vlan = BooleanField("Specify VLAN (Shared networks)")
    egress_allow = BooleanField("Egress default policy: allow", default=True)


def _providers(services: list[str]) -> list[dict]:
    return [{"service": s, "provider": "SecurityGroupProvider" if s == "SecurityGroup" else "VirtualRouter"}
            for s in services]


@bp.route("/offerings", methods=["GET", "POST"])
@admin_required
def offerings_page():
    def save(f: OfferingForm):
        o = offerings.create_offering(current_user, name=f.name.data, display_text=f.display_text.data,
                                      guest_ip_type=f.guest_type.data, supported_services=f.services.data,
                                      service_provider_list=_providers(f.services.data),
                                      specify_vlan=f.specify_vlan.data, egress_default_policy=f.egress_allow.data)
        return f"Network offering {o.name} created (Disabled).", url_for(".offerings_page")
    rows = [(o, offerings.services_of(o)) for o in offerings.list_offerings(current_user)[0]]
    return form_page(OfferingForm, save, template="network/admin_offerings.html", rows=rows)


@bp.route("/offerings/<uuid>/<action>", methods=["POST"])
@admin_required
def offering_act(uuid: str, action: str):
    if action not in ("enable", "disable", "delete"):
        abort(404)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        if action == "delete":
            offerings.delete_offering(current_user, uuid)
        else:
            offerings.update_offering(current_user, uuid, state="Enabled" if action == "enable" else "Disabled")
    except NotFound:
        abort(404)
    except ServiceError as e:
        flash(e.message, "error")
    else:
        flash(f"Network offering {action}d.", "success")
    return _redirect(url_for(".offerings_page"))


# --- Virtual routers ------------------------------------------------------------------------

@bp.route("/routers")
@admin_required
def routers_page():
    rows = routers.list_routers(current_user, page=(1, 500))[0]
    addresses = {v.ip.id: v.ip.address for v in public_ips.list_public_ips(current_user, listall=True,
                                                                            page=(1, 10000))[0]}
    return render_template("network/admin_routers.html", rows=rows, owners=owners(), addresses=addresses)


@bp.route("/routers/<uuid>/<action>", methods=["POST"])
@admin_required
def router_act(uuid: str, action: str):
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        router = routers.get_router(current_user, uuid)
    except NotFound:
        abort(404)
    try:
        if action == "reboot":
            job = routers.submit(current_user, uuid, "reboot")
        elif action in ("restart", "restart-cleanup"):
            job = networks.submit_restart(current_user, router.network.uuid, cleanup=action == "restart-cleanup")
        else:
            abort(404)
    except ServiceError as e:
        flash(e.message, "error")
    else:
        if job.status == JobStatus.FAILED:
            flash(json.loads(job.result or "{}").get("errortext") or "The action failed", "error")
        else:
            flash(f"Router {router.name}: {action.replace('-', ' with ')} "
                  f"{'started' if job.status == JobStatus.PENDING else 'done'}.", "success")
    return _redirect(url_for(".routers_page"))
