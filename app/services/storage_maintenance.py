"""Primary storage maintenance, as CloudStack's StoragePoolAutomation does it.

enableStorageMaintenance: the pool goes PrepareForMaintenance at once (no new volume, VM start
or placement uses it from then on), then a job stops every running VM with a volume on the
pool, recording each one in storage_pool_work; the pool ends in Maintenance, or in
ErrorInMaintenance naming the VMs that could not be stopped (enableStorageMaintenance again
resumes from what the rows say was done). CloudStack stops user VMs rather than moving their
disks, and so does Nubo: their volumes stay where they are.

cancelStorageMaintenance: the pool is Up again and a job starts the VMs the maintenance
stopped (CloudStack's cancelMaintain restarts them the same way).

A worker killed mid-job is reaped: the pool goes to ErrorInMaintenance (preparing) or Up
(cancelling), from where the admin repeats the command.
"""
from __future__ import annotations

from sqlalchemy import delete, select, update

from app.extensions import db
from app.jobs import service as jobs
from app.models import AsyncJob, PoolState, StoragePool, StoragePoolWork, VirtualMachine, VMState, Volume
from app.services import events
from app.services.errors import InvalidParameter, NotFound, ResourceUnavailable, ServiceError

# Pools a volume, a placement or a start may use. A Disabled pool keeps serving what it
# holds (CloudStack: disabled = no new allocations), so starts are refused only in maintenance.
IN_MAINTENANCE = (PoolState.PREPARE_FOR_MAINTENANCE, PoolState.MAINTENANCE, PoolState.ERROR_IN_MAINTENANCE,
                  PoolState.CANCEL_MAINTENANCE)
_BUSY = (VMState.RUNNING, VMState.STARTING, VMState.STOPPING)


def get_pool(uuid: str) -> StoragePool:
    pool = db.session.scalar(select(StoragePool).where(StoragePool.uuid == uuid, StoragePool.removed.is_(None)))
    if pool is None:
        raise NotFound("Unable to find storage pool with the specified id", field="id")
    return pool


def _move(pool: StoragePool, to: str, *, allowed: tuple[str, ...]) -> bool:
    """Guarded state change (one UPDATE), committed: two admins racing get one winner."""
    done = db.session.execute(update(StoragePool).where(StoragePool.id == pool.id, StoragePool.state.in_(allowed))
                              .values(state=to).execution_options(synchronize_session=False))
    db.session.commit()
    db.session.refresh(pool)
    return done.rowcount == 1


def enable_maintenance(caller, uuid: str) -> AsyncJob:
    pool = get_pool(uuid)
    if pool.cluster_id is not None:
        other = db.session.scalar(select(StoragePool.name).where(
            StoragePool.cluster_id == pool.cluster_id, StoragePool.id != pool.id, StoragePool.removed.is_(None),
            StoragePool.state == PoolState.PREPARE_FOR_MAINTENANCE))
        if other is not None:
            raise ServiceError(f"Only one storage pool in a cluster can be in PrepareForMaintenance mode, "
                               f"{other} is already in PrepareForMaintenance mode")
    before = pool.state
    if not _move(pool, PoolState.PREPARE_FOR_MAINTENANCE, allowed=(PoolState.UP, PoolState.ERROR_IN_MAINTENANCE)):
        raise InvalidParameter(f"Primary storage with id {pool.uuid} is not ready for migration, as the status "
                               f"is:{pool.state}", field="id")
    events.record("MAINT.PREPARE.PS", f"Primary storage {pool.name} is being prepared for maintenance",
                  user=caller, resource_type="StoragePool", resource_id=pool.uuid, commit=True)
    return _submit(pool, before, "enableStorageMaintenance", caller, "storage.maintenance")


def _submit(pool: StoragePool, before: str, cmd: str, caller, handler: str) -> AsyncJob:
    """The job for a state change already made; if it cannot be queued the pool goes back, so no
    state is left without the job that would finish it."""
    now = pool.state
    try:
        return jobs.submit(cmd, caller, handler, {"pool": pool.uuid}, instance_type="StoragePool",
                           instance_id=pool.uuid)
    except Exception:
        db.session.rollback()
        _move(pool, before, allowed=(now,))  # only if nothing moved it since
        raise


def _vms_on(pool: StoragePool) -> list[VirtualMachine]:
    return list(db.session.scalars(select(VirtualMachine).where(
        VirtualMachine.id.in_(select(Volume.vm_id).where(Volume.pool_id == pool.id, Volume.removed.is_(None),
                                                         Volume.vm_id.is_not(None))),
        VirtualMachine.removed.is_(None)).order_by(VirtualMachine.id)))


@jobs.handler("storage.maintenance")
def _run_maintenance(job: AsyncJob, params: dict) -> dict:
    from app.services import vms
    pool = db.session.scalar(select(StoragePool).where(StoragePool.uuid == params["pool"]))
    # 1. Record the work: every VM using the pool that runs (or is between states).
    for vm in _vms_on(pool):
        if vm.state not in _BUSY:
            continue
        work = db.session.scalar(select(StoragePoolWork).where(StoragePoolWork.pool_id == pool.id,
                                                               StoragePoolWork.vm_id == vm.id))
        if work is None:
            db.session.add(StoragePoolWork(pool_id=pool.id, vm_id=vm.id))
        else:  # a repeated maintenance reuses the row, as CloudStack does
            work.stopped_for_maintenance = work.started_after_maintenance = False
    db.session.commit()
    # 2. Stop each of them (a stop in CloudStack's sense: forced off, capacity given back).
    pending = list(db.session.scalars(select(StoragePoolWork).where(
        StoragePoolWork.pool_id == pool.id, StoragePoolWork.stopped_for_maintenance.is_(False))))
    stuck: list[str] = []
    for i, work in enumerate(pending, 1):
        vm = db.session.get(VirtualMachine, work.vm_id)
        jobs.progress(job, 100 * (i - 1) // len(pending), f"Stopping {vm.name} ({i} of {len(pending)})")
        if vm.state == VMState.STOPPED:
            work.stopped_for_maintenance = True  # stopped meanwhile: start it again at cancel all the same
            db.session.commit()
            continue
        try:
            token = vms._lock(vm, "stop", allowed=_BUSY)
        except ServiceError as e:
            stuck.append(f"{vm.name}: {e.message}")
            continue
        try:
            vms._power_off(vm)
            vms._stopped_on_host(vm)
            work.stopped_for_maintenance = True
            events.record("VM.STOP", f"VM {vm.name} stopped for the maintenance of primary storage {pool.name}",
                          user=events.actor(), resource_type="VirtualMachine", resource_id=vm.uuid, account_id=vm.account_id)
            db.session.commit()
        except ServiceError as e:
            db.session.rollback()
            stuck.append(f"{vm.name}: {e.message}")
        finally:
            vms._unlock(vm.id, token)
    # 3. The pool's new state, unless the maintenance was cancelled meanwhile.
    db.session.refresh(pool)
    if pool.state != PoolState.PREPARE_FOR_MAINTENANCE:
        return {"storagepool": jobs.ObjectResult("storagepool", pool)}
    pool.state = PoolState.ERROR_IN_MAINTENANCE if stuck else PoolState.MAINTENANCE
    events.record("MAINT.ERROR.PS" if stuck else "MAINT.DONE.PS",
                  f"Primary storage {pool.name} could not be emptied: " + "; ".join(stuck) if stuck else
                  f"Primary storage {pool.name} is in maintenance", level="ERROR" if stuck else "INFO",
                  user=events.actor(), resource_type="StoragePool", resource_id=pool.uuid)
    from app.services.alerts import triggers as alert_triggers
    if stuck:
        alert_triggers.pool_failed(pool, "could not be emptied for maintenance: " + "; ".join(stuck))
    else:
        alert_triggers.pool_recovered(pool)
    db.session.commit()
    if stuck:
        raise ResourceUnavailable(f"Primary storage {pool.name} could not be emptied: " + "; ".join(stuck))
    return {"storagepool": jobs.ObjectResult("storagepool", pool)}


def cancel_maintenance(caller, uuid: str) -> AsyncJob:
    pool = get_pool(uuid)
    before = pool.state
    if not _move(pool, PoolState.CANCEL_MAINTENANCE, allowed=(PoolState.MAINTENANCE, PoolState.PREPARE_FOR_MAINTENANCE,
                                                      PoolState.ERROR_IN_MAINTENANCE)):
        raise InvalidParameter(f"Primary storage with id {pool.uuid} is not ready to complete migration, as the "
                               f"status is:{pool.state}", field="id")
    events.record("MAINT.CANCEL.PS", f"Primary storage {pool.name} is leaving maintenance", user=caller,
                  resource_type="StoragePool", resource_id=pool.uuid, commit=True)
    return _submit(pool, before, "cancelStorageMaintenance", caller, "storage.cancel_maintenance")


@jobs.handler("storage.cancel_maintenance")
def _run_cancel(job: AsyncJob, params: dict) -> dict:
    from app.services import vms
    pool = db.session.scalar(select(StoragePool).where(StoragePool.uuid == params["pool"]))
    pool.state = PoolState.UP  # first: the VMs' starts below need their pool usable
    from app.services.alerts import triggers as alert_triggers
    alert_triggers.pool_recovered(pool)
    db.session.commit()
    pending = list(db.session.scalars(select(StoragePoolWork).where(
        StoragePoolWork.pool_id == pool.id, StoragePoolWork.stopped_for_maintenance.is_(True),
        StoragePoolWork.started_after_maintenance.is_(False))))
    failed: list[str] = []
    for i, work in enumerate(pending, 1):
        vm = db.session.get(VirtualMachine, work.vm_id)
        jobs.progress(job, 100 * (i - 1) // len(pending), f"Starting {vm.name} ({i} of {len(pending)})")
        if vm.removed is not None or vm.state != VMState.STOPPED:
            continue  # destroyed or started by someone meanwhile: nothing to give back
        try:
            token = vms._lock(vm, "start")
        except ServiceError as e:
            failed.append(f"{vm.name}: {e.message}")
            continue
        try:
            vms._start(job, vm, preferred_host_id=vm.last_host_id, first=False)
            work.started_after_maintenance = True
            db.session.commit()
        except ServiceError as e:
            db.session.rollback()
            failed.append(f"{vm.name}: {e.message}")
        finally:
            vms._unlock(vm.id, token)
    # The work is done (or reported): the rows go, a later maintenance records its own.
    db.session.execute(delete(StoragePoolWork).where(StoragePoolWork.pool_id == pool.id))
    events.record("MAINT.CANCEL.PS", f"Primary storage {pool.name} is Up" +
                  (f"; these VMs did not start again: {'; '.join(failed)}" if failed else ""),
                  level="WARN" if failed else "INFO", user=events.actor(), resource_type="StoragePool", resource_id=pool.uuid)
    db.session.commit()
    if failed:
        raise ResourceUnavailable(f"Primary storage {pool.name} is Up, but these VMs did not start again: "
                                  + "; ".join(failed))
    return {"storagepool": jobs.ObjectResult("storagepool", pool)}


def _reaped_prepare(job: AsyncJob) -> None:
    """The worker died while emptying the pool: ErrorInMaintenance, from where the admin repeats
    enableStorageMaintenance (the work rows tell what was done) or cancels."""
    db.session.execute(update(StoragePool).where(StoragePool.uuid == job.instance_id,
                                                 StoragePool.state == PoolState.PREPARE_FOR_MAINTENANCE)
                       .values(state=PoolState.ERROR_IN_MAINTENANCE))
    db.session.commit()


def _reaped_cancel(job: AsyncJob) -> None:
    """The worker died while cancelling: the pool is usable again (the VMs not started stay Stopped)."""
    db.session.execute(update(StoragePool).where(StoragePool.uuid == job.instance_id,
                                                 StoragePool.state == PoolState.CANCEL_MAINTENANCE)
                       .values(state=PoolState.UP))
    db.session.commit()


jobs.on_reap("storage.maintenance", _reaped_prepare)
jobs.on_reap("storage.cancel_maintenance", _reaped_cancel)


def check_pools_usable(vm: VirtualMachine) -> None:
    """A VM whose volumes are on a pool in maintenance cannot start (CloudStack refuses the
    same: its storage is unavailable)."""
    pool = db.session.scalar(select(StoragePool).join(Volume, Volume.pool_id == StoragePool.id).where(
        Volume.vm_id == vm.id, Volume.removed.is_(None), StoragePool.state.in_(IN_MAINTENANCE)))
    if pool is not None:
        raise ResourceUnavailable(f"Unable to start VM {vm.name}: its primary storage {pool.name} is in "
                                  f"{pool.state} state")
