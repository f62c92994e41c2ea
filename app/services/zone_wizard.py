"""The zone wizard: a draft kept server-side, one validated step at a time, then
a launch job that builds the zone and removes everything again if a step fails.

Steps (CloudStack's order): zone → physical network (guest VLAN/VNI range, isolation method,
label) → public traffic (Advanced: the public IP range and its label; Basic zones skip it) → pod
(Basic: with the guests' range, which becomes a shared network with security groups) → cluster →
first host → primary storage → secondary storage → review. Each step's values are checked
by the same service functions the API uses (zones.validate_zone, ...), so the
wizard and createZone/createPod/... accept and refuse the same things.

The launch commits each resource as it is made (a Disabled zone is visible
while it launches) and records what it made in the job's step list; on failure,
or when the reaper finds the worker gone, `undo` deletes those rows in reverse
order and removes pools from hosts, so no half zone is ever left.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

from sqlalchemy import delete, select, update

from app.jobs import service as jobs
from app.extensions import db
from app.models import (AllocationState, AsyncJob, Cluster, GuestVnet, Host, ImageStore, JobStatus, Network,
                        NetworkServiceProvider, PhysicalNetwork, PhysicalNetworkTrafficType, Pod, PublicIpAddress,
                        StoragePool, VlanIpRange, WizardDraft, Zone, utcnow)
from app.services import crypto, events, hosts, storage, zones
from app.services.network import physical, ranges
from app.services import hypervisors as hv
from app.services.errors import Collect, InvalidParameter, NotFound, ServiceError

KIND = "zone"
STEPS = ("zone", "network", "public", "pod", "cluster", "host", "primary", "secondary", "review")
TITLES = {"zone": "Zone", "network": "Physical network", "public": "Public traffic", "pod": "Pod",
          "cluster": "Cluster", "host": "Host",
          "primary": "Primary storage", "secondary": "Secondary storage", "review": "Review and launch"}
# What the launch job does, in order; the names are the progress list's lines.
LAUNCH_STEPS = (("zone", "Create the zone"), ("network", "Create the physical network"),
                ("public", "Create the public IP range"), ("pod", "Create the pod"),
                ("cluster", "Create the cluster"), ("host", "Add the host"), ("primary", "Add primary storage"),
                ("secondary", "Add secondary storage"), ("enable", "Enable the zone"))
DRAFT_TTL = timedelta(days=2)
BASIC_GUEST_STEP = "Create the guest network (security groups)"  # the "public" launch step of Basic zones


def default_label(type_name: str | None) -> str:
    """The bridge or virtual switch a type's hosts usually give guests (the type declares it)."""
    return physical.default_label(type_name)


# --- Drafts -----------------------------------------------------------------------

def new_draft(user) -> WizardDraft:
    """A blank draft that is not stored: the first step's page shows it, and the
    first valid POST stores it (save()). A GET never makes a row."""
    return WizardDraft(user_id=user.id, kind=KIND, step=STEPS[0], data_enc=None)


def _store_new(draft: WizardDraft) -> None:
    """Store a new draft (old, abandoned drafts of this user are dropped)."""
    db.session.execute(delete(WizardDraft).where(WizardDraft.user_id == draft.user_id,
                                                 WizardDraft.updated < utcnow() - DRAFT_TTL))
    db.session.add(draft)


def get_draft(user, uuid: str) -> WizardDraft:
    draft = db.session.scalar(select(WizardDraft).where(WizardDraft.uuid == uuid, WizardDraft.kind == KIND,
                                                        WizardDraft.user_id == user.id,
                                                        WizardDraft.updated >= utcnow() - DRAFT_TTL))
    if draft is None:
        raise NotFound("This wizard has expired or was launched already; start a new one")
    return draft


@dataclass
class DraftSummary:
    """An unfinished wizard as the start page lists it (Resume / Delete)."""
    uuid: str
    name: str  # the zone's name typed so far ("" before the first step is saved)
    step: str  # the furthest step reached
    updated: object
    expires: object


def list_drafts(user) -> list[DraftSummary]:
    """The user's unfinished zone wizards that have not expired, the latest first."""
    rows = db.session.scalars(select(WizardDraft).where(
        WizardDraft.user_id == user.id, WizardDraft.kind == KIND, WizardDraft.updated >= utcnow() - DRAFT_TTL)
        .order_by(WizardDraft.updated.desc()).limit(20))
    return [DraftSummary(d.uuid, values(d).get("zone", {}).get("name", ""), d.step, d.updated, d.updated + DRAFT_TTL)
            for d in rows]


def delete_draft(user, uuid: str) -> None:
    """The user gives an unfinished wizard up (its secrets go with it)."""
    draft = get_draft(user, uuid)
    db.session.delete(draft)
    db.session.commit()


def purge_expired(now=None) -> int:
    """Drafts untouched for DRAFT_TTL are deleted, whoever made them (the monitor's
    reconcile_records); returns how many."""
    done = db.session.execute(delete(WizardDraft).where(WizardDraft.updated < (now or utcnow()) - DRAFT_TTL))
    db.session.commit()
    return done.rowcount or 0


def values(draft: WizardDraft) -> dict[str, dict]:
    return crypto.decrypt_json(draft.data_enc)


def _store(draft: WizardDraft, data: dict) -> None:
    draft.data_enc = crypto.encrypt_json(data)
    draft.updated = utcnow()


def reachable(draft: WizardDraft, step: str) -> bool:
    """A step can be shown once every step before it was completed."""
    return STEPS.index(step) <= STEPS.index(draft.step)


def type_of(data: dict) -> str | None:
    return data.get("zone", {}).get("hypervisor")


def keep(draft: WizardDraft, step: str, form: dict) -> None:
    """Back: keep what was typed on this step without checking it (secrets are not kept)."""
    data = values(draft)
    data[step] = {**data.get(step, {}), **_without_secrets(step, data, form)}
    _store(draft, data)
    db.session.commit()


def save(draft: WizardDraft, step: str, form: dict) -> str:
    """Next: check this step; keep the normalized values; the next step's name.
    Raises InvalidParameter (with .field) and keeps nothing when a value is wrong."""
    data = values(draft)
    checked = CHECKS[step](data, form)
    data[step] = checked
    # A changed hypervisor or zone type invalidates what later steps assumed.
    if step == "zone" and draft.step != "zone":
        for later in ("network", "public", "host", "primary"):
            if data.get(later, {}).get("_type") not in (None, checked["hypervisor"]):
                data.pop(later, None)
                draft.step = min(draft.step, later, key=STEPS.index)
    _store(draft, data)
    if draft.id is None:
        _store_new(draft)
    nxt = STEPS[STEPS.index(step) + 1]
    if nxt == "public" and data["zone"]["networktype"] == "Basic":
        data["public"] = {"_basic": True}  # Basic zones have no public traffic: skipped
        _store(draft, data)
        nxt = "pod"
    if STEPS.index(nxt) > STEPS.index(draft.step):
        draft.step = nxt
    db.session.commit()
    return nxt


def test_connection(draft: WizardDraft, form: dict):
    """The host step's Test connection: discovery now, nothing saved. HostFacts or a ServiceError."""
    data = values(draft)
    _, facts = hosts.check_new_host(type_of(data), form.get("url", ""), _host_fields(form))
    return facts


def _without_secrets(step: str, data: dict, form: dict) -> dict:
    secret = {"password"} | _secret_fields(data) if step in ("host", "primary", "secondary") else set()
    return {k: v for k, v in form.items() if k not in secret}


def _secret_fields(data: dict) -> set[str]:
    t = type_of(data)
    return {f.name for f in hv.resolve(t).host_fields if f.secret} if t else set()


def _host_fields(form: dict) -> dict[str, str]:
    return {k: v for k, v in form.items() if k not in ("url", "csrf_token", "action")}


# --- Step checks: (data so far, form) -> the values to keep ------------------------

def _bool(v) -> bool:
    return str(v).lower() in ("y", "yes", "true", "on", "1")


def _hypervisor_choice(form: dict):
    choice = (form.get("hypervisor") or "").strip()
    if not choice:
        raise InvalidParameter("Choose the hypervisor of the zone's first cluster", field="hypervisor")
    t = hv.resolve(choice)
    if t.name not in {t.name for t in hv.enabled_types()}:
        raise InvalidParameter(f"{hv.display_name(t.name)} is not in hypervisor.list", field="hypervisor")
    return t


def _check_zone(data: dict, form: dict) -> dict:
    # Every wrong field at once (each beside its field), then the checks across them.
    c = Collect()
    t = c(_hypervisor_choice, form)
    c(zones._name, form.get("name"))
    c(zones._ipv4, form.get("dns1"), "dns1", required=True)
    c(zones._ipv4, form.get("dns2"), "dns2")
    c(zones._ipv4, form.get("internaldns1"), "internaldns1", required=True)
    c(zones._ipv4, form.get("internaldns2"), "internaldns2")
    c(zones._cidr, form.get("guestcidraddress"), "guestcidraddress")
    if t is not None and _bool(form.get("localstorageenabled")) and not t.capabilities.local_storage:
        c.errors.append(InvalidParameter(f"{hv.display_name(t.name)} hosts have no local storage",
                                         field="localstorageenabled"))
    c.done()
    v = zones.validate_zone(name=form.get("name"), description=form.get("description"),
                            network_type=form.get("networktype") or "Advanced", dns1=form.get("dns1"),
                            dns2=form.get("dns2"), internal_dns1=form.get("internaldns1"),
                            internal_dns2=form.get("internaldns2"), guest_cidr=form.get("guestcidraddress"),
                            local_storage=_bool(form.get("localstorageenabled")), hypervisor=t.name)
    return {"name": v["name"], "description": v["description"] or "", "networktype": v["network_type"],
            "dns1": v["dns1"], "dns2": v["dns2"] or "", "internaldns1": v["internal_dns1"],
            "internaldns2": v["internal_dns2"] or "", "guestcidraddress": v["guest_cidr"] or "",
            "localstorageenabled": v["local_storage_enabled"], "hypervisor": t.name}


def _check_network(data: dict, form: dict) -> dict:
    c = Collect()  # the label's error and the range's together
    c(zones.validate_traffic_label, form.get("trafficlabel"), type_of(data))
    out = c(_check_vnets, data, form)
    c.done()
    return out


def _check_vnets(data: dict, form: dict) -> dict:
    t = type_of(data)
    advanced = data["zone"]["networktype"] == "Advanced"
    method = (form.get("isolationmethod") or "VLAN").strip().upper() if advanced else "VLAN"
    if method not in physical.ISOLATION_METHODS:
        raise InvalidParameter("The isolation method is VLAN or VXLAN", field="isolationmethod")
    supported = hv.resolve(t).capabilities.isolation_methods
    if advanced and supported and method not in supported:
        raise InvalidParameter(f"{hv.display_name(t)} hosts cannot make {method} segments (they make "
                               f"{', '.join(supported)})", field="isolationmethod")
    vlan = (form.get("vlan") or "").strip()
    if advanced and not vlan:
        what = "VNI" if method == "VXLAN" else "VLAN"
        raise InvalidParameter(f"An Advanced zone needs a guest {what} range, e.g. "
                               f"{'5000-5999' if method == 'VXLAN' else '100-199'}", field="vlan")
    spans = physical.parse_vnet_range(vlan, method) if advanced else []
    return {"isolationmethod": method, "vlan": physical.format_spans(spans) or "",
            "trafficlabel": zones.validate_traffic_label(form.get("trafficlabel"), t), "_type": t}


def _check_public(data: dict, form: dict) -> dict:
    """Advanced zones: the first public IP range and the public traffic's label."""
    import ipaddress
    if data["zone"]["networktype"] == "Basic":
        return {"_basic": True}
    t = type_of(data)
    c = Collect()  # every wrong field at once, then the checks across them
    c(ranges.parse_vlan, form.get("vlan"))
    for f, required in (("gateway", True), ("netmask", True), ("startip", True), ("endip", False)):
        c(zones._ipv4, form.get(f), f, required=required)
    c.done()
    vlan = ranges.parse_vlan(form.get("vlan"))
    gw, mask, start, end, subnet = ranges.check_subnet(form.get("gateway"), form.get("netmask"),
                                                       form.get("startip"), form.get("endip"))
    n = data.get("network", {})
    if vlan != "untagged" and n.get("isolationmethod", "VLAN") == "VLAN" and physical.in_spans(
            int(vlan), physical.parse_vnet_range(n.get("vlan"))):
        raise InvalidParameter(f"VLAN {vlan} is in the guest VLAN range {n.get('vlan')}; the public VLAN must be "
                               "another one", field="vlan")
    cidr = data["zone"].get("guestcidraddress")
    if cidr and ipaddress.IPv4Network(cidr).overlaps(subnet):
        raise InvalidParameter(f"The public range overlaps the zone's guest CIDR {cidr}", field="gateway")
    label = (form.get("trafficlabel") or "").strip() or n.get("trafficlabel")
    return {"gateway": gw, "netmask": mask, "vlan": vlan, "startip": start, "endip": end,
            "trafficlabel": zones.validate_traffic_label(label, t), "_type": t}


def _check_pod(data: dict, form: dict) -> dict:
    import ipaddress
    c = Collect()  # every wrong field at once, then the checks across them
    name = c(zones._name, form.get("name"))
    for f, required in (("gateway", True), ("netmask", True), ("startip", True), ("endip", False)):
        c(zones._ipv4, form.get(f), f, required=required)
    if data["zone"]["networktype"] == "Basic":
        c(zones._ipv4, form.get("gueststartip"), "gueststartip", required=True)
        c(zones._ipv4, form.get("guestendip"), "guestendip")
    c.done()
    net = zones.validate_pod_network(form.get("gateway"), form.get("netmask"), form.get("startip"),
                                     form.get("endip"))
    out = {"name": name, "gateway": net["gateway"], "netmask": net["netmask"], "startip": net["start_ip"],
           "endip": net["end_ip"]}
    if data["zone"]["networktype"] == "Basic":  # guests take addresses from the pod's own subnet
        start = zones._ipv4(form.get("gueststartip"), "gueststartip", required=True)
        end = zones._ipv4(form.get("guestendip"), "guestendip") or start
        subnet = ipaddress.IPv4Network(f"{net['gateway']}/{net['netmask']}", strict=False)
        zones.check_range(subnet, start, end, "gueststartip", "guestendip")
        hosts_range = (ipaddress.IPv4Address(net["start_ip"]), ipaddress.IPv4Address(net["end_ip"]))
        if ipaddress.IPv4Address(start) <= hosts_range[1] and ipaddress.IPv4Address(end) >= hosts_range[0]:
            raise InvalidParameter("The guest range overlaps the hosts' range", field="gueststartip")
        out.update(gueststartip=start, guestendip=end)
    return out


def _check_cluster(data: dict, form: dict) -> dict:
    return {"clustername": zones._name(form.get("clustername"), "clustername")}


def _check_host(data: dict, form: dict) -> dict:
    t = type_of(data)
    url = (form.get("url") or "").strip()
    fields = _host_fields(form)
    conn, facts = hosts.check_new_host(t, url, fields)
    return {"url": url, **{k: v for k, v in fields.items() if v not in (None, "")}, "_type": t,
            "_facts": {"hypervisor": hv.display_name(facts.hypervisor), "version": facts.version,
                       "hostname": facts.hostname or conn.address, "cpus": facts.cpu_cores, "mhz": facts.cpu_mhz,
                       "memory": facts.memory_bytes, "local_storage": facts.local_storage_bytes}}


def pool_url(kind: str, form: dict) -> str:
    """nfs://server/path, smb://server/share or file:///path from the storage fields."""
    server = (form.get("server") or "").strip()
    if kind == "nfs":
        return f"nfs://{server}/{(form.get('path') or '').strip().lstrip('/')}"
    if kind == "smb":
        return f"smb://{server}/{(form.get('share') or '').strip().strip('/')}"
    return "file://" + quote((form.get("path") or "").strip())


def _check_nfs_path(kind: str, form: dict) -> None:
    """An NFS export (and a directory) is an absolute path: a relative one is refused, not
    silently made absolute."""
    if kind in ("nfs", "dir") and not (form.get("path") or "").strip().startswith("/"):
        raise InvalidParameter("Give an absolute path (starting with /)", field="path")


def _check_storage_fields(kind: str, form: dict) -> None:
    """The storage step's own fields, every wrong one at once: name, path, SMB login (the URL
    they make is checked after)."""
    c = Collect()
    c(_check_storage_name, form)
    c(_check_nfs_path, kind, form)
    if kind in ("nfs", "smb") and any(ch in (form.get("server") or "").strip() for ch in "/\\ "):
        c.errors.append(InvalidParameter("A server is a host name or address, without a path", field="server"))
    if kind == "smb" and not ((form.get("user") or "").strip() and form.get("password")):
        c.errors.append(InvalidParameter("An SMB share needs a user name and password", field="user"))
    c.done()


def _check_storage_name(form: dict) -> str:
    return zones._name(form.get("name"), "name")


def _check_primary(data: dict, form: dict) -> dict:
    t = type_of(data)
    local = bool(data["zone"]["localstorageenabled"])
    kind = (form.get("kind") or "none").lower()
    if kind == "none":
        if not local:
            raise InvalidParameter("Add shared primary storage (or turn local storage on in the zone step)",
                                   field="kind")
        return {"kind": "none", "_type": t}
    if kind not in ("nfs", "smb", "dir"):
        raise InvalidParameter("Choose NFS, SMB or a directory", field="kind")
    _check_storage_fields(kind, form)
    url = pool_url(kind, form)
    pkind, _, _ = storage.parse_url(url, field="server" if kind != "dir" else "path")
    storage.check_pool_kind(t, pkind)
    scope = (form.get("scope") or "cluster").lower()
    if scope not in ("cluster", "zone"):
        raise InvalidParameter("Scope is cluster or zone", field="scope")
    out = {"kind": kind, "name": _check_storage_name(form), "url": url, "scope": scope, "_type": t,
           "server": form.get("server", ""), "path": form.get("path", ""), "share": form.get("share", "")}
    if kind == "smb":
        out.update(user=(form.get("user") or "").strip(), password=form.get("password") or "")
        if not out["user"] or not out["password"]:
            raise InvalidParameter("An SMB share needs a user name and password", field="user")
    return out


def _check_secondary(data: dict, form: dict) -> dict:
    provider = (form.get("provider") or "").strip()
    kind = {"nfs": "nfs", "smb": "smb", "local": "dir"}.get(provider.lower())
    if kind is None:
        raise InvalidParameter("Choose NFS, SMB or a local directory", field="provider")
    _check_storage_fields(kind, form)
    url = pool_url(kind, form)
    storage.parse_url(url, field="server" if kind != "dir" else "path")
    try:
        provider, _, _, _ = storage.validate_image_store(provider, url)
    except InvalidParameter as e:
        raise InvalidParameter(e.message, field="path" if kind == "dir" else "server") from None
    out = {"provider": provider, "name": _check_storage_name(form), "url": url, "server": form.get("server", ""),
           "path": form.get("path", ""), "share": form.get("share", "")}
    if kind == "smb":
        out.update(user=(form.get("user") or "").strip(), password=form.get("password") or "")
        if not out["user"] or not out["password"]:
            raise InvalidParameter("An SMB share needs a user name and password", field="user")
    return out


def _check_review(data: dict, form: dict) -> dict:
    return {}


CHECKS = {"zone": _check_zone, "network": _check_network, "public": _check_public, "pod": _check_pod, "cluster": _check_cluster,
          "host": _check_host, "primary": _check_primary, "secondary": _check_secondary, "review": _check_review}


# --- Launch -----------------------------------------------------------------------

def launch(user, draft: WizardDraft) -> AsyncJob:
    """Submit the launch job (every step must have been completed)."""
    if draft.step != "review":
        raise InvalidParameter(f"Complete the {TITLES[draft.step].lower()} step first")
    if draft.job_uuid:
        prev = db.session.scalar(select(AsyncJob).where(AsyncJob.uuid == draft.job_uuid))
        if prev is not None and prev.status == JobStatus.PENDING:
            return prev  # a second click while it runs: the same job
    data, draft_id = values(draft), draft.id
    job = jobs.submit("launchZone", user, "zone.launch", {"draft": draft.uuid},
                      instance_type="Zone", instance_id=None)
    # The job may have finished (and deleted the draft) already.
    db.session.execute(update(WizardDraft).where(WizardDraft.id == draft_id).values(job_uuid=job.uuid)
                       .execution_options(synchronize_session=False))
    events.record("ZONE.LAUNCH", f"Zone {data['zone']['name']} launch started", user=user, commit=True)
    return job


@dataclass
class StepState:
    key: str
    label: str
    state: str  # pending | running | done | failed | undone
    detail: str = ""
    created: str | None = None  # uuid of what the step made


def progress_of(job: AsyncJob) -> list[StepState]:
    if job.steps:
        return [StepState(**s) for s in json.loads(job.steps)]
    return [StepState(k, label, "pending") for k, label in LAUNCH_STEPS]


def launch_result(job: AsyncJob) -> dict:
    """For the progress page: the zone made, or the error and the draft to go back to."""
    spec = json.loads(job.params or "{}").get("params", {})
    result = json.loads(job.result) if job.result and job.status != JobStatus.PENDING else {}
    return {"draft": spec.get("draft"), "zone": result.get("zone"), "error": result.get("errortext")}


@jobs.handler("zone.launch")
def run_launch(job: AsyncJob, params: dict) -> dict:
    from app.models import User
    draft = db.session.scalar(select(WizardDraft).where(WizardDraft.uuid == params["draft"]))
    if draft is None:
        raise NotFound("The wizard's draft is gone")
    user = db.session.get(User, draft.user_id)
    data = values(draft)
    steps = progress_of(job)

    def report(i: int, state: str, detail: str = "") -> None:
        steps[i].state, steps[i].detail = state, detail[:500]
        done = sum(s.state == "done" for s in steps)
        jobs.progress(job, 100 * done // len(steps), f"{steps[i].label}: {state}",
                      steps=[s.__dict__ for s in steps])

    if data["zone"]["networktype"] == "Basic":
        steps[[k for k, _ in LAUNCH_STEPS].index("public")].label = BASIC_GUEST_STEP
    made: dict[str, str] = {}
    i = 0
    try:
        for i, (key, _) in enumerate(LAUNCH_STEPS):
            report(i, "running")
            made_uuid = _LAUNCHERS[key](user, data, made)
            if made_uuid:
                made[key] = steps[i].created = made_uuid
            report(i, "done")
    except ServiceError as e:
        db.session.rollback()  # what the failed step wrote (a progress write must not wait for its lock)
        report(i, "failed", e.message)
        _undo(steps, made, report)
        events.record("ZONE.LAUNCH.FAILED", f"Zone {data['zone']['name']}: {steps[i].label.lower()} failed "
                      f"({e.message}); everything the launch made was removed", user=user, level="ERROR",
                      commit=True)
        raise ServiceError(f"{steps[i].label} failed: {e.message}. Nothing was kept; fix the "
                           f"{TITLES.get(key, 'zone').lower()} step and launch again.", field=key) from None
    except Exception as e:  # noqa: BLE001 - anything unexpected is undone too, then recorded by the job
        db.session.rollback()
        report(i, "failed", f"Internal error: {e}")
        _undo(steps, made, report)
        raise
    db.session.execute(delete(WizardDraft).where(WizardDraft.id == draft.id))  # secrets gone with it
    db.session.commit()
    return {"zone": {"id": made["zone"], "name": data["zone"]["name"]}}


def _launch_zone(user, data, made) -> str:
    z = data["zone"]
    zone = zones.create_zone(user, name=z["name"], description=z["description"], network_type=z["networktype"],
                             dns1=z["dns1"], dns2=z["dns2"], internal_dns1=z["internaldns1"],
                             internal_dns2=z["internaldns2"], guest_cidr=z["guestcidraddress"],
                             local_storage=z["localstorageenabled"], hypervisor=z["hypervisor"],
                             allocation_state=AllocationState.DISABLED,  # until the launch completes
                             default_network=False)  # made with the physical network (its VLAN)
    return zone.uuid


def _launch_network(user, data, made) -> str:
    """The physical network with Guest, Management (and Advanced: Public) traffic labelled for
    the zone's hypervisor type, its providers enabled, and the default guest network."""
    n = data["network"]
    t = type_of(data)
    zone = zones.get_zone(made["zone"])
    phys = physical.create_physical_network(user, zone=zone, name="Physical Network 1", vlan=n["vlan"] or None,
                                            isolation_method=n.get("isolationmethod", "VLAN"), commit=False)
    label = {t: n["trafficlabel"]}
    physical.add_traffic_type(user, phys.uuid, "Guest", label, commit=False)
    physical.add_traffic_type(user, phys.uuid, "Management", label, commit=False)
    if zone.network_type == "Advanced":
        physical.add_traffic_type(user, phys.uuid, "Public", {t: data["public"]["trafficlabel"]}, commit=False)
    physical.enable_providers(user, phys, commit=False)
    db.session.commit()
    made["network"] = phys.uuid  # from here on, a failure undoes the physical network too
    if zone.network_type == "Advanced":
        from app.services.network import networks
        networks.ensure_default_network(user, zone)  # guests' default network, from the zone's guest CIDR
    return phys.uuid


def _launch_public(user, data, made) -> str:
    """Advanced: the public IP range (one Free address row each). Basic: the zone's shared guest
    network with security groups, on the pod's subnet and guest range."""
    zone = zones.get_zone(made["zone"])
    if zone.network_type == "Advanced":
        p = data["public"]
        return ranges.create_range(user, zone_uuid=zone.uuid, physical_network_uuid=made["network"], vlan=p["vlan"],
                                   gateway=p["gateway"], netmask=p["netmask"], start_ip=p["startip"],
                                   end_ip=p["endip"], for_virtual_network=True).uuid
    return _basic_guest_network(user, data, zone, made["network"])


def _basic_guest_network(user, data, zone, phys_uuid: str) -> str:
    import ipaddress

    from app.models import GuestType, new_uuid
    from app.services.network import offerings
    p = data["pod"]
    subnet = ipaddress.IPv4Network(f"{p['gateway']}/{p['netmask']}", strict=False)
    offering = offerings.default_for(GuestType.SHARED, security_groups=True)
    phys = physical.get_physical_network(phys_uuid)
    net = Network(uuid=new_uuid(), name=f"{zone.name}-guest", display_text=f"Guest network of Basic zone {zone.name}",
                  zone_id=zone.id, physical_network_id=phys.id, network_offering_id=offering.id,
                  guest_type=GuestType.SHARED, account_id=None, cidr=str(subnet), gateway=p["gateway"],
                  netmask=p["netmask"], vlan=None, broadcast_uri="vlan://untagged", is_default=True,
                  security_groups=True, state="Implemented")
    db.session.add(net)
    db.session.flush()
    ranges.create_range(user, network_uuid=net.uuid, vlan="untagged", gateway=p["gateway"], netmask=p["netmask"],
                        start_ip=p["gueststartip"], end_ip=p["guestendip"], for_virtual_network=False, commit=False)
    events.record("NETWORK.CREATE", f"Shared guest network {net.name} ({net.cidr}, security groups) created in "
                  f"zone {zone.name}", user=user, resource_type="Network", resource_id=net.uuid)
    db.session.commit()
    return net.uuid


def _launch_pod(user, data, made) -> str:
    p = data["pod"]
    return zones.create_pod(user, zone_uuid=made["zone"], name=p["name"], gateway=p["gateway"],
                            netmask=p["netmask"], start_ip=p["startip"], end_ip=p["endip"]).uuid


def _launch_cluster(user, data, made) -> str:
    return zones.add_cluster(user, pod_uuid=made["pod"], name=data["cluster"]["clustername"],
                             hypervisor=type_of(data)).uuid


def _launch_host(user, data, made) -> str:
    h = {k: v for k, v in data["host"].items() if not k.startswith("_")}
    url = h.pop("url")
    return hosts.add_host(user, cluster_uuid=made["cluster"], url=url, fields=h).uuid


def _launch_primary(user, data, made) -> str | None:
    p = data["primary"]
    if p["kind"] == "none":
        return None  # local storage only: the host's pool came with its discovery
    details = {"user": p.get("user"), "password": p.get("password")} if p["kind"] == "smb" else None
    return storage.create_storage_pool(user, zone_uuid=made["zone"], name=p["name"], url=p["url"],
                                       scope=p["scope"], cluster_uuid=made["cluster"],
                                       hypervisor=type_of(data), details=details).uuid


def _launch_secondary(user, data, made) -> str:
    s = data["secondary"]
    details = {"user": s.get("user"), "password": s.get("password")} if s["provider"] == "SMB" else None
    return storage.add_image_store(user, provider=s["provider"], url=s["url"], name=s["name"],
                                   zone_uuid=made["zone"], details=details).uuid


def _launch_enable(user, data, made) -> None:
    zones.update_zone(user, made["zone"], allocation_state=AllocationState.ENABLED)


_LAUNCHERS = {"zone": _launch_zone, "network": _launch_network, "public": _launch_public, "pod": _launch_pod, "cluster": _launch_cluster,
              "host": _launch_host, "primary": _launch_primary, "secondary": _launch_secondary,
              "enable": _launch_enable}


# --- Undo -------------------------------------------------------------------------

def _undo(steps: list[StepState], made: dict[str, str], report) -> None:
    """Remove what the launch made, newest first; each step's line says so."""
    for i in reversed(range(len(steps))):
        key = steps[i].key
        if key in made:
            undo_one(key, made[key])
            report(i, "undone", "removed again")


def undo_one(key: str, uuid: str) -> None:
    """Delete one launch-made resource outright (rows, and a primary pool on its hosts)."""
    db.session.rollback()
    if key == "secondary":
        db.session.execute(delete(ImageStore).where(ImageStore.uuid == uuid))
    elif key == "primary":
        pool = db.session.scalar(select(StoragePool).where(StoragePool.uuid == uuid))
        if pool is not None:
            in_scope = [h for h in storage._hosts_in_scope(pool) if h.hypervisor_type == pool.hypervisor_type]
            db.session.commit()
            storage.unprepare_on_hosts(pool, in_scope)
            db.session.delete(pool)
    elif key == "host":
        host = db.session.scalar(select(Host).where(Host.uuid == uuid))
        if host is not None:
            db.session.execute(delete(StoragePool).where(StoragePool.host_id == host.id))
            db.session.delete(host)
    elif key == "public":
        r = db.session.scalar(select(VlanIpRange).where(VlanIpRange.uuid == uuid))
        net = db.session.scalar(select(Network).where(Network.uuid == uuid))
        if r is not None:
            db.session.execute(delete(PublicIpAddress).where(PublicIpAddress.vlan_range_id == r.id))
            db.session.delete(r)
        if net is not None:  # Basic: the shared guest network and its range
            db.session.execute(delete(VlanIpRange).where(VlanIpRange.network_id == net.id))
            db.session.delete(net)
    elif key == "network":
        phys = db.session.scalar(select(PhysicalNetwork).where(PhysicalNetwork.uuid == uuid))
        if phys is not None:
            _delete_zone_networking(phys.zone_id)
    elif key in ("cluster", "pod", "zone"):
        model = {"cluster": Cluster, "pod": Pod, "zone": Zone}[key]
        if key == "zone":
            zone_id = db.session.scalar(select(Zone.id).where(Zone.uuid == uuid))
            if zone_id is not None:
                _delete_zone_networking(zone_id)
        db.session.execute(delete(model).where(model.uuid == uuid))
    db.session.commit()


def _delete_zone_networking(zone_id: int) -> None:
    """Every networking row of a zone the launch made (it is new: nothing else uses them)."""
    phys_ids = select(PhysicalNetwork.id).where(PhysicalNetwork.zone_id == zone_id).scalar_subquery()
    db.session.execute(delete(PublicIpAddress).where(PublicIpAddress.zone_id == zone_id))
    db.session.execute(delete(VlanIpRange).where(VlanIpRange.zone_id == zone_id))
    db.session.execute(delete(Network).where(Network.zone_id == zone_id))
    for model in (PhysicalNetworkTrafficType, NetworkServiceProvider, GuestVnet):
        db.session.execute(delete(model).where(model.physical_network_id.in_(phys_ids)))
    db.session.execute(delete(PhysicalNetwork).where(PhysicalNetwork.zone_id == zone_id))


def undo_reaped(job: AsyncJob) -> None:
    """The reaper failed a launch whose worker died: remove what its step list says it made."""
    made = [(s.key, s.created) for s in progress_of(job) if s.created and s.state != "undone"]
    for key, uuid in reversed(made):
        undo_one(key, uuid)


jobs.on_reap("zone.launch", undo_reaped)
