"""Volume snapshots: a consistent copy of a volume kept on the zone's secondary storage
(the image store), as CloudStack keeps them. Taken through the hypervisor's driver
(Capabilities.volume_snapshots; KVM for real, the Simulator simulated), listed, deleted,
reverted onto their volume (its VM stopped), turned into a new volume or a template.

Limits: a snapshot counts one of the account's snapshots (resource type 3) and, from its
row's creation, the volume's size in GiB of secondary storage (type 11), taken in the
same transaction that writes the row; once the copy is made the count becomes the copy's
real size. Failure and deletion give back exactly what the row counted, once.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import joinedload

from app.extensions import db
from app.hypervisors.base import DriverError, TemplateSource
from app.jobs import service as jobs
from app.models import (AsyncJob, DownloadState, Host, ImageStore, IntervalType, Snapshot, SnapshotState,
                        Template, TemplateStoreRef, User, VirtualMachine, VMState, Volume, VolumeState, VolumeType,
                        new_uuid, utcnow)
from app.services import access, events, quotas, storage, templates, volumes, zones
from app.services import hypervisors as hv
from app.services.errors import InvalidParameter, NotFound, ResourceInUse, ResourceUnavailable, ServiceError
from app.services.pagination import page_of

log = logging.getLogger("nubo.snapshots")


class SnapshotFailed(ServiceError):
    """The hypervisor could not make or use the copy (530, as CloudStack's job answers)."""


# --- Looking up ---------------------------------------------------------------------

def _visible(caller):
    return select(Snapshot).where(Snapshot.removed.is_(None), access.owned(caller, Snapshot.account_id))


def get_snapshot(caller, uuid: str, field: str = "id") -> Snapshot:
    """Another account's snapshot is "not found", exactly like a missing one."""
    s = db.session.scalar(_visible(caller).where(Snapshot.uuid == uuid))
    if s is None:
        raise NotFound("Unable to find snapshot with the specified id", field=field)
    return s


def list_snapshots(caller, *, id=None, ids=None, name=None, keyword=None, volume_uuid=None, snapshot_type=None,
                   interval_type=None, zone_uuid=None, tags=None, page=None):
    from app.services import tags as tagging
    q = tagging.matching(_visible(caller).order_by(Snapshot.id), "Snapshot", Snapshot.id, tags)
    if id:
        q = q.where(Snapshot.uuid == id)
    if ids:
        q = q.where(Snapshot.uuid.in_(ids))
    if name:
        q = q.where(Snapshot.name == name)
    if keyword:
        q = q.where(Snapshot.name.contains(keyword, autoescape=True))
    if volume_uuid:
        q = q.where(Snapshot.volume_id == volumes.get_volume(caller, volume_uuid, "volumeid").id)
    if snapshot_type:  # MANUAL, or RECURRING (taken by a policy)
        kind = str(snapshot_type).upper()
        q = q.where(Snapshot.snapshot_type == IntervalType.MANUAL if kind == "MANUAL" else
                    Snapshot.snapshot_type != IntervalType.MANUAL if kind == "RECURRING" else
                    Snapshot.snapshot_type == kind)
    if interval_type:
        q = q.where(Snapshot.snapshot_type == str(interval_type).upper())
    if zone_uuid:
        q = q.where(Snapshot.zone_id == zones.get_zone(zone_uuid).id)
    return page_of(q, page, options=(joinedload(Snapshot.volume), joinedload(Snapshot.zone),
                                     joinedload(Snapshot.account)))


def snapshots_of_volume(caller, volume: Volume) -> list[Snapshot]:
    return list(db.session.scalars(_visible(caller).where(Snapshot.volume_id == volume.id)
                                   .order_by(Snapshot.id.desc())))


def snapshots_of_vm(caller, vm: VirtualMachine) -> list[Snapshot]:
    ids = [v.id for v in vm.volumes]
    if not ids:
        return []
    return list(db.session.scalars(_visible(caller).where(Snapshot.volume_id.in_(ids))
                                   .order_by(Snapshot.id.desc())))


# --- Where things are -----------------------------------------------------------------

def type_of(volume: Volume) -> str | None:
    """The hypervisor type of a volume: its VM's, else its pool's."""
    if volume.vm is not None:
        return volume.vm.hypervisor_type
    return volume.pool.hypervisor_type if volume.pool is not None else None


def check_supported(type_name: str | None) -> None:
    if not type_name or not hv.resolve(type_name).capabilities.volume_snapshots:
        raise InvalidParameter(f"Volume snapshots are not supported for hypervisor "
                               f"{hv.display_name(type_name) if type_name else 'unknown'}", field="volumeid")


def relative_path(s: Snapshot) -> str:
    return f"snapshots/{s.account_id}/{s.volume_id}/{s.uuid}.qcow2"


def file_of(s: Snapshot) -> Path:
    return templates.store_root(db.session.get(ImageStore, s.image_store_id)) / s.install_path


def host_for(volume: Volume) -> Host:
    vm = volume.vm
    if vm is not None:
        host = vm.host or (db.session.get(Host, vm.last_host_id) if vm.last_host_id else None)
        if host is not None:
            return host
    return volumes._host_for_pool(volume.pool)


def _driver(host: Host):
    from app.services.hosts import connection_for
    return hv.driver_for(host.hypervisor_type, connection_for(host))


@contextmanager
def vm_held(vm: VirtualMachine | None, job: AsyncJob | None, allowed: tuple[str, ...]):
    """Hold the volume's VM for the job (its active_job_id, as VM actions do), so that no start,
    stop or migration runs while its disk is copied or replaced; 536 when it is busy. The lock
    names the job: if the process dies, the monitor's repair frees it when the job is failed."""
    if vm is None or job is None:
        yield
        return
    done = db.session.execute(update(VirtualMachine).where(
        VirtualMachine.id == vm.id, VirtualMachine.active_job_id.is_(None), VirtualMachine.state.in_(allowed))
        .values(active_job_id=job.id).execution_options(synchronize_session=False))
    db.session.commit()
    if done.rowcount != 1:
        db.session.refresh(vm)
        if vm.active_job_id is not None:
            raise ResourceInUse(f"VM {vm.name} is busy with another action; try again when it has finished")
        raise InvalidParameter(f"VM {vm.name} is {vm.state}", field="id")
    try:
        yield
    finally:
        db.session.rollback()
        db.session.execute(update(VirtualMachine).where(VirtualMachine.id == vm.id,
                                                        VirtualMachine.active_job_id == job.id)
                           .values(active_job_id=None).execution_options(synchronize_session=False))
        db.session.commit()


def _user_of(job: AsyncJob) -> User | None:
    return db.session.get(User, job.user_id) if job.user_id else None


# --- Create ---------------------------------------------------------------------------

def _check_volume(volume: Volume) -> str:
    """What createSnapshot refuses before any row is made; returns the hypervisor type."""
    if volume.state != VolumeState.READY or volume.pool_id is None or not volume.path:
        raise InvalidParameter(f"VolumeId: {volume.uuid} is not in {VolumeState.READY} state but {volume.state}. "
                               "Cannot take snapshot.", field="volumeid")
    type_name = type_of(volume)
    check_supported(type_name)
    vm = volume.vm
    if vm is not None and vm.state not in (VMState.RUNNING, VMState.STOPPED):
        raise InvalidParameter(f"VM {vm.name} is {vm.state}; take a snapshot when it is Running or Stopped",
                               field="volumeid")
    return type_name


def allocate(caller_account_id: int, volume: Volume, *, name: str | None = None, policy=None,
             user=None) -> Snapshot:
    """The snapshot's row (Allocated) and its counts, in one transaction: 532 when the
    account's snapshot or secondary storage limit would pass, and then nothing is made."""
    type_name = _check_volume(volume)
    store = templates._store_of(volume.zone_id)
    kind = IntervalType(policy.interval_type) if policy is not None else IntervalType.MANUAL
    vm = volume.vm
    stamp = utcnow().strftime("%Y%m%d%H%M%S")
    default = f"{vm.name if vm else 'detached'}_{volume.name}_{stamp}"
    s = Snapshot(uuid=new_uuid(), name=(name or "").strip()[:255] or default[:255], account_id=volume.account_id,
                 zone_id=volume.zone_id, volume_id=volume.id, policy_id=policy.id if policy is not None else None,
                 snapshot_type=kind, state=SnapshotState.ALLOCATED, hypervisor_type=type_name,
                 volume_type=volume.volume_type, size=volume.size, format="QCOW2", image_store_id=store.id)
    s.install_path = relative_path(s) if s.volume_id else None
    try:
        quotas.take(volume.account_id, {"snapshot": 1, "secondary_storage": quotas.gib(volume.size)}, commit=False)
        s.quota_counted, s.counted_gib = True, quotas.gib(volume.size)
        db.session.add(s)
        db.session.flush()
        s.install_path = relative_path(s)
        events.record("SNAPSHOT.CREATE", f"Snapshot {s.name} of volume {volume.name} requested", user=user,
                      account_id=volume.account_id, resource_type="Snapshot", resource_id=s.uuid)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return s


def submit_create(caller, volume_uuid: str, *, name: str | None = None, account: str | None = None) -> AsyncJob:
    volume = volumes.get_volume(caller, volume_uuid, "volumeid")
    if account:
        owner = access.owner_for(caller, account)
        if owner.id != volume.account_id:
            raise InvalidParameter("The volume belongs to another account", field="account")
    s = allocate(caller.account_id, volume, name=name, user=caller)
    return jobs.submit("createSnapshot", caller, "snapshot.create", {"id": s.uuid}, instance_type="Snapshot",
                       instance_id=s.uuid)


def _release(s: Snapshot) -> None:
    """The snapshot no longer counts: exactly what it counted goes back, once."""
    counted = db.session.execute(select(Snapshot.quota_counted, Snapshot.counted_gib)
                                 .where(Snapshot.id == s.id)).one()
    if not counted.quota_counted:
        return
    done = db.session.execute(update(Snapshot).where(Snapshot.id == s.id, Snapshot.quota_counted.is_(True),
                                                     Snapshot.counted_gib == counted.counted_gib)
                              .values(quota_counted=False, counted_gib=0).execution_options(synchronize_session=False))
    if done.rowcount == 1:
        quotas.give(s.account_id, {"snapshot": 1, "secondary_storage": counted.counted_gib}, commit=False)


def _recount(s: Snapshot, new_gib: int) -> None:
    """After the copy: the snapshot counts its real size (smaller than the volume's, or larger:
    then the difference is taken if the limit allows, else the volume's size stays counted)."""
    old = s.counted_gib
    if not s.quota_counted or new_gib == old:
        return
    try:
        quotas.take(s.account_id, {"secondary_storage": new_gib - old},
                    also=[(update(Snapshot).where(Snapshot.id == s.id, Snapshot.quota_counted.is_(True),
                                                  Snapshot.counted_gib == old).values(counted_gib=new_gib),
                           f"Snapshot {s.name} is being changed by another request")])
    except (ServiceError,):
        db.session.rollback()


def _fail(snapshot_id: int, reason: str, *, remove_file: bool = True) -> None:
    """A snapshot whose copy failed: Error, removed, its counts given back, no file left."""
    db.session.rollback()
    s = db.session.get(Snapshot, snapshot_id)
    if s is None or s.removed is not None:
        return
    if remove_file and s.install_path and s.image_store_id:
        root = templates.mounted_root(db.session.get(ImageStore, s.image_store_id))
        if root is not None:
            for p in (root / s.install_path, root / (s.install_path + ".part")):
                p.unlink(missing_ok=True)
    _release(s)
    s.state, s.error, s.removed = SnapshotState.ERROR, reason[:2000], utcnow()
    events.record("SNAPSHOT.CREATE", f"Snapshot {s.name} failed: {reason}", account_id=s.account_id, level="ERROR",
                  resource_type="Snapshot", resource_id=s.uuid)
    db.session.commit()


def take(s: Snapshot, job: AsyncJob | None = None) -> Snapshot:
    """Make the copy on secondary storage (the job's work)."""
    volume = s.volume
    if volume.removed is not None or volume.state != VolumeState.READY or not volume.path:
        _fail(s.id, f"Volume {volume.name} is {volume.state}")
        raise InvalidParameter(f"Volume {volume.name} is no longer Ready", field="volumeid")
    s.state = SnapshotState.BACKING_UP
    db.session.commit()
    dest = file_of(s)
    vm = volume.vm
    try:
        with vm_held(vm, job, (VMState.RUNNING, VMState.STOPPED)):
            db.session.refresh(volume)
            vm = volume.vm
            vm_name = vm.instance_name if vm is not None and vm.state == VMState.RUNNING else None
            driver = _driver(host_for(volume))
            try:
                info = driver.backup_volume(storage.spec_of(volume.pool), volume.path, str(dest), vm_name)
            finally:
                driver.close()
    except (DriverError, ServiceError) as e:
        _fail(s.id, str(getattr(e, "message", e)))
        raise SnapshotFailed(f"Failed to create snapshot of volume {volume.name}: "
                             f"{getattr(e, 'message', e)}") from None
    except jobs.JobLost:
        raise
    except Exception as e:
        _fail(s.id, f"Internal error: {e}")
        raise
    s = db.session.get(Snapshot, s.id)
    s.state, s.size, s.physical_size = SnapshotState.BACKED_UP, info.size_bytes, info.physical_bytes
    store = db.session.get(ImageStore, s.image_store_id)
    store.used_bytes = (store.used_bytes or 0) + info.physical_bytes
    events.record("SNAPSHOT.CREATE", f"Snapshot {s.name} of volume {volume.name} backed up "
                  f"({info.physical_bytes} bytes)", account_id=s.account_id, user=events.actor(), resource_type="Snapshot",
                  resource_id=s.uuid)
    db.session.commit()
    _recount(s, quotas.gib(info.physical_bytes))
    db.session.commit()
    if s.policy_id is not None:
        from app.services.snapshots import policies
        policies.prune(s.policy_id)
    return db.session.get(Snapshot, s.id)


@jobs.handler("snapshot.create")
def _run_create(job: AsyncJob, params: dict) -> dict:
    s = db.session.scalar(select(Snapshot).where(Snapshot.uuid == params["id"]))
    if s is None or s.removed is not None:
        raise NotFound("Unable to find snapshot with the specified id")
    return {"snapshot": jobs.ObjectResult("snapshot", take(s, job))}


def _create_reaped(job: AsyncJob) -> None:
    """The worker died mid-copy: the snapshot fails, its counts and partial file go."""
    uuid = json.loads(job.params or "{}").get("params", {}).get("id")
    s = db.session.scalar(select(Snapshot).where(Snapshot.uuid == uuid)) if uuid else None
    if s is not None and s.state in (SnapshotState.ALLOCATED, SnapshotState.BACKING_UP):
        _fail(s.id, "The worker taking it stopped")


jobs.on_reap("snapshot.create", _create_reaped)


def recover() -> int:
    """Snapshots left Allocated/BackingUp with no pending job (a process killed between the row
    and the job, or a job failed without its clean-up): failed and given back."""
    from app.models import JobStatus
    n = 0
    for s in db.session.scalars(select(Snapshot).where(
            Snapshot.removed.is_(None), Snapshot.state.in_((SnapshotState.ALLOCATED, SnapshotState.BACKING_UP)))):
        pending = db.session.scalar(select(AsyncJob.id).where(AsyncJob.instance_type == "Snapshot",
                                                              AsyncJob.instance_id == s.uuid,
                                                              AsyncJob.status == JobStatus.PENDING))
        if pending is None and (utcnow() - s.created).total_seconds() > 60:
            _fail(s.id, "Its job ended without a copy")
            n += 1
    return n


# --- Delete ---------------------------------------------------------------------------

def _check_deletable(s: Snapshot) -> None:
    if s.state in (SnapshotState.ALLOCATED, SnapshotState.BACKING_UP):
        raise InvalidParameter(f"Snapshot {s.name} is {s.state}; delete it when it is BackedUp", field="id")


def delete_snapshot(caller, uuid: str) -> None:
    s = get_snapshot(caller, uuid)
    _check_deletable(s)
    delete_row(s, user=caller)


def delete_row(s: Snapshot, *, user=None) -> None:
    """Remove the copy from secondary storage, give back its counts, mark it Destroyed."""
    if s.install_path and s.image_store_id:
        store = db.session.get(ImageStore, s.image_store_id)
        root = templates.mounted_root(store)
        if root is None:
            raise ResourceUnavailable(f"Image store {store.name} is not reachable: the snapshot stays")
        (root / s.install_path).unlink(missing_ok=True)
        store.used_bytes = max(0, (store.used_bytes or 0) - (s.physical_size or 0))
    _release(s)
    s.state, s.removed = SnapshotState.DESTROYED, utcnow()
    events.record("SNAPSHOT.DELETE", f"Snapshot {s.name} deleted", user=user, account_id=s.account_id,
                  resource_type="Snapshot", resource_id=s.uuid)
    db.session.commit()


def submit_delete(caller, uuid: str) -> AsyncJob:
    s = get_snapshot(caller, uuid)
    _check_deletable(s)
    return jobs.submit("deleteSnapshot", caller, "snapshot.delete", {"id": uuid}, instance_type="Snapshot",
                       instance_id=uuid)


@jobs.handler("snapshot.delete")
def _run_delete(job: AsyncJob, params: dict) -> dict:
    delete_snapshot(_user_of(job), params["id"])
    return {"success": True}


# --- Revert ---------------------------------------------------------------------------

def _check_revert(s: Snapshot) -> Volume:
    if s.state != SnapshotState.BACKED_UP:
        raise InvalidParameter(f"Snapshot {s.name} is {s.state}; only a BackedUp snapshot can be reverted", field="id")
    volume = s.volume
    if volume.removed is not None or volume.state != VolumeState.READY or volume.pool_id is None:
        raise InvalidParameter(f"The volume of snapshot {s.name} is gone or not Ready", field="id")
    check_supported(type_of(volume))
    vm = volume.vm
    if vm is not None and vm.state != VMState.STOPPED:
        raise InvalidParameter(f"The VM the specified disk is attached to is not in the shutdown state: stop VM "
                               f"{vm.name} first", field="id")
    if vm is not None and vm.active_job_id is not None:
        raise ResourceInUse(f"VM {vm.name} is busy with another job")
    if volume.size != s.size:
        raise InvalidParameter(f"Volume {volume.name} was resized after snapshot {s.name} was taken", field="id")
    return volume


def submit_revert(caller, uuid: str) -> AsyncJob:
    _check_revert(get_snapshot(caller, uuid))
    return jobs.submit("revertSnapshot", caller, "snapshot.revert", {"id": uuid}, instance_type="Snapshot",
                       instance_id=uuid)


def revert_snapshot(caller, uuid: str, job: AsyncJob | None = None) -> Snapshot:
    s = get_snapshot(caller, uuid)
    volume = _check_revert(s)
    src = file_of(s)
    name = volume.uuid if volume.volume_type == VolumeType.DATADISK else volume.path.rsplit("/", 1)[-1]
    with vm_held(volume.vm, job, (VMState.STOPPED,)):
        driver = _driver(host_for(volume))
        try:
            info = driver.restore_volume(storage.spec_of(volume.pool), name,
                                         TemplateSource(format="QCOW2", size_bytes=s.size, local_path=str(src)))
        except DriverError as e:
            raise SnapshotFailed(f"Failed to revert volume {volume.name} to snapshot {s.name}: {e}") from None
        finally:
            driver.close()
    volume = db.session.get(Volume, volume.id)
    s = db.session.get(Snapshot, s.id)
    volume.path = info.path
    events.record("SNAPSHOT.REVERT", f"Volume {volume.name} reverted to snapshot {s.name}", user=caller,
                  account_id=s.account_id, resource_type="Snapshot", resource_id=s.uuid)
    db.session.commit()
    return s


@jobs.handler("snapshot.revert")
def _run_revert(job: AsyncJob, params: dict) -> dict:
    return {"snapshot": jobs.ObjectResult("snapshot", revert_snapshot(_user_of(job), params["id"], job))}


# --- A volume from a snapshot -----------------------------------------------------------

def _usable(s: Snapshot, field: str = "snapshotid") -> None:
    if s.state != SnapshotState.BACKED_UP:
        raise InvalidParameter(f"Snapshot {s.name} is {s.state}, not BackedUp", field=field)


def create_volume_from_snapshot(caller, snapshot_uuid: str, *, name: str | None = None,
                                zone_uuid: str | None = None, account: str | None = None,
                                domainid: str | None = None, projectid: str | None = None) -> Volume:
    """The new data volume's row (Creating, on the snapshot's volume's pool) and its counts in
    one transaction; the job writes the disk from the copy. The volume is the caller's (or the
    named account's or project's), as CloudStack's CreateVolumeCmd, not the snapshot's owner's."""
    s = get_snapshot(caller, snapshot_uuid, "snapshotid")
    _usable(s)
    owner = access.owner_for(caller, account, domainid, projectid)
    if zone_uuid and zones.get_zone(zone_uuid).id != s.zone_id:
        raise InvalidParameter("The snapshot is in another zone", field="zoneid")
    src = s.volume
    pool = src.pool if src.pool is not None and src.pool.removed is None else None
    if pool is None:
        raise ResourceUnavailable(f"The primary storage of volume {src.name} is gone")
    v = Volume(uuid=new_uuid(), name=(name or "").strip() or f"DATA-{new_uuid()[:8]}", account_id=owner.id,
               zone_id=s.zone_id, disk_offering_id=src.disk_offering_id if src.volume_type == VolumeType.DATADISK
               else None, volume_type=VolumeType.DATADISK, size=s.size, state=VolumeState.CREATING,
               format="QCOW2")
    try:
        quotas.take(owner.id, quotas.volume_deltas(s.size), commit=False)
        quotas.count_new_volume(v)
        volumes.reserve_on_pool(pool, v.size)
        v.pool_id = pool.id
        db.session.add(v)
        events.record("VOLUME.CREATE", f"Volume {v.name} created from snapshot {s.name}", user=caller,
                      account_id=owner.id, resource_type="Volume", resource_id=v.uuid)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return v


def _undo_volume(volume_id: int) -> None:
    db.session.rollback()
    v = db.session.get(Volume, volume_id)
    if v is None or v.removed is not None:
        return
    if v.pool_id is not None:
        volumes.release_on_pool(v.pool_id, v.size)
    quotas.release_volume(v)
    v.state, v.removed = VolumeState.ERROR, utcnow()
    db.session.commit()


def write_volume(v: Volume, snapshot_uuid: str) -> Volume:
    s = db.session.scalar(select(Snapshot).where(Snapshot.uuid == snapshot_uuid))
    try:
        if s is None or s.removed is not None:
            raise NotFound("Unable to find snapshot with the specified id", field="snapshotid")
        driver = _driver(volumes._host_for_pool(v.pool))
        try:
            info = driver.import_template(storage.spec_of(v.pool), v.uuid,
                                          TemplateSource(format="QCOW2", size_bytes=s.size, local_path=str(file_of(s))))
        finally:
            driver.close()
    except DriverError as e:
        _undo_volume(v.id)
        raise SnapshotFailed(f"Failed to create volume {v.name} from snapshot: {e}") from None
    except ServiceError:
        _undo_volume(v.id)
        raise
    v.path, v.state, v.format = info.path, VolumeState.READY, "QCOW2"
    db.session.commit()
    return v


@jobs.handler("snapshot.volume")
def _run_volume(job: AsyncJob, params: dict) -> dict:
    v = db.session.scalar(select(Volume).where(Volume.uuid == params["id"]))
    return {"volume": jobs.ObjectResult("volume", write_volume(v, params["snapshot"]))}


def _volume_reaped(job: AsyncJob) -> None:
    uuid = json.loads(job.params or "{}").get("params", {}).get("id")
    v = db.session.scalar(select(Volume).where(Volume.uuid == uuid)) if uuid else None
    if v is not None and v.state == VolumeState.CREATING:
        _undo_volume(v.id)


jobs.on_reap("snapshot.volume", _volume_reaped)


def submit_create_volume(caller, snapshot_uuid: str, *, name=None, zone_uuid=None, **owner) -> AsyncJob:
    """owner: account, domainid, projectid as the API names them."""
    v = create_volume_from_snapshot(caller, snapshot_uuid, name=name, zone_uuid=zone_uuid, **owner)
    return jobs.submit("createVolume", caller, "snapshot.volume", {"id": v.uuid, "snapshot": snapshot_uuid},
                       instance_type="Volume", instance_id=v.uuid)


# --- A template from a snapshot or a stopped VM's volume ------------------------------------

def _template_row(caller, *, name: str, display_text: str | None, os_type_uuid: str, type_name: str, zone_id: int,
                  size: int, is_public: bool, featured: bool, account=None) -> tuple[Template, TemplateStoreRef]:
    from app.models import OsType
    name = (name or "").strip()
    if not name:
        raise InvalidParameter("name is required", field="name")
    os_type = db.session.scalar(select(OsType).where(OsType.uuid == os_type_uuid))
    if os_type is None:
        raise NotFound("Unable to find OS type with the specified id", field="ostypeid")
    if featured and not caller.is_admin:
        raise InvalidParameter("Only administrators may make a template featured", field="isfeatured")
    store = templates._store_of(zone_id)
    t = Template(uuid=new_uuid(), name=name[:255], display_text=(display_text or name).strip()[:4096], is_iso=False,
                 format="QCOW2", hypervisor_type=type_name, os_type_id=os_type.id,
                 account_id=account.id, is_public=bool(is_public),
                 featured=bool(featured), bootable=True, size=size)
    db.session.add(t)
    db.session.flush()
    ref = TemplateStoreRef(template_id=t.id, zone_id=zone_id, image_store_id=store.id,
                           state=DownloadState.DOWNLOADING, install_path=templates.relative_path(t), size=size)
    db.session.add(ref)
    return t, ref


def _source_of(caller, snapshot_uuid: str | None, volume_uuid: str | None):
    if bool(snapshot_uuid) == bool(volume_uuid):
        raise InvalidParameter("Specify either snapshotid or volumeid (one, not both)", field="snapshotid")
    if snapshot_uuid:
        s = get_snapshot(caller, snapshot_uuid, "snapshotid")
        _usable(s)
        return s, None
    v = volumes.get_volume(caller, volume_uuid, "volumeid")
    if v.state != VolumeState.READY or v.pool_id is None:
        raise InvalidParameter(f"Volume {v.name} is {v.state}; it has no disk yet", field="volumeid")
    check_supported(type_of(v))
    if v.vm is not None and v.vm.state != VMState.STOPPED:
        raise InvalidParameter(f"VolumeId: {v.uuid} please stop vm {v.vm.name} before creating a template",
                               field="volumeid")
    return None, v


def create_template(caller, *, name: str, display_text: str | None, os_type_uuid: str, snapshot_uuid=None,
                    volume_uuid=None, is_public: bool = False, featured: bool = False,
                    projectid: str | None = None) -> Template:
    """The template's row and its copy's (in progress) on the zone's image store. Its owner is
    the caller (or the project named), not the source's owner, as CloudStack's
    CreateTemplateCmd.getEntityOwnerId: an admin's template of a user's snapshot is the admin's."""
    s, v = _source_of(caller, snapshot_uuid, volume_uuid)
    src_volume = v if v is not None else s.volume
    type_name = s.hypervisor_type if s is not None else type_of(v)
    owner = access.owner_for(caller, projectid=projectid)
    try:
        t, _ = _template_row(caller, name=name, display_text=display_text, os_type_uuid=os_type_uuid,
                             type_name=type_name, zone_id=(s or v).zone_id, size=(s or v).size,
                             is_public=is_public, featured=featured, account=owner)
        events.record("TEMPLATE.CREATE", f"Template {t.name} requested from "
                      f"{'snapshot ' + s.name if s else 'volume ' + src_volume.name}", user=caller,
                      account_id=owner.id, resource_type="Template", resource_id=t.uuid)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return t


def _fail_template(template_id: int, reason: str) -> None:
    db.session.rollback()
    t = db.session.get(Template, template_id)
    if t is None or t.removed is not None:
        return
    for ref in templates.refs_of(t):
        root = templates.mounted_root(templates.ref_store(ref))
        if root is not None and ref.install_path:
            for p in (root / ref.install_path, root / (ref.install_path + ".part")):
                p.unlink(missing_ok=True)
        db.session.delete(ref)
    t.removed = utcnow()
    events.record("TEMPLATE.CREATE", f"Template {t.name} failed: {reason}", account_id=t.account_id, level="ERROR",
                  resource_type="Template", resource_id=t.uuid)
    db.session.commit()


def write_template(t: Template, snapshot_uuid: str | None, volume_uuid: str | None,
                   job: AsyncJob | None = None) -> Template:
    ref = templates.refs_of(t)[0]
    dest = templates.store_root(templates.ref_store(ref)) / ref.install_path
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        if snapshot_uuid:
            s = db.session.scalar(select(Snapshot).where(Snapshot.uuid == snapshot_uuid, Snapshot.removed.is_(None)))
            if s is None:
                raise NotFound("Unable to find snapshot with the specified id", field="snapshotid")
            src = file_of(s)
            try:  # the copy shares the snapshot's blocks where the store allows (no bytes copied)
                os.link(src, dest)
            except OSError:
                shutil.copyfile(src, dest)
            virtual, physical = s.size, (s.physical_size or os.path.getsize(dest))
        else:
            v = db.session.scalar(select(Volume).where(Volume.uuid == volume_uuid, Volume.removed.is_(None)))
            if v is None:
                raise NotFound("Unable to find volume with the specified id", field="volumeid")
            if v.vm is not None and v.vm.state != VMState.STOPPED:
                raise InvalidParameter(f"VM {v.vm.name} was started: stop it to make a template of its volume",
                                       field="volumeid")
            with vm_held(v.vm, job, (VMState.STOPPED,)):
                driver = _driver(host_for(v))
                try:
                    info = driver.backup_volume(storage.spec_of(v.pool), v.path, str(dest), None)
                finally:
                    driver.close()
            virtual, physical = info.size_bytes, info.physical_bytes
    except DriverError as e:
        _fail_template(t.id, str(e))
        raise SnapshotFailed(f"Failed to create template {t.name}: {e}") from None
    except ServiceError as e:
        _fail_template(t.id, e.message)
        raise
    except Exception as e:
        _fail_template(t.id, f"Internal error: {e}")
        raise
    ref = db.session.get(TemplateStoreRef, ref.id)
    ref.state, ref.download_pct, ref.size, ref.downloaded_bytes = DownloadState.DOWNLOADED, 100, virtual, physical
    t.size, t.physical_size = virtual, physical
    store = templates.ref_store(ref)
    store.used_bytes = (store.used_bytes or 0) + physical
    events.record("TEMPLATE.CREATE", f"Template {t.name} created ({physical} bytes)", account_id=t.account_id,
                  user=events.actor(), resource_type="Template", resource_id=t.uuid)
    db.session.commit()
    return t


@jobs.handler("snapshot.template")
def _run_template(job: AsyncJob, params: dict) -> dict:
    t = db.session.scalar(select(Template).where(Template.uuid == params["id"]))
    t = write_template(t, params.get("snapshot"), params.get("volume"), job)
    # With its zone's copy, as CloudStack answers (zoneid, isready): clients wait on isready.
    return {"template": jobs.ObjectResult("template", (t, templates.refs_of(t)[0]))}


def _template_reaped(job: AsyncJob) -> None:
    uuid = json.loads(job.params or "{}").get("params", {}).get("id")
    t = db.session.scalar(select(Template).where(Template.uuid == uuid)) if uuid else None
    if t is not None and any(r.state == DownloadState.DOWNLOADING for r in templates.refs_of(t)):
        _fail_template(t.id, "The worker making it stopped")


jobs.on_reap("snapshot.template", _template_reaped)


def submit_create_template(caller, **kw) -> AsyncJob:
    t = create_template(caller, **kw)
    return jobs.submit("createTemplate", caller, "snapshot.template",
                       {"id": t.uuid, "snapshot": kw.get("snapshot_uuid"), "volume": kw.get("volume_uuid")},
                       instance_type="Template", instance_id=t.uuid)
