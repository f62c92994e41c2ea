"""Primary storage pools (where volumes live) and image stores (secondary storage).

A primary pool is prepared on every Up host in its scope through the driver;
if one host fails, the hosts already prepared are undone and nothing is kept.
"""
from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.orm import joinedload

from app.extensions import db
from app.hypervisors.base import DriverError, StoragePoolSpec
from app.models import (Cluster, Host, HostState, ImageStore, ImageStoreState, PoolState, PoolType, StoragePool, StorageScope,
                        TemplateStoreRef, Volume, Zone, new_uuid, utcnow)
from app.services import crypto, events, settings, zones
from app.services import hypervisors as hv
from app.services.errors import InvalidParameter, NotFound, ResourceInUse, ResourceUnavailable
from app.services.pagination import name_of, page_of, ratio, sorted_by

KINDS = {"nfs": PoolType.NFS, "smb": PoolType.SMB, "cifs": PoolType.SMB, "file": PoolType.FILESYSTEM}
SPEC_KIND = {PoolType.NFS: "NFS", PoolType.SMB: "SMB", PoolType.FILESYSTEM: "Filesystem"}


def parse_url(url: str, field: str = "url") -> tuple[str, str | None, str]:
    """(pool type, server, path) from nfs://server/path, smb://server/share, file:///path."""
    parts = urlsplit((url or "").strip())
    kind = KINDS.get(parts.scheme.lower())
    if kind is None:
        raise InvalidParameter("The URL must be nfs://server/path, smb://server/share or file:///path", field=field)
    path = unquote(parts.path)
    if kind == PoolType.FILESYSTEM:
        if parts.netloc or not path.startswith("/") or ".." in path.split("/"):
            raise InvalidParameter("A directory URL is file:///absolute/path", field=field)
        return kind, None, path
    if not parts.hostname or not path.strip("/"):
        raise InvalidParameter(f"The URL needs a server and a path: {parts.scheme}://server/path", field=field)
    if {".", ".."} & set(path.split("/")):
        raise InvalidParameter(f"The path must be absolute, without . or .. ({parts.scheme}://server/export/path)",
                               field=field)
    return kind, parts.hostname, path


def _credentials(details: dict) -> str | None:
    """SMB user/password of a pool or store, encrypted at rest (None without them)."""
    return crypto.encrypt_json({k: details[k] for k in ("user", "password") if details.get(k)})


def check_pool_kind(type_name: str, kind: str) -> None:
    """The hypervisor type must be able to use this kind of shared storage."""
    kinds = hv.resolve(type_name).capabilities.storage_kinds
    if SPEC_KIND[kind] not in kinds:
        raise InvalidParameter(f"{hv.display_name(type_name)} hosts take {', '.join(kinds) or 'no'} "
                               f"shared storage, not {SPEC_KIND[kind]}", field="url")


def spec_of(pool: StoragePool) -> StoragePoolSpec:
    creds = crypto.decrypt_json(pool.credentials_enc)
    return StoragePoolSpec(uuid=pool.uuid, name=pool.name, kind=SPEC_KIND[pool.pool_type], path=pool.path,
                           server=pool.server, username=creds.get("user"), password=creds.get("password"))


def _hosts_in_scope(pool: StoragePool) -> list[Host]:
    q = select(Host).where(Host.removed.is_(None), Host.state == HostState.UP)
    if pool.scope == StorageScope.CLUSTER:
        q = q.where(Host.cluster_id == pool.cluster_id)
    else:
        q = q.where(Host.zone_id == pool.zone_id)
    return list(db.session.scalars(q))


def _type_of(pool: StoragePool) -> str | None:
    """The hypervisor type a pool serves (recorded at creation; older rows: the cluster's)."""
    return pool.hypervisor_type or (pool.cluster.hypervisor_type if pool.cluster_id else None)


def prepare_on_hosts(pool: StoragePool, hosts: list[Host]) -> None:
    """Prepare the pool on every host through its driver; on the first failure undo
    the hosts already done and raise (nothing half-made). Sets the pool's size."""
    from app.services import hosts as hosts_service
    prepared: list[Host] = []
    for host in hosts:
        driver = hv.driver_for(host.hypervisor_type, hosts_service.connection_for(host))
        try:
            info = driver.prepare_storage_pool(spec_of(pool))
        except DriverError as e:
            unprepare_on_hosts(pool, prepared)
            raise ResourceUnavailable(f"Storage pool {pool.name} could not be prepared on host {host.name}: {e}",
                                      field="url") from None
        finally:
            driver.close()
        prepared.append(host)
        pool.capacity_bytes = info.capacity_bytes
        pool.used_bytes = info.capacity_bytes - info.available_bytes


def unprepare_on_hosts(pool: StoragePool, hosts: list[Host]) -> None:
    """Best-effort removal of the pool from hosts (undo of prepare_on_hosts)."""
    from app.services import hosts as hosts_service
    for host in hosts:
        driver = hv.driver_for(host.hypervisor_type, hosts_service.connection_for(host))
        try:
            driver.delete_storage_pool(spec_of(pool))
        except DriverError:
            pass
        finally:
            driver.close()


def normal_tags(tags: list[str] | str | None) -> str | None:
    """Storage tags as CloudStack lists them: comma-separated, in the order given, no blanks or repeats.
    An empty list clears them (None)."""
    if tags is None:
        return None
    items = tags.split(",") if isinstance(tags, str) else tags
    out: list[str] = []
    for t in (str(t).strip() for t in items):
        if t and t not in out:
            if any(ord(c) < 32 for c in t):
                raise InvalidParameter("A storage tag may not contain control characters", field="tags")
            out.append(t)
    joined = ",".join(out)
    if len(joined) > 4096:
        raise InvalidParameter("The storage tags are longer than 4096 characters", field="tags")
    return joined or None


def create_storage_pool(caller, *, zone_uuid: str, name: str, url: str, scope: str = "cluster",
                        pod_uuid: str | None = None, cluster_uuid: str | None = None, hypervisor: str | None = None,
                        details: dict | None = None, tags: list[str] | None = None,
                        capacity_iops: int | None = None) -> StoragePool:
    zone = zones.get_zone(zone_uuid)
    kind, server, path = parse_url(url)
    scope = (scope or "cluster").upper()
    if scope not in (StorageScope.CLUSTER, StorageScope.ZONE):
        raise InvalidParameter("scope must be cluster or zone", field="scope")
    cluster = None
    if scope == StorageScope.CLUSTER:
        if not cluster_uuid:
            raise InvalidParameter("A cluster-wide pool needs clusterid", field="clusterid")
        cluster = zones.get_cluster(cluster_uuid)
        if cluster.zone_id != zone.id:
            raise InvalidParameter("The cluster is not in that zone", field="clusterid")
        type_name = cluster.hypervisor_type
    else:
        if not hypervisor:
            raise InvalidParameter("A zone-wide pool needs the hypervisor it serves", field="hypervisor")
        type_name = hv.resolve(hypervisor).name
    check_pool_kind(type_name, kind)
    name = zones._name(name)
    details = details or {}
    if capacity_iops is not None and capacity_iops < 0:
        raise InvalidParameter("capacityiops may not be negative", field="capacityiops")
    pool = StoragePool(uuid=new_uuid(), name=name, zone_id=zone.id, pod_id=cluster.pod_id if cluster else None,
                       cluster_id=cluster.id if cluster else None, scope=scope, pool_type=kind, url=url,
                       server=server, path=path, hypervisor_type=type_name,
                       credentials_enc=_credentials(details), tags=normal_tags(tags), capacity_iops=capacity_iops)
    hosts = [h for h in _hosts_in_scope(pool) if h.hypervisor_type == type_name]
    # End the read transaction before talking to hosts: no database lock is held
    # while a driver works (the Simulator driver writes through its own connection).
    db.session.commit()
    prepare_on_hosts(pool, hosts)
    db.session.add(pool)
    events.record("STORAGE.POOL.CREATE", f"Primary storage {name} ({url}) added", user=caller,
                  resource_type="StoragePool", resource_id=pool.uuid)
    db.session.commit()
    return pool


def delete_storage_pool(caller, uuid: str) -> None:
    pool = db.session.scalar(select(StoragePool).where(StoragePool.uuid == uuid, StoragePool.removed.is_(None)))
    if pool is None:
        raise NotFound("Unable to find storage pool with the specified id", field="id")
    if db.session.scalar(select(func.count()).select_from(Volume).where(Volume.pool_id == pool.id,
                                                                        Volume.removed.is_(None))):
        raise ResourceInUse(f"Storage pool {pool.name} still holds volumes")
    if pool.scope != StorageScope.HOST:  # a host's local pool is its own directory: leave it defined
        hosts = [h for h in _hosts_in_scope(pool) if h.hypervisor_type == _type_of(pool)]
        db.session.commit()  # no lock held while drivers work
        unprepare_on_hosts(pool, hosts)
    pool.removed = utcnow()
    settings.forget("storagepool", pool.id)
    events.record("STORAGE.POOL.DELETE", f"Primary storage {pool.name} removed", user=caller,
                  resource_type="StoragePool", resource_id=pool.uuid)
    db.session.commit()


def get_storage_pool(uuid: str) -> StoragePool:
    pool = db.session.scalar(select(StoragePool).where(StoragePool.uuid == uuid, StoragePool.removed.is_(None)))
    if pool is None:
        raise NotFound("Unable to find storage pool with the specified id", field="id")
    return pool


def update_storage_pool(caller, uuid: str, *, name: str | None = None, tags: list[str] | None = None,
                        capacity_bytes: int | None = None, capacity_iops: int | None = None,
                        enabled: bool | None = None) -> StoragePool:
    """CloudStack's updateStoragePool: name, storage tags (an empty list clears them), the bytes and
    IOPS Nubo may provision from it, and enabled (false: no new volumes or placements; true: back Up).
    Everything is checked first and written in one transaction: a refused change changes nothing."""
    pool = get_storage_pool(uuid)
    if enabled is True and pool.state != PoolState.DISABLED:
        raise InvalidParameter(f"Primary storage with id {pool.uuid} cannot be enabled. Storage pool state : "
                               f"{pool.state}", field="enabled")
    if enabled is False and pool.state != PoolState.UP:
        raise InvalidParameter(f"Primary storage with id {pool.uuid} cannot be disabled. Storage pool state : "
                               f"{pool.state}", field="enabled")
    if capacity_iops is not None and capacity_iops < 0:
        raise InvalidParameter("capacityiops may not be negative", field="capacityiops")
    changes: dict = {}
    if name is not None and name.strip():
        changes["name"] = zones._name(name)
    if tags is not None:
        changes["tags"] = normal_tags(tags)
    if capacity_iops is not None:
        changes["capacity_iops"] = capacity_iops
    if enabled is not None:
        changes["state"] = PoolState.UP if enabled else PoolState.DISABLED
    q = update(StoragePool).where(StoragePool.id == pool.id, StoragePool.state == pool.state)
    if capacity_bytes is not None:
        if capacity_bytes <= 0:
            raise InvalidParameter("capacitybytes must be positive", field="capacitybytes")
        changes["capacity_bytes"] = capacity_bytes
        # Never below what volumes already hold, checked in the same UPDATE as concurrent reservations.
        q = q.where(StoragePool.allocated_bytes <= capacity_bytes)
    if changes:
        done = db.session.execute(q.values(**changes).execution_options(synchronize_session=False))
        if done.rowcount != 1:
            db.session.rollback()
            db.session.refresh(pool)
            if capacity_bytes is not None and pool.allocated_bytes > capacity_bytes:
                raise InvalidParameter(f"Primary storage {pool.name} already has {pool.allocated_bytes} bytes "
                                       f"allocated; capacitybytes cannot be less", field="capacitybytes")
            raise InvalidParameter(f"Primary storage {pool.name} changed state to {pool.state} meanwhile; "
                                   f"try again", field="id")
        events.record("STORAGE.POOL.UPDATE" if enabled is None else
                      ("ENABLE.PRIMARY.STORAGE" if enabled else "DISABLE.PRIMARY.STORAGE"),
                      f"Primary storage {changes.get('name', pool.name)} updated: " + ", ".join(sorted(changes)),
                      user=caller, resource_type="StoragePool", resource_id=pool.uuid)
        db.session.commit()
        db.session.refresh(pool)
    return pool


# Sort keys the admin lists accept (a whitelist: the key comes from the query string).
POOL_SORTS = {"name": StoragePool.name, "zone": name_of(Zone, StoragePool.zone_id),
              "cluster": name_of(Cluster, StoragePool.cluster_id), "scope": StoragePool.scope,
              "type": StoragePool.pool_type, "state": StoragePool.state, "capacity": StoragePool.capacity_bytes,
              "used": ratio(StoragePool.used_bytes, StoragePool.capacity_bytes),
              "allocated": ratio(StoragePool.allocated_bytes, StoragePool.capacity_bytes)}


def list_storage_pools(*, id=None, zone_uuid=None, cluster_uuid=None, name=None, keyword=None, scope=None, page=None,
                       sort: str | None = None):
    q = (sorted_by(select(StoragePool).where(StoragePool.removed.is_(None)), sort, POOL_SORTS, StoragePool.id)
         .options(joinedload(StoragePool.zone), joinedload(StoragePool.cluster), joinedload(StoragePool.host)))
    if id:
        q = q.where(StoragePool.uuid == id)
    if zone_uuid:
        q = q.where(StoragePool.zone_id == zones.get_zone(zone_uuid).id)
    if cluster_uuid:
        q = q.where(StoragePool.cluster_id == zones.get_cluster(cluster_uuid).id)
    if scope:
        q = q.where(StoragePool.scope == scope.upper())
    if name:
        q = q.where(StoragePool.name == name)
    if keyword:
        q = q.where(StoragePool.name.contains(keyword, autoescape=True))
    return page_of(q, page)


# --- Image stores ---------------------------------------------------------------

IMAGE_STORE_PROVIDERS = {"nfs": "NFS", "smb": "SMB", "local": "Local"}


def validate_image_store(provider: str, url: str) -> tuple[str, str, int, int]:
    """(provider, path, capacity, used) for an image store; a Local one must be a
    directory the management server can write (created if missing)."""
    provider = IMAGE_STORE_PROVIDERS.get((provider or "").strip().lower())
    if provider is None:
        raise InvalidParameter("provider must be NFS, SMB or Local", field="provider")
    kind, server, path = parse_url(url)
    expected = {"NFS": PoolType.NFS, "SMB": PoolType.SMB, "Local": PoolType.FILESYSTEM}[provider]
    if kind != expected:
        raise InvalidParameter(f"A {provider} image store takes a "
                               f"{ {'NFS': 'nfs://', 'SMB': 'smb://', 'Local': 'file:///'}[provider] } URL", field="url")
    capacity = used = 0
    if provider == "Local":
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise InvalidParameter(f"Cannot use {path}: {e.strerror}", field="url") from None
        if not os.access(path, os.W_OK):
            raise InvalidParameter(f"Nubo cannot write to {path}", field="url")
        usage = shutil.disk_usage(path)
        capacity, used = usage.total, usage.used
    return provider, path, capacity, used


def add_image_store(caller, *, provider: str, url: str, name: str | None = None, zone_uuid: str | None = None,
                    details: dict | None = None) -> ImageStore:
    provider, path, capacity, used = validate_image_store(provider, url)
    zone = zones.get_zone(zone_uuid) if zone_uuid else None
    details = details or {}
    store = ImageStore(uuid=new_uuid(), name=zones._name(name or url), zone_id=zone.id if zone else None,
                       provider=provider, url=url, path=path, capacity_bytes=capacity, used_bytes=used,
                       credentials_enc=_credentials(details))
    db.session.add(store)
    events.record("IMAGE.STORE.ADD", f"Image store {store.name} ({provider}) added", user=caller,
                  resource_type="ImageStore", resource_id=store.uuid)
    db.session.commit()
    check_image_stores(stores=[store])  # its state now (an NFS store nobody mounted yet: Unreachable)
    return store


def delete_image_store(caller, uuid: str) -> None:
    store = db.session.scalar(select(ImageStore).where(ImageStore.uuid == uuid, ImageStore.removed.is_(None)))
    if store is None:
        raise NotFound("Unable to find image store with the specified id", field="id")
    if db.session.scalar(select(func.count()).select_from(TemplateStoreRef).where(
            TemplateStoreRef.image_store_id == store.id)):
        raise ResourceInUse(f"Image store {store.name} still holds templates")
    store.removed = utcnow()
    events.record("IMAGE.STORE.DELETE", f"Image store {store.name} removed", user=caller,
                  resource_type="ImageStore", resource_id=store.uuid)
    db.session.commit()


# --- Image store state (the monitor's sweep) --------------------------------------

STORE_CHECK_SECONDS = 10  # a hung NFS mount must not hold the sweep
_checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="nubo-store-check")


def probe_store(root: Path) -> tuple[str, str | None, tuple[int, int] | None]:
    """(state, reason, (capacity, used) or None) of a store's directory: listed (read), then a
    file written and removed (written). A real write, not access(2)'s guess."""
    try:
        if not root.is_dir():
            return ImageStoreState.UNREACHABLE, f"{root} is not a directory", None
        next(os.scandir(root), None)
        usage = shutil.disk_usage(root)
    except OSError as e:
        return ImageStoreState.UNREACHABLE, f"{root} cannot be read: {e.strerror or e}", None
    probe = root / f".nubo-check-{os.getpid()}"
    try:
        probe.write_bytes(b"nubo")
        probe.unlink()
    except OSError as e:
        return ImageStoreState.READ_ONLY, f"{root} cannot be written: {e.strerror or e}", (usage.total, usage.used)
    return ImageStoreState.READY, None, (usage.total, usage.used)


def check_image_stores(now=None, stores: list[ImageStore] | None = None) -> int:
    """Each live store's directory probed (in parallel, each within STORE_CHECK_SECONDS) and its
    state, reason and size set; a change of state is an event. Returns the stores that changed."""
    from app.models import utcnow
    from app.services.templates import store_root
    now = now or utcnow()
    if stores is None:
        stores = list(db.session.scalars(select(ImageStore).where(ImageStore.removed.is_(None))))
    work = {}
    for store in stores:
        try:
            work[store.id] = _checks.submit(probe_store, store_root(store))
        except ResourceUnavailable as e:
            work[store.id] = e.message
    changed = 0
    for store in stores:
        answer = work[store.id]
        if isinstance(answer, str):
            state, reason, usage = ImageStoreState.UNREACHABLE, answer, None
        else:
            try:
                state, reason, usage = answer.result(timeout=STORE_CHECK_SECONDS)
            except FutureTimeout:
                state, reason, usage = (ImageStoreState.UNREACHABLE,
                                        f"its directory did not answer within {STORE_CHECK_SECONDS} s", None)
        if usage:
            store.capacity_bytes, store.used_bytes = usage
        store.last_checked = now
        store.state_reason = reason[:1000] if reason else None
        if state != store.state:
            before, store.state = store.state, state
            changed += 1
            events.record("IMAGE.STORE.STATE", f"Image store {store.name} is {state} (was {before})"
                          + (f": {reason}" if reason else ""), level="INFO" if state == ImageStoreState.READY
                          else "WARN", resource_type="ImageStore", resource_id=store.uuid)
            from app.services.alerts import triggers as alert_triggers
            alert_triggers.image_store_state_changed(store)  # Unreachable: an alert; Ready again: cleared
    db.session.commit()
    return changed


STORE_SORTS = {"name": ImageStore.name, "zone": name_of(Zone, ImageStore.zone_id), "provider": ImageStore.provider,
               "capacity": ImageStore.capacity_bytes, "used": ratio(ImageStore.used_bytes, ImageStore.capacity_bytes),
               "state": ImageStore.state}


def list_image_stores(*, id=None, zone_uuid=None, provider=None, name=None, keyword=None, page=None,
                      sort: str | None = None):
    q = sorted_by(select(ImageStore).where(ImageStore.removed.is_(None)), sort, STORE_SORTS, ImageStore.id).options(
        joinedload(ImageStore.zone))
    if id:
        q = q.where(ImageStore.uuid == id)
    if zone_uuid:
        q = q.where(ImageStore.zone_id == zones.get_zone(zone_uuid).id)
    if provider:
        q = q.where(ImageStore.provider == provider)
    if name:
        q = q.where(ImageStore.name == name)
    if keyword:
        q = q.where(ImageStore.name.contains(keyword, autoescape=True))
    return page_of(q, page)
