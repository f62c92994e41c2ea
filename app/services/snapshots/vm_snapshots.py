"""VM snapshots as CloudStack's VMSnapshotManagerImpl makes them (createVMSnapshot,
listVMSnapshot, revertToVMSnapshot, deleteVMSnapshot), CloudStack 4.19's rules:

- allowed where the VM's type declares Capabilities.vm_snapshots *and* its row of
  hypervisor_capabilities has vm_snapshot_enabled (431 "VM snapshot is not enabled for
  hypervisor type: X" otherwise);
- a Running VM's snapshot may include its memory (DiskAndMemory); a Stopped VM's is disk
  only; a disk-only snapshot of a *running* VM only where the type can
  (Capabilities.vm_snapshot_disk_running; KVM's internal qcow2 snapshots cannot);
- display names are unique per VM; at most `vmsnapshot.max` snapshots per VM;
- revert: a DiskAndMemory snapshot leaves the VM Running (a Stopped VM is started first), a
  Disk one leaves it Stopped (a Running VM is powered off first);
- `current` is the snapshot the VM last came from, `parent` the one current when it was
  taken; deleting one gives its children its parent, and its `current` to its parent.

Every action holds the VM's lock (app/services/vms.py) for its whole job, so a snapshot, a
revert, a delete and any other VM action never overlap (a second gets 536 "busy"). States:
Allocated (row made, job queued) -> Creating -> Ready | Error; Ready -> Reverting -> Ready;
Ready/Error/Allocated -> Expunging -> removed. A job killed mid-way is reaped: the snapshot
takes the state the hypervisor shows (there: Ready, else Error) and the VM is asked again.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import func, or_, select, update

from app.extensions import db
from app.hypervisors.base import DriverError, VMSnapshotSpec
from app.jobs import service as jobs
from app.models import (AsyncJob, Host, VirtualMachine, VMSnapshot, VMSnapshotState, VMSnapshotType,
                        VMState, Volume, VolumeState, utcnow)
from app.services import access, events, settings, vms
from app.services import tags as tag_service
from app.services import hypervisors as hv
from app.services.errors import InvalidParameter, NotFound, ResourceAllocation, ResourceUnavailable, ServiceError
from app.services.pagination import page_of
from app.services.settings import Definition, define

log = logging.getLogger(__name__)

define(Definition("vmsnapshot.max", "10", "Maximum VM snapshots of one VM.", category="Snapshots",
                  type="integer", min=1, max=1000))

LIVE = (VMSnapshotState.ALLOCATED, VMSnapshotState.CREATING, VMSnapshotState.READY, VMSnapshotState.REVERTING,
        VMSnapshotState.EXPUNGING, VMSnapshotState.ERROR)
NOT_FOUND = "Unable to find the VM snapshot with the specified id"


# VM snapshots take resource tags (CloudStack's ResourceObjectType VMSnapshot).
tag_service.register(tag_service.TaggedType("VMSnapshot", VMSnapshot, live=lambda: VMSnapshot.removed.is_(None)))


# --- Lookups --------------------------------------------------------------------------

def _visible(caller):
    return select(VMSnapshot).where(VMSnapshot.removed.is_(None), access.owned(caller, VMSnapshot.account_id))


def get(caller, uuid: str, field: str = "vmsnapshotid") -> VMSnapshot:
    """Another account's snapshot is "not found", exactly like a missing one."""
    snap = db.session.scalar(_visible(caller).where(VMSnapshot.uuid == uuid))
    if snap is None:
        raise NotFound(NOT_FOUND, field=field)
    return snap


def list_snapshots(caller, *, id=None, ids=None, vm_uuid=None, name=None, state=None, keyword=None,
                   account=None, tags=None, page=None):
    """listVMSnapshot: newest first (CloudStack orders by created, descending)."""
    q = _visible(caller).order_by(VMSnapshot.id.desc())
    if id:
        q = q.where(VMSnapshot.uuid == id)
    if ids:
        q = q.where(VMSnapshot.uuid.in_(ids))
    if vm_uuid:
        q = q.where(VMSnapshot.vm_id == select(VirtualMachine.id).where(
            VirtualMachine.uuid == vm_uuid).scalar_subquery())
    if name:
        q = q.where(VMSnapshot.display_name == name)
    if state:
        q = q.where(VMSnapshot.state == state)
    if keyword:
        q = q.where(or_(VMSnapshot.name.contains(keyword, autoescape=True),
                        VMSnapshot.display_name.contains(keyword, autoescape=True),
                        VMSnapshot.description.contains(keyword, autoescape=True)))
    if account and access.is_any_admin(caller):
        q = q.where(VMSnapshot.account_id == access.owner_for(caller, account).id)
    q = tag_service.matching(q, "VMSnapshot", VMSnapshot.id, tags)
    return page_of(q, page)


def of_vm(vm: VirtualMachine) -> list[VMSnapshot]:
    """The VM's snapshots that exist (any state but removed), newest first."""
    return list(db.session.scalars(select(VMSnapshot).where(
        VMSnapshot.vm_id == vm.id, VMSnapshot.removed.is_(None)).order_by(VMSnapshot.id.desc())))


def count_of_vm(vm_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(VMSnapshot).where(
        VMSnapshot.vm_id == vm_id, VMSnapshot.removed.is_(None))) or 0


def has_snapshots(vm_id: int) -> bool:
    """For the other areas' rules (CloudStack refuses attach, detach, resize, offering changes
    and migrations of a VM with VM snapshots)."""
    return count_of_vm(vm_id) > 0


def has_active_tasks(vm_id: int) -> bool:
    """A snapshot of the VM being taken, reverted to or deleted (CloudStack's hasActiveVMSnapshotTasks)."""
    return db.session.scalar(select(VMSnapshot.id).where(
        VMSnapshot.vm_id == vm_id, VMSnapshot.removed.is_(None),
        VMSnapshot.state.in_((VMSnapshotState.CREATING, VMSnapshotState.REVERTING, VMSnapshotState.EXPUNGING,
                              VMSnapshotState.ALLOCATED))).limit(1)) is not None


def refuse_if_snapshots(vm: VirtualMachine, message: str, field: str = "id") -> None:
    if has_snapshots(vm.id):
        raise InvalidParameter(message, field=field)


# --- Create -----------------------------------------------------------------------

def _check_enabled(vm: VirtualMachine) -> None:
    caps = hv.resolve(vm.hypervisor_type).capabilities
    if not caps.vm_snapshots or not hv.limits(vm.hypervisor_type).vm_snapshot_enabled:
        raise InvalidParameter(f"VM snapshot is not enabled for hypervisor type: {hv.display_name(vm.hypervisor_type)}",
                               field="virtualmachineid")


def _ready_volumes(vm: VirtualMachine) -> list[Volume]:
    return [v for v in vm.volumes if v.removed is None and v.state == VolumeState.READY and v.path]


def create(caller, vm_uuid: str, *, name: str | None = None, description: str | None = None,
           memory: bool = False, quiesce: bool = False) -> AsyncJob:
    """createVMSnapshot: the row now (Allocated), the snapshot in the job."""
    vm = vms.get_vm(caller, vm_uuid, "virtualmachineid")
    _check_enabled(vm)
    caps = hv.resolve(vm.hypervisor_type).capabilities
    if name is not None and len(name) > 255:
        raise InvalidParameter("Creating VM snapshot failed due to length of VM snapshot vsDisplayName should not "
                               "exceed 255", field="name")
    if description is not None and len(description) > 255:
        raise InvalidParameter("Creating VM snapshot failed due to length of VM snapshot vsDescription should not "
                               "exceed 255", field="description")
    if vm.state not in (VMState.RUNNING, VMState.STOPPED):
        raise InvalidParameter(f"Creating vm snapshot failed due to VM:{vm.uuid} is not in the running or Stopped "
                               "state", field="virtualmachineid")
    token = vms.lock(vm, "snapshot", (VMState.RUNNING, VMState.STOPPED))
    snap = None
    try:
        vm = db.session.get(VirtualMachine, vm.id)  # its state now, held by the lock
        running = vm.state == VMState.RUNNING
        if memory and not running:
            raise InvalidParameter("Can not snapshot memory when VM is not in Running state", field="snapshotmemory")
        if running and not memory and not caps.vm_snapshot_disk_running:
            raise InvalidParameter(f"{hv.display_name(vm.hypervisor_type)} VM does not allow to take a disk-only "
                                   "snapshot when VM is in running state", field="snapshotmemory")
        volumes = _ready_volumes(vm)
        if not any(v.volume_type == "ROOT" for v in volumes):
            raise InvalidParameter(f"Unable to find root volume for the user vm:{vm.uuid}", field="virtualmachineid")
        if caps.template_formats and "QCOW2" in caps.template_formats and not caps.vm_snapshot_disk_running:
            # KVM's internal snapshots live inside qcow2 images: every disk must be one.
            raw = [v.name for v in volumes if (v.format or "").upper() != "QCOW2"]
            if raw:
                raise InvalidParameter(f"{hv.display_name(vm.hypervisor_type)} does not support the type of snapshot "
                                       f"requested: volume {', '.join(raw)} is not QCOW2", field="virtualmachineid")
        now = utcnow()
        hv_name = f"{vm.instance_name}_VS_{now:%Y%m%d%H%M%S}"
        taken = set(db.session.scalars(select(VMSnapshot.name).where(VMSnapshot.vm_id == vm.id)))
        n = 1
        while hv_name in taken:  # two in one second: the hypervisor's names stay unique
            n += 1
            hv_name = f"{vm.instance_name}_VS_{now:%Y%m%d%H%M%S}-{n}"
        display = name if name else hv_name
        mine = select(VMSnapshot.id).where(VMSnapshot.vm_id == vm.id, VMSnapshot.removed.is_(None))
        if db.session.scalar(mine.where(VMSnapshot.display_name == display)) is not None:
            raise InvalidParameter(f"Creating VM snapshot failed due to VM snapshot with name {display} already "
                                   "exists", field="name")
        limit = settings.get("vmsnapshot.max")
        if count_of_vm(vm.id) >= limit:
            raise ResourceAllocation(f"Creating vm snapshot failed due to a VM can just have : {limit} VM snapshots. "
                                     "Please delete old ones", field="virtualmachineid")
        snap = VMSnapshot(name=hv_name, display_name=display, description=description, vm_id=vm.id,
                          account_id=vm.account_id, service_offering_id=vm.service_offering_id,
                          snapshot_type=VMSnapshotType.DISK_AND_MEMORY if memory else VMSnapshotType.DISK,
                          state=VMSnapshotState.ALLOCATED, quiesce=bool(quiesce))
        db.session.add(snap)
        db.session.commit()
        job = jobs.submit("createVMSnapshot", caller, "vmsnapshot.create",
                          {"vm": vm.uuid, "snapshot": snap.uuid, "token": token},
                          instance_type="VMSnapshot", instance_id=snap.uuid)
    except BaseException:
        db.session.rollback()
        if snap is not None and snap.id is not None:
            # Made but never queued: nothing of it stays (a job taken meanwhile owns it instead).
            db.session.execute(update(VMSnapshot).where(VMSnapshot.id == snap.id,
                                                        VMSnapshot.state == VMSnapshotState.ALLOCATED)
                               .values(removed=utcnow(), state=VMSnapshotState.REMOVED))
            db.session.commit()
        vms.unlock(vm.id, token)
        raise
    vms.hand_lock(vm.id, token, job.id)
    return job


def _host_of(vm: VirtualMachine) -> Host:
    host_id = vm.host_id or vm.last_host_id
    host = db.session.get(Host, host_id) if host_id else None
    if host is None:
        raise ResourceUnavailable(f"VM {vm.name} has no host that knows its snapshots")
    return host


def _spec(snap: VMSnapshot) -> VMSnapshotSpec:
    return VMSnapshotSpec(name=snap.name, description=snap.description or "",
                          memory=snap.snapshot_type == VMSnapshotType.DISK_AND_MEMORY, quiesce=snap.quiesce,
                          metadata=snap.hypervisor_metadata)


def _current(vm_id: int) -> VMSnapshot | None:
    return db.session.scalar(select(VMSnapshot).where(VMSnapshot.vm_id == vm_id, VMSnapshot.removed.is_(None),
                                                      VMSnapshot.current.is_(True)))


def _loaded(params: dict) -> tuple[VirtualMachine, VMSnapshot]:
    vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.uuid == params["vm"]))
    snap = db.session.scalar(select(VMSnapshot).where(VMSnapshot.uuid == params["snapshot"]))
    return vm, snap


def _set_state(snap_id: int, state: str) -> None:
    db.session.rollback()
    db.session.execute(update(VMSnapshot).where(VMSnapshot.id == snap_id).values(state=state, updated=utcnow()))
    db.session.commit()


def _fail(e: Exception, what: str) -> ServiceError:
    if isinstance(e, ServiceError):
        return e
    if isinstance(e, DriverError):
        return ResourceUnavailable(f"{what}: {e}")
    return ResourceUnavailable(f"{what}: internal error: {e}")


def _on_host(vm: VirtualMachine, call: str, *args):
    """One driver call on the VM's host (create/revert/delete/list_vm_snapshots), its connection closed."""
    driver = vms.driver_for(_host_of(vm))
    try:
        return getattr(driver, call)(vm.instance_name, *args)
    finally:
        driver.close()


def _make_current(vm_id: int, snap: VMSnapshot) -> None:
    """The snapshot becomes the VM's current one (the one a new snapshot's parent is)."""
    db.session.execute(update(VMSnapshot).where(VMSnapshot.vm_id == vm_id, VMSnapshot.id != snap.id)
                       .values(current=False))
    snap.current = True


@jobs.handler("vmsnapshot.create")
def _run_create(job: AsyncJob, params: dict):
    vm, snap = _loaded(params)
    try:
        parent = _current(vm.id)
        snap.state, snap.parent_id = VMSnapshotState.CREATING, parent.id if parent else None
        db.session.commit()
        jobs.progress(job, 20, f"Taking snapshot {snap.display_name} of {vm.name}")
        info = _on_host(vm, "create_vm_snapshot", _spec(snap))
        snap = db.session.get(VMSnapshot, snap.id)
        snap.hypervisor_metadata = info.metadata
        # Ready and current; the one that was current is its parent now (finalizeCreate).
        _make_current(vm.id, snap)
        snap.state = VMSnapshotState.READY
        events.record("VMSNAPSHOT.CREATE", f"VM snapshot {snap.display_name} ({snap.snapshot_type}) of {vm.name} "
                      "taken", user=events.actor(), account_id=vm.account_id, resource_type="VMSnapshot", resource_id=snap.uuid)
        db.session.commit()
        return {"vmsnapshot": jobs.ObjectResult("vmsnapshot", snap)}
    except Exception as e:  # noqa: BLE001 - the snapshot ends in Error, the job says why
        err = _fail(e, f"Creating VM snapshot: {snap.name} failed")
        _set_state(snap.id, VMSnapshotState.ERROR)
        events.record("VMSNAPSHOT.CREATE", f"VM snapshot {snap.display_name} of {vm.name} failed: {err.message}",
                      level="ERROR", user=events.actor(), resource_type="VMSnapshot", resource_id=snap.uuid, account_id=vm.account_id,
                      commit=True)
        raise err from None
    finally:
        db.session.rollback()
        vms.unlock(vm.id, params["token"], job.id)


def _submit_locked(caller, vm: VirtualMachine, snap: VMSnapshot, action: str, states, check, cmd: str,
                   handler: str, instance: tuple[str, str]) -> AsyncJob:
    """The VM locked for the snapshot's job (vms.lock: 536 when busy), the snapshot read again
    and check()ed under the lock, the job submitted and the lock handed to it; any refusal
    leaves the VM unlocked and nothing submitted."""
    token = vms.lock(vm, action, states)
    try:
        db.session.refresh(snap)
        check()
        job = jobs.submit(cmd, caller, handler, {"vm": vm.uuid, "snapshot": snap.uuid, "token": token},
                          instance_type=instance[0], instance_id=instance[1])
    except BaseException:
        db.session.rollback()
        vms.unlock(vm.id, token)
        raise
    vms.hand_lock(vm.id, token, job.id)
    return job


# --- Revert ----------------------------------------------------------------------

def revert(caller, uuid: str) -> AsyncJob:
    """revertToVMSnapshot."""
    snap = get(caller, uuid)
    vm = snap.vm
    if vm is None or vm.removed is not None:
        raise InvalidParameter(f"Revert vm to snapshot: {snap.uuid} failed due to vm: {vm.uuid if vm else ''} is "
                               "not found", field="vmsnapshotid")
    _check_enabled(vm)
    if vm.state not in (VMState.RUNNING, VMState.STOPPED):
        raise InvalidParameter("VM Snapshot reverting failed due to vm is not in the state of Running or Stopped.",
                               field="vmsnapshotid")
    if snap.state != VMSnapshotState.READY:
        raise InvalidParameter("VM Snapshot reverting failed due to vm snapshot is not in the state of Created.",
                               field="vmsnapshotid")
    def still_ready():
        if snap.state != VMSnapshotState.READY or snap.removed is not None:
            raise InvalidParameter("VM Snapshot reverting failed due to vm snapshot is not in the state of Created.",
                                   field="vmsnapshotid")
    return _submit_locked(caller, vm, snap, "revert", (VMState.RUNNING, VMState.STOPPED), still_ready,
                          "revertToVMSnapshot", "vmsnapshot.revert", ("VirtualMachine", vm.uuid))


@jobs.handler("vmsnapshot.revert")
def _run_revert(job: AsyncJob, params: dict):
    vm, snap = _loaded(params)
    try:
        memory = snap.snapshot_type == VMSnapshotType.DISK_AND_MEMORY
        if memory and vm.state == VMState.STOPPED:
            # A memory snapshot leaves the VM running: start it first (its last host, which knows
            # its snapshots), as CloudStack does before the revert.
            jobs.progress(job, 10, f"Starting {vm.name} before the revert")
            vms.start_now(job, vm)
            vm = db.session.get(VirtualMachine, vm.id)
        elif not memory and vm.state == VMState.RUNNING:
            jobs.progress(job, 10, f"Powering off {vm.name} before the revert")
            vms.power_off(vm)
            vm = db.session.get(VirtualMachine, vm.id)
        snap = db.session.get(VMSnapshot, snap.id)
        snap.state = VMSnapshotState.REVERTING
        db.session.commit()
        jobs.progress(job, 50, f"Reverting {vm.name} to {snap.display_name}")
        info = _on_host(vm, "revert_vm_snapshot", _spec(snap))
        vm = db.session.get(VirtualMachine, vm.id)
        if info.console is not None:
            vm.console_host, vm.console_port = info.console.host, info.console.port
        if vm.service_offering_id != snap.service_offering_id and snap.service_offering_id is not None:
            log.info("VM %s reverted to %s taken with another offering", vm.name, snap.name)
        snap = db.session.get(VMSnapshot, snap.id)
        _make_current(vm.id, snap)
        snap.state = VMSnapshotState.READY
        events.record("VMSNAPSHOT.REVERTTO", f"VM {vm.name} reverted to snapshot {snap.display_name}",
                      user=events.actor(), account_id=vm.account_id, resource_type="VMSnapshot", resource_id=snap.uuid)
        db.session.commit()
        return {"virtualmachine": vms.result_of(vm)}
    except Exception as e:  # noqa: BLE001 - the snapshot stays usable (Reverting -> Ready)
        err = _fail(e, f"Revert VM: {vm.instance_name} to snapshot: {snap.name} failed")
        _set_state(snap.id, VMSnapshotState.READY)
        vm = db.session.get(VirtualMachine, vm.id)
        vms.ask_host(vm)  # whatever the host did, the record follows it
        raise err from None
    finally:
        db.session.rollback()
        vms.unlock(vm.id, params["token"], job.id)


# --- Delete ----------------------------------------------------------------------

DELETABLE = (VMSnapshotState.READY, VMSnapshotState.ERROR, VMSnapshotState.ALLOCATED, VMSnapshotState.EXPUNGING)


def delete(caller, uuid: str) -> AsyncJob:
    """deleteVMSnapshot."""
    snap = get(caller, uuid)
    vm = snap.vm
    if snap.state not in DELETABLE:
        raise InvalidParameter(f"Can't delete the vm snapshot {snap.display_name} due to it is not in Created or "
                               "Error, or Expunging State", field="vmsnapshotid")
    def still_there():
        if snap.removed is not None:
            raise NotFound(NOT_FOUND, field="vmsnapshotid")
    return _submit_locked(caller, vm, snap, "deletesnapshot",
                          (VMState.RUNNING, VMState.STOPPED, VMState.DESTROYED, VMState.ERROR), still_there,
                          "deleteVMSnapshot", "vmsnapshot.delete", ("VMSnapshot", snap.uuid))


def _remove(vm: VirtualMachine, snap: VMSnapshot) -> None:
    """The hypervisor's copy gone, then the row: children get its parent, its parent its `current`."""
    if snap.state != VMSnapshotState.ALLOCATED and (vm.host_id or vm.last_host_id):
        _on_host(vm, "delete_vm_snapshot", _spec(snap))
    snap = db.session.get(VMSnapshot, snap.id)
    db.session.execute(update(VMSnapshot).where(VMSnapshot.parent_id == snap.id)
                       .values(parent_id=snap.parent_id))
    if snap.current and snap.parent_id is not None:
        db.session.execute(update(VMSnapshot).where(VMSnapshot.id == snap.parent_id).values(current=True))
    snap.current, snap.state, snap.removed = False, VMSnapshotState.REMOVED, utcnow()
    events.record("VMSNAPSHOT.DELETE", f"VM snapshot {snap.display_name} of {vm.name} deleted", user=events.actor(), account_id=vm.account_id,
                  resource_type="VMSnapshot", resource_id=snap.uuid)
    db.session.commit()


@jobs.handler("vmsnapshot.delete")
def _run_delete(job: AsyncJob, params: dict):
    vm, snap = _loaded(params)
    try:
        _set_state(snap.id, VMSnapshotState.EXPUNGING)
        jobs.progress(job, 30, f"Deleting snapshot {snap.display_name} of {vm.name}")
        _remove(vm, db.session.get(VMSnapshot, snap.id))
        return {"success": True}
    except Exception as e:  # noqa: BLE001
        err = _fail(e, f"Delete vm snapshot {snap.name} of vm {vm.instance_name} failed")
        _set_state(snap.id, VMSnapshotState.ERROR)
        raise err from None
    finally:
        db.session.rollback()
        vms.unlock(vm.id, params["token"], job.id)


def remove_all(vm: VirtualMachine) -> None:
    """Expunge of a VM: every snapshot goes with it (CloudStack's deleteAllVMSnapshots). The caller
    holds the VM's lock; the domain's definition goes next, so a host that cannot delete one
    loses it with the domain anyway."""
    for snap in of_vm(vm):
        try:
            _remove(vm, snap)
        except (DriverError, ServiceError) as e:
            db.session.rollback()
            log.warning("snapshot %s of %s at expunge: %s", snap.name, vm.name, e)
            snap = db.session.get(VMSnapshot, snap.id)
            snap.current, snap.state, snap.removed = False, VMSnapshotState.REMOVED, utcnow()
            db.session.commit()


# --- Killed jobs --------------------------------------------------------------------

def _reaped(job: AsyncJob) -> None:
    """The worker died mid-job: the snapshot takes the state the hypervisor shows; the VM is
    freed and asked again."""
    import json
    params = json.loads(job.params or "{}").get("params", {})
    vm, snap = _loaded(params)
    if vm is None or snap is None:
        return
    db.session.execute(update(VirtualMachine).where(VirtualMachine.id == vm.id).values(active_job_id=None))
    db.session.commit()
    try:
        on_host = set(_on_host(vm, "list_vm_snapshots"))
    except (DriverError, ServiceError):
        on_host = None
    snap = db.session.get(VMSnapshot, snap.id)
    if snap.state in (VMSnapshotState.CREATING, VMSnapshotState.ALLOCATED):
        snap.state = VMSnapshotState.READY if on_host and snap.name in on_host else VMSnapshotState.ERROR
        if snap.state == VMSnapshotState.READY:
            _make_current(vm.id, snap)
    elif snap.state == VMSnapshotState.REVERTING:
        snap.state = VMSnapshotState.READY
    elif snap.state == VMSnapshotState.EXPUNGING:
        if on_host is not None and snap.name not in on_host:
            db.session.commit()
            _remove(vm, snap)
            return
        snap.state = VMSnapshotState.ERROR
    db.session.commit()
    vms.ask_host(db.session.get(VirtualMachine, vm.id))


for _name in ("vmsnapshot.create", "vmsnapshot.revert", "vmsnapshot.delete"):
    jobs.on_reap(_name, _reaped)


def recover_orphans(now=None) -> int:
    """Snapshots left Allocated by a request that died before its job was queued: removed once
    job.heartbeat.timeout has passed and no job names them (start-up and every sweep)."""
    now = now or utcnow()
    grace = timedelta(seconds=settings.get("job.heartbeat.timeout"))
    queued = select(AsyncJob.id).where(AsyncJob.instance_type == "VMSnapshot",
                                       AsyncJob.instance_id == VMSnapshot.uuid).exists()
    done = db.session.execute(update(VMSnapshot).where(
        VMSnapshot.removed.is_(None), VMSnapshot.state == VMSnapshotState.ALLOCATED,
        VMSnapshot.created <= now - grace, ~queued).values(removed=now, state=VMSnapshotState.REMOVED)
        .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return done or 0

