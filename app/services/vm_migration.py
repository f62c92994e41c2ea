"""Storage for a live migration: which of a running VM's volumes must move with it, and
their copies on the destination (CloudStack's migrateVirtualMachineWithVolume).

A volume stays where it is when the destination host reaches its pool (a shared pool of
the destination's cluster or zone); otherwise it moves: to the pool the caller named
(`migrateto`), else to one the destination reaches of the same kind (its local storage
for a local volume, a shared pool of its cluster or zone for a shared one). Before the
hypervisor copies anything, each moving volume's room is reserved on its new pool and an
empty volume of the same size is made there; the VM's config drive and ISO are put on
the destination's pool too (read-only: copied by Nubo, not by the hypervisor). Only when
the migration has succeeded do the volume rows point at their new pool and path, and the
old files go. When it fails, the copies go and nothing else changed.
"""
from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass, field

from sqlalchemy import or_, select

from app.extensions import db
from app.hypervisors.base import DriverError, VolumeSpec
from app.models import (Host, PoolState, PoolType, StoragePool, StorageScope, VirtualMachine, Volume, VolumeState,
                        VolumeType)
from app.services import config_drive, storage, template_cache, volumes
from app.services import hypervisors as hv
from app.services.errors import InsufficientCapacity, InvalidParameter, NotFound, ResourceUnavailable, ServiceError

log = logging.getLogger(__name__)


def reaches(pool: StoragePool, host: Host) -> bool:
    """The host can use the pool (its own local storage, or a shared pool of its cluster or zone)."""
    if pool.removed is not None:
        return False
    if pool.scope == StorageScope.HOST:
        return pool.host_id == host.id
    if pool.scope == StorageScope.CLUSTER:
        return pool.cluster_id == host.cluster_id
    return pool.zone_id == host.zone_id


def _live_volumes(vm: VirtualMachine) -> list[Volume]:
    return sorted((v for v in vm.volumes if v.removed is None and v.pool_id is not None
                   and v.state == VolumeState.READY), key=lambda v: v.device_id or 0)


def uses_local_storage(vm: VirtualMachine) -> bool:
    return any(v.pool.scope == StorageScope.HOST for v in _live_volumes(vm))


def plan(vm: VirtualMachine, dest: Host, requested: dict[str, str] | None = None) -> dict[int, int]:
    """{volume id: destination pool id} for the volumes that must move to run on `dest`.
    requested: {volume uuid: pool uuid} (migrateto); every other volume moves only when
    dest cannot reach its pool. Raises with the volume and the reason when one cannot go."""
    requested = dict(requested or {})
    moves: dict[int, int] = {}
    for vol in _live_volumes(vm):
        pool_uuid = requested.pop(vol.uuid, None)
        if pool_uuid is not None:
            pool = db.session.scalar(select(StoragePool).where(StoragePool.uuid == pool_uuid,
                                                               StoragePool.removed.is_(None)))
            if pool is None:
                raise NotFound(f"Unable to find storage pool {pool_uuid}", field="migrateto")
            if not reaches(pool, dest):
                raise InvalidParameter(f"Storage pool {pool.name} is not reachable from host {dest.name}; volume "
                                       f"{vol.name} cannot go there", field="migrateto")
            if pool.state != PoolState.UP:
                raise InvalidParameter(f"Storage pool {pool.name} is {pool.state}; volume {vol.name} cannot go there",
                                       field="migrateto")
            if pool.id != vol.pool_id:
                moves[vol.id] = pool.id
            continue
        if reaches(vol.pool, dest):
            continue
        pool = _pick(vol, dest)
        if pool is None:
            kind = "local storage" if vol.pool.scope == StorageScope.HOST else "shared primary storage"
            raise InsufficientCapacity(f"Host {dest.name} has no {kind} that is Up for volume {vol.name}")
        moves[vol.id] = pool.id
    if requested:
        raise InvalidParameter(f"VM {vm.name} has no volume {', '.join(sorted(requested))} that can migrate",
                               field="migrateto")
    return moves


def _pick(vol: Volume, dest: Host) -> StoragePool | None:
    """A pool dest reaches for a volume whose pool it does not: of the same kind (local for
    local), the least allocated first."""
    q = select(StoragePool).where(StoragePool.removed.is_(None), StoragePool.state == PoolState.UP,
                                  StoragePool.zone_id == dest.zone_id)
    if vol.pool.scope == StorageScope.HOST:
        q = q.where(StoragePool.scope == StorageScope.HOST, StoragePool.host_id == dest.id)
    else:
        q = q.where(or_(StoragePool.scope == StorageScope.ZONE,
                        (StoragePool.scope == StorageScope.CLUSTER) & (StoragePool.cluster_id == dest.cluster_id)))
    return db.session.scalars(q.order_by(StoragePool.allocated_bytes, StoragePool.id)).first()


@dataclass
class Prepared:
    """What was made on the destination for a storage migration (undone if it fails)."""
    disks: dict[str, str] = field(default_factory=dict)  # source path -> destination path
    made: list[tuple[int, str]] = field(default_factory=list)  # (pool id, volume name) made on the destination
    reserved: list[tuple[int, int]] = field(default_factory=list)  # (pool id, bytes) counted on the pools
    new_paths: dict[int, tuple[int, str]] = field(default_factory=dict)  # volume id -> (pool id, path)
    old_files: list[tuple[int, str]] = field(default_factory=list)  # (pool id, name) to delete after success


def _driver(host: Host):
    from app.services.hosts import connection_for
    return hv.driver_for(host.hypervisor_type, connection_for(host))


def _name_of(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def prepare(vm: VirtualMachine, source: Host, dest: Host, moves: dict[int, int]) -> Prepared:
    """Reserve room and make the empty destination volumes, the config drive and the ISO on
    the destination's pool. On failure, what was made is undone and the error raised."""
    out = Prepared()
    if not moves:
        return out
    by_id = {v.id: v for v in _live_volumes(vm)}
    driver = _driver(dest)
    try:
        for vol_id, pool_id in moves.items():
            vol, pool = by_id[vol_id], db.session.get(StoragePool, pool_id)
            volumes.reserve_on_pool(pool, vol.size)  # 533 past the pool's allocation limit
            db.session.commit()
            out.reserved.append((pool.id, vol.size))
            spec = storage.spec_of(pool)
            try:
                driver.prepare_storage_pool(spec)
                # Named like the volume (as at deploy): a standalone copy, no template behind it.
                info = driver.create_volume(VolumeSpec(name=vol.uuid, pool=spec, size_bytes=vol.size,
                                                       format=vol.format or "QCOW2", thin=False))
            except DriverError as e:
                raise ResourceUnavailable(f"Volume {vol.name} could not be made on {pool.name}: {e}") from None
            out.made.append((pool.id, vol.uuid))
            out.disks[vol.path] = info.path
            out.new_paths[vol.id] = (pool.id, info.path)
            out.old_files.append((vol.pool_id, _name_of(vol.path)))
        root = next((v for v in by_id.values() if v.volume_type == VolumeType.ROOT), None)
        if root is not None and root.id in moves:
            src_pool, dst_pool = root.pool, db.session.get(StoragePool, moves[root.id])
            old_dir = posixpath.dirname(root.path.replace("\\", "/"))
            cfg = config_drive.ensure(vm, dest, dst_pool)  # read-only: made again on the destination
            if cfg:
                out.made.append((dst_pool.id, _name_of(cfg)))
                out.disks[posixpath.join(old_dir, config_drive.volume_name(vm))] = cfg
                out.old_files.append((src_pool.id, config_drive.volume_name(vm)))
            if vm.iso_id:
                old_iso = template_cache.ensure_on_pool(vm.iso, src_pool, source).install_path
                out.disks[old_iso] = template_cache.ensure_on_pool(vm.iso, dst_pool, dest).install_path
    except ServiceError:
        undo(out)
        raise
    finally:
        driver.close()
    return out


def undo(prepared: Prepared) -> None:
    """The migration did not happen: the destination's copies go, the reservations come back."""
    db.session.rollback()
    for pool_id, name in prepared.made:
        _delete(pool_id, name)
    for pool_id, size in prepared.reserved:
        volumes.release_on_pool(pool_id, size)
    db.session.commit()


def declared_shared(vm: VirtualMachine, moves: dict[int, int]) -> bool:
    """A volume that stays is on a shared Filesystem pool (CloudStack's SharedMountPoint): the
    admin declared it shared by the cluster; the hypervisor cannot tell it from a local disk."""
    return any(v.pool.pool_type == PoolType.FILESYSTEM and v.pool.scope != StorageScope.HOST
               for v in _live_volumes(vm) if v.id not in moves)


def commit(vm: VirtualMachine, prepared: Prepared) -> None:
    """The migration succeeded: the rows name the new pools and paths; the old files go."""
    if not prepared.new_paths:
        return
    for vol in _live_volumes(vm):
        if vol.id in prepared.new_paths:
            pool_id, path = prepared.new_paths[vol.id]
            volumes.release_on_pool(vol.pool_id, vol.size)
            vol.pool_id, vol.path = pool_id, path
    db.session.commit()
    for pool_id, name in prepared.old_files:
        _delete(pool_id, name)


def _delete(pool_id: int, name: str) -> None:
    """Best effort: a file left behind is reported by the pool's own checks, never fatal here."""
    pool = db.session.get(StoragePool, pool_id)
    host = pool.host if pool.scope == StorageScope.HOST else next(iter(storage._hosts_in_scope(pool)), None)
    if host is None:
        return
    driver = _driver(host)
    try:
        driver.delete_volume(storage.spec_of(pool), name)
    except DriverError as e:
        log.warning("could not delete %s from %s: %s", name, pool.name, e)
    finally:
        driver.close()
