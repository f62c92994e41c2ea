"""Templates and ISOs: register by URL or upload, download into secondary
storage with progress, verify (checksum, real format), and the rules on who may
register what.

A template has one TemplateStoreRef per zone: its copy on that zone's image
store (or BYPASSED for direct download, fetched into primary storage at first
use). The download job streams the URL into `<name>.part` on the store while it
hashes, checks the size limit as bytes arrive, then checks the checksum and the
real format (`qemu-img info` for disk images — a QCOW2 with a backing file is
refused —, a tar listing for TAR, the ISO 9660 signature for ISOs; nothing is
ever unpacked) and only then renames the file into place. Any failure leaves no
file and records the reason.

Every http(s) download goes through app.net.outbound (one address check, the
connection pinned to the checked address, redirects through the same check, a
size limit, an overall deadline and a minimum rate); `fetch_policy()` turns the
settings into its FetchPolicy. Disk images are checked by
app.hypervisors.images.check_disk_image, which direct download uses too.
"""
from __future__ import annotations

import calendar
import hashlib
import hmac
import json
import logging
import os
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import or_, select, update
from sqlalchemy.orm import joinedload

from app.extensions import db
from app.hypervisors.images import QEMU_FORMATS, ImageRefused, check_disk_image
from app.jobs import service as jobs
from app.models import (AsyncJob, DownloadState, ImageStore, OsCategory, OsType, Template, TemplateFormat,
                        TemplatePermission, TemplateStoreRef, Zone, new_uuid, utcnow)
from app.net import outbound
from app.services import access, events, settings, zones
from app.services.units import filesize
from app.services import hypervisors as hv
from app.services.errors import InvalidParameter, NotFound, PermissionDenied, ResourceUnavailable, ServiceError
from app.services.pagination import page_of
from app.services.settings import Definition, define

define(Definition("max.template.iso.size", "50", "Largest template or ISO accepted, in GiB (downloads and "
                  "uploads stop as soon as they pass it).", category="Storage", type="integer", min=1, max=16384))
define(Definition("template.url.file.allowed.dirs", "", "Directories under which admins may register "
                  "file:// template URLs (comma separated; empty: file:// is refused).", category="Storage",
                  type="list"))
define(Definition("template.url.allow.internal", "false", "Let users (not only admins) register URLs that "
                  "point at any internal address (loopback, link-local, private...). Prefer "
                  "secstorage.allowed.internal.sites, which opens only the networks listed.",
                  category="Security", type="boolean"))


def _check_sites(value: list[str]) -> None:
    try:
        outbound.parse_networks(value)
    except ValueError as e:
        raise InvalidParameter(str(e), field="value") from None


define(Definition("secstorage.allowed.internal.sites", "", "Internal networks (comma-separated CIDRs, e.g. "
                  "10.1.2.0/24) that template and ISO URLs may point at, for internal image servers. Any other "
                  "address that is not public is refused, for every download and every redirect.",
                  category="Security", type="list", validate=_check_sites))
define(Definition("template.download.timeout", "21600", "Seconds a template or ISO download (and a direct "
                  "download into primary storage) may take in all before it fails.", category="Storage",
                  type="integer", min=1, max=7 * 86400, unit="seconds"))
define(Definition("template.download.min.rate", "10", "Slowest accepted download, in KiB/s averaged over "
                  "template.download.rate.window (0: no minimum).", category="Storage", type="integer",
                  min=0, max=1 << 20))
define(Definition("template.download.rate.window", "60", "Seconds over which the download rate is averaged; "
                  "also the longest a download waits for any byte.", category="Storage", type="integer",
                  min=1, max=3600, unit="seconds"))
define(Definition("upload.url.expiry", "3600", "Seconds a getUploadParamsForTemplate upload URL stays valid.",
                  category="Storage", type="integer", min=60, max=86400, unit="seconds"))

define(Definition("upload.stall.timeout", "300", "Seconds an upload may receive nothing before it is taken as "
                  "cut off (its process stopped): the copy is failed, its partial file deleted, and the "
                  "template can be uploaded again or deleted.", category="Storage", type="integer",
                  min=30, max=86400, unit="seconds"))

log = logging.getLogger("nubo.templates")

CHECKSUM_ALGOS = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
HEX_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128}
EXTENSIONS = {"RAW": "raw", "QCOW2": "qcow2", "VHD": "vhd", "VHDX": "vhdx", "OVA": "ova", "TAR": "tar",
              "ISO": "iso"}
CHUNK = 1 << 20
MAX_REDIRECTS = 5
GIB = 1 << 30


# --- Input checks ---------------------------------------------------------------

def parse_checksum(value: str | None) -> tuple[str, str] | None:
    """(hashlib name, hex digest) from "{SHA-256}ab12..." or a plain MD5, as CloudStack accepts."""
    value = (value or "").strip()
    if not value:
        return None
    m = re.fullmatch(r"\{([A-Za-z0-9-]+)\}([0-9A-Fa-f]+)", value)
    algo, digest = (CHECKSUM_ALGOS.get(m.group(1).upper()), m.group(2)) if m else ("md5", value)
    if algo is None:
        raise InvalidParameter(f"Unknown checksum algorithm {m.group(1)}; use one of "
                               + ", ".join("{" + a + "}" for a in CHECKSUM_ALGOS), field="checksum")
    if not re.fullmatch(r"[0-9A-Fa-f]+", digest) or len(digest) != HEX_LENGTHS[algo]:
        raise InvalidParameter(f"A {algo.upper()} checksum is {HEX_LENGTHS[algo]} hex digits", field="checksum")
    return algo, digest.lower()


def fetch_policy(owner_is_admin: bool) -> outbound.FetchPolicy:
    """The settings as app.net.outbound's policy for a download owned by a user or an admin.
    Internal addresses: admins may use any (as before); users only those in
    secstorage.allowed.internal.sites, or any when template.url.allow.internal is on."""
    return outbound.FetchPolicy(
        allow_internal=owner_is_admin or bool(settings.get("template.url.allow.internal")),
        allowed_sites=outbound.parse_networks(settings.get("secstorage.allowed.internal.sites")),
        max_bytes=settings.get("max.template.iso.size") * GIB, max_bytes_name="max.template.iso.size",
        deadline=settings.get("template.download.timeout"),
        min_rate=settings.get("template.download.min.rate") * 1024,
        window=settings.get("template.download.rate.window"),
        max_redirects=MAX_REDIRECTS)


def check_url(url: str, caller) -> str:
    """http(s) for everyone, with one meaning only (app.net.outbound.parse), leading to a public
    address or an allowed one (resolved now: an unresolvable host is refused); file:// only for
    admins and only under the allowed directories (symlinks resolved)."""
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [ in the host
        raise InvalidParameter("The URL cannot be parsed", field="url") from None
    scheme = parts.scheme.lower()
    if scheme == "file":
        if not getattr(caller, "is_admin", False):
            raise PermissionDenied("Only administrators may register file:// URLs")
        path = os.path.realpath(parts.path)
        allowed = [os.path.realpath(d) for d in settings.get("template.url.file.allowed.dirs") if d]
        if not any(path == d or path.startswith(d.rstrip("/") + "/") for d in allowed):
            raise InvalidParameter("file:// URLs must be under a directory listed in "
                                   "template.url.file.allowed.dirs", field="url")
        if not os.path.isfile(path):
            raise InvalidParameter(f"No such file: {path}", field="url")
        return url
    if scheme not in ("http", "https") or not parts.hostname:
        raise InvalidParameter("The URL must be http:// or https:// (file:// for administrators)", field="url")
    try:
        outbound.check(url, fetch_policy(bool(getattr(caller, "is_admin", False))))
    except outbound.FetchRefused as e:
        raise InvalidParameter(e.message, field="url") from None
    return url


def _formats_for(type_name: str) -> tuple[str, ...]:
    return hv.resolve(type_name).capabilities.template_formats


@dataclass
class Registration:
    name: str
    display_text: str
    hypervisor: str | None
    format: str
    zone_ids: list[int]
    os_type_id: int | None
    checksum: str | None
    is_public: bool
    featured: bool
    bootable: bool
    direct_download: bool


def _check_registration(caller, *, is_iso: bool, name: str, display_text: str | None, hypervisor: str | None,
                        format: str | None, zone_uuid: str | None, os_type_uuid: str | None,
                        checksum: str | None, is_public: bool, featured: bool, bootable: bool,
                        direct_download: bool) -> Registration:
    name = zones._name(name)
    if (is_public or featured) and not caller.is_admin:
        raise PermissionDenied("Only administrators may register public or featured templates")
    if is_iso:
        type_name, fmt = None, TemplateFormat.ISO
        if format and format.upper() != "ISO":
            raise InvalidParameter("An ISO's format is ISO", field="format")
    else:
        if not hypervisor:
            raise InvalidParameter("hypervisor is required", field="hypervisor")
        t = hv.resolve(hypervisor)
        type_name = t.name
        fmt = (format or "").strip().upper()
        allowed = _formats_for(type_name)
        if t.capabilities.external_orchestrator:
            # An External template names what the orchestrator deploys (its externaldetails); Nubo
            # never fetches it, so any format word is taken, as CloudStack's ExternalTemplateAdapter does.
            if not re.fullmatch(r"[A-Z0-9]{1,16}", fmt or "RAW"):
                raise InvalidParameter(f"Invalid format {format}", field="format")
            fmt = fmt or "RAW"
        elif fmt not in allowed:
            raise InvalidParameter(f"{hv.display_name(type_name)} templates are {', '.join(allowed)}, not "
                                   f"{fmt or 'empty'}", field="format")
        if direct_download and not t.capabilities.direct_download:
            raise InvalidParameter(f"{hv.display_name(type_name)} hosts cannot download templates directly",
                                   field="directdownload")
    parse_checksum(checksum)
    if direct_download and not checksum:
        raise InvalidParameter("A direct-download template needs a checksum (hosts verify what they fetch)",
                               field="checksum")
    os_type_id = None
    if os_type_uuid:
        os_type = db.session.scalar(select(OsType).where(OsType.uuid == os_type_uuid))
        if os_type is None:
            raise NotFound("Unable to find OS type with the specified id", field="ostypeid")
        os_type_id = os_type.id
    if zone_uuid and zone_uuid != "-1":
        zone_ids = [zones.get_zone(zone_uuid).id]
    else:  # all zones, as CloudStack's zoneid=-1
        zone_ids = list(db.session.scalars(select(Zone.id).where(Zone.removed.is_(None))))
        if not zone_ids:
            raise InvalidParameter("There is no zone yet", field="zoneid")
    return Registration(name=name, display_text=(display_text or name).strip(), hypervisor=type_name, format=fmt,
                        zone_ids=zone_ids, os_type_id=os_type_id, checksum=(checksum or "").strip() or None,
                        is_public=bool(is_public), featured=bool(featured), bootable=bool(bootable),
                        direct_download=bool(direct_download))


def _store_of(zone_id: int) -> ImageStore:
    """The zone's image store: a Ready one first (the monitor's check: read and written), then
    zone-wide before region-wide."""
    store = db.session.scalar(select(ImageStore).where(ImageStore.removed.is_(None), or_(
        ImageStore.zone_id == zone_id, ImageStore.zone_id.is_(None))).order_by(
            ImageStore.state != "Ready", ImageStore.zone_id.is_(None), ImageStore.id))
    if store is None:
        zone = db.session.get(Zone, zone_id)
        raise ResourceUnavailable(f"Zone {zone.name} has no secondary storage; add an image store first",
                                  field="zoneid")
    return store


def store_root(store: ImageStore) -> Path:
    """Where the management server reaches the store: a Local store's directory, or the
    mount point of an NFS/SMB store under instance/secondary/<uuid> (mounted by the admin)."""
    if store.provider == "Local":
        return Path(store.path)
    mount = Path(current_app.instance_path) / "secondary" / store.uuid
    if not os.path.ismount(mount):
        raise ResourceUnavailable(f"Image store {store.name} ({store.url}) is not mounted at {mount} on the "
                                  "management server")
    return mount


def mounted_root(store: ImageStore) -> Path | None:
    """store_root, or None where the management server cannot reach the store."""
    try:
        return store_root(store)
    except ResourceUnavailable:
        return None


def relative_path(t: Template) -> str:
    kind = "iso" if t.is_iso else "template/tmpl"
    return f"{kind}/{t.account_id}/{t.id}/{t.uuid}.{EXTENSIONS.get(t.format, 'img')}"


# --- Register ------------------------------------------------------------------

def register(caller, *, is_iso: bool = False, url: str, name: str, display_text: str | None = None,
             hypervisor: str | None = None, format: str | None = None, zone_uuid: str | None = None,
             os_type_uuid: str | None = None, checksum: str | None = None, is_public: bool = False,
             featured: bool = False, bootable: bool = True, direct_download: bool = False,
             password_enabled: bool = False, external_details: list | None = None) -> Template:
    """registerTemplate / registerIso: the row, one ref per zone, one download job per ref.
    An External template is not downloaded (the orchestrator has it): Ready at once."""
    from app.services.extensions import details as extension_details
    external = bool(hypervisor) and not is_iso and hv.resolve(hypervisor).capabilities.external_orchestrator
    url = (url or "").strip() if external else check_url(url, caller)
    ext_values = extension_details.parse(external_details, "externaldetails")
    r = _check_registration(caller, is_iso=is_iso, name=name, display_text=display_text, hypervisor=hypervisor,
                            format=format, zone_uuid=zone_uuid, os_type_uuid=os_type_uuid, checksum=checksum,
                            is_public=is_public, featured=featured, bootable=bootable,
                            direct_download=direct_download)
    bypassed = r.direct_download or external
    stores = {} if bypassed else {z: _store_of(z) for z in r.zone_ids}
    t = _template_row(caller, r, is_iso, url)
    t.password_enabled = bool(password_enabled) and not is_iso
    for zone_id in r.zone_ids:
        db.session.add(TemplateStoreRef(template_id=t.id, zone_id=zone_id,
                                        image_store_id=stores[zone_id].id if stores else None,
                                        state=DownloadState.BYPASSED if bypassed
                                        else DownloadState.NOT_DOWNLOADED))
    if ext_values:
        extension_details.replace("VMTemplate", t.id, ext_values)
    events.record("ISO.CREATE" if is_iso else "TEMPLATE.CREATE", f"{'ISO' if is_iso else 'Template'} {t.name} "
                  f"registered from {url}", user=caller, resource_type="Template", resource_id=t.uuid)
    db.session.commit()
    if not bypassed:
        for ref in refs_of(t):
            _submit_download(caller, t, ref)
    return t


def _template_row(caller, r: Registration, is_iso: bool, url: str | None) -> Template:
    t = Template(uuid=new_uuid(), name=r.name, display_text=r.display_text, is_iso=is_iso, format=r.format,
                 hypervisor_type=r.hypervisor, os_type_id=r.os_type_id, account_id=access.owner_for(caller).id, url=url,
                 checksum=r.checksum, is_public=r.is_public, featured=r.featured, bootable=r.bootable,
                 direct_download=r.direct_download)
    db.session.add(t)
    db.session.flush()
    return t


def refs_of(t: Template, fresh: bool = False) -> list[TemplateStoreRef]:
    """Its copies; `fresh` reloads rows already in the session (a download job may have
    changed them meanwhile, e.g. failed at once)."""
    q = select(TemplateStoreRef).where(TemplateStoreRef.template_id == t.id).order_by(TemplateStoreRef.id)
    return list(db.session.scalars(q.execution_options(populate_existing=True) if fresh else q))


def download_outcome(t: Template) -> tuple[str, list[TemplateStoreRef]]:
    """("failed", the failed copies) | ("ready", []) | ("downloading", []): what a page may
    say right after a registration or retry, read from the copies as they are now."""
    refs = refs_of(t, fresh=True)
    failed = [r for r in refs if r.state == DownloadState.ERROR]
    if failed:
        return "failed", failed
    if refs and all(r.state in (DownloadState.DOWNLOADED, DownloadState.BYPASSED) for r in refs):
        return "ready", []
    return "downloading", []


def _submit_download(caller, t: Template, ref: TemplateStoreRef) -> AsyncJob:
    job = jobs.submit("downloadTemplate", caller, "template.download", {"ref": ref.id},
                      instance_type="Iso" if t.is_iso else "Template", instance_id=t.uuid,
                      queue=jobs.TRANSFERS)  # a long transfer: its own pool, its account's turn
    db.session.execute(update(TemplateStoreRef).where(TemplateStoreRef.id == ref.id,
                                                      TemplateStoreRef.job_id.is_(None))
                       .values(job_id=job.id).execution_options(synchronize_session=False))
    db.session.commit()
    return job


def retry(caller, uuid: str) -> Template:
    """Download again every copy of the template that ended in error."""
    t = get_visible(caller, uuid, owned=True)
    failed = [r for r in refs_of(t) if r.state == DownloadState.ERROR]
    if not failed:
        raise InvalidParameter(f"{t.name} has no failed download to retry", field="id")
    for ref in failed:
        ref.state, ref.error, ref.download_pct, ref.downloaded_bytes, ref.job_id = (
            DownloadState.NOT_DOWNLOADED, None, 0, 0, None)
    db.session.commit()
    for ref in failed:
        _submit_download(caller, t, ref)
    return t


# --- The download job ----------------------------------------------------------

class DownloadFailed(ServiceError):
    code, cs_code = 530, 4250


class Progress:
    """Writes bytes/percent/speed to the ref and the job at most twice a second."""

    def __init__(self, job: AsyncJob | None, ref_id: int, total: int | None, model=TemplateStoreRef):
        # model: the copy's row (TemplateStoreRef, or a volume upload's VolumeStoreRef)
        self.job, self.ref_id, self.total, self.model = job, ref_id, total, model
        self.done, self.t0, self.last = 0, time.monotonic(), 0.0

    def add(self, n: int, force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        pct = min(99, 100 * self.done // self.total) if self.total else 0
        speed = self.done / max(now - self.t0, 1e-3)
        with db.engine.begin() as conn:
            conn.execute(update(self.model).where(self.model.id == self.ref_id)
                         .values(downloaded_bytes=self.done, download_pct=pct))
        if self.job is not None:
            of = f" of {filesize(self.total)}" if self.total else ""
            jobs.progress(self.job, pct, f"{filesize(self.done)}{of}, {filesize(int(speed))}/s")


def open_source(url: str, caller_is_admin: bool):
    """(an iterator of chunks, the announced length) for http(s) or file:// URLs; http(s)
    through app.net.outbound with the settings' policy (checked again now: settings change)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = os.path.realpath(parts.path)
        size = os.path.getsize(path)

        def read():
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk
        return read(), size
    try:
        download = outbound.open_url(url, fetch_policy(caller_is_admin))
    except outbound.FetchError as e:
        raise DownloadFailed(e.message) from None
    return download, download.length


def receive(chunks, dest: Path, *, checksum: str | None, total: int | None, progress: Progress) -> int:
    """Stream chunks into dest (a .part file), hashing as they come and stopping at the size
    limit. Returns the byte count; removes the file and raises DownloadFailed on any problem."""
    limit = settings.get("max.template.iso.size") * GIB
    if total and total > limit:
        raise DownloadFailed(f"The file is {total} bytes, over max.template.iso.size "
                             f"({settings.get('max.template.iso.size')} GiB)")
    expected = parse_checksum(checksum)
    digest = hashlib.new(expected[0]) if expected else None
    dest.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    try:
        with open(dest, "wb") as f:
            for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > limit:
                    raise DownloadFailed(f"The file passed max.template.iso.size "
                                         f"({settings.get('max.template.iso.size')} GiB)")
                f.write(chunk)
                if digest:
                    digest.update(chunk)
                progress.add(len(chunk))
        if total is not None and size != total:
            raise DownloadFailed(f"The transfer stopped after {size} of {total} bytes")
        if expected and digest.hexdigest() != expected[1]:
            # The real digest goes to the log only: users learn nothing about a file they cannot read.
            log.warning("checksum mismatch for %s: expected %s %s, got %s", dest.name, expected[0],
                        expected[1], digest.hexdigest())
            raise DownloadFailed(f"Checksum mismatch: the file does not match the {expected[0].upper()} "
                                 "checksum given")
    except DownloadFailed:
        dest.unlink(missing_ok=True)
        raise
    except outbound.FetchError as e:
        dest.unlink(missing_ok=True)
        raise DownloadFailed(e.message) from None
    except Exception as e:  # noqa: BLE001 - network and disk errors: no partial file stays
        dest.unlink(missing_ok=True)
        raise DownloadFailed(f"Transfer failed: {e.__class__.__name__}: {e}") from None
    progress.add(0, force=True)
    return size


def inspect(path: Path, declared: str) -> tuple[int, int]:
    """(virtual size, physical size) if the file really is `declared`; DownloadFailed otherwise."""
    physical = path.stat().st_size
    if declared in QEMU_FORMATS:
        try:
            info = check_disk_image(path, declared)
        except ImageRefused as e:
            raise DownloadFailed(e.message) from None
        return int(info.get("virtual-size", physical)), physical
    if declared in ("TAR", "OVA"):
        try:
            with tarfile.open(path, "r:*") as tf:
                names = tf.getnames()  # a listing only: nothing is unpacked
        except (tarfile.TarError, OSError) as e:
            raise DownloadFailed(f"The file is not a {declared} archive: {e}") from None
        if declared == "OVA" and not any(n.lower().endswith(".ovf") for n in names):
            raise DownloadFailed("The OVA holds no .ovf descriptor")
        if not names:
            raise DownloadFailed(f"The {declared} archive is empty")
        return physical, physical
    if declared == "ISO":
        with open(path, "rb") as f:
            f.seek(0x8001)
            if f.read(5) != b"CD001":
                raise DownloadFailed("The file is not an ISO 9660 image")
        return physical, physical
    raise DownloadFailed(f"Nubo cannot check {declared} files")


def finish(t: Template, ref: TemplateStoreRef, part: Path, final: Path) -> None:
    """Checks passed: move into place and mark the copy (and the template) ready."""
    virtual, physical = inspect(part, t.format)
    os.replace(part, final)
    ref.state, ref.download_pct, ref.error = DownloadState.DOWNLOADED, 100, None
    ref.install_path, ref.size, ref.downloaded_bytes = relative_path(t), virtual, physical
    t.size, t.physical_size = virtual, physical
    store = ref_store(ref)
    store.used_bytes = (store.used_bytes or 0) + physical


def ref_store(ref: TemplateStoreRef) -> ImageStore:
    return db.session.get(ImageStore, ref.image_store_id)


def _fail(ref_id: int, reason: str) -> None:
    db.session.rollback()
    db.session.execute(update(TemplateStoreRef).where(TemplateStoreRef.id == ref_id).values(
        state=DownloadState.ERROR, error=reason[:2000]).execution_options(synchronize_session=False))
    db.session.commit()


@jobs.handler("template.download")
def run_download(job: AsyncJob, params: dict) -> dict:
    ref = db.session.get(TemplateStoreRef, params["ref"])
    if ref is None:
        raise NotFound("The template copy is gone")
    t = db.session.get(Template, ref.template_id)
    from app.models import User
    owner_is_admin = bool(job.user_id and db.session.get(User, job.user_id).is_admin)
    ref.state = DownloadState.DOWNLOADING
    db.session.commit()
    part = None
    try:
        final = store_root(ref_store(ref)) / relative_path(t)
        part = final.with_name(final.name + ".part")
        chunks, total = open_source(t.url, owner_is_admin)
        try:
            size = receive(chunks, part, checksum=t.checksum, total=total, progress=Progress(job, ref.id, total))
        finally:
            getattr(chunks, "close", lambda: None)()  # the connection, when receive stopped early
        ref = db.session.get(TemplateStoreRef, ref.id)
        finish(t, ref, part, final)
        events.record("TEMPLATE.DOWNLOAD", f"{t.name} downloaded into {ref_store(ref).name} ({size} bytes)",
                      user=events.actor(), account_id=t.account_id, resource_type="Template", resource_id=t.uuid)
        db.session.commit()
        return {"template": {"id": t.uuid, "name": t.name, "status": "Download Complete", "size": t.size}}
    except ServiceError as e:
        if part is not None:
            part.unlink(missing_ok=True)
        _fail(ref.id, e.message)
        raise
    except Exception as e:  # noqa: BLE001 - recorded on the copy too, then by the job
        if part is not None:
            part.unlink(missing_ok=True)
        _fail(ref.id, f"Internal error: {e}")
        raise


def _download_reaped(job: AsyncJob) -> None:
    """The worker died mid-download: the copy is failed (retry is offered), no partial file stays."""
    ref_id = json.loads(job.params or "{}").get("params", {}).get("ref")
    ref = db.session.get(TemplateStoreRef, ref_id) if ref_id else None
    if ref is None or ref.state != DownloadState.DOWNLOADING:
        return
    t = db.session.get(Template, ref.template_id)
    root = mounted_root(ref_store(ref))
    if root is not None:
        (root / (relative_path(t) + ".part")).unlink(missing_ok=True)
    _fail(ref.id, "The worker downloading it stopped; retry the download")


jobs.on_reap("template.download", _download_reaped)


# --- Upload (getUploadParamsForTemplate + the upload endpoint) ---------------------

def upload_params(caller, *, is_iso: bool = False, name: str, display_text: str | None = None,
                  hypervisor: str | None = None, format: str | None = None, zone_uuid: str,
                  os_type_uuid: str | None = None, checksum: str | None = None, is_public: bool = False,
                  featured: bool = False, bootable: bool = True) -> dict:
    """A template row waiting for its file, and a signed, expiring URL to POST the file to."""
    if not zone_uuid or zone_uuid == "-1":
        raise InvalidParameter("An upload goes to one zone", field="zoneid")
    r = _check_registration(caller, is_iso=is_iso, name=name, display_text=display_text, hypervisor=hypervisor,
                            format=format, zone_uuid=zone_uuid, os_type_uuid=os_type_uuid, checksum=checksum,
                            is_public=is_public, featured=featured, bootable=bootable, direct_download=False)
    store = _store_of(r.zone_ids[0])
    t = _template_row(caller, r, is_iso, None)
    ref = TemplateStoreRef(template_id=t.id, zone_id=r.zone_ids[0], image_store_id=store.id,
                           state=DownloadState.NOT_DOWNLOADED)
    db.session.add(ref)
    events.record("TEMPLATE.UPLOAD.START", f"{t.name}: upload URL issued", user=caller, resource_type="Template",
                  resource_id=t.uuid)
    db.session.commit()
    return {"id": t.uuid, **signed_params(f"{t.uuid}:{ref.id}", upload_url())}


def upload_url(kind: str = "template") -> str:
    """Where uploads are POSTed (kind: template, volume): the upload process
    (UPLOAD_PUBLIC_URL) when the Procfile runs one, else this server (one process:
    `flask run`, the tests)."""
    base = current_app.config.get("UPLOAD_PUBLIC_URL")
    if base:
        return base.rstrip("/") + f"/upload/{kind}"
    from flask import url_for
    return url_for("uploads.upload" if kind == "template" else "uploads.upload_volume", _external=True)


def _sign(metadata: str, expires: int) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"{metadata}|{expires}".encode(), hashlib.sha256).hexdigest()


def signed_params(metadata: str, post_url: str) -> dict:
    """CloudStack's GetUploadParamsResponse fields for `metadata`: postURL, metadata, an expiry
    upload.url.expiry seconds ahead and the HMAC-SHA256 (SECRET_KEY) of both."""
    expires = int(time.time()) + settings.get("upload.url.expiry")
    return {"postURL": post_url, "metadata": metadata,
            "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
            "signature": _sign(metadata, expires)}


def verify_signed(metadata: str, expires: str, signature: str) -> None:
    """The upload endpoint's check of CloudStack's X-metadata / X-expires / X-signature."""
    try:
        epoch = calendar.timegm(time.strptime(expires, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        raise PermissionDenied("Bad or missing upload expiry") from None
    if not hmac.compare_digest(_sign(metadata or "", epoch), signature or ""):
        raise PermissionDenied("Bad upload signature")
    if epoch < time.time():
        raise PermissionDenied("The upload URL has expired")


def check_upload(metadata: str, expires: str, signature: str) -> tuple[Template, TemplateStoreRef]:
    verify_signed(metadata, expires, signature)
    t_uuid, _, ref_id = metadata.partition(":")
    ref = db.session.get(TemplateStoreRef, int(ref_id)) if ref_id.isdigit() else None
    t = db.session.get(Template, ref.template_id) if ref else None
    if t is None or t.uuid != t_uuid or t.removed:
        raise NotFound("No such upload")
    if ref.state not in (DownloadState.NOT_DOWNLOADED, DownloadState.ERROR):
        raise InvalidParameter("This template was uploaded already")
    return t, ref


# Uploads seen in progress: {(ref id, bytes received): first seen}. An upload (it has no
# job and no heartbeat) whose count has not moved for upload.stall.timeout is cut off.
_uploads_seen: dict[tuple[int, int], object] = {}


def recover_uploads(now=None) -> int:
    """Uploads whose request died (a killed web process) leave the copy "n% Downloaded" and a
    .part file: once nothing has arrived for upload.stall.timeout (seen by two checks), the
    copy is failed and the partial file deleted, so the template can be uploaded again or
    deleted. Returns the copies failed."""
    from app.models import utcnow
    now = now or utcnow()
    grace = settings.get("upload.stall.timeout")
    rows = list(db.session.execute(select(TemplateStoreRef.id, TemplateStoreRef.downloaded_bytes)
                                   .join(Template, Template.id == TemplateStoreRef.template_id)
                                   .where(TemplateStoreRef.state == DownloadState.DOWNLOADING,
                                          Template.url.is_(None))))  # uploads: no URL, no job
    db.session.commit()
    current = {(r[0], r[1] or 0) for r in rows}
    for key in set(_uploads_seen) - current:
        _uploads_seen.pop(key)  # moved on, finished or failed meanwhile
    failed = 0
    for key in current:
        first = _uploads_seen.setdefault(key, now)
        if (now - first).total_seconds() < grace:
            continue
        ref_id, seen_bytes = key
        done = db.session.execute(update(TemplateStoreRef).where(
            TemplateStoreRef.id == ref_id, TemplateStoreRef.state == DownloadState.DOWNLOADING,
            TemplateStoreRef.downloaded_bytes == seen_bytes).values(
            state=DownloadState.ERROR, download_pct=0, downloaded_bytes=0,
            error="The upload stopped before the whole file arrived; upload it again")
            .execution_options(synchronize_session=False))
        db.session.commit()
        _uploads_seen.pop(key, None)
        if not done.rowcount:
            continue
        ref = db.session.get(TemplateStoreRef, ref_id)
        t = db.session.get(Template, ref.template_id)
        root = mounted_root(ref_store(ref))
        if root is not None:
            (root / (relative_path(t) + ".part")).unlink(missing_ok=True)
        events.record("TEMPLATE.UPLOAD.FAILED", f"{t.name}: the upload stopped after {seen_bytes} bytes; "
                      "the partial file is deleted", level="WARN", resource_type="Template", resource_id=t.uuid,
                      account_id=t.account_id, commit=True)
        failed += 1
    return failed


def receive_upload(t: Template, ref: TemplateStoreRef, chunks, total: int | None) -> None:
    """Stream an upload into the store, then check it like a download (in this request)."""
    ref.state, ref.error = DownloadState.DOWNLOADING, None
    db.session.commit()
    part = None
    try:
        final = store_root(ref_store(ref)) / relative_path(t)
        part = final.with_name(final.name + ".part")
        receive(chunks, part, checksum=t.checksum, total=total, progress=Progress(None, ref.id, total))
        ref = db.session.get(TemplateStoreRef, ref.id)
        finish(t, ref, part, final)
        events.record("TEMPLATE.UPLOAD", f"{t.name} uploaded ({t.physical_size} bytes)",
                      resource_type="Template", resource_id=t.uuid)
        db.session.commit()
    except ServiceError as e:
        if part is not None:
            part.unlink(missing_ok=True)
        _fail(ref.id, e.message)
        raise


# --- Reading, updating, deleting -------------------------------------------------

def _shared_with(caller):
    """Ids of the templates another account shared with the caller's (launch permissions)."""
    return select(TemplatePermission.template_id).where(TemplatePermission.account_id == caller.account_id)


def _visible(caller):
    """Templates the caller may see: those access.owned lets it see, public ones, and
    those shared with its account (updateTemplatePermissions op=add)."""
    q = select(Template).where(Template.removed.is_(None))
    if not caller.is_admin:
        q = q.where(or_(access.owned(caller, Template.account_id), Template.is_public.is_(True),
                        Template.id.in_(_shared_with(caller))))
    return q


def usable(caller, t: Template) -> bool:
    """May the caller deploy from (or attach) this template or ISO?"""
    if t.is_public or access.can_see(caller, t.account_id):
        return True
    return db.session.scalar(_shared_with(caller).where(TemplatePermission.template_id == t.id)) is not None


def get_visible(caller, uuid: str, *, owned: bool = False, is_iso: bool | None = None) -> Template:
    t = db.session.scalar(_visible(caller).where(Template.uuid == uuid))
    if t is None or (is_iso is not None and t.is_iso != is_iso):
        raise NotFound("Unable to find template with the specified id", field="id")
    if owned and not access.can_see(caller, t.account_id):
        raise PermissionDenied(f"{t.name} belongs to another account")
    return t


def list_templates(caller, *, is_iso: bool = False, template_filter: str = "executable", id=None, name=None,
                   keyword=None, zone_uuid=None, hypervisor=None, tags=None, page=None):
    """CloudStack's templatefilter: featured, self, selfexecutable, shared/sharedexecutable
    (shared with the caller's account), executable (own + public + shared, ready),
    community (public, not featured), all (admins)."""
    f = (template_filter or "executable").lower()
    q = _visible(caller).where(Template.is_iso.is_(is_iso)).options(joinedload(Template.os_type),
                                                                     joinedload(Template.account))
    if f == "featured":
        q = q.where(Template.featured.is_(True), Template.is_public.is_(True))
    elif f in ("self", "selfexecutable"):
        q = q.where(Template.account_id == access.own_account_id(caller))
    elif f in ("shared", "sharedexecutable"):
        q = q.where(Template.id.in_(_shared_with(caller)))
    elif f == "community":
        q = q.where(Template.is_public.is_(True), Template.featured.is_(False))
    elif f == "all":
        if not caller.is_admin:
            raise PermissionDenied("templatefilter=all is for administrators")
    elif f != "executable":
        raise InvalidParameter("templatefilter must be featured, self, selfexecutable, sharedexecutable, "
                               "shared, executable, community or all", field="templatefilter")
    if f in ("selfexecutable", "sharedexecutable", "executable"):
        ready = select(TemplateStoreRef.template_id).where(TemplateStoreRef.state.in_(
            [DownloadState.DOWNLOADED, DownloadState.BYPASSED]))
        q = q.where(Template.id.in_(ready))
    if id:
        q = q.where(Template.uuid == id)
    if name:
        q = q.where(Template.name == name)
    if keyword:
        q = q.where(Template.name.contains(keyword, autoescape=True))
    if hypervisor:
        q = q.where(Template.hypervisor_type == hv.resolve(hypervisor).name)
    if zone_uuid:
        zone = zones.get_zone(zone_uuid)
        q = q.where(Template.id.in_(select(TemplateStoreRef.template_id).where(TemplateStoreRef.zone_id == zone.id)))
    from app.services import tags as tagging
    q = tagging.matching(q, "ISO" if is_iso else "Template", Template.id, tags)
    return page_of(q.order_by(Template.id), page)


def refs_for(template_ids: list[int]) -> dict[int, list[TemplateStoreRef]]:
    """Every copy of these templates, one query (list pages and API rows)."""
    out: dict[int, list[TemplateStoreRef]] = {i: [] for i in template_ids}
    if template_ids:
        for ref in db.session.scalars(select(TemplateStoreRef).where(TemplateStoreRef.template_id.in_(template_ids))
                                      .order_by(TemplateStoreRef.id)):
            out[ref.template_id].append(ref)
    return out


def status_text(ref: TemplateStoreRef) -> str:
    """CloudStack's `status` string of a template copy."""
    return {DownloadState.DOWNLOADED: "Download Complete", DownloadState.BYPASSED: "Bypassed Secondary Storage",
            DownloadState.DOWNLOADING: f"{ref.download_pct}% Downloaded",
            DownloadState.NOT_DOWNLOADED: "Not downloaded yet",
            DownloadState.ERROR: f"Failed: {ref.error or 'unknown error'}"}.get(ref.state, ref.state)


def update_template(caller, uuid: str, *, name=None, display_text=None, os_type_uuid=None, bootable=None,
                    is_public=None, featured=None, is_iso: bool = False, password_enabled=None) -> Template:
    t = get_visible(caller, uuid, owned=True, is_iso=is_iso)
    if (is_public or featured) and not caller.is_admin:
        raise PermissionDenied("Only administrators may make templates public or featured")
    if name is not None:
        t.name = zones._name(name)
    if display_text is not None:
        t.display_text = display_text
    if os_type_uuid:
        os_type = db.session.scalar(select(OsType).where(OsType.uuid == os_type_uuid))
        if os_type is None:
            raise NotFound("Unable to find OS type with the specified id", field="ostypeid")
        t.os_type_id = os_type.id
    for attr, value in (("bootable", bootable), ("is_public", is_public), ("featured", featured),
                        ("password_enabled", None if is_iso else password_enabled)):
        if value is not None:
            setattr(t, attr, bool(value))
    events.record("TEMPLATE.UPDATE", f"{t.name} updated", user=caller, resource_type="Template", resource_id=t.uuid)
    db.session.commit()
    return t


def delete_template(caller, uuid: str, *, is_iso: bool = False, zone_uuid: str | None = None) -> None:
    """Remove the copies (files included) in one zone or all; the row goes with the last copy."""
    t = get_visible(caller, uuid, owned=True, is_iso=is_iso)
    refs = refs_of(t)
    if zone_uuid:
        zone = zones.get_zone(zone_uuid)
        refs = [r for r in refs if r.zone_id == zone.id]
    for ref in refs:
        if ref.state == DownloadState.DOWNLOADING:
            raise InvalidParameter(f"{t.name} is still downloading; wait for it to finish", field="id")
    for ref in refs:
        if ref.install_path and ref.image_store_id:
            store = ref_store(ref)
            try:
                path = store_root(store) / ref.install_path
                path.unlink(missing_ok=True)
                store.used_bytes = max(0, (store.used_bytes or 0) - (ref.downloaded_bytes or 0))
            except ResourceUnavailable:
                pass  # an unmounted store: the row goes, the file is left for the admin
        db.session.delete(ref)
    db.session.flush()
    if not refs_of(t):
        t.removed = utcnow()
    events.record("ISO.DELETE" if is_iso else "TEMPLATE.DELETE", f"{t.name} deleted", user=caller,
                  resource_type="Template", resource_id=t.uuid)
    db.session.commit()


def submit_delete(caller, uuid: str, *, is_iso: bool, zone_uuid: str | None = None) -> AsyncJob:
    """deleteTemplate / deleteIso are async in CloudStack: check now, delete in the job."""
    t = get_visible(caller, uuid, owned=True, is_iso=is_iso)
    if zone_uuid:
        zones.get_zone(zone_uuid)
    return jobs.submit("deleteIso" if is_iso else "deleteTemplate", caller, "template.delete",
                       {"id": t.uuid, "iso": is_iso, "zone": zone_uuid},
                       instance_type="Iso" if is_iso else "Template", instance_id=t.uuid)


@jobs.handler("template.delete")
def _run_delete(job: AsyncJob, params: dict) -> dict:
    from app.models import User
    delete_template(db.session.get(User, job.user_id), params["id"], is_iso=params["iso"],
                    zone_uuid=params.get("zone"))
    return {"success": True}


def list_os_types(*, id=None, category_uuid=None, description=None, keyword=None, page=None):
    q = select(OsType).options(joinedload(OsType.category)).order_by(OsType.id)
    if id:
        q = q.where(OsType.uuid == id)
    if category_uuid:
        q = q.where(OsType.category_id.in_(select(OsCategory.id).where(OsCategory.uuid == category_uuid)))
    if description:
        q = q.where(OsType.description == description)
    if keyword:
        q = q.where(OsType.description.contains(keyword, autoescape=True))
    return page_of(q, page)


def list_os_categories(*, id=None, name=None, keyword=None, page=None):
    q = select(OsCategory).order_by(OsCategory.id)
    if id:
        q = q.where(OsCategory.uuid == id)
    if name:
        q = q.where(OsCategory.name == name)
    if keyword:
        q = q.where(OsCategory.name.contains(keyword, autoescape=True))
    return page_of(q, page)


# --- Read helpers for the Templates pages (app/web/images.py) --------------------

@dataclass
class Copy:
    """A template's copy in one zone as the pages show it, with its download job's
    state and progress message ("12.1 MiB of 32.0 MiB, 1.2 MiB/s") when it has one."""
    ref: TemplateStoreRef
    job_pending: bool = False
    job_message: str | None = None

    @property
    def in_flight(self) -> bool:
        """Bytes are moving, or a download job waits to start (the list keeps polling)."""
        if self.ref.job_id is not None:
            return self.job_pending and self.ref.state in (DownloadState.NOT_DOWNLOADED, DownloadState.DOWNLOADING)
        return self.ref.state == DownloadState.DOWNLOADING  # an upload, streamed by a web request


@dataclass
class TemplateCopies:
    template: Template
    copies: list[Copy]


def with_copies(rows: list[Template]) -> list[TemplateCopies]:
    """Templates with their copies and download jobs (two queries for a whole page)."""
    from app.models import JobStatus
    refs = refs_for([t.id for t in rows])
    job_ids = [r.job_id for rs in refs.values() for r in rs if r.job_id]
    job_rows = db.session.execute(select(AsyncJob.id, AsyncJob.status, AsyncJob.progress_message)
                                  .where(AsyncJob.id.in_(job_ids))).all() if job_ids else []
    job = {j.id: j for j in job_rows}
    return [TemplateCopies(t, [Copy(r, job[r.job_id].status == JobStatus.PENDING, job[r.job_id].progress_message)
                               if r.job_id in job else Copy(r) for r in refs[t.id]]) for t in rows]


def list_for_page(caller, *, is_iso: bool = False, template_filter: str | None = None, keyword=None,
                  zone_uuid=None, page=None) -> tuple[list[TemplateCopies], int]:
    """The Templates page's list: featured, self, or (no filter) everything the caller may
    see in any state, which for a user is their own templates and the public ones
    (templatefilter=all gives that only to admins; executable hides what is not ready)."""
    if template_filter or caller.is_admin:
        rows, total = list_templates(caller, is_iso=is_iso, template_filter=template_filter or "all",
                                     keyword=keyword, zone_uuid=zone_uuid, page=page)
        return with_copies(rows), total
    q = _visible(caller).where(Template.is_iso.is_(is_iso)).options(joinedload(Template.os_type),
                                                                     joinedload(Template.account))
    if keyword:
        q = q.where(Template.name.contains(keyword, autoescape=True))
    if zone_uuid:
        zone = zones.get_zone(zone_uuid)
        q = q.where(Template.id.in_(select(TemplateStoreRef.template_id).where(TemplateStoreRef.zone_id == zone.id)))
    rows, total = page_of(q.order_by(Template.id), page)
    return with_copies(rows), total


def get_for_page(caller, uuid: str) -> TemplateCopies:
    """One template (or ISO) the caller may see, with its copies; NotFound otherwise."""
    return with_copies([get_visible(caller, uuid)])[0]


# --- Permissions (updateTemplatePermissions, listTemplatePermissions) -------------------

def update_permissions(caller, uuid: str, *, is_iso: bool, accounts: list[str] | None = None,
                       project_ids: list[str] | None = None, op: str | None = None, is_public=None,
                       featured=None, extractable=None) -> None:
    """CloudStack's updateTemplateOrIsoPermissions: the owner (or an admin) shares a private
    template with named accounts (op add/remove; reset drops every permission and makes it
    private and not featured), and sets ispublic/isfeatured/isextractable. Everything is
    checked before anything changes."""
    t = get_visible(caller, uuid, owned=True, is_iso=is_iso)
    op = (op or "").strip().lower() or None
    accounts = [a.strip() for a in (accounts or []) if a and a.strip()]
    if accounts and project_ids:
        raise InvalidParameter("Accounts and projectIds can't be specified together", field="accounts")
    if project_ids:  # no projects in Nubo yet: every id is unknown
        raise InvalidParameter(f"Unable to find project by id {project_ids[0]}", field="projectids")
    if op is not None and op not in ("add", "remove", "reset"):
        raise InvalidParameter(f"Invalid operation on accounts, the operation must be either 'add' or 'remove' in "
                               f"order to modify launch permissions. Given operation is: '{op}'", field="op")
    if accounts and op not in ("add", "remove"):
        raise InvalidParameter("Accounts are given but no operation (add, remove) to perform on them", field="op")
    if (is_public or featured) and not caller.is_admin:
        raise PermissionDenied("Only administrators may make templates public or featured")
    if extractable is not None and not is_iso and not caller.is_admin:
        raise InvalidParameter("Only ROOT admins are allowed to modify isExtractable attribute.",
                               field="isextractable")
    from app.services import accounts as accts
    named = []
    for name in accounts:
        acct = accts.get_account(name, t.account.domain_id)  # names are unique per domain: the owner's
        if acct is None or acct.removed is not None:
            raise InvalidParameter(f"Unable to grant a launch permission to account {name}, account not found.",
                                   field="accounts")
        named.append(acct)
    if is_public is not None:
        t.is_public = bool(is_public)
    if featured is not None:
        t.featured = bool(featured)
    if extractable is not None:
        t.extractable = bool(extractable)
    have = set(db.session.scalars(select(TemplatePermission.account_id).where(TemplatePermission.template_id == t.id)))
    if op == "add":
        for acct in named:
            if acct.id != t.account_id and acct.id not in have:  # the owner needs no permission
                db.session.add(TemplatePermission(template_id=t.id, account_id=acct.id))
                have.add(acct.id)
    elif op == "remove" and named:
        db.session.execute(TemplatePermission.__table__.delete().where(
            TemplatePermission.template_id == t.id, TemplatePermission.account_id.in_([a.id for a in named])))
    elif op == "reset":
        t.is_public, t.featured = False, False
        db.session.execute(TemplatePermission.__table__.delete().where(TemplatePermission.template_id == t.id))
    kind = "ISO" if is_iso else "Template"
    events.record(f"{kind.upper()}.UPDATE", f"{kind} {t.name} permissions updated"
                  + (f" ({op} {', '.join(accounts)})" if accounts else f" ({op})" if op else ""),
                  user=caller, resource_type="Template", resource_id=t.uuid)
    db.session.commit()


def list_permissions(caller, uuid: str, *, is_iso: bool) -> dict:
    """CloudStack's TemplatePermissionsResponse. The owner and admins see every account it is
    shared with; an account it is shared with sees only its own name."""
    t = get_visible(caller, uuid, is_iso=is_iso)
    from app.models import Account
    q = (select(Account.name).join(TemplatePermission, TemplatePermission.account_id == Account.id)
         .where(TemplatePermission.template_id == t.id, Account.removed.is_(None)).order_by(Account.name))
    if not access.can_see(caller, t.account_id):
        q = q.where(Account.id == caller.account_id)
    from app.models import DOMAIN_ID
    return {"id": t.uuid, "ispublic": t.is_public, "domainid": DOMAIN_ID, "account": list(db.session.scalars(q))}
