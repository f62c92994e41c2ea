"""Templates on primary storage: each pool keeps one base volume per template
(TemplatePoolRef), imported at first use and reused; root volumes are copied
from it — thin where the format allows (a qcow2 overlay on libvirt, a
differencing VHDX on Hyper-V), full copies otherwise (Custom's RAW-only type).

Direct-download templates have no copy on secondary storage: their base volume
is fetched straight from the URL into the pool (checksum verified as it arrives).
The base volume's size counts in the pool's allocated bytes, so capacity is right.
"""
from __future__ import annotations

import time

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.hypervisors.base import DriverError, TemplateSource, VolumeInfo, VolumeSpec
from app.models import (Account, DownloadState, Host, ImageStore, StoragePool, Template, TemplatePoolRef, TemplateStoreRef)
from app.services import hypervisors as hv
from app.services import storage, templates, volumes
from app.services.errors import ResourceUnavailable, ServiceError

WAIT_FOR_OTHER_IMPORT = 600  # seconds another process may take to import the same template


def base_volume_name(t: Template) -> str:
    return f"template-{t.uuid}"


def _source(t: Template, pool: StoragePool) -> TemplateSource:
    if t.direct_download:
        owner = db.session.get(Account, t.account_id)
        return TemplateSource(format=t.format, url=t.url, checksum=t.checksum, size_bytes=t.physical_size or 0,
                              fetch=templates.fetch_policy(bool(owner and owner.is_admin)))
    ref = db.session.scalar(select(TemplateStoreRef).where(TemplateStoreRef.template_id == t.id,
                                                           TemplateStoreRef.zone_id == pool.zone_id))
    if ref is None or ref.state != DownloadState.DOWNLOADED or not ref.install_path:
        raise ResourceUnavailable(f"Template {t.name} is not ready on the secondary storage of this zone")
    local, share = store_paths(db.session.get(ImageStore, ref.image_store_id), ref.install_path)
    return TemplateSource(format=t.format, size_bytes=ref.downloaded_bytes or 0, local_path=local,
                          share_path=share, checksum=t.checksum)


def store_paths(store: ImageStore, install_path: str) -> tuple[str | None, str]:
    """A file on an image store as the management server reads it (None: not mounted there)
    and as hosts see it (an SMB share path for Hyper-V, else the store's URL)."""
    root = templates.mounted_root(store)
    local = str(root / install_path) if root else None  # the management server streams it in
    if store.provider == "SMB":  # Hyper-V hosts read it from the share themselves
        share = "\\\\" + store.url.split("://", 1)[1].strip("/").replace("/", "\\") + "\\" + \
            install_path.replace("/", "\\")
    else:
        share = f"{store.url.rstrip('/')}/{install_path}"
    return local, share


def fetch_pending(t: Template | None, zone_id: int) -> bool:
    """Whether using `t` in the zone may first fetch it from its URL: a direct-download
    template missing from one of the zone's Up pools. A job doing so is a long transfer
    (it runs on the transfer queue, within its account's limit)."""
    if t is None or not t.direct_download:
        return False
    have = select(TemplatePoolRef.id).where(TemplatePoolRef.pool_id == StoragePool.id,
                                            TemplatePoolRef.template_id == t.id,
                                            TemplatePoolRef.state == DownloadState.DOWNLOADED)
    return db.session.scalar(select(StoragePool.id).where(
        StoragePool.zone_id == zone_id, StoragePool.removed.is_(None), StoragePool.state == "Up",
        ~have.exists()).limit(1)) is not None


def _driver(host: Host):
    from app.services.hosts import connection_for
    return hv.driver_for(host.hypervisor_type, connection_for(host))


def ensure_on_pool(t: Template, pool: StoragePool, host: Host) -> TemplatePoolRef:
    """The template's base volume on `pool`, imported through `host` if it is not there yet.
    Concurrent callers import it once: the first inserts the ref (a unique row), the others wait."""
    ref = _claim(t, pool)
    if ref.state == DownloadState.DOWNLOADED:
        return ref
    try:
        source = _source(t, pool)
        reserved = source.size_bytes
        volumes.reserve_on_pool(pool, reserved)  # refused past the pool's allocation threshold
    except ServiceError:
        _forget(ref.id)
        raise
    db.session.commit()  # nothing held while the host works
    driver = _driver(host)
    try:
        info: VolumeInfo = driver.import_template(storage.spec_of(pool), base_volume_name(t), source)
    except DriverError as e:
        db.session.rollback()
        volumes.release_on_pool(pool.id, reserved)
        _forget(ref.id)
        what = "fetched from its URL" if t.direct_download else "copied from secondary storage"
        raise ResourceUnavailable(f"Template {t.name} could not be {what} into pool {pool.name}: {e}") from None
    finally:
        driver.close()
    size = info.physical_bytes or info.size_bytes
    db.session.execute(update(TemplatePoolRef).where(TemplatePoolRef.id == ref.id).values(
        state=DownloadState.DOWNLOADED, install_path=info.path, size=size))
    db.session.execute(update(StoragePool).where(StoragePool.id == pool.id).values(  # the real size, not the guess
        allocated_bytes=StoragePool.allocated_bytes + size - reserved))
    db.session.commit()
    # populate_existing: the Core UPDATE above is not in the loaded ref (a job's session may
    # not expire on commit)
    return db.session.get(TemplatePoolRef, ref.id, populate_existing=True)


def _forget(ref_id: int) -> None:
    """Drop our claim so the next attempt starts over."""
    db.session.rollback()
    db.session.execute(delete(TemplatePoolRef).where(TemplatePoolRef.id == ref_id))
    db.session.commit()


def _claim(t: Template, pool: StoragePool) -> TemplatePoolRef:
    deadline = time.monotonic() + WAIT_FOR_OTHER_IMPORT
    while True:
        ref = db.session.scalar(select(TemplatePoolRef).where(TemplatePoolRef.template_id == t.id,
                                                             TemplatePoolRef.pool_id == pool.id))
        if ref is not None and ref.state == DownloadState.DOWNLOADED:
            return ref
        if ref is None:
            ref = TemplatePoolRef(template_id=t.id, pool_id=pool.id, state=DownloadState.DOWNLOADING)
            db.session.add(ref)
            try:
                db.session.commit()
                return ref  # ours to import
            except IntegrityError:
                db.session.rollback()  # another process claimed it first
        if time.monotonic() > deadline:
            raise ResourceUnavailable(f"Template {t.name} is still being imported into pool {pool.name}")
        db.session.rollback()  # a fresh snapshot for the next look
        time.sleep(0.5)


def root_volume_format(t: Template) -> tuple[str, bool]:
    """(format, thin) of root volumes made from this template on its hypervisor type."""
    formats = hv.resolve(t.hypervisor_type).capabilities.template_formats
    if t.format in ("RAW", "QCOW2") and "QCOW2" in formats:
        return "QCOW2", True  # a qcow2 overlay over the base (raw or qcow2)
    if t.format in ("VHD", "VHDX"):
        return t.format, True  # a differencing disk
    return t.format, False  # e.g. Custom: RAW only, a full copy


def create_root_volume(t: Template, pool: StoragePool, host: Host, name: str, size_bytes: int = 0) -> VolumeInfo:
    """A VM's root volume from the template (imported into the pool first when needed)."""
    base = ensure_on_pool(t, pool, host)
    fmt, thin = root_volume_format(t)
    driver = _driver(host)
    try:
        return driver.create_volume(VolumeSpec(name=name, pool=storage.spec_of(pool),
                                               size_bytes=max(size_bytes, t.size or 0), format=fmt,
                                               base_path=base.install_path, thin=thin))
    except DriverError as e:
        raise ResourceUnavailable(f"Root volume {name} could not be made in pool {pool.name}: {e}") from None
    finally:
        driver.close()
