"""Web blueprints: auth (login/logout), admin portal, self-service portal."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import wraps

from flask import Flask, abort, request
from flask_login import current_user, login_required


# Navigation entries (endpoint, label); each area appends its pages here. The sidebar
# shows them grouped (NAV_GROUPS, nav_group()): an entry finds its group by itself.
ADMIN_NAV: list[tuple[str, str]] = [("admin.dashboard", "Dashboard"), ("infra.zones", "Zones"),
                                     ("infra.pods", "Pods"), ("infra.clusters", "Clusters"),
                                     ("infra.hosts", "Hosts"), ("infra.primary_storage", "Primary storage"),
                                     ("infra.secondary_storage", "Secondary storage"),
                                     ("netadmin.index", "Physical networks"), ("netadmin.routers_page", "Routers"),
                                     ("netadmin.offerings_page", "Network offerings"),
                                     ("hypervisors.index", "Hypervisors"), ("simulator.index", "Simulator"),
                                     ("vms.index", "VMs"), ("console.sessions", "Consoles")]
USER_NAV: list[tuple[str, str]] = [("portal.my_vms", "My VMs"), ("volumes.index", "Volumes"),
                                   ("snapshots.index", "Snapshots"),
                                   ("network.networks_index", "Networks"), ("secgroups.index", "Security groups"),
                                   ("network.ips_index", "Public IPs"),
                                   ("affinity.index", "Affinity groups"),
                                   ("portal.keypairs", "SSH keys"), ("userdata.index", "User data"),
                                   ("images.index", "Templates"),
                                   ("events.index", "Events"), ("apidocs.index", "API")]
ADMIN_NAV.append(("accounts_admin.index", "Accounts"))  # self-service: account administration
ADMIN_NAV.append(("accounts_admin.domains_index", "Domains"))
ADMIN_NAV.append(("roles.index", "Roles"))  # dynamic roles and their rules
ADMIN_NAV.append(("settings_pages.index", "Settings"))  # global settings (and per zone, cluster, account)
ADMIN_NAV.append(("volumes.offerings", "Disk offerings"))

# The sidebar's groups, in the order of CloudStack's UI (key, heading). The project
# switcher (projects/_switcher.html) heads the sidebar as the Projects group.
NAV_GROUPS: list[tuple[str, str]] = [
    ("dashboard", "Dashboard"), ("compute", "Compute"), ("storage", "Storage"), ("network", "Network"),
    ("images", "Images"), ("events", "Events"), ("accounts", "Accounts"), ("infrastructure", "Infrastructure"),
    ("configuration", "Configuration"), ("more", "More")]
# An entry's group: by endpoint, else by blueprint, else by the first word of its endpoint
# and label that starts like one of NAV_GROUP_WORDS, else "more". So a page another area
# appends to ADMIN_NAV/USER_NAV ("alerts.index", "jobs.index", "settings.index"...) lands
# in its group without an edit here.
NAV_GROUP_OF: dict[str, str] = {
    "admin.dashboard": "dashboard", "vms": "compute", "portal.my_vms": "compute", "portal.keypairs": "compute",
    "userdata": "compute", "affinity": "compute", "volumes": "storage", "snapshots": "storage",
    "vmsnapshots": "storage", "volumes.offerings": "configuration", "network": "network", "secgroups": "network",
    "netadmin": "network", "netadmin.offerings_page": "configuration", "images": "images", "events": "events",
    "accounts_admin": "accounts", "roles": "accounts", "infra": "infrastructure", "hypervisors": "infrastructure",
    "simulator": "infrastructure", "console": "infrastructure", "apidocs": "more"}
NAV_GROUP_WORDS: tuple[tuple[str, str], ...] = (
    ("alert", "events"), ("job", "events"), ("event", "events"), ("audit", "events"),
    ("setting", "configuration"), ("config", "configuration"), ("offering", "configuration"),
    ("dashboard", "dashboard"), ("metric", "infrastructure"), ("capacit", "infrastructure"),
    ("zone", "infrastructure"), ("pod", "infrastructure"), ("cluster", "infrastructure"),
    ("host", "infrastructure"), ("storage", "infrastructure"), ("hypervisor", "infrastructure"),
    ("vm", "compute"), ("instance", "compute"), ("deploy", "compute"), ("key", "compute"), ("affinit", "compute"),
    ("volume", "storage"), ("snapshot", "storage"), ("backup", "storage"),
    ("template", "images"), ("iso", "images"), ("image", "images"),
    ("network", "network"), ("router", "network"), ("ip", "network"), ("vpc", "network"), ("secgroup", "network"),
    ("firewall", "network"), ("account", "accounts"), ("domain", "accounts"), ("role", "accounts"),
    ("user", "accounts"))


def nav_group(endpoint: str, label: str = "") -> str:
    """The key of the sidebar group an entry belongs in."""
    group = NAV_GROUP_OF.get(endpoint) or NAV_GROUP_OF.get(endpoint.split(".", 1)[0])
    if group:
        return group
    for word in re.findall(r"[a-z]+", f"{endpoint} {label}".lower()):
        for start, key in NAV_GROUP_WORDS:
            if word.startswith(start):
                return key
    return "more"


@dataclass
class NavGroup:
    key: str
    label: str
    entries: list[tuple[str, str]] = field(default_factory=list)
    current: str | None = None  # the entry of the page shown (or of its section)
    open: bool = False  # it holds the page shown, or a page of the same blueprint


def nav_groups(entries: list[tuple[str, str]], endpoint: str | None) -> list[NavGroup]:
    """The entries grouped in NAV_GROUPS' order (empty groups left out), the current one
    marked: the page's own entry, else the one entry of its blueprint (a detail page)."""
    groups = {key: NavGroup(key, label) for key, label in NAV_GROUPS}
    seen: set[str] = set()
    for e, label in entries:
        if e not in seen:
            seen.add(e)
            groups.get(nav_group(e, label), groups["more"]).entries.append((e, label))
    endpoint = endpoint or ""
    current = endpoint if endpoint in seen else None
    if current is None and "." in endpoint:
        same = [e for e in seen if e.split(".", 1)[0] == endpoint.split(".", 1)[0]]
        current = same[0] if len(same) == 1 else None
    section = endpoint.split(".", 1)[0]
    for g in groups.values():
        g.current = current if any(e == current for e, _ in g.entries) else None
        g.open = g.current is not None if current else any(e.split(".", 1)[0] == section for e, _ in g.entries)
    return [g for g in groups.values() if g.entries]
ADMIN_NAV.append(("alerts.index", "Alerts"))  # CloudStack's alerts (the badge: _partials/alert_badge.html)
USER_NAV.append(("jobs_pages.index", "Jobs"))  # async jobs: an admin's every job, a user's own
ADMIN_NAV.append(("offerings_pages.index", "Compute offerings"))
ADMIN_NAV.append(("extensions_pages.index", "Extensions"))  # orchestrator extensions (the External type)
NAV_GROUP_OF["extensions_pages"] = "infrastructure"


# The API command each page shows (its list, or what it does): a caller whose role rules deny
# it gets neither the page (403, its actions too) nor its nav entry, by the API's own rule
# (roles.allowed_name). By endpoint, else by blueprint; pages not named are not role-gated
# (one's profile, the API docs, which list only the callable commands, the dashboard).
PAGE_COMMANDS: dict[str, str] = {
    "vms": "listVirtualMachines", "portal.my_vms": "listVirtualMachines", "portal.deploy": "deployVirtualMachine",
    "portal.keypairs": "listSSHKeyPairs", "portal.create_keypair": "listSSHKeyPairs",
    "portal.register_keypair": "listSSHKeyPairs", "portal.delete_keypair": "listSSHKeyPairs",
    "volumes": "listVolumes", "volumes.offerings": "listDiskOfferings", "volumes.edit_offering": "listDiskOfferings",
    "volumes.delete_offering": "listDiskOfferings",
    "volumes.upload": "getUploadParamsForVolume", "volumes.upload_url": "uploadVolume",
    "downloads.template": "extractTemplate", "downloads.volume": "extractVolume", "downloads": "queryAsyncJobResult",
    "snapshots": "listSnapshots", "vmsnapshots": "listVMSnapshot",
    "network": "listNetworks", "network.ips_index": "listPublicIpAddresses", "network.ip_detail": "listPublicIpAddresses",
    "network.ip_act": "listPublicIpAddresses",
    "secgroups": "listSecurityGroups", "affinity": "listAffinityGroups", "userdata": "listUserData",
    "images": "listTemplates", "events": "listEvents",
    "infra": "listZones", "infra.hosts": "listHosts", "infra.host": "listHosts", "infra.add_host": "listHosts",
    "infra.host_action": "listHosts", "infra.host_state": "listHosts", "infra.clusters": "listClusters",
    "infra.cluster": "listClusters", "infra.add_cluster": "listClusters", "infra.pods": "listPods", "infra.pod": "listPods",
    "infra.primary_storage": "listStoragePools", "infra.storage_pool": "listStoragePools",
    "infra.add_primary_storage": "listStoragePools", "infra.pool_action": "listStoragePools",
    "infra.secondary_storage": "listImageStores", "infra.add_secondary_storage": "listImageStores",
    "infra.image_store": "listImageStores",
    "netadmin": "listPhysicalNetworks", "netadmin.offerings_page": "listNetworkOfferings",
    "netadmin.offering_act": "listNetworkOfferings", "netadmin.routers_page": "listRouters",
    "netadmin.router_act": "listRouters",
    "hypervisors": "listHypervisors", "roles": "listRoles", "zone_wizard": "createZone",
    "accounts_admin": "listAccounts", "accounts_admin.domains_index": "listDomains",
    "accounts_admin.create_domain": "listDomains", "accounts_admin.edit_domain": "listDomains",
    "accounts_admin.delete_domain": "listDomains",
    "projects": "listProjects", "projects.detail": "listProjectAccounts", "projects.create": "createProject",
    "projects.add_member": "addAccountToProject", "projects.remove_member": "deleteAccountFromProject",
    "projects.answer": "updateProjectInvitation", "projects.delete_invitation": "deleteProjectInvitation",
    "metrics.vm": "listVirtualMachinesMetrics", "metrics.host": "listHostsMetrics",
    "settings_pages": "listConfigurations", "settings_pages.update": "updateConfiguration",
    "settings_pages.update_scoped": "updateConfiguration",
    "template_edit.edit": "updateTemplate",
    "alerts": "listAlerts", "alerts.act": "archiveAlerts",
    "jobs_pages": "listAsyncJobs",
    "offerings_pages": "listServiceOfferings", "offerings_pages.edit": "updateServiceOffering",
    "offerings_pages.delete": "deleteServiceOffering",
    "extensions_pages": "listExtensions",
}


def page_command(endpoint: str | None) -> str | None:
    if not endpoint:
        return None
    return PAGE_COMMANDS.get(endpoint) or PAGE_COMMANDS.get(endpoint.split(".", 1)[0])


def page_allowed(user, endpoint: str | None) -> bool:
    """May this user open the page (or post to it)? Its API command by the role's rules."""
    from app.services import roles
    name = page_command(endpoint)
    return name is None or roles.allowed_name(user, name)


def admin_required(view):
    """Logged in and an admin; a user gets 403, an anonymous visitor the login page."""
    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)
    return wrapper


def register_blueprints(app: Flask) -> None:
    from app.web import (admin, apidocs, auth, hypervisors, images, infra, portal, simulator, uploads, vms,
                         zone_wizard)
    from app.web import ops
    app.register_blueprint(ops.bp)
    ops.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(apidocs.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(hypervisors.bp)
    app.register_blueprint(infra.bp)
    app.register_blueprint(portal.bp)
    from app.web import accounts_admin, events_pages, volumes_pages  # self-service
    app.register_blueprint(accounts_admin.bp)
    from app.web import roles as roles_pages
    app.register_blueprint(roles_pages.bp)
    app.register_blueprint(events_pages.bp)
    app.register_blueprint(volumes_pages.bp)
    from app.web import snapshots as snapshots_pages
    app.register_blueprint(snapshots_pages.bp)
    app.register_blueprint(simulator.bp)
    app.register_blueprint(zone_wizard.bp)
    app.register_blueprint(uploads.bp)
    from app.web import downloads
    app.register_blueprint(downloads.bp)
    app.register_blueprint(images.bp)
    from app.web import template_edit
    app.register_blueprint(template_edit.bp)
    from app.web import console
    app.register_blueprint(console.bp)
    app.register_blueprint(vms.bp)
    from app.web import search as search_pages
    app.register_blueprint(search_pages.bp)
    from app.web import metrics as metrics_pages
    app.register_blueprint(metrics_pages.bp)
    from app.web import userdata as userdata_pages
    app.register_blueprint(userdata_pages.bp)
    from app.web import vm_snapshots
    app.register_blueprint(vm_snapshots.bp)
    from app.web.network import guest as network_guest
    app.register_blueprint(network_guest.bp)
    from app.web.network import secgroups as network_secgroups
    app.register_blueprint(network_secgroups.bp)
    from app.web.network import admin as network_admin
    app.register_blueprint(network_admin.bp)
    from app.web import tags
    app.register_blueprint(tags.bp)
    from app.web import affinity as affinity_pages
    app.register_blueprint(affinity_pages.bp)
    from app.web import projects as project_pages
    app.register_blueprint(project_pages.bp)
    from app.web import stream
    app.register_blueprint(stream.bp)
    # The project switcher's choice is the scope of every page (lists and creations).
    app.before_request(project_pages.enter_project_scope)
    from app.web import settings_pages
    app.register_blueprint(settings_pages.bp)
    from app.web import alerts as alert_pages
    app.register_blueprint(alert_pages.bp)
    from app.web import jobs_pages
    app.register_blueprint(jobs_pages.bp)
    from app.web import offerings_pages
    app.register_blueprint(offerings_pages.bp)
    from app.web import extensions_pages, vm_actions
    app.register_blueprint(extensions_pages.bp)
    app.register_blueprint(vm_actions.bp)
    app.add_template_global(vm_actions.card, "custom_actions_card")

    @app.after_request
    def vary_on_htmx(response):
        # Pages answer HTMX requests with a fragment: caches must key on the header.
        if response.mimetype == "text/html":
            response.vary.add("HX-Request")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    @app.before_request
    def role_gated_pages():
        # Only role-gated pages look at the user (the API and static files never do here).
        if page_command(request.endpoint) and current_user.is_authenticated \
                and not page_allowed(current_user, request.endpoint):
            abort(403)

    @app.context_processor
    def layout_context():
        from app.web.projects import switcher
        def sidebar() -> list[NavGroup]:
            # An admin's groups hold the admin pages and the self-service ones; built when
            # base.html renders the sidebar (not for the fragments of HTMX requests).
            if not current_user.is_authenticated:
                return []
            entries = (ADMIN_NAV + USER_NAV) if current_user.is_admin else USER_NAV
            return nav_groups([(e, label) for e, label in entries if page_allowed(current_user, e)],
                              request.endpoint)
        return {"is_htmx": bool(getattr(request, "htmx", False)), "nav_groups": sidebar,
                # for links to other pages in a page's body
                "page_allowed": lambda endpoint: page_allowed(current_user, endpoint),
                "project_switcher": switcher}
