"""Disk offerings and data volumes: create (Allocated: no storage yet, as in
CloudStack), attach (made on the VM's primary pool at first attach, then plugged
in through the driver), detach, resize (offline only, never shrink), delete
(the file goes with it). Volumes on Hyper-V are files named by their UUID.

Primary storage is never filled past `storage.allocated.capacity.disablethreshold`."""
from __future__ import annotations

from sqlalchemy import case, or_, select, update
from sqlalchemy.orm import joinedload

from app.extensions import db
from app.hypervisors.base import DiskSpec, DriverError, VolumeSpec
from app.models import (DiskOffering, Host, PoolState, StoragePool, StorageScope, VirtualMachine, VMState, Volume,
                        VolumeState, VolumeType, new_uuid, utcnow)
from app.services import access, events, placement_tags, quotas, settings, storage, zones
from app.services import hypervisors as hv
from app.services.errors import InsufficientCapacity, InvalidParameter, NotFound, ResourceUnavailable, ServiceError
from app.services.pagination import page_of
from app.services.settings import Definition, define

define(Definition("storage.allocated.capacity.disablethreshold", "0.85", "Primary storage pools are not "
                  "allocated past this fraction of their capacity.", category="Storage", type="float",
                  min=0.1, max=1.0, scopes=("zone",)))
define(Definition("custom.diskoffering.size.max", "1024", "Largest custom data volume, in GiB.",
                  category="Storage", type="integer", min=1, max=65536, scopes=("account",)))

GIB = 1 << 30


# --- Capacity ------------------------------------------------------------------

def reserve_on_pool(pool: StoragePool, size: int) -> None:
    """Count `size` bytes as allocated on the pool, atomically, refusing past the threshold."""
    threshold = settings.get("storage.allocated.capacity.disablethreshold", zone=pool.zone_id)
    if pool.capacity_bytes <= 0:
        return  # size unknown (no host prepared it yet): nothing to check against
    limit = int(pool.capacity_bytes * threshold)
    done = db.session.execute(update(StoragePool).where(
        StoragePool.id == pool.id, StoragePool.allocated_bytes + size <= limit).values(
        allocated_bytes=StoragePool.allocated_bytes + size).execution_options(synchronize_session=False))
    if done.rowcount != 1:
        raise InsufficientCapacity(f"Primary storage {pool.name} would pass its allocation limit "
                                   f"({threshold:.0%} of {pool.capacity_bytes // GIB} GiB) with {size // GIB} GiB more")


def release_on_pool(pool_id: int, size: int) -> None:
    db.session.execute(update(StoragePool).where(StoragePool.id == pool_id).values(
        allocated_bytes=case((StoragePool.allocated_bytes > size, StoragePool.allocated_bytes - size), else_=0))
        .execution_options(synchronize_session=False))


# --- Disk offerings -------------------------------------------------------------

def create_disk_offering(caller, *, name: str, display_text: str | None = None, disk_size: int | None = None,
                         customized: bool = False, storage_type: str = "shared", tags=None,
                         domain_ids=None, zone_ids=None) -> DiskOffering:
    from app.services import offering_domains, offerings
    domains = offering_domains.parse(domain_ids)
    in_zones = offering_domains.parse_zones(zone_ids)
    offering_domains.check_caller(caller, DiskOffering(), domains, creating=True)
    name = zones._name(name)
    offerings.unique_name(DiskOffering, name)
    tags = placement_tags.normalize(tags, "tags")
    if storage_type not in ("shared", "local"):
        raise InvalidParameter("storagetype must be shared or local", field="storagetype")
    if customized and disk_size:
        raise InvalidParameter("A customized disk offering takes no disksize: its size is chosen when a volume "
                               "is made", field="disksize")
    if not customized and (disk_size is None or disk_size < 1):
        raise InvalidParameter("disksize (GiB, at least 1) is required unless customized", field="disksize")
    if disk_size and disk_size > settings.get("custom.diskoffering.size.max"):
        raise InvalidParameter(f"disksize must be at most {settings.get('custom.diskoffering.size.max')} GiB",
                               field="disksize")
    o = DiskOffering(uuid=new_uuid(), name=name, display_text=display_text or name,
                     disk_size=0 if customized else disk_size, is_custom=customized, storage_type=storage_type,
                     tags=tags)
    db.session.add(o)
    offering_domains.set_domains(o, domains)
    offering_domains.set_zones(caller, o, in_zones, creating=True)
    events.record("DISK.OFFERING.CREATE", f"Disk offering {name} created", user=caller,
                  resource_type="DiskOffering", resource_id=o.uuid)
    db.session.commit()
    return o


def get_disk_offering(uuid: str, field: str = "diskofferingid") -> DiskOffering:
    o = db.session.scalar(select(DiskOffering).where(DiskOffering.uuid == uuid, DiskOffering.removed.is_(None)))
    if o is None:
        raise NotFound("Unable to find disk offering with the specified id", field=field)
    return o


def update_disk_offering(caller, uuid: str, *, name: str | None = None, display_text: str | None = None,
                         sort_key: int | None = None, tags=None, domain_ids=None, zone_ids=None) -> DiskOffering:
    """updateDiskOffering: name, display text, sort key, storage tags (for the volumes made from now on),
    domains (domainid; "public": none). A domain admin edits only offerings of their subtree."""
    from app.services import offering_domains, offerings
    o = get_disk_offering(uuid, "id")
    domains = offering_domains.parse(domain_ids, allow_public=True)
    offering_domains.check_caller(caller, o, domains, creating=False)
    offering_domains.set_domains(o, domains)
    offering_domains.set_zones(caller, o, offering_domains.parse_zones(zone_ids, allow_all=True))
    offerings.rename(o, name=name, display_text=display_text, sort_key=sort_key)
    if tags is not None:
        o.tags = placement_tags.normalize(tags, "tags")
    events.record("DISK.OFFERING.EDIT", f"Disk offering {o.name} updated", user=caller,
                  resource_type="DiskOffering", resource_id=o.uuid)
    db.session.commit()
    return o


def delete_disk_offering(caller, uuid: str) -> None:
    from app.services import offering_domains
    o = get_disk_offering(uuid, "id")
    if not offering_domains.may_manage(caller, o):
        raise InvalidParameter(f"Unable to delete disk offering: {o.uuid} by admin: {caller.username}: a "
                               "domain admin deletes only offerings of their own domains", field="id")
    o.removed = utcnow()
    events.record("DISK.OFFERING.DELETE", f"Disk offering {o.name} deleted", user=caller,
                  resource_type="DiskOffering", resource_id=o.uuid)
    db.session.commit()


def list_disk_offerings(caller=None, *, id=None, name=None, keyword=None, page=None, domainid=None,
                        recursive=False, owner=None, zone=None):
    """listDiskOfferings: what the caller may see (offering_domains.visible; no caller: every one), or
    with owner what that account may use."""
    from app.services import offering_domains
    return page_of(offering_domains.listed(DiskOffering, caller, id=id, name=name, keyword=keyword,
                                           domainid=domainid, recursive=recursive, owner=owner, zone=zone), page)


# --- Volumes ---------------------------------------------------------------------

def _visible(caller):
    return select(Volume).where(Volume.removed.is_(None), access.owned(caller, Volume.account_id))


def get_volume(caller, uuid: str, field: str = "id") -> Volume:
    """Another account's volume is "not found", exactly like a missing one."""
    v = db.session.scalar(_visible(caller).where(Volume.uuid == uuid))
    if v is None:
        raise NotFound("Unable to find volume with the specified id", field=field)
    return v


def _get_vm(caller, uuid: str) -> VirtualMachine:
    from app.services import vms  # vms uses volumes: imported at call time
    return vms.get_vm(caller, uuid, "virtualmachineid")


def create_volume(caller, *, name: str | None, zone_uuid: str, disk_offering_uuid: str,
                  size_gib: int | None = None, account: str | None = None, domainid: str | None = None) -> Volume:
    if not zone_uuid:
        raise InvalidParameter("Missing parameter zoneid: give zoneid and diskofferingid, or snapshotid",
                               field="zoneid")
    if not disk_offering_uuid:
        raise InvalidParameter("Missing parameter diskofferingid: give zoneid and diskofferingid, or snapshotid",
                               field="diskofferingid")
    owner = access.owner_for(caller, account, domainid)  # the caller's, the account named or the project's
    zone = zones.get_zone(zone_uuid)
    offering = get_disk_offering(disk_offering_uuid)
    from app.services import offering_domains
    offering_domains.check_use(owner, offering, zone)  # 531: an offering of another domain or zone
    if offering.is_custom:
        if not size_gib or size_gib < 1:
            raise InvalidParameter(f"Disk offering {offering.name} is custom: give size (GiB)", field="size")
        largest = settings.get("custom.diskoffering.size.max", account=owner.id)
        if size_gib > largest:
            raise InvalidParameter(f"size must be at most {largest} GiB", field="size")
        size = size_gib * GIB
    else:
        if size_gib:
            raise InvalidParameter(f"Disk offering {offering.name} has a fixed size", field="size")
        size = offering.disk_size * GIB
    v = Volume(uuid=new_uuid(), name=(name or "").strip() or f"DATA-{new_uuid()[:8]}", account_id=owner.id,
               zone_id=zone.id, disk_offering_id=offering.id, volume_type=VolumeType.DATADISK, size=size,
               state=VolumeState.ALLOCATED)
    try:
        # 532 when a limit would pass; the counts commit with the row, or neither does.
        quotas.take(owner.id, quotas.volume_deltas(size), commit=False)
        quotas.count_new_volume(v)
        db.session.add(v)
        events.record("VOLUME.CREATE", f"Volume {v.name} ({size // GIB} GiB) created", user=caller,
                      resource_type="Volume", resource_id=v.uuid)
        db.session.commit()
    except Exception:
        db.session.rollback()  # no row, nothing taken
        raise
    return v


def _vm_host(vm: VirtualMachine) -> Host | None:
    return vm.host or (db.session.get(Host, vm.last_host_id) if vm.last_host_id else None)


def _driver(host):
    from app.services.hosts import connection_for
    return hv.driver_for(host.hypervisor_type, connection_for(host))


def _format_for(type_name: str) -> str:
    formats = hv.resolve(type_name).capabilities.template_formats
    for f in ("QCOW2", "VHDX", "RAW", "VHD"):
        if f in formats:
            return f
    raise InvalidParameter(f"{hv.display_name(type_name)} VMs take no data volumes", field="virtualmachineid")


def attach_volume(caller, uuid: str, vm_uuid: str) -> Volume:
    v = get_volume(caller, uuid)
    vm = _get_vm(caller, vm_uuid)
    if v.vm_id is not None:
        raise InvalidParameter(f"Volume {v.name} is already attached", field="id")
    if v.volume_type != VolumeType.DATADISK:
        raise InvalidParameter("Only data volumes can be attached", field="id")
    if v.account_id != vm.account_id:
        raise InvalidParameter(f"Volume {v.name} and VM {vm.name} belong to different accounts",
                               field="virtualmachineid")
    if v.zone_id != vm.zone_id:
        raise InvalidParameter("The volume and the VM are in different zones", field="virtualmachineid")
    if vm.state not in (VMState.RUNNING, VMState.STOPPED):
        raise InvalidParameter(f"VM {vm.name} is {vm.state}; attach when it is Running or Stopped",
                               field="virtualmachineid")
    if v.state not in (VolumeState.ALLOCATED, VolumeState.READY, VolumeState.UPLOADED):
        raise InvalidParameter("Volume state must be in Allocated, Ready or in Uploaded state", field="id")
    uploaded = v.state == VolumeState.UPLOADED  # its image is on the image store: moved into the pool now
    if uploaded and v.format not in hv.resolve(vm.hypervisor_type).capabilities.template_formats:
        raise InvalidParameter(f"Volume {v.name} is {v.format}; {hv.display_name(vm.hypervisor_type)} VMs take "
                               f"{', '.join(hv.resolve(vm.hypervisor_type).capabilities.template_formats)}",
                               field="virtualmachineid")
    from app.services.snapshots import vm_snapshots
    vm_snapshots.refuse_if_snapshots(vm, "Unable to attach volume, please specify a VM that does not have VM "
                                     "snapshots", field="virtualmachineid")
    attached = [x for x in vm.volumes if x.removed is None and x.volume_type == VolumeType.DATADISK]
    limit = hv.limits(vm.hypervisor_type).max_data_volumes_limit
    if len(attached) >= limit:
        raise InvalidParameter(f"VM {vm.name} already has {limit} data volumes, the most its type takes",
                               field="virtualmachineid")
    host = _vm_host(vm)
    root = next((x for x in vm.volumes if x.volume_type == VolumeType.ROOT and x.pool_id
                 and x.state == VolumeState.READY), None)
    if host is None or root is None:
        raise ResourceUnavailable(f"VM {vm.name} has no host or root volume yet")
    device_id = 1 + max([x.device_id or 0 for x in attached], default=0)
    fmt = _format_for(vm.hypervisor_type)
    pool = root.pool if v.state == VolumeState.READY else _pool_for_data(v, host, root.pool)
    if v.state != VolumeState.READY:
        # First attach: the pool's allocation is held by the volume row (pool_id), committed
        # with it, so a process killed while the host makes the disk leaves it owned by the
        # volume (deleting the volume gives it back; the next attach makes the disk) — never
        # leaked. An earlier attempt's hold on another pool is given back first.
        if v.pool_id is not None and v.pool_id != pool.id:
            release_on_pool(v.pool_id, v.size)
            v.pool_id = None
        if v.pool_id is None:
            try:
                reserve_on_pool(pool, v.size)
            except InsufficientCapacity:
                db.session.rollback()
                raise
            v.pool_id = pool.id
    db.session.commit()
    if uploaded:  # from now on it counts as primary storage (532 here: nothing moved)
        try:
            quotas.recount_volume(v, v.counted_gib, quotas.gib(v.size))
        except Exception:
            db.session.rollback()
            release_on_pool(pool.id, v.size)
            v.pool_id = None
            db.session.commit()
            raise
    driver = _driver(host)
    try:
        if v.state != VolumeState.READY:  # make the volume on the VM's pool
            from app.services.transfers import volume_uploads
            try:
                if uploaded:
                    info = driver.import_template(storage.spec_of(pool), v.uuid, volume_uploads.source_of(v))
                else:
                    info = driver.create_volume(VolumeSpec(name=v.uuid, pool=storage.spec_of(pool),
                                                           size_bytes=v.size, format=fmt))
            except (DriverError, ServiceError):
                db.session.rollback()
                release_on_pool(pool.id, v.size)
                v.pool_id = None
                db.session.commit()
                if uploaded:
                    quotas.recount_volume(v, quotas.gib(v.size), 0, after_failure=True)
                raise
            v.path, v.format, v.state = info.path, info.format if uploaded else fmt, VolumeState.READY
            if uploaded:
                volume_uploads.moved(v)
            db.session.commit()
        if vm.state == VMState.RUNNING:  # a stopped VM gets its volumes in its spec at the next start
            driver.attach_volume(vm.instance_name, DiskSpec(path=v.path, format=v.format, device_id=device_id))
    except DriverError as e:
        raise ResourceUnavailable(f"Volume {v.name} could not be attached to {vm.name}: {e}") from None
    finally:
        driver.close()
    v.vm_id, v.device_id, v.attached = vm.id, device_id, utcnow()
    events.record("VOLUME.ATTACH", f"Volume {v.name} attached to {vm.name}", user=caller, resource_type="Volume",
                  resource_id=v.uuid)
    db.session.commit()
    return v


def _pool_for_data(v: Volume, host: Host, root_pool: StoragePool) -> StoragePool:
    """Where a data volume is made at its first attach: the root volume's pool, unless its disk
    offering has storage tags that pool lacks; then a shared pool the host reaches that has them all."""
    tags = v.disk_offering.tags if v.disk_offering else None
    if not tags or not placement_tags.missing(root_pool.tags, tags):
        return root_pool
    pool = db.session.scalars(select(StoragePool).where(
        StoragePool.removed.is_(None), StoragePool.zone_id == host.zone_id, StoragePool.state == PoolState.UP,
        placement_tags.has_all(StoragePool.tags, tags),
        or_(StoragePool.scope == StorageScope.ZONE,
            (StoragePool.scope == StorageScope.CLUSTER) & (StoragePool.cluster_id == host.cluster_id)))
        .order_by(StoragePool.allocated_bytes, StoragePool.id)).first()
    if pool is None:
        raise InsufficientCapacity(f"No primary storage with the storage tags {tags} is reachable from "
                                   f"host {host.name}")
    return pool


def detach_volume(caller, uuid: str) -> Volume:
    v = get_volume(caller, uuid)
    if v.vm_id is None:
        raise InvalidParameter(f"Volume {v.name} is not attached", field="id")
    if v.volume_type != VolumeType.DATADISK:
        raise InvalidParameter("A root volume cannot be detached", field="id")
    vm = v.vm
    from app.services.snapshots import vm_snapshots
    vm_snapshots.refuse_if_snapshots(vm, "Unable to detach volume, please specify a VM that does not have VM "
                                     "snapshots")
    if vm.state == VMState.RUNNING:
        driver = _driver(_vm_host(vm))
        try:
            driver.detach_volume(vm.instance_name, DiskSpec(path=v.path, format=v.format, device_id=v.device_id or 0))
        except DriverError as e:
            raise ResourceUnavailable(f"Volume {v.name} could not be detached from {vm.name}: {e}") from None
        finally:
            driver.close()
    v.vm_id, v.device_id, v.attached = None, None, None
    events.record("VOLUME.DETACH", f"Volume {v.name} detached from {vm.name}", user=caller, resource_type="Volume",
                  resource_id=v.uuid)
    db.session.commit()
    return v


def _host_for_pool(pool: StoragePool):
    """A host that can reach the pool (its own host for local storage, an Up host in scope otherwise)."""
    if pool.host is not None:
        return pool.host
    hosts = storage._hosts_in_scope(pool)
    if not hosts:
        raise ResourceUnavailable(f"No Up host can reach primary storage {pool.name}")
    return hosts[0]


def resize_volume(caller, uuid: str, *, size_gib: int | None = None, disk_offering_uuid: str | None = None) -> Volume:
    """Offline resize: the volume is detached, or its VM is Stopped. Volumes never shrink."""
    v = get_volume(caller, uuid)
    if disk_offering_uuid:
        offering = get_disk_offering(disk_offering_uuid)
        from app.services import offering_domains
        offering_domains.check_use(v.account, offering, v.zone)
        new = (size_gib if offering.is_custom else offering.disk_size) or 0
    else:
        new = size_gib or 0
    if new < 1:
        raise InvalidParameter("Give the new size (GiB) or a disk offering", field="size")
    new_bytes = new * GIB
    from app.services.transfers import volume_uploads
    if v.state in volume_uploads.UPLOAD_STATES:
        raise InvalidParameter(f"Volume {v.name} is {v.state}; resize it once it is attached (Ready)", field="id")
    if new_bytes < v.size:
        raise InvalidParameter(f"Volume {v.name} is {v.size // GIB} GiB; volumes never shrink", field="size")
    if v.vm_id is not None and v.vm.state != VMState.STOPPED:
        raise InvalidParameter(f"Stop VM {v.vm.name} first: volumes are resized offline", field="id")
    if v.vm_id is not None and new_bytes != v.size:
        from app.services.snapshots import vm_snapshots
        vm_snapshots.refuse_if_snapshots(v.vm, "A volume that is attached to a VM with any VM snapshots cannot be "
                                         "resized.")
    grow = new_bytes - v.size
    # The new size counts before the disk grows (atomically against the limit, with the
    # volume's counted_gib); every failure after this gives back exactly what it took.
    new_gib, counted_before = quotas.gib(new_bytes), v.counted_gib
    counting = v.quota_counted and new_gib > counted_before
    if counting:
        quotas.recount_volume(v, counted_before, new_gib)
    try:
        if v.pool_id is not None and grow:
            pool = v.pool
            reserve_on_pool(pool, grow)
            db.session.commit()
            if v.state == VolumeState.READY:  # else its disk is not made yet: made at the new size
                driver = _driver(_host_for_pool(pool))
                try:
                    driver.resize_volume(storage.spec_of(pool), v.uuid if v.volume_type == VolumeType.DATADISK
                                         else v.path.rsplit("/", 1)[-1], new_bytes)
                except DriverError as e:
                    release_on_pool(pool.id, grow)
                    db.session.commit()
                    raise ResourceUnavailable(f"Volume {v.name} could not be resized: {e}") from None
                finally:
                    driver.close()
    except Exception:
        db.session.rollback()
        if counting:
            quotas.recount_volume(v, new_gib, counted_before, after_failure=True)
        raise
    v.size = new_bytes
    events.record("VOLUME.RESIZE", f"Volume {v.name} resized to {new} GiB", user=caller, resource_type="Volume",
                  resource_id=v.uuid)
    db.session.commit()
    return v


def delete_volume(caller, uuid: str) -> None:
    v = get_volume(caller, uuid)
    if v.vm_id is not None:
        raise InvalidParameter(f"Detach volume {v.name} first", field="id")
    if v.volume_type != VolumeType.DATADISK:
        raise InvalidParameter("Root volumes go with their VM", field="id")
    from app.services.transfers import volume_uploads
    if v.state in volume_uploads.UPLOAD_STATES:  # its image (or part of it) on the image store goes
        volume_uploads.discard(v)
    if v.pool_id is not None:
        pool = v.pool
        if v.state == VolumeState.READY:  # else its disk was never made (the process stopped first)
            driver = _driver(_host_for_pool(pool))
            try:
                driver.delete_volume(storage.spec_of(pool), v.uuid)
            except DriverError as e:
                raise ResourceUnavailable(f"Volume {v.name} could not be deleted: {e}") from None
            finally:
                driver.close()
        release_on_pool(pool.id, v.size)

    quotas.release_volume(v)
    v.removed, v.state = utcnow(), VolumeState.EXPUNGED
    events.record("VOLUME.DELETE", f"Volume {v.name} deleted", user=caller, resource_type="Volume",
                  resource_id=v.uuid)
    db.session.commit()


def list_volumes(caller, *, id=None, name=None, keyword=None, vm_uuid=None, zone_uuid=None, type_=None, tags=None,
                 account: str | None = None, domainid: str | None = None, page=None):
    from app.services import tags as tagging
    q = _visible(caller).options(joinedload(Volume.vm), joinedload(Volume.pool)).order_by(Volume.id)
    q = tagging.matching(q, "Volume", Volume.id, tags)
    if account:
        q = q.where(Volume.account_id == access.owner_for(caller, account, domainid).id)
    if id:
        q = q.where(Volume.uuid == id)
    if name:
        q = q.where(Volume.name == name)
    if keyword:
        q = q.where(Volume.name.contains(keyword, autoescape=True))
    if vm_uuid:
        q = q.where(Volume.vm_id == _get_vm(caller, vm_uuid).id)
    if zone_uuid:
        q = q.where(Volume.zone_id == zones.get_zone(zone_uuid).id)
    if type_:
        q = q.where(Volume.volume_type == type_.upper())
    return page_of(q, page)
