"""Virtual machines: deploy and every action, with CloudStack's states and rules.

Each action is checked here (state, ownership, capabilities), takes the VM's
lock atomically (one action per VM at a time; a second gets "busy", 536) and
runs as a job (`vm.<action>`). A job that fails leaves the VM in a true state and
gives back what it reserved: host capacity (the planner's atomic reservation),
guest IPs and the root volume of a failed deploy.

States: Starting, Running, Stopping, Stopped, Destroyed (recoverable until
expunged), Expunging, Migrating, Error, Unknown (its host stopped answering).
"""
from __future__ import annotations

import json
import logging
import re
import secrets
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from app.extensions import db
from app.hypervisors.base import ConsoleSpec, DiskSpec, DriverError, MigrationSpec, NicSpec, VMSpec, VolumeSpec
from app.jobs import service as jobs
from app.models import (AsyncJob, DownloadState, JobStatus, Host, Nic, PoolState, ServiceOffering, SSHKeyPair,
                        StoragePool, StorageScope, Template, TemplateStoreRef, VirtualMachine, VMState, Volume, VolumeState,
                        VolumeType, new_uuid, utcnow)
from app.services import (access, affinity, changes, config_drive, consoles, events, placement_tags, planner, quotas,
                          resource_details, settings, storage, template_cache, templates, volumes, zones)
from app.services import hypervisors as hv
from app.services.units import duration
from app.services.network import ipam, networks, routers, secgroups, vm_nics, vxlan
from app.services.errors import (InsufficientCapacity, InvalidParameter, NotFound, PermissionDenied, ResourceInUse,
                                 ResourceUnavailable, ServiceError, Unsupported)
from app.services.pagination import name_of, page_of, sorted_by
from app.services.settings import Definition, define

log = logging.getLogger(__name__)

define(Definition("vm.stop.timeout", "60", "Seconds a graceful stop waits for the guest before it fails "
                  "(or, with forced=true, before the VM is powered off).", category="VM", type="integer",
                  min=1, max=3600, unit="seconds"))
define(Definition("expunge.delay", "86400", "Seconds a destroyed VM stays recoverable before the sweeper "
                  "expunges it.", category="VM", type="integer", min=0, max=31536000, unit="seconds"))
def _check_instance_name(value: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9]{1,16}", value):
        raise InvalidParameter("instance.name is 1-16 letters or digits", field="value")


define(Definition("instance.name", "VM", "Suffix of the VMs' names on the hypervisors (i-<account>-<id>-<suffix>): "
                  "give each Nubo installation sharing hosts its own.", category="VM", dynamic=False,
                  validate=_check_instance_name))
define(Definition("vm.userdata.max.length", "32768", "Largest user data accepted, in bytes (decoded).",
                  category="VM", type="integer", min=0, max=1048576))

GIB = 1 << 30
ACTIONS_BY_STATE = {
    "start": (VMState.STOPPED,),
    "stop": (VMState.RUNNING, VMState.UNKNOWN),
    "reboot": (VMState.RUNNING,),
    "destroy": (VMState.RUNNING, VMState.STOPPED, VMState.ERROR, VMState.UNKNOWN),
    "recover": (VMState.DESTROYED,),
    "expunge": (VMState.DESTROYED, VMState.ERROR),
    "migrate": (VMState.RUNNING,),
    "scale": (VMState.STOPPED,),
    "attachiso": (VMState.RUNNING, VMState.STOPPED),
    "detachiso": (VMState.RUNNING, VMState.STOPPED),
    "deploy": (VMState.STARTING, VMState.STOPPED),
    # app/services/vm_admin.py's
    "update": (VMState.RUNNING, VMState.STOPPED, VMState.DESTROYED, VMState.UNKNOWN),
    "restore": (VMState.RUNNING, VMState.STOPPED),
    "resetsshkey": (VMState.STOPPED,),
    "resetpassword": (VMState.RUNNING, VMState.STOPPED),
    "assign": (VMState.STOPPED,),
    "affinity": (VMState.STOPPED,),
}


# --- Lookup and listing --------------------------------------------------------------

def _visible(caller):
    return select(VirtualMachine).where(VirtualMachine.removed.is_(None), access.owned(caller, VirtualMachine.account_id))


def get_vm(caller, uuid: str, field: str = "id") -> VirtualMachine:
    """Another account's VM is "not found", exactly like a missing one."""
    vm = db.session.scalar(_visible(caller).where(VirtualMachine.uuid == uuid))
    if vm is None:
        raise NotFound("Unable to find virtual machine with the specified id", field=field)
    return vm


def _vm_sorts() -> dict:
    """The VM list's sort keys (the portal's columns). Name and state are served by the
    indexes of the list (removed, name…/state, id); the others sort by the name a key
    points at (a subquery a row) or the first NIC's address: a sort of the filtered rows."""
    from app.models import Account, Zone
    return {"name": VirtualMachine.name, "state": VirtualMachine.state, "created": VirtualMachine.id,
            "zone": name_of(Zone, VirtualMachine.zone_id), "host": name_of(Host, VirtualMachine.host_id),
            "template": name_of(Template, VirtualMachine.template_id),
            "offering": name_of(ServiceOffering, VirtualMachine.service_offering_id),
            "account": name_of(Account, VirtualMachine.account_id),
            "ip": select(Nic.ip_address).where(Nic.vm_id == VirtualMachine.id).order_by(Nic.device_id)
            .limit(1).scalar_subquery()}


VM_SORT_KEYS = ("name", "state", "ip", "host", "zone", "template", "offering", "account", "created")
GONE = (VMState.DESTROYED, VMState.EXPUNGING)  # the list's "Destroyed" tab


def list_vms(caller, *, page=None, details_min: bool = False, sort: str | None = None,
             destroyed: bool | None = None, **filters):
    """Newest first, or by `sort` (a key of VM_SORT_KEYS, "-key" descending); relations loaded
    in a fixed number of queries whatever the page size. `destroyed`: True only Destroyed and
    Expunging VMs, False none of them, None all.
    (The API's listVirtualMachines reads rows instead: app/services/vm_views.py.)"""
    options = () if details_min else (
        # Many-to-one relations joined (measured faster than selectin here); NICs in one IN query.
        joinedload(VirtualMachine.zone), joinedload(VirtualMachine.host),
        joinedload(VirtualMachine.template), joinedload(VirtualMachine.iso),
        joinedload(VirtualMachine.service_offering), joinedload(VirtualMachine.account),
        joinedload(VirtualMachine.group),
        selectinload(VirtualMachine.nics).joinedload(Nic.network))
    q = vm_query(caller, **filters)
    if destroyed is not None:
        q = q.where(VirtualMachine.state.in_(GONE) if destroyed else VirtualMachine.state.not_in(GONE))
    if sort and sort.lstrip("-") in VM_SORT_KEYS and sort != "-created":
        q = sorted_by(q.order_by(None), sort, _vm_sorts(), VirtualMachine.id.desc())
    return page_of(q, page, options=options, scan_once=bool(filters.get("keyword")))


def jobs_with_vms(caller, job_uuids: list[str]) -> list[tuple[AsyncJob, VirtualMachine | None]]:
    """The caller's jobs named (in that order; others' and unknown ones left out) with the
    VM each acted on (None once expunged): two queries whatever their number."""
    if not job_uuids:
        return []
    found = {j.uuid: j for j in db.session.scalars(select(AsyncJob).where(
        AsyncJob.uuid.in_(job_uuids), access.owned(caller, AsyncJob.account_id)))}
    vm_uuids = {j.instance_id for j in found.values() if j.instance_id}
    vms = {vm.uuid: vm for vm in db.session.scalars(_visible(caller).where(VirtualMachine.uuid.in_(vm_uuids)))} \
        if vm_uuids else {}
    return [(found[u], vms.get(found[u].instance_id)) for u in job_uuids if u in found]


def vm_query(caller, *, id=None, name=None, keyword=None, state=None, zone_uuid=None, host_uuid=None,
             account=None, domainid=None, tags=None, group_uuid=None):
    """The VMs a caller may list, filtered, newest first (a select of VirtualMachine)."""
    from app.services import tags as tagging
    q = tagging.matching(_visible(caller).order_by(VirtualMachine.id.desc()), "UserVm", VirtualMachine.id, tags)
    if id:
        q = q.where(VirtualMachine.uuid == id)
    if name:
        q = q.where(VirtualMachine.name == name)
    if keyword:
        q = q.where(or_(VirtualMachine.name.contains(keyword, autoescape=True),
                        VirtualMachine.display_name.contains(keyword, autoescape=True)))
    if state:
        q = q.where(VirtualMachine.state == state)
    if zone_uuid:
        q = q.where(VirtualMachine.zone_id == zones.get_zone(zone_uuid).id)
    if host_uuid and caller.is_admin:  # hosts are the admins' business
        q = q.where(VirtualMachine.host_id == select(Host.id).where(Host.uuid == host_uuid).scalar_subquery())
    if account and access.is_any_admin(caller):
        q = q.where(VirtualMachine.account_id == access.owner_for(caller, account, domainid).id)
    if group_uuid:
        from app.models import InstanceGroup
        q = q.where(VirtualMachine.group_id == select(InstanceGroup.id).where(
            InstanceGroup.uuid == group_uuid).scalar_subquery())
    return q


# --- The per-VM lock ----------------------------------------------------------------

def _lock(vm: VirtualMachine, action: str, allowed: tuple[str, ...] | None = None) -> int:
    """Take the VM for one action, atomically with its state check. Returns the token."""
    allowed = allowed or ACTIONS_BY_STATE[action]
    token = _new_token()
    # The VM in hand publishes its change without the row read first (changes.update_row).
    done = changes.update_row(VirtualMachine, vm.id, VirtualMachine.active_job_id.is_(None),
                              VirtualMachine.state.in_(allowed), active_job_id=token)
    db.session.commit()
    if done == 1:
        return token
    # Read again, never as loaded: the lock and the state are changed by Core UPDATEs and by other
    # processes, and a session that does not expire on commit (deploy) would still show them as loaded.
    db.session.refresh(vm)
    if vm.active_job_id is not None:
        raise ResourceInUse(f"VM {vm.name} is busy with another action; try again when it has finished")
    raise InvalidParameter(f"VM {vm.name} is {vm.state}; it can be {_verb(action)} only when it is "
                           f"{' or '.join(allowed)}", field="id")


def _new_token() -> int:
    """A lock's holder until its job exists (negative: never a job's id); recover_orphans frees
    one that no job took."""
    return -secrets.randbelow(2**30) - 1


def _verb(action: str) -> str:
    return {"stop": "stopped", "start": "started", "reboot": "rebooted", "destroy": "destroyed",
            "recover": "recovered", "expunge": "expunged", "migrate": "migrated", "scale": "scaled",
            "attachiso": "given an ISO", "detachiso": "given no ISO", "update": "updated", "restore": "restored",
            "resetsshkey": "given a new SSH key", "resetpassword": "given a new password",
            "assign": "assigned to another account",
            "affinity": "given other affinity groups", "snapshot": "snapshotted",
            "revert": "reverted to a snapshot", "deletesnapshot": "changed",
            "customaction": "given a custom action"}.get(action, action)


def _unlock(vm_id: int, *tokens: int) -> None:
    _release(vm_id, tokens)
    db.session.commit()


def _release(vm_id: int, tokens, known: tuple[str, int] | None = None) -> None:
    """The VM's lock given back if one of `tokens` holds it, in the session's transaction. Its
    change is published without the row read first when the VM is in hand (changes.update_row)
    or `known` ((uuid, account id)) says whose it is."""
    changes.update_row(VirtualMachine, vm_id, VirtualMachine.active_job_id.in_(tokens), known=known,
                       active_job_id=None)


def _queue_for(vm: VirtualMachine, action: str) -> str:
    """A deploy or start that may first fetch a direct-download template (or ISO) from its
    URL is a long transfer: the transfer queue, within the account's limit."""
    if action not in ("deploy", "start") or not any(t is not None and t.direct_download for t in (vm.template, vm.iso)):
        return jobs.JOBS
    root_placed = any(v.pool_id for v in vm.volumes if v.volume_type == VolumeType.ROOT and v.removed is None)
    if (not root_placed and template_cache.fetch_pending(vm.template, vm.zone_id)) or \
            template_cache.fetch_pending(vm.iso, vm.zone_id):
        return jobs.TRANSFERS
    return jobs.JOBS


def _submit(caller, vm: VirtualMachine, action: str, cmd: str, params: dict | None = None,
            allowed: tuple[str, ...] | None = None, *, token: int | None = None) -> AsyncJob:
    """The action's job, with the VM locked for it (`token`: locked already, by deploy).

    Its lock's commit expires nothing (jobs.not_expiring): the job is made from the caller and the
    VM as loaded (their ids, the VM's uuid: no commit changes them); both were read again after
    that commit before, the caller with its account, role and domain. A refused lock is read
    again explicitly (_lock).
    A session that expires on commit is left as the commits would have left it: everything
    expired but the job's ids (jobs.expire_all_but_ids), for callers that read the VM afterwards
    (the portal's pages) and API commands that answer the job's ids."""
    expiring = db.session().expire_on_commit
    with jobs.not_expiring(expire_after=False):
        queue = _queue_for(vm, action)
        token = _lock(vm, action, allowed) if token is None else token
        held: list[int] = []

        def hand_over(job_id: int) -> None:
            # The lock names the job from the job row's own commit on (the job cannot have run yet).
            held.append(job_id)
            changes.update_row(VirtualMachine, vm.id, VirtualMachine.active_job_id == token, active_job_id=job_id)
        try:
            job = jobs.submit(cmd, caller, f"vm.{action}", {"vm": vm.uuid, "token": token, **(params or {})},
                              instance_type="VirtualMachine", instance_id=vm.uuid, queue=queue, with_job=hand_over)
        except Exception:
            db.session.rollback()
            _unlock(vm.id, token, *held)  # held: the job was committed but could not be queued
            raise
    if expiring:
        jobs.expire_all_but_ids(job)
    return job


def _vm_job(action: str, *, expire_on_commit: bool = True):
    """Register the job handler of one action: load the VM, run, always unlock.
    expire_on_commit=False: see jobs.handler (the action's code reviewed for it)."""
    # Without expiry, what the action (and its answer) reads is loaded with the VM: two statements,
    # not six (an expiring session would read them again after its first commit anyway).
    eager = () if expire_on_commit else (
        joinedload(VirtualMachine.zone), joinedload(VirtualMachine.service_offering),
        joinedload(VirtualMachine.template), selectinload(VirtualMachine.nics).joinedload(Nic.network))

    def decorate(fn):
        @jobs.handler(f"vm.{action}", expire_on_commit=expire_on_commit)
        def run(job: AsyncJob, params: dict):
            vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.uuid == params["vm"])
                                   .options(*eager))
            vm_id, job_id = vm.id, job.id  # not read again after a rollback
            known = (vm.uuid, vm.account_id)  # whose the unlock's change is, without a read at the end
            try:
                return fn(job, vm, params)
            finally:
                # A rollback only when something is left open (a failure): after the action's
                # last commit there is nothing to undo, and what it loaded stays for its answer.
                if db.session().in_transaction():
                    db.session.rollback()
                # Unlocked in the transaction that records the job's end: one commit for both.
                jobs.at_end(lambda: _release(vm_id, (params["token"], job_id), known))
        jobs.on_reap(f"vm.{action}", _reaped)
        return run
    return decorate


def _reaped(job: AsyncJob) -> None:
    """The worker died mid-action: free the VM and set its state from the hypervisor."""
    vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.uuid == job.instance_id))
    if vm is None:
        return
    db.session.execute(update(VirtualMachine).where(VirtualMachine.id == vm.id).values(active_job_id=None))
    db.session.commit()
    if job.cmd == "deployVirtualMachine" and job.started is None and vm.state == VMState.STARTING \
            and vm.host_id is None:
        # Its deploy never ran (the request died between the job's commit and its queueing, or no
        # worker took it in time): failed as a deploy that could not be submitted.
        _forget_failed_deploy(vm, "its deploy job was never picked up by a worker")
        return
    from app.monitor import vms as monitor_vms
    monitor_vms.reconcile_vm(vm)


# --- Deploy ------------------------------------------------------------------------

def _template_for(caller, zone, template_uuid: str | None, iso_uuid: str | None) -> tuple[Template, bool]:
    uuid = template_uuid or iso_uuid
    if not uuid:
        raise InvalidParameter("templateid is required", field="templateid")
    t = db.session.scalar(select(Template).where(Template.uuid == uuid, Template.removed.is_(None)))
    if t is None or not templates.usable(caller, t):
        raise NotFound("Unable to find template with the specified id", field="templateid")
    if t.is_iso and not t.bootable:
        raise InvalidParameter(f"ISO {t.name} is not bootable", field="templateid")
    ready = db.session.scalar(select(TemplateStoreRef.id).where(
        TemplateStoreRef.template_id == t.id, TemplateStoreRef.zone_id == zone.id,
        TemplateStoreRef.state.in_([DownloadState.DOWNLOADED, DownloadState.BYPASSED])))
    if ready is None:
        raise InvalidParameter(f"{t.name} is not ready in zone {zone.name}", field="templateid")
    return t, t.is_iso


def _chosen_host(caller, host_uuid: str | None) -> int | None:
    """The host an admin asked for (hostid), checked; None when none was asked for."""
    if not host_uuid:
        return None
    if not caller.is_admin:
        raise PermissionDenied("Only administrators may choose the host")
    host_id = db.session.scalar(select(Host.id).where(Host.uuid == host_uuid, Host.removed.is_(None)))
    if host_id is None:
        raise NotFound("Unable to find host with the specified id", field="hostid")
    return host_id


def _offering(uuid: str) -> ServiceOffering:
    o = db.session.scalar(select(ServiceOffering).where(ServiceOffering.uuid == uuid,
                                                        ServiceOffering.removed.is_(None)))
    if o is None:
        raise NotFound("Unable to find service offering with the specified id", field="serviceofferingid")
    return o


def _check_joinable(net, type_name: str) -> None:
    """A type's VMs join only the networks its capabilities allow: Isolated ones need a type that
    can run the network's router next to them (Hyper-V: shared and L2 only), and a tagged
    segment needs the type to make that kind (VLAN or VXLAN) on its hosts."""
    if net.network_offering_id is None:
        return  # the legacy zone-wide network: the label's bridge, as before
    caps = hv.resolve(type_name).capabilities
    name = hv.display_name(type_name)
    if net.guest_type == "Isolated" and not caps.virtual_router:
        raise InvalidParameter(f"{name} VMs can join only Shared and L2 networks, not the Isolated network "
                               f"{net.name}", field="networkids")
    phys = routers.physical_of(net)
    tagged = net.vlan is not None or net.guest_type != "Shared"
    if phys is not None and tagged and phys.isolation_method.upper() not in caps.isolation_methods:
        raise InvalidParameter(f"{name} hosts cannot carry {phys.isolation_method} network {net.name}",
                               field="networkids")


def _deploy_networks(caller, owner, zone, network_uuids, ip_address, ip_to_network, sg_uuids, sg_names):
    """The deploy's networks in NIC order (the first is the default NIC's), the addresses asked
    for ({network id: ip}) and the security groups of its NICs on security-group networks."""
    if ip_to_network and (network_uuids or ip_address):
        raise InvalidParameter("ipToNetworkMap can't be specified along with networkIds or ipAddress",
                               field="iptonetworklist")
    asked: list[tuple[str, str | None]] = []
    for entry in ip_to_network or []:
        if not entry.get("networkid"):
            raise InvalidParameter("Each iptonetworklist entry needs a networkid", field="iptonetworklist")
        asked.append((entry["networkid"].strip(), (entry.get("ip") or "").strip() or None))
    if not asked:
        asked = [(u, None) for u in (network_uuids or [])]
    nets = []
    for uuid, _ip in asked:
        net = vm_nics.usable_network(caller, owner.id, uuid, zone.id,
                                     "iptonetworklist" if ip_to_network else "networkids")
        if any(n.id == net.id for n in nets):
            raise InvalidParameter(f"Network {net.name} is given twice", field="networkids")
        nets.append(net)
    if not nets:
        nets = [_default_network(caller, owner, zone)]
    wanted = {n.id: ip for n, (_u, ip) in zip(nets, asked) if ip}
    if ip_address:
        wanted[nets[0].id] = ip_address
    wanted = {nid: vm_nics.check_requested_ip(next(n for n in nets if n.id == nid), ip,
                                              "iptonetworklist" if ip_to_network else "ipaddress")
              for nid, ip in wanted.items()}
    if sg_uuids and sg_names:
        raise InvalidParameter("securitygroupids parameter is mutually exclusive with securitygroupnames parameter",
                               field="securitygroupids")
    sg_nets = [n for n in nets if n.security_groups]
    if (sg_uuids or sg_names) and not sg_nets:
        raise InvalidParameter("Can't create vm with security groups; security group feature is not enabled on "
                               "the vm's networks", field="securitygroupids")
    groups = secgroups.groups_for_deploy(caller, owner.id, sg_uuids, sg_names) if sg_nets else []
    return nets, wanted, groups


def _default_network(caller, owner, zone):
    """No networkids: the zone's default network (a zone made with a guest CIDR, Basic zones'
    shared network); in an Advanced zone without one, the account's own isolated network,
    made from the required offering when it has none (CloudStack's behaviour)."""
    default = networks.default_network(zone)
    if default is None and zone.guest_cidr:
        with jobs.expiring():  # its first deploy makes it: another service's commits, written for expiry
            default = networks.ensure_default_network(caller, zone)
    if default is not None:
        return default
    account_net = _account_isolated_network(caller, owner, zone)
    if account_net is not None:
        return account_net
    raise InvalidParameter(f"Zone {zone.name} has no guest network; give networkids", field="networkids")


def _account_isolated_network(caller, owner, zone):
    from app.models import Network
    if zone.network_type != "Advanced":
        return None
    net = db.session.scalar(select(Network).where(
        Network.zone_id == zone.id, Network.account_id == owner.id, Network.removed.is_(None),
        Network.guest_type == "Isolated").order_by(Network.id))
    if net is not None:
        return net
    # None yet: CloudStack makes the account's "<account>-network" from the Required isolated
    # offering when the zone's virtual router can serve it (allocated now, implemented at start).
    from app.services.network import offerings, physical
    offering = offerings.by_name("DefaultIsolatedNetworkOfferingWithSourceNatService")
    if offering is None or offering.state != "Enabled" or offering.availability != "Required" \
            or not physical.provider_enabled(zone.id, "VirtualRouter"):
        return None
    with jobs.expiring():  # another service's commits, written for expiry on commit
        return networks.create_network(caller, zone_uuid=zone.uuid, name=f"{owner.name}-network",
                                       display_text=f"Default network of account {owner.name}",
                                       offering_uuid=offering.uuid, account_id=owner.id,
                                       cidr=None if zone.guest_cidr else "10.1.1.0/24")  # CloudStack's default


# Its reads after a commit were reviewed for a session that does not expire on commit
# (jobs.not_expiring, a context manager that also decorates: a fresh one per call).
@jobs.not_expiring()
def deploy(caller, *, zone_uuid: str, service_offering_uuid: str, template_uuid: str | None = None,
           iso_uuid: str | None = None, name: str | None = None, display_name: str | None = None,
           network_uuids: list[str] | None = None, keypair: str | None = None, userdata: str | None = None,
           disk_offering_uuid: str | None = None, root_disk_size_gib: int | None = None, start: bool = True,
           host_uuid: str | None = None, hypervisor: str | None = None, ip_address: str | None = None,
           ip_to_network: list[dict] | None = None, security_group_uuids: list[str] | None = None,
           security_group_names: list[str] | None = None, group: str | None = None,
           userdata_uuid: str | None = None, userdata_details=None,
           http_method: str = "POST", affinity_group_uuids: list[str] | None = None,
           affinity_group_names: list[str] | None = None, account: str | None = None,
           domainid: str | None = None, details: dict | None = None,
           external_details=None) -> tuple[VirtualMachine, AsyncJob | None]:
    """deployVirtualMachine: the VM's rows now (VM, NICs with their IPs, its security groups, its affinity
    groups, root volume), its start as a job. Its owner: the caller's account, the account named
    (admins) or the project the request names (access.owner_for)."""
    owner = access.owner_for(caller, account, domainid)
    zone = zones.get_zone(zone_uuid)
    if zone.allocation_state != "Enabled" and not caller.is_admin:
        raise InvalidParameter(f"Zone {zone.name} is disabled", field="zoneid")
    offering = _offering(service_offering_uuid)
    from app.services import offering_domains
    offering_domains.check_use(owner, offering, zone)  # 531: an offering of another domain or zone
    from app.services import offerings as service_offerings
    size = service_offerings.size_for(offering, details)  # a customized offering: details cpuNumber, memory
    template, from_iso = _template_for(caller, zone, template_uuid, iso_uuid)
    from app.services.extensions import details as extension_details
    ext_values = extension_details.parse(external_details, "externaldetails")
    type_name = template.hypervisor_type or (hv.resolve(hypervisor).name if hypervisor else zone.hypervisor_type)
    if not type_name:
        raise InvalidParameter("Deploying from an ISO needs the hypervisor", field="hypervisor")
    if hypervisor and hv.resolve(hypervisor).name != type_name:
        raise InvalidParameter(f"Template {template.name} is for {hv.display_name(type_name)}", field="hypervisor")
    root_size = (template.size or 0) if not from_iso else 0
    if root_disk_size_gib:
        root_size = max(root_size, root_disk_size_gib * GIB)
    if from_iso:
        if not disk_offering_uuid and not root_disk_size_gib:
            raise InvalidParameter("A VM from an ISO needs a root disk: give diskofferingid or rootdisksize",
                                   field="diskofferingid")
        if disk_offering_uuid:
            disk_offering = volumes.get_disk_offering(disk_offering_uuid)
            offering_domains.check_use(owner, disk_offering, zone)
            root_size = disk_offering.disk_size * GIB or root_size
    nets, wanted_ips, groups = _deploy_networks(caller, owner, zone, network_uuids, ip_address, ip_to_network,
                                                security_group_uuids, security_group_names)
    for net in nets:
        _check_joinable(net, type_name)
    key = None
    if keypair:
        key = db.session.scalar(select(SSHKeyPair).where(SSHKeyPair.account_id == owner.id,
                                                         SSHKeyPair.name == keypair))
        if key is None:
            raise NotFound(f"No SSH key pair named {keypair}", field="keypair")
    from app.services import userdata as userdata_svc
    userdata, userdata_obj, userdata_details = userdata_svc.for_vm(
        caller, owner.id, userdata=userdata, userdata_uuid=userdata_uuid, details=userdata_details,
        http_method=http_method, template=template)
    host_id = _chosen_host(caller, host_uuid)
    ag = affinity.resolve(caller, owner.id, affinity_group_uuids, affinity_group_names)
    name = (name or "").strip() or None
    # CloudStack's checkNameForRFCCompliance: a host name label in ASCII (display names may be unicode).
    if name is not None and (len(name) > 63 or not all((c.isascii() and c.isalnum()) or c == "-" for c in name)
                             or name.startswith("-") or name.endswith("-") or name[0].isdigit()):
        raise InvalidParameter("Invalid name. Vm name can contain ASCII letters 'a' through 'z', the digits '0' "
                               "through '9', and the hyphen ('-'), must be between 1 and 63 characters long, and "
                               "can't start or end with \"-\" and can't start with digit", field="name")
    if name and db.session.scalar(select(VirtualMachine.id).where(
            VirtualMachine.account_id == owner.id, VirtualMachine.name == name,
            VirtualMachine.removed.is_(None))):
        raise InvalidParameter(f"You already have a VM named {name}", field="name")
    try:
        # 532 when a limit would pass; the counts commit with the rows below, or neither does
        # (a process killed in between leaves nothing counted for nothing). Its commit (of what
        # the session held) expires nothing (jobs.not_expiring): owner, caller, zone, offering and
        # template are used below as loaded and checked above, not re-read.
        quotas.reserve_vm(owner.id, size, root_size)
        # A VM to start is made locked for its deploy job (no other action can take it before the
        # job exists; no lock UPDATE of its own). A process killed before the job is submitted
        # leaves the token: recover_orphans frees it, then forgets the never-deployed VM.
        token = _new_token() if start else None
        vm = VirtualMachine(uuid=new_uuid(), name=name or "pending", display_name=display_name or name,
                            instance_name=f"pending-{new_uuid()}",
                            state=VMState.STARTING if start else VMState.STOPPED, account_id=owner.id,
                            user_id=caller.id, zone_id=zone.id, template_id=None if from_iso else template.id,
                            iso_id=template.id if from_iso else None, service_offering_id=offering.id,
                            hypervisor_type=type_name, cpu_number=size.cpu_number, cpu_speed=size.cpu_speed,
                            memory=size.memory, keypair_id=key.id if key else None, userdata=userdata,
                            state_updated=utcnow(), last_host_id=host_id, quota_counted=True,
                            userdata_id=userdata_obj.id if userdata_obj else None, userdata_details=userdata_details,
                            ha_enable=bool(offering.offer_ha), active_job_id=token)
        if group:
            from app.services import instance_groups
            vm.group_id = instance_groups.for_vm(owner.id, group).id
        db.session.add(vm)
        db.session.flush()
        if template.password_enabled and not from_iso:  # the router hands it to the guest at boot
            from app.services import vm_admin
            vm_admin.set_password(vm, vm_admin.new_password())
        vm.instance_name = f"i-{owner.id}-{vm.id}-{settings.get('instance.name')}"  # CloudStack's naming
        if name is None:
            vm.name = f"VM-{vm.uuid[:8]}"
            vm.display_name = display_name or vm.name
        root = Volume(uuid=new_uuid(), name=f"ROOT-{vm.id}", account_id=vm.account_id, zone_id=zone.id,
                      vm_id=vm.id, template_id=None if from_iso else template.id,
                      volume_type=VolumeType.ROOT, device_id=0, size=root_size, state=VolumeState.ALLOCATED)
        quotas.count_new_volume(root)  # reserve_vm took its volume and GiB
        db.session.add(root)
        secgroups.add_vm(vm, groups)  # security_group_vm_map, with the VM
        if ext_values:  # CloudStack's "External:" VM details, sent to the VM's extension
            extension_details.replace("UserVm", vm.id, ext_values)
        affinity.add_vm(vm, ag)  # affinity_group_vm_map, with the VM (the start's planner reads it)
        events.record("VM.CREATE", f"VM {vm.name} created ({offering.name}, {template.name})", user=caller,
                      account_id=owner.id, resource_type="VirtualMachine", resource_id=vm.uuid)  # who, whose
        db.session.commit()
    except Exception:
        db.session.rollback()  # the counts taken go with the rows
        raise
    try:
        # vm and each net as loaded (the networks' ranges: a concurrent change of one races this
        # deploy as it did when they were re-read here); the address is claimed by its INSERT.
        for i, net in enumerate(nets):
            vm_nics.create_nic(vm, net, device_id=i, ip=wanted_ips.get(net.id))
    except ServiceError:
        _forget(vm)  # begins with a rollback: everything it reads is read again
        raise
    if groups:  # a new member: the rules naming its groups now include its address
        try:
            with jobs.expiring():  # the hosts' rules: another service's reads, written for expiry
                secgroups.members_changed([g.id for g in groups])
        except ServiceError as e:
            events.record("SG.APPLY.FAILED", f"VM {vm.name} joined its security groups, but a host refused the "
                          f"new rules: {e.message}", level="WARN", user=caller, resource_type="VirtualMachine",
                          resource_id=vm.uuid, commit=True)
    try:
        if not start:
            return vm, jobs.submit("deployVirtualMachine", caller, "vm.created", {"vm": vm.uuid},
                                   instance_type="VirtualMachine", instance_id=vm.uuid)
        # The lock (active_job_id) is set by Core UPDATEs: vm does not show it, and nothing here
        # reads it; the caller gets the VM expired (not_expiring's exit) or reads only the job's ids.
        job = _submit(caller, vm, "deploy", "deployVirtualMachine", {"host": host_id}, token=token)
    except Exception:  # the job could not even be submitted: nothing of the deploy stays
        db.session.rollback()  # (expires everything: what follows reads afresh)
        # A job row committed but never queued (the queue refused it) is failed here, unless
        # a worker took it meanwhile: then the job owns the VM and gives back on failure.
        mine = (AsyncJob.instance_type == "VirtualMachine", AsyncJob.instance_id == vm.uuid)
        db.session.execute(update(AsyncJob).where(*mine, AsyncJob.status == JobStatus.PENDING,
                                                  AsyncJob.started.is_(None)).values(
            status=JobStatus.FAILED, result_code=530, completed=utcnow(),
            result=json.dumps({"errorcode": 530, "errortext": "Job failed: it could not be queued"}))
            .execution_options(synchronize_session=False))
        db.session.commit()
        if db.session.scalar(select(AsyncJob.id).where(*mine, AsyncJob.started.is_not(None))) is None:
            _forget(vm)
        raise
    return vm, job


# Lock tokens seen held by no job: {(vm id, token): first seen}. A token still there
# job.heartbeat.timeout seconds later belonged to a request that died (per process).
_tokens_seen: dict[tuple[int, int], object] = {}


def recover_orphans(now=None) -> int:
    """What a killed process left half done to VMs, put right (start-up and every sweep):
    - a lock naming a job that is no longer pending (killed between the job's end and the
      unlock, or between the reaper's verdict and its clean-up): freed, the VM asked again;
    - a lock token no job took (the request died between lock and submit), seen twice
      job.heartbeat.timeout apart: freed;
    - a VM in Starting with no job that ever ran its deploy, older than job.heartbeat.timeout
      (the request died before submitting it): forgotten like a deploy that could not be
      submitted: Error, IPs, root volume and quota back.
    Returns the VMs changed."""
    now = now or utcnow()
    grace = timedelta(seconds=settings.get("job.heartbeat.timeout"))
    fixed = 0
    ended = list(db.session.execute(select(VirtualMachine.id, VirtualMachine.active_job_id).join(
        AsyncJob, AsyncJob.id == VirtualMachine.active_job_id).where(
        VirtualMachine.removed.is_(None), AsyncJob.status != JobStatus.PENDING)))
    tokens = list(db.session.execute(select(VirtualMachine.id, VirtualMachine.active_job_id).where(
        VirtualMachine.removed.is_(None), VirtualMachine.active_job_id < 0)))
    for key in set(_tokens_seen) - set(map(tuple, tokens)):
        _tokens_seen.pop(key)  # taken by a job or unlocked meanwhile
    stale = []
    for vm_id, token in tokens:
        first = _tokens_seen.setdefault((vm_id, token), now)
        if now - first >= grace:
            stale.append((vm_id, token))
    from app.monitor import vms as monitor_vms
    for vm_id, holder in ended + stale:
        done = db.session.execute(update(VirtualMachine).where(
            VirtualMachine.id == vm_id, VirtualMachine.active_job_id == holder).values(active_job_id=None)
            .execution_options(synchronize_session=False))
        db.session.commit()
        _tokens_seen.pop((vm_id, holder), None)
        if done.rowcount:
            fixed += 1
            vm = db.session.get(VirtualMachine, vm_id)
            events.record("VM.LOCK.FREED", f"VM {vm.name} was left busy by a process that stopped; freed",
                          level="WARN", resource_type="VirtualMachine", resource_id=vm.uuid,
                          account_id=vm.account_id, commit=True)
            if vm.state in (VMState.STARTING, VMState.STOPPING, VMState.MIGRATING) and vm.host_id:
                monitor_vms.reconcile_vm(vm)
    ran = select(AsyncJob.id).where(AsyncJob.instance_type == "VirtualMachine",
                                    AsyncJob.instance_id == VirtualMachine.uuid).exists()
    for vm in list(db.session.scalars(select(VirtualMachine).where(
            VirtualMachine.removed.is_(None), VirtualMachine.state == VMState.STARTING,
            VirtualMachine.active_job_id.is_(None), VirtualMachine.host_id.is_(None),
            VirtualMachine.state_updated <= now - grace, ~ran))):
        _forget_failed_deploy(vm, "its deploy was never submitted (the process stopped)")
        fixed += 1
    db.session.commit()
    return fixed


def _forget(vm: VirtualMachine) -> None:
    """Undo a deploy that could not even be submitted: rows gone, quota and IPs back."""
    db.session.rollback()
    ipam.release_nics(vm)
    secgroups.forget_vm(vm)
    quotas.release(vm)
    vm.removed, vm.state, vm.active_job_id = utcnow(), VMState.ERROR, None
    for v in vm.volumes:
        v.removed, v.state = utcnow(), VolumeState.EXPUNGED
    db.session.commit()


def _forget_failed_deploy(vm: VirtualMachine, why: str) -> None:
    _forget(vm)
    events.record("VM.CREATE.FAILED", f"VM {vm.name}: {why}; what it reserved is given back", level="ERROR",
                  resource_type="VirtualMachine", resource_id=vm.uuid, account_id=vm.account_id, commit=True)


# --- Running a VM on a host -----------------------------------------------------------

def _need(vm: VirtualMachine) -> planner.Need:
    return planner.Need.of(vm.cpu_number, vm.cpu_speed, vm.memory)


def _driver(host: Host, vm: VirtualMachine | None = None):
    """The host's driver; an extension's (External, or Custom bound to one) with the VM's payload."""
    from app.services.extensions import calls as extension_calls
    if extension_calls.serves(host):
        return extension_calls.driver_for(host, [vm] if vm is not None else [], caller=events.actor())
    from app.services.hosts import connection_for
    return hv.driver_for(host.hypervisor_type, connection_for(host))


def _pool_for(vm: VirtualMachine, host: Host) -> StoragePool:
    """Where the root volume goes: the host's local pool, or a shared pool of its cluster or zone."""
    local = vm.service_offering.storage_type == "local"
    tags = vm.service_offering.storage_tags
    q = select(StoragePool).where(StoragePool.removed.is_(None), StoragePool.zone_id == host.zone_id,
                                  StoragePool.state == PoolState.UP,  # not Disabled nor in maintenance
                                  placement_tags.has_all(StoragePool.tags, tags))
    if local:
        q = q.where(StoragePool.host_id == host.id, StoragePool.scope == StorageScope.HOST)
    else:
        q = q.where(or_(StoragePool.scope == StorageScope.ZONE,
                        (StoragePool.scope == StorageScope.CLUSTER) & (StoragePool.cluster_id == host.cluster_id)))
    pool = db.session.scalars(q.order_by(StoragePool.allocated_bytes, StoragePool.id)).first()
    if pool is None:
        raise InsufficientCapacity(f"Host {host.name} has no {'local' if local else 'shared'} primary storage"
                                   + (f" with the storage tags {tags}" if tags else ""))
    return pool


def _console_listen(host: Host) -> str:
    """VNC listens on the host's management address (127.0.0.1 for a local host), never everywhere."""
    address = host.address or "127.0.0.1"
    return "127.0.0.1" if address in ("localhost", "") else address


def _spec(vm: VirtualMachine, host: Host, iso_path: str | None, config_drive: str | None,
          segments: dict, bridge: str) -> VMSpec:
    """segments: {nic id: (SegmentSpec or None, target dev)} from networks.prepare_nics;
    bridge: the zone's guest traffic label for the host's type."""
    disks = [DiskSpec(path=v.path, format=v.format, device_id=v.device_id or 0)
             for v in sorted(vm.volumes, key=lambda v: v.device_id or 0)
             if v.removed is None and v.path and v.state == VolumeState.READY]
    nics = [NicSpec(mac=n.mac_address, bridge=bridge,
                    vlan=n.network.vlan, ip=n.ip_address, segment=segments.get(n.id, (None, None))[0],
                    target_dev=segments.get(n.id, (None, None))[1])
            for n in vm.nics if n.removed is None]
    return VMSpec(name=vm.instance_name, uuid=vm.uuid, cpus=vm.cpu_number, cpu_mhz=vm.cpu_speed,
                  memory_mib=vm.memory, display_name=vm.display_name or vm.name, disks=disks, nics=nics,
                  iso_path=iso_path, boot_order=("cdrom", "hd") if vm.iso_id and not vm.template_id else ("hd", "cdrom"),
                  console=ConsoleSpec(listen=_console_listen(host)), config_drive_path=config_drive,
                  os_type=vm.template.os_type.description if vm.template and vm.template.os_type else "")


def _prepare_root(vm: VirtualMachine, host: Host, pool: StoragePool) -> None:
    root = next(v for v in vm.volumes if v.volume_type == VolumeType.ROOT and v.removed is None)
    if root.state == VolumeState.READY:
        return
    # The pool's allocation is held by the volume row (pool_id), committed with it, so a
    # process killed while the host makes the disk leaves it owned, not leaked; an earlier
    # attempt's hold on another pool is given back here.
    if root.pool_id is not None and root.pool_id != pool.id:
        volumes.release_on_pool(root.pool_id, root.size)
        root.pool_id = None
    if root.pool_id is None:
        volumes.reserve_on_pool(pool, root.size)
        root.pool_id = pool.id
    db.session.commit()
    try:
        if vm.template_id:
            info = template_cache.create_root_volume(vm.template, pool, host, root.uuid, root.size)
        else:  # from an ISO: a blank disk to install onto
            fmt = volumes._format_for(host.hypervisor_type)
            driver = _driver(host)
            try:
                info = driver.create_volume(VolumeSpec(name=root.uuid, pool=storage.spec_of(pool),
                                                       size_bytes=root.size, format=fmt))
            except DriverError as e:
                raise ResourceUnavailable(f"Root volume could not be made in {pool.name}: {e}") from None
            finally:
                driver.close()
    except ServiceError:
        db.session.rollback()
        volumes.release_on_pool(pool.id, root.size)
        root.pool_id = None
        db.session.commit()
        raise
    root.pool_id, root.path, root.format, root.state = pool.id, info.path, info.format, VolumeState.READY
    root.size = max(root.size, info.size_bytes)
    db.session.commit()
    if root.quota_counted and quotas.gib(root.size) > root.counted_gib:
        # The template's disk is bigger than the deploy counted: the rest counts too (532 past the
        # limit: the start fails and gives everything back, this volume included).
        quotas.recount_volume(root, root.counted_gib, quotas.gib(root.size))


def _iso_path(vm: VirtualMachine, host: Host, pool: StoragePool) -> str | None:
    if not vm.iso_id:
        return None
    return template_cache.ensure_on_pool(vm.iso, pool, host).install_path


def _run_on(vm: VirtualMachine, host: Host) -> None:
    """Volumes, ISO, config drive, then start the domain; records what the hypervisor reports."""
    from app.services.extensions import calls as extension_calls
    if extension_calls.serves(host):  # the orchestrator keeps disks and networks: no pools, no segments
        from app.services.extensions import vms as extension_vms
        with jobs.expiring():  # written for expiry on commit (see jobs.handler)
            extension_vms.run_on(vm, host, events.actor())
        _started_event(vm, host)
        db.session.commit()
        return
    pool = _pool_for(vm, host)
    # Read here, in the transaction that _prepare_root commits, not in one of its own later.
    bridge = networks.traffic_label(vm.zone_id, host.hypervisor_type) if vm.nics else ""
    driver = _driver(host)
    try:
        driver.prepare_storage_pool(storage.spec_of(pool))  # idempotent; hosts added after the pool need it
    except DriverError as e:
        driver.close()
        raise ResourceUnavailable(f"Primary storage {pool.name} is not usable on {host.name}: {e}") from None
    driver.close()
    _prepare_root(vm, host, pool)
    iso = _iso_path(vm, host, pool)
    nets = [n.network for n in vm.nics if n.removed is None]  # the VM's (locked: no NIC comes or goes)
    # Networks without an offering (the zone's legacy network) give no address without DHCP.
    offered = any(networks.managed(n) for n in nets)
    cfg = config_drive.ensure(vm, host, pool, offered=offered)
    if offered:
        # The NICs' networks implemented (lazily, near this host), their segments named; the
        # routers learn the VM's leases and metadata before the guest boots and asks for them.
        # Written for expiry on commit (Core updates, commits of their own): run as such.
        with jobs.expiring():
            segments = networks.prepare_nics(vm, host)
            db.session.refresh(vm)
            networks.apply_routers(vm)
    else:  # nothing to implement, no router: prepare_nics only names the devices (no read, no commit)
        segments = networks.prepare_nics(vm, host)
    spec = _spec(vm, host, iso, cfg, segments, bridge)
    db.session.commit()  # nothing held while the host works (mostly nothing left to commit)
    driver = _driver(host)
    try:
        info = driver.start_vm(spec)
    except DriverError as e:
        raise ResourceUnavailable(f"VM {vm.name} could not start on {host.name}: {e}") from None
    finally:
        driver.close()
    vm.state, vm.host_id, vm.last_host_id, vm.state_updated = VMState.RUNNING, host.id, host.id, utcnow()
    vm.hypervisor_vm_id = info.uuid or vm.hypervisor_vm_id
    if info.console is not None:
        vm.console_host, vm.console_port = info.console.host, info.console.port
    _started_event(vm, host)  # in the Running state's own transaction
    db.session.commit()
    if any(n.security_groups for n in nets):  # a network's kind never changes
        secgroups.apply_for_vm(vm, host)
    networks.joined_host(vm, host, segments)


def _start(job: AsyncJob, vm: VirtualMachine, *, preferred_host_id: int | None, first: bool,
           cluster_id: int | None = None) -> dict:
    need = _need(vm)
    # No progress row yet: finding a host takes milliseconds, the claim just heart-beat; the
    # 40 % step (before the host works) is the one a page can see, and the reaper check. It is
    # written with the planner's hold, in its transaction: a job reaped meanwhile holds nothing.
    if vm.state != VMState.STARTING:  # a deploy's VM is Starting since its API call
        vm.state, vm.state_updated = VMState.STARTING, utcnow()
        db.session.commit()
    host = None
    try:
        if vm.capacity_reserved and vm.host_id:  # a stale hold (should not happen): given back first
            planner.unhold(vm.id, vm.host_id, need)
            db.session.commit()
        # Held by the VM row, committed with it: a worker killed now leaves nothing uncounted.
        offering = vm.service_offering
        host = planner.plan_and_reserve(vm.zone, vm.hypervisor_type, need, account_id=vm.account_id,
                                        storage_type=offering.storage_type, host_tags=offering.host_tags,
                                        storage_tags=offering.storage_tags,
                                        preferred_host_id=preferred_host_id, vm_id=vm.id, cluster_id=cluster_id,
                                        on_hold=lambda h: jobs.progress_with(job, 40, f"Starting on {h.name}"))
        _held(vm, host)
        _run_on(vm, host)
    except jobs.JobLost:
        # Reaped while it looked for a host (its heartbeat came too late): the reaper's clean-up
        # ran before this hold existed, so the hold goes back here (once, if still this job's).
        if host is not None:
            _hold_given_back(vm.id, host.id, need)
        raise
    except Exception as e:  # noqa: BLE001 - whatever failed, the VM ends in a true state
        _start_failed(vm.id, host.id if host else None, need, first, e)
        raise
    db.session.commit()  # what the network steps after the start left (usually nothing)
    return {"virtualmachine": _result(vm)}


def _started_event(vm: VirtualMachine, host: Host) -> None:
    events.record("VM.START", f"VM {vm.name} started on {host.name}", user=events.actor(), account_id=vm.account_id,
                  resource_type="VirtualMachine", resource_id=vm.uuid)


def _held(vm: VirtualMachine, host: Host) -> None:
    """The planner's hold (a Core UPDATE of the VM row: host, capacity_reserved) in the VM in
    hand. An expiring session reads the row again instead."""
    if db.session().expire_on_commit:
        db.session.refresh(vm)
        return
    set_committed_value(vm, "host_id", host.id)
    set_committed_value(vm, "capacity_reserved", True)
    set_committed_value(vm, "host", host)


def _hold_given_back(vm_id: int, host_id: int, need: planner.Need) -> None:
    """Undo a hold that no start will use (its job was lost before the host worked)."""
    db.session.rollback()
    if planner.unhold(vm_id, host_id, need):
        db.session.execute(update(VirtualMachine).where(VirtualMachine.id == vm_id, VirtualMachine.host_id == host_id,
                                                        VirtualMachine.state != VMState.RUNNING)
                           .values(host_id=None).execution_options(synchronize_session=False))
    db.session.commit()


def _start_failed(vm_id: int, host_id: int | None, need: planner.Need, first: bool, error: Exception) -> None:
    """Give back what the start took: host capacity; for a first deploy also the root
    volume, IPs and quota (the VM is then Error); otherwise the VM is Stopped again."""
    db.session.rollback()
    if host_id is not None:
        planner.unhold(vm_id, host_id, need)
    db.session.commit()
    vm = db.session.get(VirtualMachine, vm_id)
    nets = {n.network for n in vm.nics if n.removed is None}
    if first:
        _drop_root_volume(vm)
        ipam.release_nics(vm)
        secgroups.forget_vm(vm)
        affinity.forget_vm(vm.id)  # an Error VM leaves its groups, as in CloudStack
        quotas.release(vm)
    vm.capacity_reserved, vm.host_id, vm.state_updated = False, None, utcnow()
    vm.state = VMState.ERROR if first else VMState.STOPPED
    reason = error.message if isinstance(error, ServiceError) else f"internal error: {error}"
    events.record("VM.START.FAILED", f"VM {vm.name}: {reason}", level="ERROR", resource_type="VirtualMachine",
                  resource_id=vm.uuid, user=events.actor(), account_id=vm.account_id)
    db.session.commit()
    vxlan.sync_all(nets)  # the host it was placed on leaves the VXLAN peers it was given


def _result(vm: VirtualMachine):
    """The VM in the job's answer (serialised by the API layer when the job ends)."""
    return jobs.ObjectResult("virtualmachine", vm)


def _drop_root_volume(vm: VirtualMachine) -> None:
    for v in vm.volumes:
        if v.volume_type == VolumeType.ROOT and v.removed is None:
            _delete_volume_file(v)
            v.removed, v.state = utcnow(), VolumeState.EXPUNGED


def _delete_volume_file(v: Volume) -> None:
    if v.pool_id is None:
        return
    db.session.commit()  # no database lock held while the host works
    pool = v.pool
    host = pool.host or next(iter(storage._hosts_in_scope(pool)), None)
    if host is not None:
        driver = _driver(host)
        try:
            driver.delete_volume(storage.spec_of(pool), v.path.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
                                 if v.path else v.uuid)
        except DriverError:
            pass  # reported by the pool's own checks; the row goes regardless
        finally:
            driver.close()
    volumes.release_on_pool(pool.id, v.size)


@jobs.handler("vm.created")
def _run_created(job, params):
    """deployVirtualMachine with startvm=false: the VM, Stopped, as the job's result."""
    vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.uuid == params["vm"]))
    return _deployed(vm, {"virtualmachine": _result(vm)})


def _deployed(vm: VirtualMachine, out: dict) -> dict:
    """A deploy's answer: with the VM's password for a password-enabled template (CloudStack's
    deploy answers it, once)."""
    if vm.password_secret:
        from app.services import vm_admin
        return {"virtualmachine": jobs.ObjectResult("virtualmachinepassword", (vm, vm_admin.password_of(vm)))}
    return out


@_vm_job("deploy", expire_on_commit=False)
def _run_deploy(job, vm, params):
    return _deployed(vm, _start(job, vm, preferred_host_id=params.get("host"), first=True))


def start(caller, uuid: str, host_uuid: str | None = None) -> AsyncJob:
    from app.services import storage_maintenance
    vm = get_vm(caller, uuid)
    host_id = _chosen_host(caller, host_uuid)
    storage_maintenance.check_pools_usable(vm)
    return _submit(caller, vm, "start", "startVirtualMachine", {"host": host_id})


@_vm_job("start", expire_on_commit=False)
def _run_start(job, vm, params):
    # "cluster": an HA restart stays in the dead host's cluster (app/services/ha/work.py).
    return _start(job, vm, preferred_host_id=params.get("host") or vm.last_host_id, first=False,
                  cluster_id=params.get("cluster"))


# --- Stop, reboot ------------------------------------------------------------------

def stop(caller, uuid: str, forced: bool = False) -> AsyncJob:
    return _submit(caller, get_vm(caller, uuid), "stop", "stopVirtualMachine", {"forced": bool(forced)})


def _stopped_on_host(vm: VirtualMachine) -> None:
    """Record a VM as Stopped and give its host capacity back (once)."""
    if vm.host_id:
        planner.unhold(vm.id, vm.host_id, _need(vm))
    vm.capacity_reserved = False
    vm.last_host_id = vm.host_id or vm.last_host_id
    vm.host_id, vm.state, vm.state_updated = None, VMState.STOPPED, utcnow()
    vm.console_port = None


@_vm_job("stop", expire_on_commit=False)
def _run_stop(job, vm, params):
    host = vm.host
    timeout = settings.get("vm.stop.timeout")
    before = vm.state
    vm.state, vm.state_updated = VMState.STOPPING, utcnow()
    db.session.commit()
    if host is not None:
        driver = _driver(host, vm)
        try:
            jobs.progress(job, 20, f"Asking the guest to shut down (up to {duration(timeout)})")
            stopped = driver.stop_vm(vm.instance_name, timeout=timeout)
            if not stopped and not params.get("forced"):
                raise ResourceUnavailable(f"VM {vm.name} did not shut down within {duration(timeout)}; "
                                          "stop it with forced=true to power it off")
            if not stopped:
                jobs.progress(job, 70, "Powering off")
                driver.force_stop_vm(vm.instance_name)
        except Exception as e:  # noqa: BLE001 - the VM goes back to the state it had
            db.session.rollback()
            vm = db.session.get(VirtualMachine, vm.id)
            vm.state = before
            db.session.commit()
            if isinstance(e, DriverError):
                raise ResourceUnavailable(f"VM {vm.name} could not be stopped: {e}") from None
            raise
        finally:
            driver.close()
        networks.left_host(vm, host)
    _stopped_on_host(vm)
    events.record("VM.STOP", f"VM {vm.name} stopped", user=events.actor(), account_id=vm.account_id, resource_type="VirtualMachine",
                  resource_id=vm.uuid)
    db.session.commit()
    return {"virtualmachine": _result(vm)}


def reboot(caller, uuid: str) -> AsyncJob:
    return _submit(caller, get_vm(caller, uuid), "reboot", "rebootVirtualMachine")


# Reviewed for no expiry on commit: nothing is read after its one commit but the answer (re-read).
@_vm_job("reboot", expire_on_commit=False)
def _run_reboot(job, vm, params):
    driver = _driver(vm.host, vm)
    try:
        driver.reboot_vm(vm.instance_name)
    except DriverError as e:
        raise ResourceUnavailable(f"VM {vm.name} could not be rebooted: {e}") from None
    finally:
        driver.close()
    events.record("VM.REBOOT", f"VM {vm.name} rebooted", user=events.actor(), account_id=vm.account_id, resource_type="VirtualMachine",
                  resource_id=vm.uuid)
    db.session.commit()
    return {"virtualmachine": _result(vm)}


# --- Destroy, recover, expunge -------------------------------------------------------

def destroy(caller, uuid: str, expunge: bool = False) -> AsyncJob:
    if expunge and not caller.is_admin and not settings.get("allow.user.expunge.recover.vm", account=caller.account_id):
        raise PermissionDenied("Only administrators may expunge at once")
    # The API also takes a Destroyed VM, as CloudStack does: answered with the VM, and expunged
    # when expunge=true (Ansible's `state: expunged` after `absent`). The pages offer
    # Destroy only in ACTIONS_BY_STATE's states.
    return _submit(caller, get_vm(caller, uuid), "destroy", "destroyVirtualMachine", {"expunge": bool(expunge)},
                   allowed=(*ACTIONS_BY_STATE["destroy"], VMState.DESTROYED))


define(Definition("allow.user.expunge.recover.vm", "true", "Users may expunge and recover their own VMs.",
                  category="VM", type="boolean", scopes=("account",)))


def stop_now(vm: VirtualMachine, why: str) -> bool:
    """A Running VM powered off inside the caller's own job (disableAccount stops its account's
    VMs within its job, as CloudStack's doDisableAccount does: when the job is done, they are
    Stopped). A VM busy with another action, or no longer Running, is left alone (False)."""
    try:
        token = _lock(vm, "stop")
    except ServiceError:
        db.session.rollback()
        return False
    try:
        vm = db.session.get(VirtualMachine, vm.id)
        _power_off(vm)
        _stopped_on_host(vm)
        events.record("VM.STOP", f"VM {vm.name} stopped ({why})", user=events.actor(), account_id=vm.account_id,
                      resource_type="VirtualMachine", resource_id=vm.uuid)
        db.session.commit()
        return True
    finally:
        db.session.rollback()
        _unlock(vm.id, token)


def _power_off(vm: VirtualMachine) -> None:
    host = vm.host
    if host is None:
        return
    driver = _driver(host, vm)
    try:
        driver.force_stop_vm(vm.instance_name)
    except DriverError as e:
        if "No VM" not in str(e) and "not found" not in str(e).lower():
            raise ResourceUnavailable(f"VM {vm.name} could not be powered off: {e}") from None
    finally:
        driver.close()
    networks.left_host(vm, host)


@_vm_job("destroy")
def _run_destroy(job, vm, params):
    if vm.state != VMState.DESTROYED:
        _power_off(vm)
        _stopped_on_host(vm)
        vm.state = VMState.DESTROYED
        quotas.release_instance(vm, commit=False)  # its volumes count until it is expunged
        events.record("VM.DESTROY", f"VM {vm.name} destroyed" + ("" if params.get("expunge") else
                      f" (recoverable for {duration(settings.get('expunge.delay'))})"), user=events.actor(), account_id=vm.account_id,
                      resource_type="VirtualMachine", resource_id=vm.uuid)
        db.session.commit()
    if params.get("expunge"):
        _expunge(vm)
    return {"virtualmachine": _result(vm)}


def recover(caller, uuid: str) -> VirtualMachine:
    """Destroyed → Stopped (synchronous in CloudStack)."""
    if not caller.is_admin and not settings.get("allow.user.expunge.recover.vm", account=caller.account_id):
        raise PermissionDenied("Only administrators may recover VMs")
    vm = get_vm(caller, uuid)
    token = _lock(vm, "recover")
    try:
        vm = db.session.get(VirtualMachine, vm.id)
        quotas.retake_instance(vm)  # 532 past a limit: it stays Destroyed
        vm = db.session.get(VirtualMachine, vm.id)
        vm.state, vm.state_updated = VMState.STOPPED, utcnow()
        events.record("VM.RECOVER", f"VM {vm.name} recovered", user=caller, account_id=vm.account_id,
                      resource_type="VirtualMachine", resource_id=vm.uuid)
        db.session.commit()
    finally:
        _unlock(vm.id, token)
    return vm


def expunge(caller, uuid: str) -> AsyncJob:
    if not caller.is_admin and not settings.get("allow.user.expunge.recover.vm", account=caller.account_id):
        raise PermissionDenied("Only administrators may expunge VMs")
    return _submit(caller, get_vm(caller, uuid), "expunge", "expungeVirtualMachine")


def expunge_any(vm: VirtualMachine) -> None:
    """deleteAccount's VM step: powered off and expunged whatever its state, at once (no
    expunge delay). Idempotent: a removed VM is left alone; a busy one is ResourceInUse."""
    if vm.removed is not None:
        return
    token = _lock(vm, "expunge", allowed=tuple(VMState))
    try:
        vm = db.session.get(VirtualMachine, vm.id)
        if vm.state not in (VMState.DESTROYED, VMState.EXPUNGING):
            _power_off(vm)
            _stopped_on_host(vm)
            vm.state = VMState.DESTROYED
            db.session.commit()
        _expunge(vm)
    finally:
        db.session.rollback()
        _unlock(vm.id, token)


@_vm_job("expunge")
def _run_expunge(job, vm, params):
    _expunge(vm)
    return {"success": True}


def _expunge(vm: VirtualMachine) -> None:
    """The domain's definition, the root volume (data volumes are detached and kept),
    the config drive, IPs and quota; the row stays, removed, for the audit trail."""
    vm.state = VMState.EXPUNGING
    db.session.commit()
    from app.services.snapshots import vm_snapshots
    vm_snapshots.remove_all(vm)  # CloudStack deletes a VM's snapshots when it is expunged
    host = db.session.get(Host, vm.last_host_id) if vm.last_host_id else None
    if host is not None:
        driver = _driver(host, vm)
        try:
            driver.destroy_vm(vm.instance_name)
        except DriverError as e:
            vm.state = VMState.DESTROYED
            db.session.commit()
            raise ResourceUnavailable(f"VM {vm.name} could not be removed from {host.name}: {e}") from None
        finally:
            driver.close()
    config_drive.remove(vm)
    for v in vm.volumes:
        if v.removed is not None:
            continue
        if v.volume_type == VolumeType.ROOT:
            _delete_volume_file(v)
            v.removed, v.state = utcnow(), VolumeState.EXPUNGED
        else:
            v.vm_id, v.device_id = None, None
    nets = [n.network for n in vm.nics if n.removed is None]
    from app.services.network import public_ips
    public_ips.release_for_vm(vm)  # its port forwarding and static NAT go (routers re-applied)
    ipam.release_nics(vm)
    secgroups.forget_vm(vm)
    affinity.forget_vm(vm.id)
    quotas.release(vm)
    consoles.forget_vm(vm)
    resource_details.forget("UserVm", [vm.id])  # its details go with it (CloudStack: user_vm_details)
    from app.services.extensions import vms as extension_vms
    extension_vms.forget(vm)
    vm.removed, vm.state_updated = utcnow(), utcnow()
    events.record("VM.EXPUNGE", f"VM {vm.name} expunged", user=events.actor(), account_id=vm.account_id, resource_type="VirtualMachine",
                  resource_id=vm.uuid)
    db.session.commit()
    for net in {n for n in nets if networks.managed(n)}:  # the routers drop its leases and metadata
        try:
            routers.apply(net)
        except ServiceError as e:  # the monitor re-applies a router that differs
            log.warning("router of %s after expunging %s: %s", net.name, vm.name, e.message)


def sweep_expunge(now=None) -> int:
    """Expunge VMs destroyed longer than expunge.delay ago (the huey periodic task)."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.get("expunge.delay"))
    due = list(db.session.scalars(select(VirtualMachine).where(
        VirtualMachine.state == VMState.DESTROYED, VirtualMachine.removed.is_(None),
        VirtualMachine.state_updated <= cutoff, VirtualMachine.active_job_id.is_(None))))
    done = 0
    for vm in due:
        try:
            token = _lock(vm, "expunge")
        except ServiceError:
            continue  # taken by someone else meanwhile
        try:
            _expunge(vm)
            done += 1
        except ServiceError:
            db.session.rollback()
        finally:
            _unlock(vm.id, token)
    return done


# --- Migrate, scale, ISO ----------------------------------------------------------------

def migration_targets(vm: VirtualMachine) -> list[Host]:
    """The hosts a live migration of `vm` may go to, by name (the VM page offers these; none:
    Migrate is disabled, and refused): the others of its cluster that are Up and Enabled; for
    a VM on local storage (which goes with its disks), those of its zone and type that have
    local storage that is Up."""
    if vm.host is None:
        return []
    from app.models import HostState, ResourceState
    from app.services import vm_migration
    q = select(Host).where(Host.id != vm.host_id, Host.removed.is_(None), Host.state == HostState.UP,
                           Host.resource_state == ResourceState.ENABLED)
    if vm_migration.uses_local_storage(vm):
        q = q.where(Host.zone_id == vm.zone_id, Host.hypervisor_type == vm.hypervisor_type,
                    select(StoragePool.id).where(StoragePool.host_id == Host.id, StoragePool.removed.is_(None),
                                                 StoragePool.scope == StorageScope.HOST,
                                                 StoragePool.state == PoolState.UP).exists())
    else:
        q = q.where(Host.cluster_id == vm.host.cluster_id)
    return list(db.session.scalars(q.order_by(Host.name)))


def migrate_from_page(caller, uuid: str, host_uuid: str | None = None) -> AsyncJob:
    """The VM page's Migrate: migrateVirtualMachine, or for a VM on local storage
    migrateVirtualMachineWithVolume (to the host chosen, else to one the planner picks)."""
    vm = _migratable(caller, uuid)
    from app.services import vm_migration
    if not vm_migration.uses_local_storage(vm):
        return migrate(caller, uuid, host_uuid)
    if host_uuid:
        return migrate_with_volume(caller, uuid, host_uuid)
    if not hv.resolve(vm.hypervisor_type).capabilities.storage_migration:
        raise Unsupported(f"{hv.display_name(vm.hypervisor_type)} VMs cannot be migrated with their storage")
    if not migration_targets(vm):
        raise ResourceUnavailable(f"VM {vm.name} cannot be migrated: no other host of its zone has local storage "
                                  "and is Up and Enabled", field="virtualmachineid")
    return _submit(caller, vm, "migrate", "migrateVirtualMachineWithVolume", {"dest": None})


def migrate(caller, uuid: str, host_uuid: str | None = None) -> AsyncJob:
    """migrateVirtualMachine: live, to a host of the VM's cluster (shared storage only)."""
    vm = _migratable(caller, uuid)
    from app.services import vm_migration
    if vm_migration.uses_local_storage(vm):
        # CloudStack's words; migrateVirtualMachineWithVolume moves such a VM with its disks.
        raise InvalidParameter("Unsupported operation, VM uses Local storage, cannot migrate", field="virtualmachineid")
    dest_id = None
    if host_uuid:
        dest = _migration_dest(vm, host_uuid)
        if vm.host is not None and dest.cluster_id != vm.host.cluster_id:
            raise InvalidParameter("Live migration goes to a host of the same cluster", field="hostid")
        dest_id = dest.id
    elif not migration_targets(vm):
        raise ResourceUnavailable(f"VM {vm.name} cannot be migrated: its cluster has no other host that is Up "
                                  "and Enabled", field="virtualmachineid")
    return _submit(caller, vm, "migrate", "migrateVirtualMachine", {"dest": dest_id})


def migrate_with_volume(caller, uuid: str, host_uuid: str | None = None,
                        volume_pools: dict[str, str] | None = None) -> AsyncJob:
    """migrateVirtualMachineWithVolume: live to `host_uuid` (any host of the zone of the VM's
    type), its volumes copied while it runs where the destination does not reach their pool,
    or to the pools `volume_pools` names ({volume uuid: pool uuid}, CloudStack's migrateto)."""
    if not host_uuid and not volume_pools:
        raise InvalidParameter("Either hostid or migrateto must be passed for migrating the VM", field="hostid")
    vm = _migratable(caller, uuid)
    if not host_uuid:
        raise InvalidParameter(f"VM {vm.uuid} is not in Stopped state to migrate, use hostid parameter to migrate "
                               "it to a new host", field="hostid")
    if not hv.resolve(vm.hypervisor_type).capabilities.storage_migration:
        raise Unsupported(f"{hv.display_name(vm.hypervisor_type)} VMs cannot be migrated with their storage")
    dest = _migration_dest(vm, host_uuid)
    if dest.zone_id != vm.zone_id or dest.hypervisor_type != vm.hypervisor_type:
        raise InvalidParameter(f"Host {dest.name} is not a {hv.display_name(vm.hypervisor_type)} host of the VM's "
                               "zone", field="hostid")
    from app.services import vm_migration
    moves = vm_migration.plan(vm, dest, volume_pools)  # checked now: a clear error, nothing submitted
    return _submit(caller, vm, "migrate", "migrateVirtualMachineWithVolume",
                   {"dest": dest.id, "volumes": {str(k): v for k, v in moves.items()}})


def _migratable(caller, uuid: str) -> VirtualMachine:
    if not caller.is_admin:
        raise PermissionDenied("Only administrators may migrate VMs")
    vm = get_vm(caller, uuid, "virtualmachineid")
    if not hv.resolve(vm.hypervisor_type).capabilities.live_migration:
        raise Unsupported(f"{hv.display_name(vm.hypervisor_type)} VMs cannot be live-migrated")
    if vm.state != VMState.RUNNING:
        raise InvalidParameter(f"VM {vm.name} is {vm.state}; only a Running VM can be migrated", field="id")
    from app.services.snapshots import vm_snapshots
    vm_snapshots.refuse_if_snapshots(vm, f"VM {vm.name} has VM snapshots; it cannot be migrated. Please delete "
                                     "the VM snapshots first", field="virtualmachineid")
    return vm


def _migration_dest(vm: VirtualMachine, host_uuid: str) -> Host:
    from app.models import HostState, ResourceState
    dest = db.session.scalar(select(Host).where(Host.uuid == host_uuid, Host.removed.is_(None)))
    if dest is None:
        raise NotFound("Unable to find host with the specified id", field="hostid")
    if dest.id == vm.host_id:
        raise InvalidParameter(f"VM {vm.name} already runs on {dest.name}", field="hostid")
    if dest.state != HostState.UP or dest.resource_state != ResourceState.ENABLED:
        raise InvalidParameter(f"Host {dest.name} is {dest.state} and {dest.resource_state}; a VM migrates only to a "
                               "host that is Up and Enabled", field="hostid")
    why = affinity.conflict(vm.id, dest.id)
    if why is not None:
        raise InvalidParameter(f"VM {vm.name} cannot be migrated to {dest.name}: {why}", field="hostid")
    return dest


@_vm_job("migrate")
def _run_migrate(job, vm, params):
    volumes_to = {int(k): v for k, v in params["volumes"].items()} if params.get("volumes") is not None else None
    return {"virtualmachine": migrate_now(vm, params.get("dest"), job, volumes_to)}


def migrate_now(vm: VirtualMachine, dest_id: int | None, job: AsyncJob | None = None,
                volume_pools: dict[int, int] | None = None) -> dict:
    """Reserve on the destination, migrate live (with the volumes the destination does not
    reach, or those `volume_pools` names: {volume id: pool id}), release the source. Also
    used by host maintenance. When it fails, the VM runs on the source as before: its
    volumes' rows unchanged, what was made on the destination removed, capacity given back."""
    from app.services import vm_migration
    from app.services.hosts import connection_for
    source = vm.host
    need = _need(vm)
    from app.services.snapshots import vm_snapshots
    # The hypervisor keeps a VM's snapshots where it runs (libvirt refuses to migrate them).
    vm_snapshots.refuse_if_snapshots(vm, f"VM {vm.name} has VM snapshots; it cannot be migrated. Please delete "
                                     "the VM snapshots first", field="virtualmachineid")
    # Migrating before the destination is reserved: no VM row shows that reservation, and
    # capacity.check_hosts leaves every host alone while a VM is Migrating.
    vm.state, vm.state_updated = VMState.MIGRATING, utcnow()
    db.session.commit()
    local = vm_migration.uses_local_storage(vm)
    try:
        if dest_id is None:
            # A VM on local storage goes with its disks to a host with local storage of its own
            # (host maintenance); one on shared storage stays in its cluster.
            dest = planner.plan_and_reserve(vm.zone, vm.hypervisor_type, need, account_id=vm.account_id,
                                            storage_type=vm.service_offering.storage_type, avoid={source.id},
                                            cluster_id=None if local else source.cluster_id, placing_vm_id=vm.id,
                                            host_tags=vm.service_offering.host_tags)
        else:
            dest = db.session.get(Host, dest_id)
            if not planner._attempt(dest.id, need, placement=affinity.placement(vm.id)):
                why = affinity.conflict(vm.id, dest.id)
                raise InsufficientCapacity(f"VM {vm.name} cannot go to {dest.name}: {why}" if why else
                                           f"Host {dest.name} has not enough free CPU or memory for {vm.name}")
    except Exception:
        db.session.rollback()
        vm.state, vm.state_updated = VMState.RUNNING, utcnow()
        db.session.commit()
        raise

    def give_back(prepared=None) -> None:
        if prepared is not None:
            vm_migration.undo(prepared)
        db.session.rollback()
        planner.release(dest.id, need)
        vm.state, vm.migration_host_id, vm.state_updated = VMState.RUNNING, None, utcnow()
        db.session.commit()

    if job is not None:
        try:
            jobs.progress(job, 10, f"Migrating from {source.name} to {dest.name}")
        except jobs.JobLost:  # reaped while it planned: the reaper knew nothing of the destination's hold
            db.session.rollback()
            planner.release(dest.id, need)
            db.session.commit()
            raise
    try:
        moves = vm_migration.plan(vm, dest) if volume_pools is None else volume_pools
        if moves and not hv.resolve(vm.hypervisor_type).capabilities.storage_migration:
            raise Unsupported(f"{hv.display_name(vm.hypervisor_type)} VMs cannot be migrated with their storage")
        networks.ensure_segments(vm, dest)  # the NICs' bridges must exist on the destination
    except ServiceError:
        give_back()
        raise
    try:
        prepared = vm_migration.prepare(vm, source, dest, moves)
    except ServiceError:
        give_back()
        raise
    spec = MigrationSpec(live=True, console_listen=_console_listen(dest), disks=prepared.disks,
                         declared_shared=vm_migration.declared_shared(vm, moves))
    what = f"{'Copying the disks and memory' if moves else 'Copying the memory'} of {vm.name} from " \
           f"{source.name} to {dest.name}"
    db.session.commit()  # nothing held while the hypervisors work
    driver = _driver(source)
    try:
        driver.migrate_vm(vm.instance_name, connection_for(dest), spec=spec,
                          progress=(lambda p: _migration_progress(job, what, p)) if job is not None else None)
    except DriverError as e:
        give_back(prepared)
        events.record("VM.MIGRATE.FAILED", f"VM {vm.name} could not be migrated from {source.name} to {dest.name}: "
                      f"{e}; it runs on {source.name}", level="ERROR", user=events.actor(),
                      account_id=vm.account_id, resource_type="VirtualMachine", resource_id=vm.uuid, commit=True)
        raise ResourceUnavailable(f"VM {vm.name} could not be migrated to {dest.name}: {e}") from None
    except BaseException:  # the job was reaped meanwhile (the migration was cancelled), or worse
        give_back(prepared)
        raise
    finally:
        driver.close()
    planner.release(source.id, need)
    vm.host_id, vm.last_host_id, vm.state, vm.state_updated = dest.id, dest.id, VMState.RUNNING, utcnow()
    vm.migration_host_id = None
    db.session.commit()
    vm_migration.commit(vm, prepared)
    secgroups.apply_for_vm(vm, dest)
    networks.left_host(vm, source)
    d2 = _driver(dest)
    try:
        target = d2.console_target(vm.instance_name)
        vm.console_host, vm.console_port = target.host, target.port
    except DriverError:
        pass
    finally:
        d2.close()
    consoles.forget_vm(vm)  # console tokens name the old host
    moved = f" with {len(moves)} volume{'s' if len(moves) != 1 else ''}" if moves else ""
    events.record("VM.MIGRATE", f"VM {vm.name} migrated from {source.name} to {dest.name}{moved}",
                  user=events.actor(), account_id=vm.account_id, resource_type="VirtualMachine", resource_id=vm.uuid)
    db.session.commit()
    return _result(vm)


def _migration_progress(job: AsyncJob, what: str, p) -> None:
    """A migration's job stats on the job (the jobs page shows them): 20-95 % by data sent."""
    mib = 1 << 20
    if p.total > 0:
        done = min(1.0, p.processed / p.total) if p.remaining else 1.0
        percent = 20 + int(75 * done)
        message = f"{what}: {p.processed // mib} MiB of {p.total // mib} MiB sent, {p.remaining // mib} MiB remaining"
    else:
        percent, message = 20, what
    jobs.progress(job, percent, message)


def change_offering(caller, uuid: str, offering_uuid: str) -> VirtualMachine:
    """changeServiceForVirtualMachine / scaleVirtualMachine of a stopped VM (synchronous)."""
    vm = get_vm(caller, uuid)
    offering = _offering(offering_uuid)
    from app.services import offering_domains
    offering_domains.check_use(vm.account, offering, vm.zone)  # 531: an offering of another domain or zone
    if offering.is_customized:
        raise Unsupported(f"Service offering {offering.name} is customized: changing to it is not supported yet")
    if not hv.resolve(vm.hypervisor_type).capabilities.scale_stopped_vm:
        raise Unsupported(f"{hv.display_name(vm.hypervisor_type)} VMs cannot change their offering")
    from app.services.snapshots import vm_snapshots
    vm_snapshots.refuse_if_snapshots(vm, "Unable to change service offering for VM, please remove VM snapshots "
                                     "before changing service offering of VM")
    token = _lock(vm, "scale")
    try:
        vm = db.session.get(VirtualMachine, vm.id)
        quotas.rescale(caller, vm, offering)  # 532 when a limit would pass; commits with the sizes below
        vm.service_offering_id, vm.cpu_number, vm.cpu_speed, vm.memory = (
            offering.id, offering.cpu_number, offering.cpu_speed, offering.memory)
        events.record("VM.UPGRADE", f"VM {vm.name} now has offering {offering.name}", user=caller,
                      resource_type="VirtualMachine", resource_id=vm.uuid)
        db.session.commit()
    except Exception:
        db.session.rollback()  # neither the counts nor the sizes (the unlock below commits)
        raise
    finally:
        _unlock(vm.id, token)
    db.session.refresh(vm)
    return vm


def scale_job(caller, uuid: str, offering_uuid: str) -> AsyncJob:
    """scaleVirtualMachine: the same change as changeServiceForVirtualMachine, as a job."""
    vm = get_vm(caller, uuid)
    from app.services import offering_domains
    offering_domains.check_use(vm.account, _offering(offering_uuid), vm.zone)
    return jobs.submit("scaleVirtualMachine", caller, "vm.scale_offering", {"vm": vm.uuid, "offering": offering_uuid},
                       instance_type="VirtualMachine", instance_id=vm.uuid)


@jobs.handler("vm.scale_offering")
def _run_scale(job, params):
    from app.models import User
    vm = change_offering(db.session.get(User, job.user_id), params["vm"], params["offering"])
    return {"virtualmachine": _result(vm)}


def attach_iso(caller, uuid: str, iso_uuid: str) -> AsyncJob:
    vm = get_vm(caller, uuid, "virtualmachineid")
    iso = db.session.scalar(select(Template).where(Template.uuid == iso_uuid, Template.is_iso.is_(True),
                                                   Template.removed.is_(None)))
    if iso is None or not templates.usable(caller, iso):
        raise NotFound("Unable to find ISO with the specified id", field="id")
    if not hv.resolve(vm.hypervisor_type).capabilities.iso:
        raise Unsupported(f"{hv.display_name(vm.hypervisor_type)} VMs take no ISOs")
    if vm.iso_id:
        raise InvalidParameter(f"VM {vm.name} already has an ISO attached; detach it first", field="id")
    return _submit(caller, vm, "attachiso", "attachIso", {"iso": iso.id})


@_vm_job("attachiso")
def _run_attach_iso(job, vm, params):
    iso = db.session.get(Template, params["iso"])
    if vm.state == VMState.RUNNING:
        pool = _pool_for(vm, vm.host)
        path = template_cache.ensure_on_pool(iso, pool, vm.host).install_path
        driver = _driver(vm.host)
        try:
            driver.attach_iso(vm.instance_name, path)
        except DriverError as e:
            raise ResourceUnavailable(f"ISO {iso.name} could not be attached: {e}") from None
        finally:
            driver.close()
    vm.iso_id = iso.id
    events.record("ISO.ATTACH", f"ISO {iso.name} attached to {vm.name}", user=events.actor(), account_id=vm.account_id,
                  resource_type="VirtualMachine", resource_id=vm.uuid)
    db.session.commit()
    return {"virtualmachine": _result(vm)}


def detach_iso(caller, uuid: str) -> AsyncJob:
    vm = get_vm(caller, uuid, "virtualmachineid")
    if not hv.resolve(vm.hypervisor_type).capabilities.iso:
        raise Unsupported(f"{hv.display_name(vm.hypervisor_type)} VMs take no ISOs")
    if not vm.iso_id:
        raise InvalidParameter(f"VM {vm.name} has no ISO attached", field="virtualmachineid")
    return _submit(caller, vm, "detachiso", "detachIso")


@_vm_job("detachiso")
def _run_detach_iso(job, vm, params):
    if vm.state == VMState.RUNNING:
        driver = _driver(vm.host)
        try:
            driver.detach_iso(vm.instance_name)
        except DriverError as e:
            raise ResourceUnavailable(f"The ISO could not be detached: {e}") from None
        finally:
            driver.close()
    vm.iso_id = None
    db.session.commit()
    return {"virtualmachine": _result(vm)}


# --- Host maintenance --------------------------------------------------------------

@jobs.handler("host.maintenance")
def _run_maintenance(job: AsyncJob, params: dict) -> dict:
    """Move every VM off the host (live migration where the type can, else a stop)."""
    from app.models import ResourceState
    host = db.session.scalar(select(Host).where(Host.uuid == params["host"]))
    on_host = list(db.session.scalars(select(VirtualMachine).where(
        VirtualMachine.host_id == host.id, VirtualMachine.removed.is_(None))))
    can_migrate = hv.resolve(host.hypervisor_type).capabilities.live_migration
    stuck = []
    for i, vm in enumerate(on_host, 1):
        jobs.progress(job, 100 * (i - 1) // max(len(on_host), 1),
                      f"{'Migrating' if can_migrate else 'Stopping'} {vm.name} ({i} of {len(on_host)})")
        try:
            token = _lock(vm, "migrate" if can_migrate and vm.state == VMState.RUNNING else "stop")
        except ServiceError as e:
            stuck.append(f"{vm.name}: {e.message}")
            continue
        try:
            if can_migrate and vm.state == VMState.RUNNING:
                migrate_now(vm, None, job)
            else:
                _power_off(vm)
                _stopped_on_host(vm)
                events.record("VM.STOP", f"VM {vm.name} stopped for the maintenance of {host.name}",
                              user=events.actor(), resource_type="VirtualMachine", resource_id=vm.uuid, account_id=vm.account_id)
                db.session.commit()
        except ServiceError as e:
            db.session.rollback()
            stuck.append(f"{vm.name}: {e.message}")
        finally:
            _unlock(vm.id, token)
    host = db.session.get(Host, host.id)
    if host.resource_state != ResourceState.PREPARE_FOR_MAINTENANCE:
        return {"host": {"id": host.uuid, "resourcestate": host.resource_state}}  # cancelled meanwhile
    host.resource_state = ResourceState.ERROR_IN_MAINTENANCE if stuck else ResourceState.MAINTENANCE
    events.record("MAINT.DONE" if not stuck else "MAINT.ERROR",
                  f"Host {host.name} is in maintenance" if not stuck else
                  f"Host {host.name} could not be emptied: " + "; ".join(stuck),
                  level="INFO" if not stuck else "ERROR", user=events.actor(), resource_type="Host", resource_id=host.uuid)
    db.session.commit()
    if stuck:
        raise ResourceUnavailable(f"Host {host.name} could not be emptied: " + "; ".join(stuck))
    return {"host": jobs.ObjectResult("host", host)}


# --- For the VM snapshot service (app/services/snapshots/vm_snapshots.py) -------------------
# Its actions hold the same per-VM lock as every action here, for their whole job.

def lock(vm: VirtualMachine, action: str, allowed: tuple[str, ...]) -> int:
    return _lock(vm, action, allowed)


def unlock(vm_id: int, *tokens: int) -> None:
    _unlock(vm_id, *tokens)


def hand_lock(vm_id: int, token: int, job_id: int) -> None:
    """The lock taken with `token` now names the job (unless the job already ended and unlocked)."""
    db.session.execute(update(VirtualMachine).where(VirtualMachine.id == vm_id,
                                                    VirtualMachine.active_job_id == token)
                       .values(active_job_id=job_id).execution_options(synchronize_session=False))
    db.session.commit()


def driver_for(host: Host):
    return _driver(host)


def start_now(job: AsyncJob, vm: VirtualMachine) -> None:
    """Start a stopped VM inside another action's job, on its last host when it can."""
    _start(job, vm, preferred_host_id=vm.last_host_id, first=False)


def power_off(vm: VirtualMachine) -> None:
    """Power a running VM off (no graceful shutdown) and record it Stopped."""
    _power_off(vm)
    _stopped_on_host(vm)
    events.record("VM.STOP", f"VM {vm.name} powered off", user=events.actor(), account_id=vm.account_id, resource_type="VirtualMachine",
                  resource_id=vm.uuid)
    db.session.commit()


def result_of(vm: VirtualMachine):
    return _result(vm)


def ask_host(vm: VirtualMachine) -> None:
    from app.monitor import vms as monitor_vms
    monitor_vms.reconcile_vm(vm)
