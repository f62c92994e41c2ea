"""Affinity groups (CloudStack's AffinityGroupService and its two host processors).

- "host anti-affinity": the group's VMs run on different hosts;
- "host affinity": the group's VMs run on one host (the first one placed decides).

A VM joins groups of its own account at deploy (affinitygroupids / affinitygroupnames) or,
Stopped, through updateVMAffinityGroup; the planner honours them wherever it places a VM
(deploy, start, migration, maintenance evacuation): `placement` narrows its candidates, and
`lock_groups` + `conflict` re-check under the groups' row locks in the reservation's own
transaction, so parallel placements into one group are serialised there.
As in CloudStack, a sibling counts where it runs (its host_id: Starting, Running, Stopping,
Migrating from, Unknown); Stopped VMs count nowhere. Deleting a group drops its memberships;
an expunged VM, or one whose first deploy failed (Error), leaves its groups.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.jobs import service as jobs
from app.models import AffinityGroup, AffinityGroupVM, AsyncJob, Host, VirtualMachine, VMState, new_uuid
from app.models.affinity import HOST_AFFINITY, HOST_ANTI_AFFINITY, TYPES
from app.services import access, events
from app.services.errors import InvalidParameter, NotFound
from app.services.pagination import page_of


def types() -> list[str]:
    return list(TYPES)


# --- Groups ----------------------------------------------------------------------------

def _check_name(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidParameter("name is required", field="name")
    if len(name) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidParameter("Invalid affinity group name: at most 255 characters, no control characters",
                               field="name")
    return name


def create(caller, *, name: str, type_: str, description: str | None = None, account: str | None = None,
           domainid: str | None = None, projectid: str | None = None) -> AffinityGroup:
    """createAffinityGroup's row (its job then answers with it, as CloudStack's async create)."""
    if type_ not in TYPES:
        raise InvalidParameter(f"Unable to create affinity group, invalid affinity group type: {type_}. "
                               f"Valid values are {','.join(TYPES)}", field="type")
    name = _check_name(name)
    if description is not None and (len(description) > 4096
                                    or any(ord(c) < 32 and c not in "\t\n" for c in description)):
        raise InvalidParameter("Invalid description", field="description")
    owner = access.owner_for(caller, account, domainid, projectid)
    taken = InvalidParameter(f"Unable to create affinity group, a group with name {name} already exists.",
                             field="name")
    if db.session.scalar(select(AffinityGroup.id).where(AffinityGroup.account_id == owner.id,
                                                        AffinityGroup.name == name)):
        raise taken
    group = AffinityGroup(uuid=new_uuid(), name=name, type=type_, description=description, account_id=owner.id)
    db.session.add(group)
    try:
        db.session.flush()
    except IntegrityError:  # the same name made in parallel: the unique key decided
        db.session.rollback()
        raise taken from None
    events.record("AG.CREATE", f"Affinity group {name} ({type_}) created", user=caller, account_id=owner.id,
                  resource_type="AffinityGroup", resource_id=group.uuid)
    db.session.commit()
    return group


def submit_create(caller, **kw) -> AsyncJob:
    group = create(caller, **kw)
    return jobs.submit("createAffinityGroup", caller, "affinity.created", {"id": group.uuid},
                       instance_type="AffinityGroup", instance_id=group.uuid)


@jobs.handler("affinity.created")
def _created(job, params):
    group = db.session.scalar(select(AffinityGroup).where(AffinityGroup.uuid == params["id"]))
    if group is None:
        raise NotFound("Unable to find affinity group", field="id")  # deleted meanwhile
    return {"affinitygroup": jobs.ObjectResult("affinitygroup", group)}


def get(caller, uuid: str, field: str = "id") -> AffinityGroup:
    """Another account's group is "not found", exactly like a missing one."""
    group = db.session.scalar(select(AffinityGroup).where(AffinityGroup.uuid == uuid,
                                                          access.owned(caller, AffinityGroup.account_id)))
    if group is None:
        raise NotFound(f"Unable to find affinity group {uuid}", field=field)
    return group


def by_name(caller, name: str, account: str | None = None, domainid: str | None = None,
            projectid: str | None = None, field: str = "name") -> AffinityGroup:
    owner = access.owner_for(caller, account, domainid, projectid)
    group = db.session.scalar(select(AffinityGroup).where(AffinityGroup.account_id == owner.id,
                                                          AffinityGroup.name == name))
    if group is None:
        raise NotFound(f"Unable to find affinity group {name}", field=field)
    return group


def submit_delete(caller, *, uuid: str | None = None, name: str | None = None, account: str | None = None,
                  domainid: str | None = None, projectid: str | None = None) -> AsyncJob:
    """deleteAffinityGroup (by id, or by name in the caller's or the named account)."""
    if uuid and name:
        raise InvalidParameter("The ID and name of the affinity group are mutually exclusive", field="id")
    if uuid:
        group = get(caller, uuid)
    elif name:
        group = by_name(caller, name, account, domainid, projectid)
    else:
        raise InvalidParameter("Either the affinity group Id or group name must be specified to delete the group",
                               field="id")
    return jobs.submit("deleteAffinityGroup", caller, "affinity.delete", {"id": group.uuid},
                       instance_type="AffinityGroup", instance_id=group.uuid)


@jobs.handler("affinity.delete")
def _delete(job, params):
    from app.models import User
    caller = db.session.get(User, job.user_id)
    group = db.session.scalar(select(AffinityGroup).where(AffinityGroup.uuid == params["id"]))
    if group is None:
        raise NotFound(f"Unable to find affinity group by id {params['id']}", field="id")
    # The group's row lock first (as a planner placing a member takes it): no placement into
    # the group runs while its memberships go.
    lock_groups([group.id])
    db.session.execute(delete(AffinityGroupVM).where(AffinityGroupVM.affinity_group_id == group.id))
    events.record("AG.DELETE", f"Affinity group {group.name} deleted", user=caller, account_id=group.account_id,
                  resource_type="AffinityGroup", resource_id=group.uuid)
    db.session.delete(group)
    db.session.commit()
    return {"success": True}


def list_groups(caller, *, id: str | None = None, name: str | None = None, type_: str | None = None,
                vm_uuid: str | None = None, account: str | None = None, listall: bool = False,
                keyword: str | None = None, page=None):
    """listAffinityGroups: the caller's own groups (an admin: every account's with listall=true,
    or the named account's; any by id)."""
    q = select(AffinityGroup).where(access.owned(caller, AffinityGroup.account_id)).order_by(AffinityGroup.id)
    if account:
        q = q.where(AffinityGroup.account_id == access.owner_for(caller, account).id)
    elif not (caller.is_admin and (listall or id)):
        q = q.where(AffinityGroup.account_id == caller.account_id)
    if id:
        q = q.where(AffinityGroup.uuid == id)
    if name:
        q = q.where(AffinityGroup.name == name)
    if type_:
        q = q.where(AffinityGroup.type == type_)
    if keyword:
        q = q.where(AffinityGroup.name.contains(keyword, autoescape=True))
    if vm_uuid:
        from app.services import vms
        vm = vms.get_vm(caller, vm_uuid, "virtualmachineid")
        q = q.where(AffinityGroup.id.in_(select(AffinityGroupVM.affinity_group_id)
                                         .where(AffinityGroupVM.vm_id == vm.id)))
    return page_of(q, page)


def vm_uuids(group_ids) -> dict[int, list[str]]:
    """The live VMs of each group (a response's virtualmachineIds), one query."""
    out: dict[int, list[str]] = {gid: [] for gid in group_ids}
    for gid, uuid in db.session.execute(
            select(AffinityGroupVM.affinity_group_id, VirtualMachine.uuid)
            .join(VirtualMachine, VirtualMachine.id == AffinityGroupVM.vm_id)
            .where(AffinityGroupVM.affinity_group_id.in_(list(group_ids)), VirtualMachine.removed.is_(None))
            .order_by(AffinityGroupVM.affinity_group_id, VirtualMachine.id)):
        out.setdefault(gid, []).append(uuid)
    return out


def groups_of_vms(vm_ids) -> dict[int, list[AffinityGroup]]:
    """Each VM's groups (a VM response's affinitygroup), one query whatever the number of VMs
    (vm_ids may be a select of ids)."""
    out: dict[int, list[AffinityGroup]] = {}
    for vm_id, group in db.session.execute(
            select(AffinityGroupVM.vm_id, AffinityGroup)
            .join(AffinityGroup, AffinityGroup.id == AffinityGroupVM.affinity_group_id)
            .where(AffinityGroupVM.vm_id.in_(vm_ids)).order_by(AffinityGroupVM.vm_id, AffinityGroup.id)):
        out.setdefault(vm_id, []).append(group)
    return out


# --- VMs in groups -----------------------------------------------------------------------

def resolve(caller, owner_id: int, ids: list[str] | None, names: list[str] | None) -> list[AffinityGroup]:
    """The groups a deploy or updateVMAffinityGroup names, all of the VM's own account."""
    if ids is not None and names is not None and (ids or names):
        raise InvalidParameter("affinitygroupids parameter is mutually exclusive with affinitygroupnames parameter",
                               field="affinitygroupids")
    out: list[AffinityGroup] = []
    for uuid in ids or []:
        g = db.session.scalar(select(AffinityGroup).where(AffinityGroup.uuid == uuid,
                                                          access.owned(caller, AffinityGroup.account_id)))
        if g is None:
            raise NotFound(f"Unable to find affinity group by id {uuid}", field="affinitygroupids")
        if g.account_id != owner_id:
            raise InvalidParameter(f"Affinity group {g.name} does not belong to the VM's account",
                                   field="affinitygroupids")
        if g not in out:
            out.append(g)
    for name in names or []:
        g = db.session.scalar(select(AffinityGroup).where(AffinityGroup.account_id == owner_id,
                                                          AffinityGroup.name == name))
        if g is None:
            raise NotFound(f"Unable to find group by name {name}", field="affinitygroupnames")
        if g not in out:
            out.append(g)
    return out


def add_vm(vm: VirtualMachine, groups: list[AffinityGroup]) -> None:
    """Memberships of a new VM, in the deploy's transaction."""
    for g in groups:
        db.session.add(AffinityGroupVM(affinity_group_id=g.id, vm_id=vm.id))


def forget_vm(vm_id: int) -> None:
    """An expunged VM, or one whose first deploy failed, leaves its groups (caller commits)."""
    db.session.execute(delete(AffinityGroupVM).where(AffinityGroupVM.vm_id == vm_id)
                       .execution_options(synchronize_session=False))


def submit_update_vm(caller, vm_uuid: str, ids: list[str] | None, names: list[str] | None) -> AsyncJob:
    """updateVMAffinityGroup: a Stopped VM's groups replaced (an empty list: none), under the VM's lock."""
    from app.services import vms
    vm = vms.get_vm(caller, vm_uuid)
    if ids is None and names is None:
        raise InvalidParameter("affinitygroupids parameter or affinitygroupnames parameter must be given",
                               field="affinitygroupids")
    groups = resolve(caller, vm.account_id, ids, names)
    if vm.state != VMState.STOPPED:
        raise InvalidParameter(f"Unable update affinity groups of the virtual machine {vm.name} in state "
                               f"{vm.state}; make sure the virtual machine is stopped and not in an error state "
                               "before updating.", field="id")
    return vms._submit(caller, vm, "affinity", "updateVMAffinityGroup", {"groups": [g.id for g in groups]},
                       allowed=(VMState.STOPPED,))


@jobs.handler("vm.affinity")
def _update_vm(job, params):
    from app.models import User
    from app.services import vms
    vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.uuid == params["vm"]))
    try:
        wanted = [gid for gid in params["groups"]
                  if db.session.get(AffinityGroup, gid) is not None]  # one deleted meanwhile is left out
        db.session.execute(delete(AffinityGroupVM).where(AffinityGroupVM.vm_id == vm.id))
        for gid in wanted:
            db.session.add(AffinityGroupVM(affinity_group_id=gid, vm_id=vm.id))
        names = ", ".join(db.session.get(AffinityGroup, gid).name for gid in wanted) or "none"
        events.record("VM.AG.UPDATE", f"VM {vm.name}'s affinity groups: {names}",
                      user=db.session.get(User, job.user_id), account_id=vm.account_id,
                      resource_type="VirtualMachine", resource_id=vm.uuid)
        db.session.commit()
    finally:
        db.session.rollback()
        vms._unlock(vm.id, params["token"], job.id)
    return {"virtualmachine": jobs.ObjectResult("virtualmachine", vm)}


def _reaped(job: AsyncJob) -> None:
    from app.services import vms
    vms._reaped(job)  # the VM freed and asked again, as after any VM job


jobs.on_reap("vm.affinity", _reaped)


# --- Placement (the planner's side) -------------------------------------------------------

@dataclass
class Placement:
    """Where a VM may go for its groups: not on `avoid` (anti-affinity siblings' hosts) and,
    when `only` is a set, only there (the hosts of its affinity groups' siblings)."""
    vm_id: int
    group_ids: list[int] = field(default_factory=list)
    avoid: set[int] = field(default_factory=set)
    only: set[int] | None = None
    # (group name, type, sibling host ids) for the refusal's words
    groups: list[tuple[str, str, set[int]]] = field(default_factory=list)


def placement(vm_id: int) -> Placement | None:
    """The VM's groups and where their other VMs run now (None: in no group)."""
    rows = db.session.execute(
        select(AffinityGroup.id, AffinityGroup.name, AffinityGroup.type)
        .join(AffinityGroupVM, AffinityGroupVM.affinity_group_id == AffinityGroup.id)
        .where(AffinityGroupVM.vm_id == vm_id).order_by(AffinityGroup.id)).all()
    if not rows:
        return None
    hosts = _sibling_hosts([r[0] for r in rows], vm_id)
    p = Placement(vm_id=vm_id, group_ids=[r[0] for r in rows])
    for gid, name, kind in rows:
        where = hosts.get(gid, set())
        p.groups.append((name, kind, where))
        if kind == HOST_ANTI_AFFINITY:
            p.avoid |= where
        elif kind == HOST_AFFINITY and where:
            p.only = set(where) if p.only is None else p.only & where
    return p


def _sibling_hosts(group_ids: list[int], vm_id: int) -> dict[int, set[int]]:
    """Where each group's other VMs are: their hosts, and a migrating one's destination too."""
    out: dict[int, set[int]] = {}
    for gid, host_id, state, dest in db.session.execute(
            select(AffinityGroupVM.affinity_group_id, VirtualMachine.host_id, VirtualMachine.state,
                   VirtualMachine.migration_host_id)
            .join(VirtualMachine, VirtualMachine.id == AffinityGroupVM.vm_id)
            .where(AffinityGroupVM.affinity_group_id.in_(group_ids), AffinityGroupVM.vm_id != vm_id,
                   VirtualMachine.removed.is_(None), VirtualMachine.host_id.is_not(None))):
        out.setdefault(gid, set()).add(host_id)
        if state == VMState.MIGRATING and dest is not None:
            out[gid].add(dest)
    return out


def lock_groups(group_ids: list[int]) -> None:
    """Take the groups' row locks (one UPDATE each, in id order: no two planners deadlock);
    held until the caller's transaction ends."""
    for gid in sorted(set(group_ids)):
        db.session.execute(update(AffinityGroup).where(AffinityGroup.id == gid)
                           .values(placements=AffinityGroup.placements + 1)
                           .execution_options(synchronize_session=False))


def conflict(vm_id: int, host_id: int) -> str | None:
    """Why placing the VM on the host would break one of its groups now (None: it would not)."""
    p = placement(vm_id)
    if p is None:
        return None
    for name, kind, where in p.groups:
        if kind == HOST_ANTI_AFFINITY and host_id in where:
            return f"host anti-affinity group {name} already has a VM on that host"
        if kind == HOST_AFFINITY and where and host_id not in where:
            return f"host affinity group {name} runs on another host"
    return None


def refusal(p: Placement) -> str:
    """The 533's reason when hosts fit but none that the VM's groups allow."""
    names = {}
    ids = set().union(*(w for _n, _k, w in p.groups)) if p.groups else set()
    if ids:
        names = dict(db.session.execute(select(Host.id, Host.name).where(Host.id.in_(ids))).all())
    parts = []
    for name, kind, where in p.groups:
        on = ", ".join(sorted(names.get(h, str(h)) for h in where)) or "no host yet"
        parts.append(f"{kind} group {name} (its other VMs on: {on})")
    return "No suitable host satisfies the VM's affinity groups: " + "; ".join(parts)
