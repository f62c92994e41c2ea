"""Models → CloudStack response objects. One serializer per object kind, usable
from any command: `serialize("user", row)`. Null fields are left out."""
from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime
from typing import Any, Callable

from app.models import Account, AsyncJob, Domain, HypervisorCapability, User, VirtualMachine
from app.models.base import DOMAIN_ID, DOMAIN_NAME, cs_date  # noqa: F401  (defined below api and jobs)
from app.services import hypervisors, offering_domains, vm_views

_SERIALIZERS: dict[str, Callable[[Any], dict]] = {}


def serializer(kind: str):
    def decorate(fn):
        _SERIALIZERS[kind] = fn
        return fn
    return decorate


def hypervisor_name(type_name: str | None) -> str | None:
    """A hypervisor type's name on the wire, as CloudStack's HypervisorType.getHypervisorDisplayName()
    gives it: the type's own name ("KVM", "Hyperv", "Simulator"), except that Custom goes by
    hypervisor.custom.display.name. The UI's friendlier names ("Hyper-V") stay in the UI."""
    if type_name != hypervisors.CUSTOM:
        return type_name or None
    return hypervisors.display_name(type_name)


_SCALARS = frozenset({str, int, bool, float})


class Clean(dict):
    """A dict made as clean() would leave it (no None values, dates formatted, nested values
    clean too): clean() gives it back as it is. The VM serializer makes its answers so, as a
    500-VM page spent as long cleaning them as making them."""
    __slots__ = ()


def some(d: dict) -> Clean:
    """d without its None values, as a Clean (its other values must be clean already: scalars,
    formatted dates, Clean dicts or lists of them)."""
    return Clean({k: v for k, v in d.items() if v is not None})


def clean(obj: Any) -> Any:
    """Drop None values recursively; format dates. (Runs on every value of every list
    answer: plain scalars are kept on a type lookup, with no call and no isinstance chain;
    a 500-VM page's cleaning took ~27 % of the request before.)"""
    t = type(obj)
    if t is Clean:
        return obj
    if t is dict:
        out = {}
        for k, v in obj.items():
            tv = type(v)
            if tv in _SCALARS:
                out[k] = v
            elif v is None:
                continue
            elif tv is dict or tv is list or tv is tuple:
                out[k] = clean(v)
            elif tv is Clean:
                out[k] = v
            else:
                out[k] = _other(v)
        return out
    if t is list or t is tuple:
        return [clean(v) for v in obj]
    return _other(obj)


def _other(v: Any) -> Any:
    """A value of another type: subclasses of dict/list/tuple cleaned too, dates formatted."""
    if isinstance(v, (dict, list, tuple)):
        return clean(dict(v) if isinstance(v, dict) else list(v))
    if isinstance(v, datetime):
        return cs_date(v)
    return v


def serialize(kind: str, obj: Any) -> dict:
    if type(obj) is Clean:  # made clean already (a VM's answer): passed on as it is
        return obj
    if isinstance(obj, dict):
        return clean(obj)
    return clean(_SERIALIZERS[kind](obj))


def has_serializer(kind: str | None) -> bool:
    return kind in _SERIALIZERS


# --- Resource tags in every taggable response ----------------------------------------------
#
# A serializer shows an object's tags with tags_for(type, id). A list answer loads the tags
# of the whole page in one query first: the kind registers how (`prefetch`), and the API
# view wraps its rows in `prefetched(kind, rows)`.

_PREFETCH: dict[str, Callable[[list], None]] = {}


def prefetch(kind: str, fn: Callable[[list], None]) -> None:
    """How to load the tags of a page of `kind` rows: fn(rows) calls preload_tags(...)."""
    _PREFETCH[kind] = fn


def tag_dict(tag, acct: Account | None) -> dict:
    """One tag as CloudStack's ResourceTagResponse (also inside every tagged object)."""
    owner = owner_fields(acct) if acct is not None else {"domainid": DOMAIN_ID, "domain": DOMAIN_NAME}
    owner.pop("accountid", None)
    return some({"key": tag.key, "value": tag.value, "resourcetype": tag.resource_type,
                 "resourceid": tag.resource_uuid, **owner, "customer": tag.customer})


def tags_of(resource_type: str, ids) -> dict[int, list[dict]]:
    """{id: [tag, ...]} for objects of one type (one query), for any area's responses."""
    from app.services import tags
    return {i: [tag_dict(t, a) for t, a in pairs] for i, pairs in tags.of(resource_type, ids).items()}


# The tags of the page being answered (per thread/request: gunicorn serves requests in threads)
_page_tags: ContextVar[dict[str, dict[int, list[dict]]] | None] = ContextVar("page_tags", default=None)


def preload_tags(resource_type: str, ids) -> None:
    page = _page_tags.get()
    if page is not None:
        page.setdefault(resource_type, {}).update(tags_of(resource_type, ids))


def tags_for(resource_type: str, obj_id: int) -> list[dict]:
    """An object's tags: from its page's prefetch, else one query."""
    page = (_page_tags.get() or {}).get(resource_type)
    if page is not None and obj_id in page:
        return page[obj_id]
    return tags_of(resource_type, [obj_id]).get(obj_id, [])


class prefetched:
    """`with prefetched(kind, rows):` serialize rows whose tags were loaded in one query."""

    def __init__(self, kind: str | None, rows: list):
        self.kind, self.rows = kind, rows

    def __enter__(self):
        self._token = _page_tags.set({})
        fn = _PREFETCH.get(self.kind or "")
        rows = [r for r in self.rows if not isinstance(r, dict)]  # a dict row is serialised already
        if fn is not None and rows:
            fn(rows)
        return self

    def __exit__(self, *exc):
        _page_tags.reset(self._token)
        return False


def owner_fields(acct: Account | None) -> dict:
    """CloudStack's owner fields of any owned object (ApiResponseHelper.populateOwner): account
    and accountid, or project and projectid for a project's object, and the domain: every
    serializer of an owned object uses this."""
    if acct is None:
        return {}
    if hasattr(acct, "domain_uuid"):  # a list view's owner (vm_views.AccountRef): read with the rows
        if acct.project_uuid:
            return {"domainid": acct.domain_uuid, "domain": acct.domain_name, "project": acct.project_name,
                    "projectid": acct.project_uuid}
        return {"domainid": acct.domain_uuid, "domain": acct.domain_name, "account": acct.name,
                "accountid": acct.uuid}
    out = {"domainid": acct.domain.uuid, "domain": acct.domain.name}
    if acct.is_project:
        from app.services import projects
        p = projects.of_account(acct.id)
        if p is not None:
            out.update(project=p.name, projectid=p.uuid)
        return out
    out.update(account=acct.name, accountid=acct.uuid)
    return out


# CloudStack's Account.Type by role type: 0 user, 1 root admin, 2 domain admin, 3 resource admin.
ACCOUNT_TYPES = {"User": 0, "Admin": 1, "DomainAdmin": 2, "ResourceAdmin": 3}


def role_fields(a: Account) -> dict:
    """accounttype, roleid, rolename, roletype of an account (and of its users)."""
    from app.services import roles
    role = roles.role_of(a)
    rtype = a.role_type
    return {"accounttype": a.account_type, "roletype": rtype,
            "roleid": role.uuid if role else None, "rolename": role.name if role else None}


@serializer("role")
def role(r) -> dict:
    return {"id": r.uuid, "name": r.name, "type": r.role_type, "description": r.description,
            "isdefault": r.is_default, "ispublic": True, "state": r.state.capitalize()}


@serializer("rolepermission")
def role_permission(p) -> dict:
    return {"id": p.uuid, "roleid": p.role.uuid, "rolename": p.role.name, "rule": p.rule,
            "permission": p.permission, "description": p.description}


@serializer("account")
def account(a: Account, totals: dict | None = None) -> dict:
    """With CloudStack's usage figures (vmtotal, vmlimit, ...): `totals` when the caller
    fetched them for a whole page (limits.account_totals), else fetched here."""
    from app.services import limits
    from app.services import domains
    return {"id": a.uuid, "name": a.name, **role_fields(a), "state": a.state,
            "domainid": a.domain.uuid, "domain": a.domain.name,
            "domainpath": domains.display_path(a.domain), "created": a.created,
            "networkdomain": a.network_domain or a.domain.network_domain,
            "isdefault": a.name == "admin" and a.domain.parent_id is None,
            "user": [user(u) for u in a.users if u.removed is None],
            **(totals if totals is not None else limits.account_totals([a])[a.id])}


@serializer("user")
def user(u: User) -> dict:
    return {"id": u.uuid, "username": u.username, "firstname": u.firstname, "lastname": u.lastname,
            "email": u.email, "state": u.state, "account": u.account.name, "accountid": u.account.uuid,
            **role_fields(u.account),
            "domainid": u.account.domain.uuid, "domain": u.account.domain.name, "created": u.created,
            "apikey": u.api_key, "iscallerchilddomain": False, "isdefault": u.username == "admin"}


@serializer("configuration")
def configuration(s) -> dict:
    """A Setting row, or a settings.ScopedSetting (its value in one zone, cluster, account ...)."""
    from app.services import settings
    d = settings.DEFINITIONS.get(s.name)
    out = {"name": s.name, "value": s.value, "defaultvalue": s.default, "category": s.category,
           "description": s.description, "isdynamic": s.is_dynamic, "scope": s.scope}
    if d is not None:
        out["type"] = settings.cs_type(d)
        if d.choices:
            out["options"] = ",".join(d.choices)
    return out


@serializer("hypervisorCapabilities")
def hypervisor_capabilities(c: HypervisorCapability) -> dict:
    from app.hypervisors import registry
    t = registry.get(c.hypervisor_type)
    caps = t.capabilities
    return {"id": c.uuid, "hypervisor": hypervisor_name(c.hypervisor_type),
            "hypervisorversion": c.hypervisor_version, "maxguestslimit": c.max_guests_limit,
            "maxdatavolumeslimit": c.max_data_volumes_limit, "maxhostspercluster": c.max_hosts_per_cluster,
            "securitygroupenabled": c.security_group_enabled, "storagemotionenabled": c.storage_motion_enabled,
            "vmsnapshotenabled": c.vm_snapshot_enabled, "directdownload": caps.direct_download,
            "localstorage": caps.local_storage, "templateformats": list(caps.template_formats),
            "livemigration": caps.live_migration, "consoletype": str(caps.console)}


@serializer("asyncjobs")
def async_job(j) -> dict:
    """A job loaded as an object, or an answer row (listAsyncJobs: jobs.answer_select)."""
    from app.jobs import service
    return service.job_result(j) if isinstance(j, AsyncJob) else service.answer_of(j)


@serializer("zone")
def zone(z) -> dict:
    return {"id": z.uuid, "name": z.name, "description": z.description, "dns1": z.dns1, "dns2": z.dns2,
            "internaldns1": z.internal_dns1, "internaldns2": z.internal_dns2, "networktype": z.network_type,
            "allocationstate": z.allocation_state, "localstorageenabled": z.local_storage_enabled,
            "securitygroupsenabled": z.security_groups_enabled, "guestcidraddress": z.guest_cidr,
            "domain": DOMAIN_NAME, "type": "Core",
            "hypervisor": hypervisor_name(z.hypervisor_type)}


@serializer("pod")
def pod(p) -> dict:
    return {"id": p.uuid, "name": p.name, "zoneid": p.zone.uuid, "zonename": p.zone.name, "gateway": p.gateway,
            "netmask": p.netmask, "startip": [p.start_ip], "endip": [p.end_ip],
            "allocationstate": p.allocation_state}


@serializer("cluster")
def cluster(c) -> dict:
    return {"id": c.uuid, "name": c.name, "podid": c.pod.uuid, "podname": c.pod.name, "zoneid": c.zone.uuid,
            "zonename": c.zone.name, "hypervisortype": hypervisor_name(c.hypervisor_type),
            "clustertype": c.cluster_type, "allocationstate": c.allocation_state, "managedstate": c.managed_state}


@serializer("host")
def host(h) -> dict:
    return {"id": h.uuid, "name": h.name, "state": h.state, "resourcestate": h.resource_state, "type": "Routing",
            "ipaddress": h.address, "hypervisor": hypervisor_name(h.hypervisor_type),
            "hypervisorversion": h.hypervisor_version, "zoneid": h.zone.uuid, "zonename": h.zone.name,
            "podid": h.pod.uuid, "podname": h.pod.name, "clusterid": h.cluster.uuid, "clustername": h.cluster.name,
            "cpunumber": h.cpu_number, "cpuspeed": h.cpu_speed, "cpusockets": h.cpu_sockets,
            "cpuallocated": f"{100.0 * h.cpu_allocated / (h.cpu_number * h.cpu_speed):.2f}%"
            if h.cpu_number and h.cpu_speed else "0%",
            "memorytotal": h.memory_total, "memoryallocated": h.memory_allocated, "memoryused": h.memory_used,
            "disksizetotal": h.local_storage_total, "islocalstorageactive": bool(h.local_storage_path),
            "lastpinged": h.last_pinged, "created": h.created, "events": h.state_reason, "hosttags": h.host_tags}


@serializer("storagepool")
def storagepool(p) -> dict:
    return {"id": p.uuid, "name": p.name, "zoneid": p.zone.uuid, "zonename": p.zone.name,
            "clusterid": p.cluster.uuid if p.cluster else None, "clustername": p.cluster.name if p.cluster else None,
            "hostid": p.host.uuid if p.host else None, "scope": p.scope, "type": p.pool_type, "path": p.path,
            "ipaddress": p.server, "state": p.state, "disksizetotal": p.capacity_bytes,
            "disksizeused": p.used_bytes, "disksizeallocated": p.allocated_bytes, "created": p.created,
            "podid": p.cluster.pod.uuid if p.cluster else None, "podname": p.cluster.pod.name if p.cluster else None,
            "hypervisor": hypervisor_name(p.hypervisor_type), "provider": "DefaultPrimary", "managed": False,
            "tags": p.tags, "istagarule": False, "capacityiops": p.capacity_iops}


@serializer("imagestore")
def imagestore(s) -> dict:
    return {"id": s.uuid, "name": s.name, "providername": s.provider, "protocol": s.provider.lower(),
            "url": s.url, "zoneid": s.zone.uuid if s.zone else None, "zonename": s.zone.name if s.zone else None,
            "scope": "ZONE" if s.zone else "REGION", "disksizetotal": s.capacity_bytes, "disksizeused": s.used_bytes,
            "readonly": s.state == "ReadOnly"}


@serializer("template")
def template(t) -> dict:
    """A template (or ISO) in one zone: CloudStack lists one row per template and zone.
    The list command passes (template, ref) pairs; a bare template has no zone fields."""
    from app.services import templates as tpl
    t, ref = t if isinstance(t, tuple) else (t, None)
    out = {"id": t.uuid, "name": t.name, "displaytext": t.display_text, "format": t.format,
           "hypervisor": hypervisor_name(t.hypervisor_type),
           "ostypeid": t.os_type.uuid if t.os_type else None, "ostypename": t.os_type.description if t.os_type else None,
           **owner_fields(t.account),
           "ispublic": t.is_public, "isfeatured": t.featured, "bootable": t.bootable, "isextractable": t.extractable,
           "directdownload": t.direct_download, "checksum": t.checksum, "url": t.url, "size": t.size,
           "physicalsize": t.physical_size, "created": t.created, "templatetype": "USER",
           "passwordenabled": bool(t.password_enabled), "crossZones": False, "isready": False,
           "tags": tags_for("ISO" if t.is_iso else "Template", t.id)}
    if t.userdata_id is not None and t.linked_userdata is not None:  # linkUserDataToTemplate
        ud = t.linked_userdata
        out.update(userdataid=ud.uuid, userdataname=ud.name, userdatapolicy=t.userdata_policy,
                   userdataparams=ud.params)
    if ref is not None:
        from app.models import DownloadState
        out.update(zoneid=ref.zone.uuid if ref.zone else None, zonename=ref.zone.name if ref.zone else None,
                   status=tpl.status_text(ref), downloadpercent=ref.download_pct,
                   isready=ref.state in (DownloadState.DOWNLOADED, DownloadState.BYPASSED))
    return out


@serializer("ostype")
def ostype(o) -> dict:
    return {"id": o.uuid, "description": o.description, "name": o.description, "oscategoryid": o.category.uuid,
            "oscategoryname": o.category.name, "isuserdefined": False}


@serializer("oscategory")
def oscategory(c) -> dict:
    return {"id": c.uuid, "name": c.name}
_SERIALIZERS["iso"] = template


def _prefetch_templates(rows) -> None:
    ts = [r[0] if isinstance(r, tuple) else r for r in rows]
    preload_tags("Template", {t.id for t in ts if not t.is_iso})
    preload_tags("ISO", {t.id for t in ts if t.is_iso})


prefetch("template", _prefetch_templates)
prefetch("iso", _prefetch_templates)


@serializer("diskoffering")
def diskoffering(o) -> dict:
    return {"id": o.uuid, "name": o.name, "displaytext": o.display_text, "disksize": o.disk_size,
            "iscustomized": o.is_custom, "storagetype": o.storage_type, "created": o.created, "tags": o.tags,
            **offering_domains.response_fields(o)}


@serializer("volume")
def volume(v) -> dict:
    vm = v.vm
    return {"id": v.uuid, "name": v.name, "type": v.volume_type, "state": v.state, "size": v.size,
            "zoneid": v.zone.uuid if v.zone else None, "zonename": v.zone.name if v.zone else None,
            "virtualmachineid": vm.uuid if vm else None, "vmname": vm.name if vm else None,
            "vmdisplayname": vm.display_name or vm.name if vm else None, "vmstate": vm.state if vm else None,
            "vmtype": "User" if vm else None, "deviceid": v.device_id if vm else None,
            # A root volume is attached from its creation (as are data volumes attached before
            # the column existed); a detached volume has no `attached`, as in CloudStack.
            "attached": (v.attached or v.created) if vm else None,
            "hypervisor": hypervisor_name(vm.hypervisor_type) if vm else None,
            "storagetype": ("local" if v.pool.scope == "HOST" else "shared") if v.pool else None,
            # Which primary storage holds it is the admins' business, as in CloudStack.
            "storageid": v.pool.uuid if v.pool and caller_is_admin() else None,
            "storage": v.pool.name if v.pool and caller_is_admin() else None,
            "path": v.uuid, "format": v.format if v.pool_id else None,
            "diskofferingid": v.disk_offering.uuid if v.disk_offering else None,
            "diskofferingname": v.disk_offering.name if v.disk_offering else None,
            **owner_fields(v.account), "created": v.created,
            "destroyed": v.removed is not None, "tags": tags_for("Volume", v.id)}


prefetch("volume", lambda rows: preload_tags("Volume", [v.id for v in rows]))


class _Parts:
    """The parts of VM answers that VMs share, each made once per object or combination: the
    owner's fields, the placement's (zone, offering, template, ISO, OS type, hypervisor: a
    page's VMs have a few combinations), the host's, the group's, the user data's, and each
    network's part of a NIC. A page's VMViews point at shared Refs (vm_views makes one per
    zone, offering, account...), so a 500-VM page makes a handful of each instead of 500 (a
    dict per part and a None check per field were half its CPU)."""
    __slots__ = ("owner", "placement", "host", "other", "net")

    def __init__(self) -> None:
        self.owner: dict = {}
        self.placement: dict[tuple, dict] = {}
        self.host: dict = {}
        self.other: dict = {}
        self.net: dict = {}


def _once(cache: dict, key, make) -> dict:
    """cache[key], made by make(key) the first time."""
    part = cache.get(key)
    if part is None:
        part = cache[key] = make(key)
    return part


def vm_dicts(vms, minimal: bool = False, admin: bool = False) -> list[Clean]:
    """A page of VMs (listVirtualMachines' rows): vm_dict of each, the shared parts made once."""
    parts = _Parts()
    return [vm_dict(vm, minimal, admin, parts) for vm in vms]


def vm_dict(vm, minimal: bool = False, admin: bool = False, parts: _Parts | None = None) -> Clean:
    """A VM as listVirtualMachines shows it, from a VirtualMachine or a vm_views.VMView, made
    clean (no None values, the date formatted): serialize() passes it on as it is.
    `minimal` (details=min) skips the related objects. Built key by key with no None in it, so
    no pass drops them after (test_vm_answer checks that the answers hold none)."""
    if parts is None:
        parts = _Parts()
    if minimal:
        placement: tuple = (vm.hypervisor_type,)
    else:
        placement = (vm.hypervisor_type, vm.zone, vm.service_offering, vm.template, vm.iso, vm.os_type)
    shared = _once(parts.placement, placement, lambda key: _placement_part(*key))
    out = Clean(shared, id=vm.uuid, name=vm.name, state=vm.state, instancename=vm.instance_name,
                cpunumber=vm.cpu_number, cpuspeed=vm.cpu_speed, memory=vm.memory)
    if vm.account is not None:
        out.update(_once(parts.owner, vm.account, lambda acct: some(owner_fields(acct))))
    if vm.display_name is not None:
        out["displayname"] = vm.display_name
    if vm.created:
        out["created"] = cs_date(vm.created)
    if minimal:
        return out
    # One VM row (a job's answer): which of its extras exist, in one statement, and a query for
    # each kind it has; a list page's VMView has them all already (nothing read below).
    one = isinstance(vm, VirtualMachine)
    if admin and vm.host is not None:  # which host runs a VM is the admins' business, as in CloudStack
        out.update(_once(parts.host, vm.host, lambda h: {"hostid": h.uuid, "hostname": h.name}))
    for obj, make in ((vm.group, _group_part), (vm.userdata_obj, _userdata_part)):
        if obj:
            out.update(_once(parts.other, obj, make))
    has_sg, has_ip, has_tags, has_details, has_groups = vm_views.extras_of(vm.id) if one else (True,) * 5
    out["haenable"] = bool(vm.ha_enable)
    if vm.cpu_used_pct:
        out["cpuused"] = f"{vm.cpu_used_pct:.2f}%"
    nic_answers, first, default = [], None, None
    for n in vm.nics:
        if n.removed is None:
            nic_answers.append(_vm_nic(n, parts))
            if first is None:
                first = n
            if default is None and n.is_default:
                default = n
    out["nic"] = nic_answers
    main_nic = default if default is not None else first  # its address is the VM's
    if main_nic is not None and main_nic.ip_address is not None:
        out["ipaddress"] = main_nic.ip_address
    out["isdynamicallyscalable"] = bool(vm.dynamically_scalable)
    if one:  # a VM row: its key pair and displayed details read here
        from app.services import resource_details
        keypair = vm_keypair_name(vm)
        password_enabled = bool(vm.template and vm.template.password_enabled)
        details = resource_details.display_maps("UserVm", [vm.id]).get(vm.id) if has_details else None
    else:  # a VMView has them already
        keypair, password_enabled, details = vm.keypair_name, vm.password_enabled, vm.details
    if vm.userdata_obj:
        from app.services import userdata as ud
        user_details = ud.java_map(ud.details_of(vm))
        if user_details is not None:
            out["userdatadetails"] = user_details
    if details is not None:
        out["details"] = some(details)
    if keypair is not None:
        out["keypairs"] = out["keypair"] = keypair
    out["passwordenabled"] = password_enabled
    # vm_views loads a page's tags in one query (VMView.tags); one VM (a job's answer) asks here
    page_tags = vm.tags if not one else None
    if page_tags is not None:
        out["tags"] = [tag_dict(t, a) for t, a in page_tags] if page_tags else []
    else:
        out["tags"] = tags_for("UserVm", vm.id) if has_tags else []
    groups = vm.affinity_groups if not one else None
    if groups is None:  # one VM (a job's answer): one small query, if it is in any
        from app.services import affinity
        groups = affinity.groups_of_vms([vm.id]).get(vm.id, []) if has_groups else []
    out["affinitygroup"] = [some({"id": g.uuid, "name": g.name, "type": g.type, "description": g.description})
                            for g in groups] if groups else []
    extras = vm.net_extras if not one else None
    if extras is None:  # one VM (a job's answer): a small query for each kind it has
        extras = vm_views.network_extras([vm.id], security_groups=has_sg, public_ips=has_ip)[vm.id] \
            if has_sg or has_ip else vm_views.NO_EXTRAS
    out["securitygroup"] = [some({"id": u, "name": name, "description": d})
                            for u, name, d in extras.security_groups] if extras.security_groups else []
    if extras.public_ip:
        out["publicip"], out["publicipid"] = extras.public_ip
    return out


def _placement_part(hypervisor_type, zone=None, offering=None, template=None, iso=None, os_type=None) -> dict:
    return some({
        "hypervisor": hypervisor_name(hypervisor_type),
        "zoneid": zone.uuid if zone else None, "zonename": zone.name if zone else None,
        "serviceofferingid": offering.uuid if offering else None,
        "serviceofferingname": offering.name if offering else None,
        "templateid": template.uuid if template else None, "templatename": template.name if template else None,
        "isoid": iso.uuid if iso else None, "isoname": iso.name if iso else None,
        "ostypeid": os_type.uuid if os_type else None,
        "osdisplayname": (os_type.description if hasattr(os_type, "description") else os_type.name)
        if os_type else None})


def _group_part(group) -> dict:
    return some({"group": group.name, "groupid": group.uuid})


def _userdata_part(obj) -> dict:
    return some({"userdataid": obj.uuid, "userdataname": obj.name, "userdatapolicy": "ALLOWOVERRIDE"})


def vm_keypair_name(vm) -> str | None:
    if not vm.keypair_id:
        return None
    from app.extensions import db
    from app.models import SSHKeyPair
    return db.session.get(SSHKeyPair, vm.keypair_id).name


def _vm_nic(n, parts: _Parts | None = None) -> dict:
    """A NIC inside a VM's answer (CloudStack's NicResponse), from a Nic or a vm_views.NicView;
    its network's part made once per network."""
    net_part = _once(parts.net if parts is not None else {}, n.network, _nic_network_part)
    out = Clean(net_part, id=n.uuid, macaddress=n.mac_address, isdefault=n.is_default, deviceid=str(n.device_id))
    if n.ip_address is not None:
        out["ipaddress"] = n.ip_address
    return out


def _nic_network_part(net) -> dict:
    kind = getattr(net, "guest_type", None) or ("Shared" if getattr(net, "account_id", None) is None else "Isolated")
    uri = getattr(net, "broadcast_uri", None) or (f"vlan://{net.vlan}" if net.vlan else None)
    return some({"networkid": net.uuid, "networkname": net.name, "gateway": net.gateway, "netmask": net.netmask,
                 "traffictype": "Guest", "type": kind, "broadcasturi": uri, "isolationuri": uri})


def caller_is_admin() -> bool:
    """Whether the API call or job being answered is an admin's (flask.g.caller)."""
    from flask import g, has_app_context
    caller = g.get("caller") if has_app_context() else None
    return bool(caller is not None and caller.is_admin)


@serializer("virtualmachine")
def virtualmachine(vm) -> dict:
    return vm_dict(vm, admin=caller_is_admin())


@serializer("virtualmachinepassword")
def virtualmachine_with_password(pair) -> dict:
    """A job's VM with the password it was just given (deploy, resetPassword, restore, resetSSHKey)."""
    vm, password = pair
    return {**vm_dict(vm, admin=caller_is_admin()), "password": password}


@serializer("instancegroup")
def instancegroup(g) -> dict:
    return {"id": g.uuid, "name": g.name, "created": g.created, **owner_fields(g.account)}


@serializer("userdata")
def userdata(u) -> dict:
    return {"id": u.uuid, "name": u.name, "userdata": u.userdata, "params": u.params, **owner_fields(u.account)}


@serializer("serviceoffering")
def serviceoffering(o) -> dict:
    return {"id": o.uuid, "name": o.name, "displaytext": o.display_text, "cpunumber": o.cpu_number,
            "cpuspeed": o.cpu_speed, "memory": o.memory, "storagetype": o.storage_type, "offerha": o.offer_ha,
            "rootdisksize": o.root_disk_size, "created": o.created, "iscustomized": bool(o.is_customized),
            "hosttags": o.host_tags, "storagetags": o.storage_tags, **offering_domains.response_fields(o),
            **({"serviceofferingdetails": {"mincpunumber": str(o.min_cpu_number), "maxcpunumber": str(o.max_cpu_number),
                                           "minmemory": str(o.min_memory), "maxmemory": str(o.max_memory)}}
               if o.is_customized else {})}


@serializer("event")
def event(e) -> dict:
    """An Event, or a listEvents row (events.EventView: the user's name read with it)."""
    username = e.username if hasattr(e, "username") else (e.user.username if e.user else None)
    return {"id": e.uuid, "type": e.type, "level": e.level, "state": e.state, "description": e.description,
            "created": e.created, "resourcetype": e.resource_type, "resourceid": e.resource_id,
            "username": username,
            **(owner_fields(e.account) if e.account else {"domainid": DOMAIN_ID, "domain": DOMAIN_NAME})}


# --- Self-service: SSH key pairs, resource limits --------------------------------

@serializer("sshkeypair")
def sshkeypair(kp) -> dict:
    from app.extensions import db
    owner = db.session.get(Account, kp.account_id)  # loaded with the page (keypairs.owners)
    return {"id": kp.uuid, "name": kp.name, "fingerprint": kp.fingerprint, **owner_fields(owner),
            "created": kp.created}


_SERIALIZERS["keypair"] = sshkeypair  # createSSHKeyPair / registerSSHKeyPair answer "keypair"


@serializer("resourcelimit")
def resourcelimit(row) -> dict:
    """An (account or domain, limits.Limit) pair; resourcetype is a string in CloudStack's answer."""
    owner, lim = row
    who = ({"domainid": owner.uuid, "domain": owner.name} if isinstance(owner, Domain) else owner_fields(owner))
    return {**who, "resourcetype": str(lim.number), "resourcetypename": lim.resource, "max": lim.max}


@serializer("resourcecount")
def resourcecount(row) -> dict:
    """An (account, resource, count) triple, in CloudStack's ResourceCountResponse shape."""
    from app.services.quotas import TYPES
    acct, resource, count = row
    return {**owner_fields(acct), "resourcetype": str(TYPES[resource][2]), "resourcetypename": resource, "resourcecount": count}


@serializer("consolesession")
def consolesession(view) -> dict:
    """A consoles.SessionView, in CloudStack 4.21's consolesession shape."""
    s, u, vm = view.session, view.user, view.vm
    return {"id": s.uuid, "created": s.created, "acquired": s.used, "removed": s.closed,
            "clientaddress": s.client_address, "userid": u.uuid, "user": u.username,
            **owner_fields(u.account),
            "virtualmachineid": vm.uuid, "virtualmachinename": vm.name}


@serializer("snapshot")
def snapshot(s) -> dict:
    """CloudStack's SnapshotResponse (a volume snapshot kept on secondary storage)."""
    from app.models import SnapshotState
    v = s.volume
    scheduled = s.snapshot_type != "MANUAL"
    return {"id": s.uuid, "name": s.name, **owner_fields(s.account), "created": s.created,
            "snapshottype": "RECURRING" if scheduled else "MANUAL",
            "intervaltype": s.snapshot_type if scheduled else None,
            "volumeid": v.uuid if v else None, "volumename": v.name if v else None,
            "volumetype": s.volume_type, "volumestate": v.state if v else None,
            "state": s.state, "physicalsize": s.physical_size, "virtualsize": s.size,
            "zoneid": s.zone.uuid if s.zone else None, "zonename": s.zone.name if s.zone else None,
            "hypervisor": hypervisor_name(s.hypervisor_type), "locationtype": "Secondary",
            "revertable": s.state == SnapshotState.BACKED_UP and v is not None and v.removed is None,
            "datastoretype": "Image", "datastorestate": "Ready" if s.state == SnapshotState.BACKED_UP else None,
            "tags": tags_for("Snapshot", s.id)}


@serializer("snapshotpolicy")
def snapshot_policy(p) -> dict:
    """CloudStack's SnapshotPolicyResponse: intervaltype is the interval's number (HOURLY 0 ... MONTHLY 3)."""
    from app.models import INTERVAL_NUMBERS
    return {"id": p.uuid, "volumeid": p.volume.uuid, "schedule": p.schedule,
            "intervaltype": INTERVAL_NUMBERS[p.interval_type], "maxsnaps": p.max_snaps, "timezone": p.timezone,
            "fordisplay": p.display, "tags": tags_for("SnapshotPolicy", p.id)}


prefetch("snapshot", lambda rows: preload_tags("Snapshot", [s.id for s in rows]))
prefetch("snapshotpolicy", lambda rows: preload_tags("SnapshotPolicy", [p.id for p in rows]))
