"""uploadVolume and getUploadParamsForVolume: a data volume whose image arrives from a URL
(fetched by a transfer job) or from a browser POST (the signed upload URL), onto the zone's
image store first, as CloudStack does. The bytes pass the template path's checks
(app.services.templates: app.net.outbound for every http(s) fetch with the settings'
address, size, deadline and rate limits; the checksum as they arrive; `qemu-img info` for
the real format and no backing or data file) before the volume becomes "Uploaded".
Its first attach moves the image into the VM's primary storage (the driver's
import_template: on KVM virStorageVolUpload into the pool) and deletes the store's copy.

Counts: the volume counts one volume (resource type 2) from its row's creation; its copy on
the image store counts its GiB of secondary storage (type 11) once it has arrived (532 then
fails the upload and deletes the file); the first attach gives the secondary storage back
and counts the volume's size as primary storage (type 10), as any volume.

States (CloudStack's): UploadOp (the job fetches) or NotUploaded (a browser upload URL was
issued) → UploadInProgress (bytes arriving by POST) → Uploaded, or UploadError (the reason
is kept; the volume can be deleted, a browser upload posted again while its URL is valid).
"""
from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from app.extensions import db
from app.jobs import service as jobs
from app.models import (AsyncJob, DownloadState, ImageStore, User, Volume, VolumeState, VolumeStoreRef, VolumeType,
                        new_uuid, utcnow)
from app.services import access, events, quotas, settings, templates, volumes, zones
from app.services.errors import InvalidParameter, NotFound, PermissionDenied, ServiceError

# Disk image formats Nubo can check (qemu-img) and a hypervisor can take as a data disk.
FORMATS = ("QCOW2", "RAW", "VHD", "VHDX")
UPLOADING = (VolumeState.UPLOAD_OP, VolumeState.NOT_UPLOADED, VolumeState.UPLOAD_IN_PROGRESS)
UPLOAD_STATES = (*UPLOADING, VolumeState.UPLOADED, VolumeState.UPLOAD_ERROR)


# --- Checks and rows ----------------------------------------------------------------------

def _check(caller, *, name: str, format: str, zone_uuid: str, checksum: str | None,
           disk_offering_uuid: str | None, account: str | None, domainid: str | None):
    owner = access.owner_for(caller, account, domainid)
    name = (name or "").strip()
    if not name:
        raise InvalidParameter("name is required", field="name")
    fmt = (format or "").strip().upper()
    if fmt not in FORMATS:
        raise InvalidParameter(f"Image format: {format} is incorrect. Supported formats are {', '.join(FORMATS)}",
                               field="format")
    zone = zones.get_zone(zone_uuid)
    templates.parse_checksum(checksum)
    offering = None
    if disk_offering_uuid:
        offering = volumes.get_disk_offering(disk_offering_uuid)
        if not offering.is_custom:
            raise InvalidParameter("Please specify a custom sized disk offering.", field="diskofferingid")
    store = templates._store_of(zone.id)
    return owner, name[:255], fmt, zone, offering, store


def _rows(caller, owner, *, name, fmt, zone, offering, store, url, checksum, state) -> tuple[Volume, VolumeStoreRef]:
    """The volume (counted as one volume, no storage yet) and its copy's row, in one transaction."""
    v = Volume(uuid=new_uuid(), name=name, account_id=owner.id, zone_id=zone.id,
               disk_offering_id=offering.id if offering else None, volume_type=VolumeType.DATADISK, size=0,
               format=fmt, state=state)
    try:
        quotas.take(owner.id, {"volume": 1}, commit=False)  # 532 when the account has its most volumes
        v.quota_counted, v.counted_gib = True, 0
        db.session.add(v)
        db.session.flush()
        ref = VolumeStoreRef(volume_id=v.id, account_id=owner.id, image_store_id=store.id, url=url,
                             checksum=(checksum or "").strip() or None, format=fmt,
                             state=DownloadState.NOT_DOWNLOADED,
                             install_path=f"volumes/{owner.id}/{v.uuid}.{templates.EXTENSIONS[fmt]}")
        db.session.add(ref)
        events.record("VOLUME.UPLOAD", f"Volume {v.name} to be uploaded" + (f" from {url}" if url else ""),
                      user=caller, account_id=owner.id, resource_type="Volume", resource_id=v.uuid)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return v, ref


def ref_of(v: Volume) -> VolumeStoreRef | None:
    return db.session.scalar(select(VolumeStoreRef).where(VolumeStoreRef.volume_id == v.id))


def _path(ref: VolumeStoreRef) -> Path:
    return templates.store_root(db.session.get(ImageStore, ref.image_store_id)) / ref.install_path


# --- uploadVolume ---------------------------------------------------------------------------

def submit_upload(caller, *, url: str, name: str, format: str, zone_uuid: str, checksum: str | None = None,
                  disk_offering_uuid: str | None = None, account: str | None = None,
                  domainid: str | None = None) -> AsyncJob:
    url = templates.check_url(url, caller)  # the SSRF rules of template URLs, checked now and at fetch
    owner, name, fmt, zone, offering, store = _check(caller, name=name, format=format, zone_uuid=zone_uuid,
                                                     checksum=checksum, disk_offering_uuid=disk_offering_uuid,
                                                     account=account, domainid=domainid)
    v, ref = _rows(caller, owner, name=name, fmt=fmt, zone=zone, offering=offering, store=store, url=url,
                   checksum=checksum, state=VolumeState.UPLOAD_OP)
    job = jobs.submit("uploadVolume", caller, "volume.upload", {"id": v.uuid}, instance_type="Volume",
                      instance_id=v.uuid, queue=jobs.TRANSFERS)
    db.session.execute(update(VolumeStoreRef).where(VolumeStoreRef.id == ref.id, VolumeStoreRef.job_id.is_(None))
                       .values(job_id=job.id).execution_options(synchronize_session=False))
    db.session.commit()
    return job


def _fail(v_id: int, reason: str) -> None:
    """The image did not arrive or was refused: no file stays, the volume is UploadError."""
    db.session.rollback()
    v = db.session.get(Volume, v_id)
    ref = ref_of(v) if v is not None else None
    if v is None or ref is None or v.removed is not None:
        return
    root = templates.mounted_root(db.session.get(ImageStore, ref.image_store_id))
    if root is not None:
        for p in (root / ref.install_path, root / (ref.install_path + ".part")):
            p.unlink(missing_ok=True)
    _give_back(ref)
    ref.state, ref.error, ref.download_pct, ref.downloaded_bytes = DownloadState.ERROR, reason[:2000], 0, 0
    v.state = VolumeState.UPLOAD_ERROR
    events.record("VOLUME.UPLOAD", f"Upload of volume {v.name} failed: {reason}", level="ERROR",
                  account_id=v.account_id, resource_type="Volume", resource_id=v.uuid)
    db.session.commit()


def _give_back(ref: VolumeStoreRef) -> None:
    """The copy no longer counts its secondary storage: exactly what it counted, once."""
    done = db.session.execute(update(VolumeStoreRef).where(
        VolumeStoreRef.id == ref.id, VolumeStoreRef.quota_counted.is_(True),
        VolumeStoreRef.counted_gib == ref.counted_gib).values(quota_counted=False, counted_gib=0)
        .execution_options(synchronize_session=False))
    if done.rowcount == 1 and ref.counted_gib:
        quotas.give(ref.account_id, {"secondary_storage": ref.counted_gib}, commit=False)
    db.session.refresh(ref)


def _arrived(v: Volume, ref: VolumeStoreRef, part: Path) -> None:
    """Checks passed: count the copy's secondary storage (532 fails it), move it into place."""
    virtual, physical = templates.inspect(part, ref.format)
    g = quotas.gib(physical)
    quotas.take(v.account_id, {"secondary_storage": g}, commit=False)
    ref.quota_counted, ref.counted_gib = True, g
    os.replace(part, part.with_name(part.name[:-len(".part")]))
    ref.state, ref.download_pct, ref.physical_size, ref.downloaded_bytes, ref.error = (
        DownloadState.DOWNLOADED, 100, physical, physical, None)
    v.size, v.state = virtual, VolumeState.UPLOADED
    store = db.session.get(ImageStore, ref.image_store_id)
    store.used_bytes = (store.used_bytes or 0) + physical
    events.record("VOLUME.UPLOAD", f"Volume {v.name} uploaded ({physical} bytes, {virtual} bytes virtual)",
                  account_id=v.account_id, resource_type="Volume", resource_id=v.uuid)
    db.session.commit()


def _receive(v: Volume, ref: VolumeStoreRef, chunks, total: int | None, job: AsyncJob | None) -> None:
    part = None
    try:
        final = _path(ref)
        part = final.with_name(final.name + ".part")
        templates.receive(chunks, part, checksum=ref.checksum, total=total,
                          progress=templates.Progress(job, ref.id, total, model=VolumeStoreRef))
        v, ref = db.session.get(Volume, v.id), db.session.get(VolumeStoreRef, ref.id)
        _arrived(v, ref, part)
    except ServiceError as e:
        _fail(v.id, e.message)
        raise
    except jobs.JobLost:
        raise
    except Exception as e:  # noqa: BLE001 - recorded on the volume too, then by the job
        _fail(v.id, f"Internal error: {e}")
        raise


@jobs.handler("volume.upload")
def _run_upload(job: AsyncJob, params: dict) -> dict:
    v = db.session.scalar(select(Volume).where(Volume.uuid == params["id"], Volume.removed.is_(None)))
    ref = ref_of(v) if v is not None else None
    if ref is None:
        raise NotFound("Unable to find volume with the specified id")
    owner_is_admin = bool(job.user_id and access.is_root(db.session.get(User, job.user_id)))
    ref.state = DownloadState.DOWNLOADING
    db.session.commit()
    try:
        chunks, total = templates.open_source(ref.url, owner_is_admin)
    except ServiceError as e:
        _fail(v.id, e.message)
        raise
    try:
        _receive(v, ref, chunks, total, job)
    finally:
        getattr(chunks, "close", lambda: None)()  # the connection, when receive stopped early
    return {"volume": jobs.ObjectResult("volume", db.session.get(Volume, v.id))}


def _upload_reaped(job: AsyncJob) -> None:
    uuid = json.loads(job.params or "{}").get("params", {}).get("id")
    v = db.session.scalar(select(Volume).where(Volume.uuid == uuid)) if uuid else None
    if v is not None and v.state == VolumeState.UPLOAD_OP:
        _fail(v.id, "The worker downloading it stopped")


jobs.on_reap("volume.upload", _upload_reaped)


# --- getUploadParamsForVolume and the upload endpoint -------------------------------------------

METADATA_PREFIX = "volume:"  # a template's metadata never starts so: one signature opens one kind


def upload_params(caller, *, name: str, format: str, zone_uuid: str, checksum: str | None = None,
                  disk_offering_uuid: str | None = None, account: str | None = None,
                  domainid: str | None = None) -> dict:
    owner, name, fmt, zone, offering, store = _check(caller, name=name, format=format, zone_uuid=zone_uuid,
                                                     checksum=checksum, disk_offering_uuid=disk_offering_uuid,
                                                     account=account, domainid=domainid)
    v, ref = _rows(caller, owner, name=name, fmt=fmt, zone=zone, offering=offering, store=store, url=None,
                   checksum=checksum, state=VolumeState.NOT_UPLOADED)
    return {"id": v.uuid, **templates.signed_params(f"{METADATA_PREFIX}{v.uuid}:{ref.id}",
                                                     templates.upload_url("volume"))}


def check_upload(metadata: str, expires: str, signature: str) -> tuple[Volume, VolumeStoreRef]:
    templates.verify_signed(metadata, expires, signature)
    if not (metadata or "").startswith(METADATA_PREFIX):
        raise PermissionDenied("Bad upload signature")
    v_uuid, _, ref_id = metadata[len(METADATA_PREFIX):].partition(":")
    ref = db.session.get(VolumeStoreRef, int(ref_id)) if ref_id.isdigit() else None
    v = db.session.get(Volume, ref.volume_id) if ref else None
    if v is None or v.uuid != v_uuid or v.removed is not None:
        raise NotFound("No such upload")
    if v.state not in (VolumeState.NOT_UPLOADED, VolumeState.UPLOAD_ERROR) or ref.url:
        raise InvalidParameter("This volume was uploaded already")
    return v, ref


def receive_upload(v: Volume, ref: VolumeStoreRef, chunks, total: int | None) -> None:
    """Stream a POSTed file into the store, then check it (in this request). Two POSTs at once:
    one takes the volume (atomically), the other is refused."""
    taken = db.session.execute(update(Volume).where(
        Volume.id == v.id, Volume.state.in_((VolumeState.NOT_UPLOADED, VolumeState.UPLOAD_ERROR)))
        .values(state=VolumeState.UPLOAD_IN_PROGRESS).execution_options(synchronize_session=False))
    if taken.rowcount != 1:
        db.session.rollback()
        raise InvalidParameter("This volume is being uploaded already")
    ref.state, ref.error = DownloadState.DOWNLOADING, None
    db.session.commit()
    db.session.refresh(v)
    _receive(v, ref, chunks, total, None)


# --- The first attach, and deletion -------------------------------------------------------------

def source_of(v: Volume):
    """The uploaded image as the driver's TemplateSource, as a template's: streamed by the
    management server (libvirt), or read by the host from the SMB store (Hyper-V)."""
    from app.hypervisors.base import TemplateSource
    from app.services.template_cache import store_paths
    ref = ref_of(v)
    if ref is None or ref.state != DownloadState.DOWNLOADED:
        raise InvalidParameter(f"Volume {v.name} has no uploaded image", field="id")
    local, share = store_paths(db.session.get(ImageStore, ref.image_store_id), ref.install_path)
    return TemplateSource(format=ref.format, size_bytes=ref.physical_size, local_path=local, share_path=share,
                          checksum=ref.checksum)


def moved(v: Volume) -> None:
    """The image is in primary storage now: the store's copy goes, with its count. Uncommitted."""
    ref = ref_of(v)
    if ref is None:
        return
    root = templates.mounted_root(db.session.get(ImageStore, ref.image_store_id))
    if root is not None:
        (root / ref.install_path).unlink(missing_ok=True)
        store = db.session.get(ImageStore, ref.image_store_id)
        store.used_bytes = max(0, (store.used_bytes or 0) - (ref.physical_size or 0))
    _give_back(ref)
    db.session.delete(ref)


def discard(v: Volume) -> None:
    """deleteVolume of a volume still on the image store (any upload state): its file (or partial
    file) goes, with its count. Uncommitted."""
    if v.state in (VolumeState.UPLOAD_OP, VolumeState.UPLOAD_IN_PROGRESS):
        raise InvalidParameter(f"Volume {v.name} is {v.state}: wait until its upload ends", field="id")
    ref = ref_of(v)
    if ref is not None:
        root = templates.mounted_root(db.session.get(ImageStore, ref.image_store_id))
        if root is not None:
            (root / (ref.install_path + ".part")).unlink(missing_ok=True)
        moved(v)


def expire_unused(now=None) -> int:
    """Browser upload URLs that expired with nothing posted (NotUploaded), browser uploads
    cut off mid-way (UploadInProgress with nothing arriving for upload.stall.timeout, the web
    process killed), and uploadVolume downloads whose job is not pending (a process killed
    between the row and its job): UploadError, the partial file deleted. Returns how many."""
    from app.models import JobStatus
    now = now or utcnow()
    orphans = db.session.execute(select(Volume.id, VolumeStoreRef.created, AsyncJob.status)
                                 .join(VolumeStoreRef, VolumeStoreRef.volume_id == Volume.id)
                                 .outerjoin(AsyncJob, AsyncJob.id == VolumeStoreRef.job_id)
                                 .where(Volume.removed.is_(None), Volume.state == VolumeState.UPLOAD_OP)).all()
    db.session.commit()
    failed = 0
    for vid, created, status in orphans:
        if status != JobStatus.PENDING and (now - created).total_seconds() > 60:
            _fail(vid, "Its download job ended without the image")
            failed += 1
    url_life = timedelta(seconds=settings.get("upload.url.expiry"))
    rows = db.session.execute(select(Volume.id, Volume.state, VolumeStoreRef.created, VolumeStoreRef.downloaded_bytes)
                              .join(VolumeStoreRef, VolumeStoreRef.volume_id == Volume.id)
                              .where(Volume.removed.is_(None), VolumeStoreRef.url.is_(None),
                                     Volume.state.in_((VolumeState.NOT_UPLOADED,
                                                       VolumeState.UPLOAD_IN_PROGRESS)))).all()
    db.session.commit()
    n = failed
    for vid, state, created, got in rows:
        if state == VolumeState.NOT_UPLOADED and created + url_life < now:
            _fail(vid, "The upload URL expired before a file arrived")
            n += 1
        elif state == VolumeState.UPLOAD_IN_PROGRESS:
            seen = _stalled.setdefault((vid, got or 0), now)
            if (now - seen).total_seconds() >= settings.get("upload.stall.timeout"):
                _stalled.pop((vid, got or 0), None)
                _fail(vid, "The upload stopped before the whole file arrived; post it again")
                n += 1
    return n


# Browser uploads seen in progress: {(volume id, bytes received): first seen} (as templates').
_stalled: dict[tuple[int, int], object] = {}
