"""extractTemplate, extractIso, extractVolume: a download URL that Nubo serves itself, as
CloudStack's secondary storage VM does (no login: the URL is the credential).

- A template's or ISO's URL serves its file on the zone's image store as it is.
- A volume is first copied to the image store by its hypervisor's driver (the volume
  snapshot path: `backup_volume`, on KVM virStorageVolDownload of a flattened QCOW2 copy;
  the Simulator writes a sparse file of the volume's size); the URL serves that copy.

The URL is `<base>/download/<token>/<file name>`: the token is 32 random bytes, the
database keeps only its SHA-256, so neither a database reader nor a guesser can make one.
It stays valid for `extract.url.expiration.interval` seconds; then the worker's periodic
clean-up marks it expired (404 from then on) and deletes a volume's copy. Only HTTP_DOWNLOAD
is offered (FTP_UPLOAD: 431).

Rules and messages are CloudStack's (TemplateManagerImpl.extract, VolumeApiServiceImpl
.extractVolume): `disable.extraction` stops everyone but root admins; a template must be
extractable (`isextractable`) unless the caller is a root admin, and the caller must own it
(OperateEntry); a volume must be on primary storage and detached or its VM Stopped, and a
ROOT volume's template must be extractable (root admins excepted).
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from flask import current_app, has_request_context, request
from sqlalchemy import select, update

from app.extensions import db
from app.hypervisors.base import DriverError
from app.jobs import service as jobs
from app.models import (AsyncJob, DownloadState, Extract, ExtractState, ImageStore, Template, TemplateStoreRef, User,
                        VMState, Volume, VolumeState, VolumeType, cs_date, new_uuid, utcnow)
from app.services import access, events, storage, templates, volumes, zones
from app.services import hypervisors as hv
from app.services.errors import InvalidParameter, NotFound, PermissionDenied, ServiceError
from app.services.settings import Definition, define, get as setting

log = logging.getLogger("nubo.extracts")

define(Definition("extract.url.expiration.interval", "14400", "Seconds an extract (download) URL of a template, "
                  "ISO or volume stays valid; then it answers 404 and a volume's copy on secondary storage is "
                  "deleted.", category="Storage", type="integer", min=60, max=30 * 86400, unit="seconds"))
define(Definition("disable.extraction", "false", "Flag for disabling extraction of templates, ISOs and volumes "
                  "(root administrators still may).", category="Storage", type="boolean"))

MODES = ("HTTP_DOWNLOAD", "FTP_UPLOAD")


class ExtractFailed(ServiceError):
    """The volume could not be copied to secondary storage (530, as CloudStack's job answers)."""


# --- Checks (CloudStack's order and words) -------------------------------------------------

def _check_enabled(caller) -> None:
    if not access.is_root(caller) and setting("disable.extraction"):
        raise PermissionDenied("Extraction has been disabled by admin")


def _check_mode(mode: str | None) -> str:
    m = (mode or "").strip().upper()
    if m not in MODES:
        raise InvalidParameter("Please specify a valid extract Mode ", field="mode")
    if m == "FTP_UPLOAD":
        raise InvalidParameter("Extract mode FTP_UPLOAD is not supported: use HTTP_DOWNLOAD (Nubo serves the URL "
                               "itself)", field="mode")
    return m


def check_template(caller, uuid: str, *, zone_uuid: str | None, mode: str | None,
                   is_iso: bool = False) -> tuple[Template, TemplateStoreRef]:
    """What extractTemplate / extractIso refuse before a job is made; the copy to serve."""
    desc = "ISO" if is_iso else "template"
    _check_enabled(caller)
    try:
        t = templates.get_visible(caller, uuid)
    except NotFound:
        raise NotFound(f"Unable to find {desc} with id {uuid}", field="id") from None
    if t.is_iso != is_iso:
        raise InvalidParameter(f"Unsupported format, could not extract the {desc}", field="id")
    zone = zones.get_zone(zone_uuid) if zone_uuid else None
    if not access.is_root(caller) and not t.extractable:
        raise InvalidParameter(f"Unable to extract {desc} id={uuid} as it's not extractable", field="id")
    if not access.can_see(caller, t.account_id):  # CloudStack's checkAccess(OperateEntry): the owner's
        raise PermissionDenied(f"Unable to extract {desc} id={uuid}: it belongs to another account")
    _check_mode(mode)
    ref = next((r for r in templates.refs_of(t) if r.state == DownloadState.DOWNLOADED and r.image_store_id
                and r.install_path and (zone is None or r.zone_id == zone.id)), None)
    if ref is None:
        raise InvalidParameter(f"The {desc} has not been downloaded ", field="id")
    templates.store_root(templates.ref_store(ref))  # 534 when the management server cannot reach the store
    return t, ref


def _template_of(v: Volume) -> Template | None:
    return db.session.get(Template, v.template_id) if v.template_id else None


def check_volume(caller, uuid: str, *, zone_uuid: str | None, mode: str | None) -> Volume:
    """What extractVolume refuses before a job is made."""
    _check_enabled(caller)
    v = volumes.get_volume(caller, uuid)
    if not zone_uuid:
        raise InvalidParameter("Please specify a valid zone.", field="zoneid")
    zone = zones.get_zone(zone_uuid)
    if zone.id != v.zone_id:
        raise InvalidParameter("Please specify a valid zone.", field="zoneid")
    if v.pool_id is None or v.state != VolumeState.READY or not v.path:
        raise InvalidParameter("The volume doesnt belong to a storage pool so cant extract it", field="id")
    if v.vm is not None and v.vm.state != VMState.STOPPED:
        raise PermissionDenied("Invalid state of the volume with specified ID. It should be either detached or the "
                               "VM should be in stopped state.")
    if v.volume_type != VolumeType.DATADISK:
        t = _template_of(v)
        if t is not None and not t.extractable and not access.is_root(caller):
            raise PermissionDenied("The volume with specified volumeId is not allowed to be extracted")
    _check_mode(mode)
    type_name = v.vm.hypervisor_type if v.vm is not None else v.pool.hypervisor_type
    if not type_name or not hv.resolve(type_name).capabilities.volume_snapshots:
        raise InvalidParameter(f"Volumes on {hv.display_name(type_name) if type_name else 'this storage'} cannot "
                               "be copied to secondary storage, so they cannot be extracted", field="id")
    templates._store_of(v.zone_id)  # 534 when the zone has no secondary storage
    return v


# --- The URL -------------------------------------------------------------------------------

def url_base() -> str:
    """Where download URLs point: the upload process (UPLOAD_PUBLIC_URL, Nubo's SSVM) when the
    Procfile runs one, else this server as the request reached it. Taken at the API call and
    handed to the job, which has no request."""
    base = current_app.config.get("UPLOAD_PUBLIC_URL")
    if base:
        return base.rstrip("/")
    if has_request_context():
        return request.host_url.rstrip("/")
    return "http://127.0.0.1:%d" % current_app.config.get("PORT", 8080)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _mint(x: Extract, base: str) -> str:
    """Make the extract downloadable: a new token, the expiry; returns the URL (the only place
    the token ever appears)."""
    token = secrets.token_urlsafe(32)
    x.token_hash = _hash(token)
    x.state = ExtractState.READY
    x.expires = utcnow() + timedelta(seconds=setting("extract.url.expiration.interval"))
    return f"{base}/download/{token}/{quote(x.file_name)}"


def response(x: Extract, url: str | None = None) -> dict:
    """CloudStack's ExtractResponse."""
    out = {"id": x.object_uuid, "name": x.name, "extractId": x.uuid, "uploadpercentage": 100 if url else 0,
           "state": x.state, "status": x.error or x.state, "url": url,
           "zoneid": x.zone.uuid if x.zone else None, "zonename": x.zone.name if x.zone else None,
           "extractMode": x.mode, "accountid": x.account.uuid if x.account else None,
           "resultstring": x.error, "created": cs_date(x.created)}
    return {k: v for k, v in out.items() if v is not None}


def _safe_name(name: str, ext: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "image"
    return f"{stem[:120]}.{ext}"


# --- extractTemplate / extractIso -----------------------------------------------------------

def submit_template(caller, uuid: str, *, zone_uuid: str | None, mode: str | None, is_iso: bool = False) -> AsyncJob:
    t, _ = check_template(caller, uuid, zone_uuid=zone_uuid, mode=mode, is_iso=is_iso)
    return jobs.submit("extractIso" if is_iso else "extractTemplate", caller, "extract.template",
                       {"id": uuid, "zone": zone_uuid, "mode": mode, "iso": is_iso, "base": url_base()},
                       instance_type="Iso" if is_iso else "Template", instance_id=t.uuid)


def extract_template(caller, uuid: str, *, zone_uuid: str | None, mode: str | None, is_iso: bool,
                     base: str) -> tuple[Extract, str]:
    t, ref = check_template(caller, uuid, zone_uuid=zone_uuid, mode=mode, is_iso=is_iso)
    x = Extract(uuid=new_uuid(), kind="Iso" if is_iso else "Template", object_uuid=t.uuid, name=t.name,
                account_id=t.account_id, zone_id=ref.zone_id, image_store_id=ref.image_store_id,
                install_path=ref.install_path, owns_file=False, mode="HTTP_DOWNLOAD",
                file_name=_safe_name(t.name, templates.EXTENSIONS.get(t.format, "img")),
                size=ref.downloaded_bytes or t.physical_size or 0)
    db.session.add(x)
    url = _mint(x, base)
    events.record("ISO.EXTRACT" if is_iso else "TEMPLATE.EXTRACT", f"Download URL of {t.name} created (valid until "
                  f"{x.expires:%Y-%m-%d %H:%M} UTC)", user=caller, account_id=t.account_id,
                  resource_type="Template", resource_id=t.uuid)
    db.session.commit()
    return x, url


@jobs.handler("extract.template")
def _run_template(job: AsyncJob, params: dict) -> dict:
    x, url = extract_template(db.session.get(User, job.user_id), params["id"], zone_uuid=params.get("zone"),
                              mode=params.get("mode"), is_iso=bool(params.get("iso")), base=params["base"])
    return {"iso" if params.get("iso") else "template": response(x, url)}


# --- extractVolume ---------------------------------------------------------------------------

def submit_volume(caller, uuid: str, *, zone_uuid: str | None, mode: str | None) -> AsyncJob:
    """The extract's row (copying) now, so a failed or killed job leaves nothing the clean-up
    does not find; the copy and the URL in the job."""
    v = check_volume(caller, uuid, zone_uuid=zone_uuid, mode=mode)
    store = templates._store_of(v.zone_id)
    x = Extract(uuid=new_uuid(), kind="Volume", object_uuid=v.uuid, name=v.name, account_id=v.account_id,
                zone_id=v.zone_id, image_store_id=store.id, owns_file=True, mode="HTTP_DOWNLOAD",
                file_name=_safe_name(v.name, "qcow2"), state=ExtractState.COPYING)
    db.session.add(x)
    db.session.flush()
    x.install_path = f"extracts/{v.account_id}/{x.uuid}.qcow2"
    db.session.commit()
    job = jobs.submit("extractVolume", caller, "extract.volume", {"id": x.uuid, "base": url_base()},
                      instance_type="Volume", instance_id=v.uuid)
    db.session.execute(update(Extract).where(Extract.id == x.id, Extract.job_id.is_(None)).values(job_id=job.id)
                       .execution_options(synchronize_session=False))
    db.session.commit()
    return job


def _file_of(x: Extract) -> Path | None:
    root = templates.mounted_root(db.session.get(ImageStore, x.image_store_id)) if x.image_store_id else None
    return root / x.install_path if root is not None and x.install_path else None


def _end(x: Extract, state: str, reason: str | None = None) -> None:
    """No longer downloadable: the token goes, an owned copy is deleted."""
    if x.owns_file:
        path = _file_of(x)
        if path is not None:
            for p in (path, path.with_name(path.name + ".part")):
                p.unlink(missing_ok=True)
    x.state, x.token_hash, x.removed = state, None, utcnow()
    if reason:
        x.error = reason[:2000]


def _fail(extract_id: int, reason: str) -> None:
    db.session.rollback()
    x = db.session.get(Extract, extract_id)
    if x is not None and x.removed is None:
        _end(x, ExtractState.ERROR, reason)
        events.record("VOLUME.EXTRACT", f"Extracting volume {x.name} failed: {reason}", level="ERROR",
                      account_id=x.account_id, resource_type="Volume", resource_id=x.object_uuid)
        db.session.commit()


def extract_volume(x: Extract, job: AsyncJob | None, base: str) -> tuple[Extract, str]:
    """The job's work: copy the volume to the image store (its VM held Stopped), then mint."""
    from app.services.snapshots.volume import host_for, vm_held
    v = db.session.scalar(select(Volume).where(Volume.uuid == x.object_uuid, Volume.removed.is_(None)))
    try:
        if v is None or v.state != VolumeState.READY or v.pool_id is None:
            raise InvalidParameter("The volume doesnt belong to a storage pool so cant extract it", field="id")
        dest = templates.store_root(db.session.get(ImageStore, x.image_store_id)) / x.install_path
        with vm_held(v.vm, job, (VMState.STOPPED,)):
            driver = volumes._driver(host_for(v))
            try:
                info = driver.backup_volume(storage.spec_of(v.pool), v.path, str(dest), None)
            finally:
                driver.close()
    except DriverError as e:
        _fail(x.id, str(e))
        raise ExtractFailed("Failed to copy the volume from the source primary storage pool to secondary "
                            f"storage: {e}") from None
    except ServiceError as e:
        _fail(x.id, e.message)
        raise
    except jobs.JobLost:
        raise
    except Exception as e:
        _fail(x.id, f"Internal error: {e}")
        raise
    x = db.session.get(Extract, x.id)
    x.size = info.physical_bytes
    url = _mint(x, base)
    events.record("VOLUME.EXTRACT", f"Download URL of volume {x.name} created ({info.physical_bytes} bytes, valid "
                  f"until {x.expires:%Y-%m-%d %H:%M} UTC)", user=db.session.get(User, job.user_id) if job else None,
                  account_id=x.account_id, resource_type="Volume", resource_id=x.object_uuid)
    db.session.commit()
    return x, url


@jobs.handler("extract.volume")
def _run_volume(job: AsyncJob, params: dict) -> dict:
    x = db.session.scalar(select(Extract).where(Extract.uuid == params["id"], Extract.removed.is_(None)))
    if x is None:
        raise NotFound("The extract is gone")
    x, url = extract_volume(x, job, params["base"])
    return {"volume": response(x, url)}


def _volume_reaped(job: AsyncJob) -> None:
    uuid = json.loads(job.params or "{}").get("params", {}).get("id")
    x = db.session.scalar(select(Extract).where(Extract.uuid == uuid)) if uuid else None
    if x is not None and x.state == ExtractState.COPYING:
        _fail(x.id, "The worker copying the volume stopped")


jobs.on_reap("extract.volume", _volume_reaped)


# --- Serving and clean-up ------------------------------------------------------------------------

def for_download(token: str) -> tuple[Extract, Path]:
    """The extract a token opens and its file; NotFound for a wrong, expired or ended one
    (the same answer for all, so a token says nothing about others)."""
    x = db.session.scalar(select(Extract).where(Extract.token_hash == _hash(token or ""), Extract.removed.is_(None),
                                                Extract.state == ExtractState.READY))
    if x is None or x.expires is None or x.expires <= utcnow():
        raise NotFound("No such download, or its URL has expired")
    path = _file_of(x)
    if path is None or not path.is_file():
        raise NotFound("No such download, or its URL has expired")
    return x, path


def end_all(account_id: int) -> None:
    """Every live extract of the account ends (deleteAccount)."""
    for x in db.session.scalars(select(Extract).where(Extract.account_id == account_id,
                                                      Extract.removed.is_(None))).all():
        _end(x, ExtractState.EXPIRED)
    db.session.commit()


def cleanup(now=None) -> int:
    """Expired extracts end (404 from now on; a volume's copy is deleted); copies whose job ended
    without a URL (a process killed between the row and the job) are failed. Returns how many."""
    from app.models import JobStatus
    now = now or utcnow()
    n = 0
    for x in db.session.scalars(select(Extract).where(Extract.removed.is_(None), Extract.state == ExtractState.READY,
                                                      Extract.expires <= now)).all():
        _end(x, ExtractState.EXPIRED)
        n += 1
    db.session.commit()
    for x in db.session.scalars(select(Extract).where(Extract.removed.is_(None),
                                                      Extract.state == ExtractState.COPYING)).all():
        status = db.session.scalar(select(AsyncJob.status).where(AsyncJob.id == x.job_id)) if x.job_id else None
        if status != JobStatus.PENDING and (now - x.created).total_seconds() > 60:
            _fail(x.id, "Its job ended without a copy")
            n += 1
    return n


# --- For the portal's download page ----------------------------------------------------------

def expiry_of(extract_uuid: str | None):
    """When an extract's URL stops working (None: unknown or ended)."""
    x = db.session.scalar(select(Extract).where(Extract.uuid == extract_uuid, Extract.removed.is_(None)))
    return x.expires if x is not None else None


EXTRACT_COMMANDS = ("extractTemplate", "extractIso", "extractVolume")


def job_of(caller, job_uuid: str) -> AsyncJob:
    """An extract job the caller submitted (its answer holds the URL: nobody else's to see)."""
    job = db.session.scalar(select(AsyncJob).where(AsyncJob.uuid == job_uuid, AsyncJob.user_id == caller.id,
                                                   AsyncJob.cmd.in_(EXTRACT_COMMANDS)))
    if job is None:
        raise NotFound("Unable to find job with the specified id", field="jobid")
    return job


def may_extract_template(caller, t: Template) -> bool:
    """Whether the template page offers Download (the service decides again)."""
    if access.is_root(caller):
        return True
    return t.extractable and access.can_see(caller, t.account_id) and not setting("disable.extraction")


def may_extract_volume(caller, v: Volume) -> bool:
    """Whether the volume page offers Download: on primary storage, detached or its VM stopped."""
    if not access.is_root(caller) and setting("disable.extraction"):
        return False
    return v.state == VolumeState.READY and v.pool_id is not None and (v.vm is None or v.vm.state == VMState.STOPPED)
