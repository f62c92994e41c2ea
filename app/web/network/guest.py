"""Networks and public IPs (users: their own and the zone-wide ones; admins: all).

- /networks/ — the list: name, type, CIDR, state, VM count (account for admins).
- /networks/new — create an Isolated network (zone, name, offering, optional CIDR).
- /networks/<uuid> — its VMs and their addresses, its virtual router (the state the
  monitor last saw), egress rules (add, delete), restart (with clean-up), delete.
- /publicips/ — the caller's public IPs; acquire one for a network.
- /publicips/<uuid> — port forwarding, firewall rules and static NAT (create/delete each,
  choosing a VM of its network), release.
A POST answers HTMX with the page's body (the service's refusal as a form message, 422)
and a plain POST with a redirect and a flash message.
"""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from app.services import accounts, deploy_options
from app.services import vms as vms_service
from app.services.errors import NotFound, ServiceError
from app.services.network import networks, offerings, public_ips, routers, rules
from app.web.forms import EmptyForm, attach_error
from app.web.infra import _redirect
from app.web.infra_forms import InfraForm, choices
from app.web.listing import FilterSelect, listing, wants_fragment
from app.web.portal import form_page

bp = Blueprint("network", __name__)

PROTOCOLS = [("tcp", "TCP"), ("udp", "UDP"), ("icmp", "ICMP")]


def owners() -> dict[int, str]:
    """Account names by id, for the account columns admins see."""
    if not current_user.is_admin:
        return {}
    return {a.id: a.name for a in accounts.list_accounts(current_user, page=(1, 10000))[0]}


def _errors(form: FlaskForm) -> str:
    return "; ".join(e for errors in form.errors.values() for e in errors)


# --- Networks: list and create ------------------------------------------------------------

def _fetch(*, keyword, sort, page, zone_uuid):  # noqa: ARG001 - one order: oldest first
    return networks.list_networks(current_user, keyword=keyword, zone_uuid=zone_uuid, page=page)


def _vm_counts(nets) -> dict[int, int]:
    """VMs on each listed network (the caller's visible VMs, from the VM service)."""
    counts: dict[int, int] = {}
    if not nets:
        return counts
    for vm in vms_service.list_vms(current_user, page=(1, 500))[0]:
        for nic in vm.nics:
            if nic.removed is None:
                counts[nic.network_id] = counts.get(nic.network_id, 0) + 1
    return counts


@bp.route("/networks/")
@login_required
def networks_index():
    lst = listing("network.networks_index", "networks", _fetch, sorts=(), default_sort="", filters={"zone": "zone_uuid"})
    counts = _vm_counts(lst.rows)
    if wants_fragment():
        return render_template("network/_networks.html", lst=lst, counts=counts, owners=owners()), \
            {"HX-Push-Url": lst.url()}
    selects = [FilterSelect("zone", "Zone", [(z.uuid, z.name) for z in deploy_options.zones_for(current_user)])]
    return render_template("network/networks.html", lst=lst, selects=selects, counts=counts, owners=owners())


class NetworkForm(InfraForm):
    title = submit = "Create an isolated network"
    intro = ("An Isolated network is yours alone: a virtual router gives it DHCP, DNS and Source NAT to the "
             "outside. It is made on the hosts when its first VM starts.")
    dom_id = "network-form"
    aliases = {"zoneid": "zone", "networkofferingid": "offering", "displaytext": "name", "gateway": "cidr",
               "netmask": "cidr"}
    name = StringField("Name", validators=[DataRequired("Give the network a name"), Length(max=255)])
    zone = SelectField("Zone", validators=[DataRequired("Choose a zone")])
    offering = SelectField("Network offering", validators=[DataRequired("Choose a network offering")])
    cidr = StringField("CIDR", validators=[Optional(), Length(max=64)],
                       description="optional, such as 10.1.2.0/24; empty: the zone's guest CIDR")

    def prepare(self) -> None:
        self.offer(self.zone, [(z.uuid, z.name) for z in deploy_options.zones_for(current_user)], "Choose a zone")
        rows = offerings.list_offerings(current_user, guest_ip_type="Isolated", state="Enabled", page=(1, 200))[0]
        self.offer(self.offering, [(o.uuid, o.display_text or o.name) for o in rows], "Choose an offering")
        if request.method == "GET" and not self.offering.data:  # CloudStack's default one, preselected
            default = offerings.default_for("Isolated")
            self.offering.data = default.uuid if default.uuid in {o.uuid for o in rows} else ""


def _gateway_netmask(cidr: str | None) -> tuple[str | None, str | None]:
    """createNetwork takes gateway and netmask: the CIDR's first address and its mask (the
    service refuses what is not a CIDR)."""
    import ipaddress
    if not cidr:
        return None, None
    try:
        net = ipaddress.IPv4Network(cidr.strip(), strict=False)
    except ValueError:
        return cidr, None  # the service says what is wrong with it
    return str(next(net.hosts())), str(net.netmask)


@bp.route("/networks/new", methods=["GET", "POST"])
@login_required
def network_create():
    def save(f: NetworkForm):
        gateway, netmask = _gateway_netmask(f.cidr.data)
        net = networks.create_network(current_user, zone_uuid=f.zone.data, name=f.name.data,
                                      offering_uuid=f.offering.data, gateway=gateway, netmask=netmask)
        return f"Network {net.name} created.", url_for(".network_detail", uuid=net.uuid)
    return form_page(NetworkForm, save, crumbs=[("Networks", url_for(".networks_index"))])


# --- Network page ----------------------------------------------------------------------------

class RuleForm(FlaskForm):
    """Firewall and egress rules: protocol, ports or ICMP type and code, CIDR."""
    protocol = SelectField("Protocol", choices=choices(PROTOCOLS))
    start_port = IntegerField("Start port", validators=[Optional(), NumberRange(1, 65535)])
    end_port = IntegerField("End port", validators=[Optional(), NumberRange(1, 65535)])
    icmp_type = IntegerField("ICMP type", validators=[Optional(), NumberRange(-1, 255)])
    icmp_code = IntegerField("ICMP code", validators=[Optional(), NumberRange(-1, 255)])
    cidr = StringField("CIDR", validators=[Optional(), Length(max=1024)], description="comma-separated; empty: any")


class EgressForm(RuleForm):
    protocol = SelectField("Protocol", choices=choices(PROTOCOLS + [("all", "All")]))
    cidr = StringField("Destination CIDR", validators=[Optional(), Length(max=1024)],
                       description="comma-separated; empty: any")


ALIASES = {"startport": "start_port", "endport": "end_port", "icmptype": "icmp_type", "icmpcode": "icmp_code",
           "cidrlist": "cidr", "destcidrlist": "cidr", "publicport": "public_port", "privateport": "private_port",
           "virtualmachineid": "vm", "networkid": "network", "protocol": "protocol"}


def _cidrs(value: str | None) -> list[str] | None:
    return [c.strip() for c in value.split(",") if c.strip()] if value else None


def _network(uuid: str):
    try:
        return networks.get_network(current_user, uuid)
    except NotFound:
        abort(404)


def _network_page(net, *, egress: EgressForm | None = None, **context) -> dict:
    vms = [(vm, [n for n in vm.nics if n.removed is None and n.network_id == net.id])
           for vm in vms_service.list_vms(current_user, zone_uuid=net.zone.uuid, page=(1, 500))[0]]
    egress_rules = rules.list_egress_rules(current_user, network_uuid=net.uuid, listall=True, page=(1, 500))[0] \
        if _has(net, "Firewall") else []
    ips = public_ips.list_public_ips(current_user, associated_network_uuid=net.uuid, listall=True,
                                     page=(1, 500))[0] if net.account_id else []
    return dict(net=net, vms=[(vm, nics) for vm, nics in vms if nics], router=routers.router_of(net),
                egress_rules=egress_rules, egress=egress or EgressForm(formdata=None), ips=ips,
                firewall=_has(net, "Firewall"), owners=owners(), **context)


def _has(net, service: str) -> bool:
    return service in rules.services_of(net)


@bp.route("/networks/<uuid>")
@login_required
def network_detail(uuid: str):
    context = _network_page(_network(uuid))
    return render_template("network/_network.html" if wants_fragment() else "network/network.html", **context)


def _answer(template_body: str, template_page: str, page: dict, *, error: str | None, message: str,
            back: str):
    """A POST's answer: HTMX gets the body (422 with the error), a plain POST a redirect
    (or, refused, the page with the error)."""
    if not request.htmx:
        if error is None:
            flash(message, "success")
            return redirect(back)
        return render_template(template_page, error=error, **page), 422
    return render_template(template_body, error=error, message=None if error else message, **page), \
        422 if error else 200


def _run(form: FlaskForm, action) -> str | None:
    """Validate the form (CSRF first) and run the service call; the error to show, if any."""
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400)
        return _errors(form)
    try:
        action(form)
    except ServiceError as e:
        attach_error(e, form, aliases=ALIASES)
        return e.message
    return None


@bp.route("/networks/<uuid>/<action>", methods=["POST"])
@login_required
def network_act(uuid: str, action: str):
    net = _network(uuid)
    name = net.name
    egress = None
    if action == "restart":
        form = CleanupForm()
        error = _run(form, lambda f: networks.restart_network(current_user, net.uuid, cleanup=f.cleanup.data))
        message = f"Network {name} restarted{' with clean-up' if form.cleanup.data else ''}."
    elif action == "delete":
        error = _run(EmptyForm(), lambda f: networks.delete_network(current_user, net.uuid))
        if error is None:
            flash(f"Network {name} deleted.", "success")
            return _redirect(url_for(".networks_index"))
        message = ""
    elif action == "egress":
        egress = EgressForm()

        def add(f):
            rule = rules.create_egress_rule(current_user, network_uuid=net.uuid, protocol=f.protocol.data,
                                            start_port=f.start_port.data, end_port=f.end_port.data,
                                            dest_cidrs=_cidrs(f.cidr.data), icmp_type=f.icmp_type.data,
                                            icmp_code=f.icmp_code.data)
            rules.activate(current_user, rule.uuid)
        error = _run(egress, add)
        message = "Egress rule added."
    elif action == "egress-delete":
        rule_uuid = request.form.get("rule", "")
        error = _run(EmptyForm(), lambda f: rules.delete_egress_rule(current_user, rule_uuid))
        message = "Egress rule deleted."
    else:
        abort(404)
    page = _network_page(_network(uuid), egress=egress if error else None)
    return _answer("network/_network.html", "network/network.html", page, error=error, message=message,
                   back=url_for(".network_detail", uuid=uuid))


class CleanupForm(FlaskForm):
    cleanup = BooleanField("Clean up (rebuild the router)")


# --- Public IPs ----------------------------------------------------------------------------

def _ips_fetch(*, keyword, sort, page, zone_uuid):  # noqa: ARG001
    return public_ips.list_public_ips(current_user, keyword=keyword, zone_uuid=zone_uuid, page=page)


class AcquireForm(FlaskForm):
    network = SelectField("Network", validate_choice=False, validators=[DataRequired("Choose a network")])


def _isolated_choices() -> list[tuple[str, str]]:
    """The caller's own Isolated networks (public IPs are acquired for them)."""
    rows = networks.list_networks(current_user, guest_type="Isolated", page=(1, 500))[0]
    return [(n.uuid, f"{n.name} ({n.zone.name})") for n in rows if n.account_id == current_user.account_id]


@bp.route("/publicips/", methods=["GET", "POST"])
@login_required
def ips_index():
    acquire = AcquireForm(formdata=request.form if request.method == "POST" else None)
    acquire.network.choices = choices([("", "Choose a network")] + _isolated_choices())
    status = 200
    if request.method == "POST":
        def run(f):
            ip = public_ips.associate_ip(current_user, network_uuid=f.network.data)
            return public_ips.finish_associate(current_user, ip.uuid)
        done = {}
        error = _run(acquire, lambda f: done.setdefault("ip", run(f)))
        if error is None:
            ip = done["ip"]
            flash(f"Public IP {ip.address} acquired.", "success")
            return _redirect(url_for(".ip_detail", uuid=ip.uuid))
        status = 422
    lst = listing("network.ips_index", "publicips", _ips_fetch, sorts=(), default_sort="", filters={"zone": "zone_uuid"})
    if wants_fragment() and request.method == "GET":
        return render_template("network/_ips.html", lst=lst), {"HX-Push-Url": lst.url()}
    selects = [FilterSelect("zone", "Zone", [(z.uuid, z.name) for z in deploy_options.zones_for(current_user)])]
    return render_template("network/ips.html", lst=lst, selects=selects, acquire=acquire), status


class PortForwardingForm(FlaskForm):
    protocol = SelectField("Protocol", choices=choices(PROTOCOLS[:2]))
    public_port = IntegerField("Public port", validators=[DataRequired("Give the public port"), NumberRange(1, 65535)])
    private_port = IntegerField("Private port", validators=[DataRequired("Give the private port"),
                                                            NumberRange(1, 65535)])
    vm = SelectField("VM", validate_choice=False, validators=[DataRequired("Choose a VM")])


class StaticNatForm(FlaskForm):
    vm = SelectField("VM", validate_choice=False, validators=[DataRequired("Choose a VM")])


def _ip(uuid: str):
    try:
        return public_ips.get_ip(current_user, uuid)
    except NotFound:
        abort(404)


def _ip_page(ip, *, pf: PortForwardingForm | None = None, fw: RuleForm | None = None,
             nat: StaticNatForm | None = None, **context) -> dict:
    v = public_ips.view(ip)
    net = v.network
    vm_choices: list[tuple[str, str]] = []
    if net is not None:
        for vm in vms_service.list_vms(current_user, zone_uuid=net.zone.uuid, page=(1, 500))[0]:
            for nic in vm.nics:
                if nic.removed is None and nic.network_id == net.id and vm.account_id == ip.account_id:
                    vm_choices.append((vm.uuid, f"{vm.name} ({nic.ip_address})"))
    pf = pf or PortForwardingForm(formdata=None)
    nat = nat or StaticNatForm(formdata=None)
    for f in (pf, nat):
        f.vm.choices = choices([("", "Choose a VM")] + vm_choices)
    listed = dict(ip_uuid=ip.uuid, listall=True, page=(1, 500))
    return dict(v=v, ip=ip, net=net, pf=pf, fw=fw or RuleForm(formdata=None), nat=nat,
                pf_rules=rules.list_port_forwarding_rules(current_user, **listed)[0],
                fw_rules=rules.list_firewall_rules(current_user, **listed)[0], **context)


@bp.route("/publicips/<uuid>")
@login_required
def ip_detail(uuid: str):
    context = _ip_page(_ip(uuid))
    return render_template("network/_ip.html" if wants_fragment() else "network/ip.html", **context)


@bp.route("/publicips/<uuid>/<action>", methods=["POST"])
@login_required
def ip_act(uuid: str, action: str):
    ip = _ip(uuid)
    address = ip.address
    forms: dict = {}
    if action == "release":
        error = _run(EmptyForm(), lambda f: public_ips.disassociate_ip(current_user, ip.uuid))
        if error is None:
            flash(f"Public IP {address} released.", "success")
            return _redirect(url_for(".ips_index"))
        message = ""
    elif action == "portforwarding":
        forms["pf"] = PortForwardingForm()
        forms["pf"].vm.choices = []

        def add(f):
            rule = rules.create_port_forwarding_rule(
                current_user, ip_uuid=ip.uuid, protocol=f.protocol.data, public_port=f.public_port.data,
                private_port=f.private_port.data, vm_uuid=f.vm.data)
            rules.activate(current_user, rule.uuid)
        error = _run(forms["pf"], add)
        message = "Port forwarding rule added."
    elif action == "firewall":
        forms["fw"] = RuleForm()

        def add(f):
            rule = rules.create_firewall_rule(current_user, ip_uuid=ip.uuid, protocol=f.protocol.data,
                                              start_port=f.start_port.data, end_port=f.end_port.data,
                                              cidrs=_cidrs(f.cidr.data), icmp_type=f.icmp_type.data,
                                              icmp_code=f.icmp_code.data)
            rules.activate(current_user, rule.uuid)
        error = _run(forms["fw"], add)
        message = "Firewall rule added."
    elif action in ("portforwarding-delete", "firewall-delete"):
        rule_uuid = request.form.get("rule", "")
        delete = rules.delete_port_forwarding_rule if action == "portforwarding-delete" else rules.delete_firewall_rule
        error = _run(EmptyForm(), lambda f: delete(current_user, rule_uuid))
        message = "Rule deleted."
    elif action == "staticnat":
        forms["nat"] = StaticNatForm()
        error = _run(forms["nat"], lambda f: public_ips.enable_static_nat(current_user, ip_uuid=ip.uuid,
                                                                           vm_uuid=f.vm.data))
        message = "Static NAT enabled."
    elif action == "staticnat-disable":
        error = _run(EmptyForm(), lambda f: public_ips.disable_static_nat(current_user, ip.uuid))
        message = "Static NAT disabled."
    else:
        abort(404)
    page = _ip_page(_ip(uuid), **(forms if error else {}))
    return _answer("network/_ip.html", "network/ip.html", page, error=error, message=message,
                   back=url_for(".ip_detail", uuid=uuid))
