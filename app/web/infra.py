"""Admin infrastructure pages: zones, pods, clusters, hosts, primary and
secondary storage. Lists (search, filters, sort, pages), detail pages, the host
lifecycle actions, the small add/delete forms and the add-host wizard.

Views read the request, call a service, render. Lists share app/web/listing.py;
the add forms are app/web/infra_forms.py; the host form built from a type's
declared fields is app/web/hostform.py (the zone wizard reuses it, and
test_connection below). Every action is a plain form POST too (redirect +
flash); HTMX requests get the fragment the page itself includes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app.hypervisors import registry
from app.models import Host, HostState, ResourceState
from app.services import hosts as hosts_service
from app.services import hypervisors as hv
from app.services import inventory, regions, vm_views
from app.services import storage as storage_service
from app.services import storage_maintenance
from app.services import zones as zones_service
from app.services.errors import InvalidParameter, NotFound, ServiceError
from app.web import admin_required, hostform
from app.web.forms import attach_error
from app.web.infra_forms import (ClusterForm, HostLocationForm, InfraForm, PodForm, PrimaryStorageForm,
                                 SecondaryStorageForm, cluster_label, zone_options)
from app.web.listing import FilterSelect, listing, render_list, wants_fragment

bp = Blueprint("infra", __name__, url_prefix="/admin")


def _found(lookup: Callable[[str], Any], uuid: str):
    try:
        return lookup(uuid)
    except NotFound:
        abort(404)


def _back(default: str) -> str:
    """Where a plain form POST returns: the page it was sent from (this site only)."""
    ref = urlsplit(request.referrer or "")
    if ref.netloc == request.host and ref.path.startswith("/"):
        return urlunsplit(("", "", ref.path, ref.query, ""))
    return default


def _redirect(url: str):
    """After a successful POST: a redirect, which HTMX follows as a full page load."""
    if request.htmx:
        return "", 204, {"HX-Redirect": url}
    return redirect(url)


@bp.app_template_global()
def usage(used: int, total: int) -> inventory.Usage:
    """A Usage for a capacity bar from two columns (storage used/allocated of its size)."""
    return inventory.Usage(used or 0, total or 0)


# --- Lists ------------------------------------------------------------------

def _pod_options() -> list[tuple[str, str]]:
    return sorted(((p.uuid, f"{p.zone.name} / {p.name}") for p in zones_service.list_pods()[0]), key=lambda o: o[1])


def _cluster_options() -> list[tuple[str, str]]:
    return sorted(((c.uuid, f"{c.zone.name} / {cluster_label(c)}") for c in zones_service.list_clusters()[0]),
                  key=lambda o: o[1])


def _zone_select() -> FilterSelect:
    return FilterSelect("zone", "Zone", zone_options())


def _hypervisor_select() -> FilterSelect:
    return FilterSelect("hypervisor", "Hypervisor", [(t.name, hv.display_name(t.name)) for t in registry.all_types()])


@bp.route("/zones")
@admin_required
def zones():
    lst = listing("infra.zones", "zones", inventory.zone_rows, sorts=zones_service.ZONE_SORTS)
    return render_list(lst, "Zones", template="infra/zones.html", regions=regions.list_regions())


@bp.route("/pods")
@admin_required
def pods():
    lst = listing("infra.pods", "pods", inventory.pod_rows, sorts=zones_service.POD_SORTS,
                  filters={"zone": "zone_uuid"})
    return render_list(lst, "Pods", lambda: [_zone_select()], actions=[("Add pod", url_for(".add_pod"))])


@bp.route("/clusters")
@admin_required
def clusters():
    lst = listing("infra.clusters", "clusters", inventory.cluster_rows, sorts=zones_service.CLUSTER_SORTS,
                  filters={"zone": "zone_uuid", "pod": "pod_uuid", "hypervisor": "hypervisor"})
    return render_list(lst, "Clusters", lambda: [_zone_select(), FilterSelect("pod", "Pod", _pod_options()),
                                                 _hypervisor_select()],
                       actions=[("Add cluster", url_for(".add_cluster"))])


HOST_STATES = [(s.value, s.value) for s in HostState if s != HostState.REMOVED]
RESOURCE_STATES = [(s.value, s.value) for s in ResourceState]


@bp.route("/hosts")
@admin_required
def hosts():
    lst = listing("infra.hosts", "hosts", inventory.host_rows, sorts=hosts_service.HOST_SORTS,
                  filters={"zone": "zone_uuid", "pod": "pod_uuid", "cluster": "cluster_uuid", "state": "state",
                           "resourcestate": "resource_state", "hypervisor": "hypervisor"})
    return render_list(lst, "Hosts", lambda: [
        _zone_select(), FilterSelect("pod", "Pod", _pod_options()),
        FilterSelect("cluster", "Cluster", _cluster_options()), FilterSelect("state", "State", HOST_STATES),
        FilterSelect("resourcestate", "Resource state", RESOURCE_STATES), _hypervisor_select()], actions=[("Add host", url_for(".add_host"))])


@bp.route("/storage/primary")
@admin_required
def primary_storage():
    lst = listing("infra.primary_storage", "pools", storage_service.list_storage_pools,
                  sorts=storage_service.POOL_SORTS, filters={"zone": "zone_uuid", "scope": "scope"})
    return render_list(lst, "Primary storage", lambda: [
        _zone_select(), FilterSelect("scope", "Scope", [("cluster", "Cluster"), ("zone", "Zone"), ("host", "Host")])],
        actions=[("Add primary storage", url_for(".add_primary_storage"))])


@bp.route("/storage/secondary")
@admin_required
def secondary_storage():
    lst = listing("infra.secondary_storage", "stores", storage_service.list_image_stores,
                  sorts=storage_service.STORE_SORTS, filters={"zone": "zone_uuid", "provider": "provider"})
    return render_list(lst, "Secondary storage", lambda: [
        _zone_select(), FilterSelect("provider", "Provider", [("NFS", "NFS"), ("SMB", "SMB"), ("Local", "Local")])],
        actions=[("Add secondary storage", url_for(".add_secondary_storage"))])


# --- Detail pages -----------------------------------------------------------

def _detail_page(endpoint: str, rule: str, lookup: Callable[[str], Any]) -> None:
    """GET rule → templates/infra/<endpoint>.html with d=lookup(uuid); 404 for an unknown id."""
    def view(uuid: str):
        return render_template(f"infra/{endpoint}.html", d=_found(lookup, uuid))
    view.__name__ = endpoint
    bp.add_url_rule(rule, endpoint, admin_required(view))


_detail_page("zone", "/zones/<uuid>", inventory.zone_detail)
_detail_page("pod", "/pods/<uuid>", inventory.pod_detail)
_detail_page("cluster", "/clusters/<uuid>", inventory.cluster_detail)


HOST_VMS_PAGE = 20


@bp.route("/hosts/<uuid>")
@admin_required
def host(uuid: str):
    """The host's state, facts, local pools, metrics and its VMs (a page of them: ?vmpage=N)."""
    d = _found(inventory.host_detail, uuid)
    page = max(request.args.get("vmpage", 1, type=int) or 1, 1)
    vms, total = vm_views.list_vms(current_user, host_uuid=uuid, page=(page, HOST_VMS_PAGE), details_min=True)
    return render_template("infra/host.html", d=d, vms=vms, vms_total=total, vm_page=page,
                           vm_pages=max(1, -(-total // HOST_VMS_PAGE)))
_detail_page("storage_pool", "/storage/primary/<uuid>", inventory.pool_detail)


@bp.route("/storage/secondary/<uuid>")
@admin_required
def image_store(uuid: str):
    """An image store: its state as the monitor last found it, and the templates and ISOs on it
    (a page at a time: ?page=N)."""
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    d = _found(lambda u: inventory.store_detail(u, page=(page, inventory.DETAIL_ROWS)), uuid)
    return render_template("infra/image_store.html", d=d, page=page,
                           pages=max(1, -(-d.copies[1] // inventory.DETAIL_ROWS)))


# --- Enable / disable zones, pods, clusters ----------------------------------

# kind: (what people call it, the service's lookup, its update service, the detail page)
ALLOCATABLE: dict[str, tuple[str, Callable, Callable, str]] = {
    "zone": ("Zone", zones_service.get_zone, zones_service.update_zone, "infra.zone"),
    "pod": ("Pod", zones_service.get_pod, zones_service.update_pod, "infra.pod"),
    "cluster": ("Cluster", zones_service.get_cluster, zones_service.update_cluster, "infra.cluster"),
}


@bp.route("/zones/<uuid>/<any(enable, disable):action>", methods=["POST"], defaults={"kind": "zone"})
@bp.route("/pods/<uuid>/<any(enable, disable):action>", methods=["POST"], defaults={"kind": "pod"})
@bp.route("/clusters/<uuid>/<any(enable, disable):action>", methods=["POST"], defaults={"kind": "cluster"})
@admin_required
def allocation(kind: str, uuid: str, action: str):
    """CloudStack's allocationstate (updateZone/updatePod/updateCluster): a disabled zone, pod
    or cluster gets no new VMs from the planner; what runs there keeps running."""
    label, lookup, update, page = ALLOCATABLE[kind]
    obj = _found(lookup, uuid)
    try:
        update(current_user, uuid, allocation_state="Enabled" if action == "enable" else "Disabled")
    except ServiceError as e:
        flash(e.message, "error")
    else:
        flash(f"{label} {obj.name} is {obj.allocation_state.lower()}"
              + (": no new VMs are placed in it." if action == "disable" else "."), "success")
    return _redirect(_back(url_for(page, uuid=uuid)))


# --- Host lifecycle ---------------------------------------------------------

MAINTENANCE = (ResourceState.PREPARE_FOR_MAINTENANCE, ResourceState.MAINTENANCE, ResourceState.ERROR_IN_MAINTENANCE)


@dataclass(frozen=True)
class HostAction:
    label: str
    offered: Callable[[Host], bool]  # shown only when it makes sense in the host's state
    run: Callable[[Any, str], Any]  # the service: run(caller, uuid)
    done: str  # the flash after a plain POST
    confirm: str | None = None
    danger: bool = False
    short: str | None = None  # the button's text in a list row, where room is short


HOST_ACTIONS: dict[str, HostAction] = {
    "enable": HostAction("Enable", lambda h: h.resource_state == ResourceState.DISABLED,
                         lambda caller, uuid: hosts_service.update_host(caller, uuid, allocation_state="Enable"),
                         "Host {name} is enabled."),
    "disable": HostAction("Disable", lambda h: h.resource_state == ResourceState.ENABLED,
                          lambda caller, uuid: hosts_service.update_host(caller, uuid, allocation_state="Disable"),
                          "Host {name} is disabled: no new VMs are placed on it.",
                          confirm="Disable host {name}? No new VMs will be placed on it."),
    "maintain": HostAction("Prepare for maintenance", lambda h: h.resource_state not in MAINTENANCE,
                           hosts_service.prepare_maintenance, "Host {name} is in maintenance.",
                           confirm="Put host {name} into maintenance?", short="Maintenance"),
    "cancel-maintenance": HostAction("Cancel maintenance", lambda h: h.resource_state in MAINTENANCE,
                                     hosts_service.cancel_maintenance, "Host {name} is back from maintenance."),
    "reconnect": HostAction("Reconnect", lambda h: h.resource_state not in MAINTENANCE, hosts_service.reconnect,
                            "Host {name} answered: it is Up."),
    "remove": HostAction("Remove", lambda h: True, hosts_service.delete_host, "Host {name} is removed.",
                         confirm="Remove host {name} from Nubo? Its VMs must be gone first.", danger=True),
}


@bp.app_template_global()
def host_actions(host: Host) -> list[tuple[str, HostAction]]:
    """The lifecycle actions that make sense for a host now, in order."""
    return [(key, a) for key, a in HOST_ACTIONS.items() if a.offered(host)]


def _host_fragment(uuid: str, panel: bool, error: str | None = None):
    if panel:
        return render_template("infra/_host_panel.html", d=inventory.host_detail(uuid), error=error)
    return render_template("infra/_host_row.html", r=inventory.host_row(uuid), error=error)


@bp.route("/hosts/<uuid>/state")
@admin_required
def host_state(uuid: str):
    """The host's row (or panel, ?fragment=panel) again: polled while maintenance is under way."""
    _found(hosts_service.get_host, uuid)
    return _host_fragment(uuid, request.args.get("fragment") == "panel")


@bp.route("/hosts/<uuid>/<action>", methods=["POST"])
@admin_required
def host_action(uuid: str, action: str):
    """One lifecycle action. HTMX gets the host's row (hosts list) or panel (host
    page) back, with the service's refusal in it; a plain POST a redirect + flash."""
    act = HOST_ACTIONS.get(action)
    if act is None:
        abort(404)
    name = _found(hosts_service.get_host, uuid).name
    panel = request.form.get("fragment") == "panel"
    try:
        act.run(current_user, uuid)
    except ServiceError as e:
        if request.htmx:
            return _host_fragment(uuid, panel, error=e.message), 422
        flash(e.message, "error")
        return redirect(_back(url_for(".host", uuid=uuid)))
    if action == "remove":
        if request.htmx and not panel:
            return ""  # the row goes away
        flash(act.done.format(name=name), "success")
        return _redirect(url_for(".hosts"))
    if request.htmx:
        return _host_fragment(uuid, panel)
    flash(act.done.format(name=name), "success")
    return redirect(_back(url_for(".host", uuid=uuid)))


# --- Primary storage lifecycle ----------------------------------------------

def _pool_settings(caller, uuid: str):
    """The pool page's settings form: storage tags (comma-separated; empty clears them) and IOPS."""
    iops = (request.form.get("capacityiops") or "").strip()
    if iops and not iops.isdigit():
        raise InvalidParameter("IOPS is a whole number", field="capacityiops")
    return storage_service.update_storage_pool(caller, uuid, tags=request.form.get("tags", "").split(","),
                                               capacity_iops=int(iops) if iops else None)


# action: (the service, the flash after it); the page offers each only in the states CloudStack allows.
POOL_ACTIONS: dict[str, tuple[Callable[[Any, str], Any], str]] = {
    "enable": (lambda caller, uuid: storage_service.update_storage_pool(caller, uuid, enabled=True),
               "Primary storage {name} is enabled."),
    "disable": (lambda caller, uuid: storage_service.update_storage_pool(caller, uuid, enabled=False),
                "Primary storage {name} is disabled: no new volumes are placed on it."),
    "maintain": (storage_maintenance.enable_maintenance,
                 "Primary storage {name} is being prepared for maintenance: its running VMs are stopped."),
    "cancel-maintenance": (storage_maintenance.cancel_maintenance,
                           "Primary storage {name} is leaving maintenance: the VMs it stopped are started again."),
    "settings": (_pool_settings, "Primary storage {name} updated."),
}


@bp.route("/storage/primary/<uuid>/<action>", methods=["POST"])
@admin_required
def pool_action(uuid: str, action: str):
    if action not in POOL_ACTIONS:
        abort(404)
    run, done = POOL_ACTIONS[action]
    name = _found(storage_service.get_storage_pool, uuid).name
    try:
        run(current_user, uuid)
    except ServiceError as e:
        flash(e.message, "error")
    else:
        flash(done.format(name=name), "success")
    return redirect(url_for(".storage_pool", uuid=uuid))


# --- Delete -----------------------------------------------------------------

# kind: (what people call it, list function taking id=, delete service, the list page)
DELETABLE: dict[str, tuple[str, Callable, Callable, str]] = {
    "zone": ("Zone", zones_service.list_zones, zones_service.delete_zone, "infra.zones"),
    "pod": ("Pod", zones_service.list_pods, zones_service.delete_pod, "infra.pods"),
    "cluster": ("Cluster", zones_service.list_clusters, zones_service.delete_cluster, "infra.clusters"),
    "pool": ("Primary storage", storage_service.list_storage_pools, storage_service.delete_storage_pool,
             "infra.primary_storage"),
    "store": ("Secondary storage", storage_service.list_image_stores, storage_service.delete_image_store,
              "infra.secondary_storage"),
}


@bp.route("/zones/<uuid>/delete", methods=["POST"], defaults={"kind": "zone"})
@bp.route("/pods/<uuid>/delete", methods=["POST"], defaults={"kind": "pod"})
@bp.route("/clusters/<uuid>/delete", methods=["POST"], defaults={"kind": "cluster"})
@bp.route("/storage/primary/<uuid>/delete", methods=["POST"], defaults={"kind": "pool"})
@bp.route("/storage/secondary/<uuid>/delete", methods=["POST"], defaults={"kind": "store"})
@admin_required
def delete(kind: str, uuid: str):
    """Delete one thing (confirmed in the browser first); the service refuses while
    something still lives in it, and its message is flashed."""
    label, lister, remove, list_endpoint = DELETABLE[kind]
    rows, _ = lister(id=uuid)
    if not rows:
        abort(404)
    back = _back(url_for(list_endpoint))
    try:
        remove(current_user, uuid)
    except ServiceError as e:
        flash(e.message, "error")
        return redirect(back)
    flash(f"{label} {rows[0].name} deleted.", "success")
    return redirect(url_for(list_endpoint) if uuid in back else back)  # its own page is gone


# --- Add forms --------------------------------------------------------------

def _form(form_cls: type[InfraForm], save: Callable[[Any], tuple[str, str]]):
    """GET: the form, filled from the query string when a select asked for it again.
    POST: save(form) → (flash message, next page); a service refusal goes beside its
    field, and the form comes back with 422 (the fragment alone for HTMX)."""
    action = url_for(request.endpoint)
    if request.method == "POST":
        form = form_cls().setup(action)
        if form.validate_on_submit():
            try:
                message, url = save(form)
            except ServiceError as e:
                attach_error(e, form, aliases=form.aliases)
            else:
                flash(message, "success")
                return _redirect(url)
        status = 422
    else:
        form, status = form_cls(formdata=request.args or None).setup(action), 200
    return render_template("infra/_form.html" if wants_fragment() else "infra/form.html", form=form), status


@bp.route("/pods/add", methods=["GET", "POST"])
@admin_required
def add_pod():
    def save(f: PodForm):
        pod = zones_service.create_pod(current_user, zone_uuid=f.zone.data, name=f.name.data, gateway=f.gateway.data,
                                       netmask=f.netmask.data, start_ip=f.start_ip.data, end_ip=f.end_ip.data)
        return f"Pod {pod.name} added.", url_for(".zone", uuid=f.zone.data)
    return _form(PodForm, save)


@bp.route("/clusters/add", methods=["GET", "POST"])
@admin_required
def add_cluster():
    def save(f: ClusterForm):
        c = zones_service.add_cluster(current_user, zone_uuid=f.zone.data, pod_uuid=f.pod.data, name=f.name.data,
                                      hypervisor=f.hypervisor.data)
        return f"Cluster {c.name} ({hv.display_name(c.hypervisor_type)}) added.", url_for(".cluster", uuid=c.uuid)
    return _form(ClusterForm, save)


@bp.route("/storage/primary/add", methods=["GET", "POST"])
@admin_required
def add_primary_storage():
    def save(f: PrimaryStorageForm):
        pool = storage_service.create_storage_pool(
            current_user, zone_uuid=f.zone.data, name=f.name.data, url=f.url(), scope=f.scope.data,
            cluster_uuid=f.cluster.data if f.scope.data == "cluster" else None,
            hypervisor=f.hypervisor.data if f.scope.data == "zone" else None, details=f.details())
        return f"Primary storage {pool.name} added.", url_for(".storage_pool", uuid=pool.uuid)
    return _form(PrimaryStorageForm, save)


@bp.route("/storage/secondary/add", methods=["GET", "POST"])
@admin_required
def add_secondary_storage():
    def save(f: SecondaryStorageForm):
        store = storage_service.add_image_store(current_user, provider=f.provider, url=f.url(),
                                                name=f.name.data or None, zone_uuid=f.zone.data or None,
                                                details=f.details())
        return f"Secondary storage {store.name} added ({store.state}).", url_for(".image_store", uuid=store.uuid)
    return _form(SecondaryStorageForm, save)


# --- Add-host wizard --------------------------------------------------------

@bp.route("/hosts/add", methods=["GET", "POST"])
@admin_required
def add_host():
    """Zone → pod → cluster (a GET form: each choice re-renders the wizard), then the
    fields the cluster's hypervisor type declares; Test connection; Add host."""
    posted = request.method == "POST"
    loc = HostLocationForm(formdata=request.form if posted else request.args or None).setup(url_for(".add_host"))
    cluster = loc.chosen
    form = hostform.form_for(cluster.hypervisor_type, formdata=request.form if posted else None) if cluster else None
    status = 200
    if posted:
        status = 422
        if form is None:
            loc.validate()
        elif form.validate():
            values = form.values()
            try:
                host = hosts_service.add_host(current_user, cluster_uuid=cluster.uuid, pod_uuid=loc.pod.data,
                                              zone_uuid=loc.zone.data, url=values.get("url", ""), fields=values)
            except ServiceError as e:
                attach_error(e, form, loc, aliases=loc.aliases)
            else:
                flash(f"Host {host.name} added to cluster {cluster.name}.", "success")
                return _redirect(url_for(".host", uuid=host.uuid))
    template = "infra/_add_host.html" if wants_fragment() else "infra/add_host.html"
    return render_template(template, loc=loc, form=form, cluster=cluster), status


@bp.route("/hosts/test-connection", methods=["POST"])
@admin_required
def test_connection():
    """Run a type's host check on the posted host fields (hostform): what the host
    answered, or the exact error. Never saves. ?type=<hypervisor>&prefix=<form prefix>"""
    try:
        type_name = hv.resolve(request.args.get("type")).name
    except ServiceError:
        abort(404)
    form = hostform.form_for(type_name, formdata=request.form, prefix=request.args.get("prefix", ""))
    facts = error = None
    if form.validate():
        values = form.values()
        try:
            _, facts = hosts_service.discover(type_name, values.get("url", ""), values)
        except ServiceError as e:
            error = e.message
    else:
        error = form.error_summary()
    template = "_partials/host_test_result.html" if request.htmx else "infra/test_connection.html"
    return render_template(template, facts=facts, error=error), 200 if facts else 422
