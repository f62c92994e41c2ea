"""copyTemplate / copyIso: a template's file copied from the image store of a zone where it is
ready to the image store of other zones, as CloudStack's TemplateManager.copy does.

The request is checked and the destination copies (TemplateStoreRef rows) are made at once;
one job (on the transfers queue) then copies the file to each, checking it again on arrival
(size, format) exactly as a download is checked, with the job's progress as it goes. A zone
that already has the template (ready or on its way) is left as it is, as CloudStack does.
"""
from __future__ import annotations

import json
import os

from app.extensions import db
from app.jobs import service as jobs
from app.models import AsyncJob, DownloadState, Template, TemplateStoreRef, Zone
from app.services import events, zones
from app.services import templates as tpl
from app.services.errors import InvalidParameter, NotFound, ServiceError

READY = (DownloadState.DOWNLOADED, DownloadState.BYPASSED)


def _source(t: Template, zone: Zone | None) -> TemplateStoreRef:
    ready = [r for r in tpl.refs_of(t) if r.state in READY and (zone is None or r.zone_id == zone.id)]
    if not ready:
        where = f" in zone {zone.name}" if zone else ""
        raise InvalidParameter(f"{t.name} is not ready{where}: it can be copied once a copy has been downloaded",
                               field="sourcezoneid" if zone else "id")
    return ready[0]


def copy_template(caller, uuid: str, *, dest_zone_uuids: list[str], source_zone_uuid: str | None = None,
                  is_iso: bool = False) -> AsyncJob:
    """Check, make the destination copies, and submit the job that fills them. Nothing is made
    when any part is refused."""
    t = tpl.get_visible(caller, uuid, owned=True, is_iso=is_iso)
    if not dest_zone_uuids:
        raise InvalidParameter("Please specify a valid destination zone", field="destzoneid")
    dests = []
    for z in dict.fromkeys(dest_zone_uuids):
        try:
            dests.append(zones.get_zone(z, "destzoneid"))
        except NotFound:
            raise InvalidParameter(f"Please specify a valid destination zone: {z} is not one",
                                   field="destzoneid") from None
    source = _source(t, zones.get_zone(source_zone_uuid, "sourcezoneid") if source_zone_uuid else None)
    if any(d.id == source.zone_id for d in dests):
        raise InvalidParameter("Please specify different source and destination zones.", field="destzoneid")
    have = {r.zone_id: r for r in tpl.refs_of(t)}
    stores = {d.id: None if source.state == DownloadState.BYPASSED else tpl._store_of(d.id)
              for d in dests if have.get(d.id) is None or have[d.id].state in (DownloadState.ERROR,
                                                                              DownloadState.NOT_DOWNLOADED)}
    made = []
    for zone_id, store in stores.items():
        ref = have.get(zone_id) or TemplateStoreRef(template_id=t.id, zone_id=zone_id)
        ref.image_store_id = store.id if store else None
        ref.state = DownloadState.BYPASSED if store is None else DownloadState.NOT_DOWNLOADED
        ref.error, ref.download_pct, ref.downloaded_bytes, ref.job_id = None, 0, 0, None
        db.session.add(ref)
        made.append(ref)
    kind = "ISO" if t.is_iso else "Template"
    names = ", ".join(d.name for d in dests)
    events.record(f"{kind.upper()}.COPY", f"{kind} {t.name} copied from zone {source.zone.name} to {names}",
                  user=caller, resource_type="Template", resource_id=t.uuid)
    db.session.commit()
    job = jobs.submit("copyIso" if is_iso else "copyTemplate", caller, "template.copy",
                      {"source": source.id, "refs": [r.id for r in made if r.state != DownloadState.BYPASSED]},
                      instance_type="Iso" if is_iso else "Template", instance_id=t.uuid, queue=jobs.TRANSFERS)
    for ref in made:
        if ref.state != DownloadState.BYPASSED:
            ref.job_id = job.id
    db.session.commit()
    return job


def _copy_one(job: AsyncJob, t: Template, source: TemplateStoreRef, ref: TemplateStoreRef) -> None:
    if ref.image_store_id == source.image_store_id:  # a region-wide store serves both zones: one file
        ref.state, ref.download_pct, ref.install_path = DownloadState.DOWNLOADED, 100, source.install_path
        ref.size, ref.downloaded_bytes = source.size, source.downloaded_bytes
        db.session.commit()
        return
    src = tpl.store_root(tpl.ref_store(source)) / source.install_path
    final = tpl.store_root(tpl.ref_store(ref)) / tpl.relative_path(t)
    part = final.with_name(final.name + ".part")
    ref.state = DownloadState.DOWNLOADING
    db.session.commit()
    try:
        with open(src, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            chunks = iter(lambda: f.read(1 << 20), b"")
            tpl.receive(chunks, part, checksum=t.checksum, total=size, progress=tpl.Progress(job, ref.id, size))
        ref = db.session.get(TemplateStoreRef, ref.id)
        tpl.finish(t, ref, part, final)
        db.session.commit()
    except OSError as e:
        part.unlink(missing_ok=True)
        raise ServiceError(f"Copying {src} failed: {e.strerror or e}") from None
    except ServiceError:
        part.unlink(missing_ok=True)
        raise


@jobs.handler("template.copy")
def run_copy(job: AsyncJob, params: dict) -> dict:
    source = db.session.get(TemplateStoreRef, params["source"])
    if source is None or source.state not in READY:
        raise ServiceError("The copy it was made from is gone")
    t = db.session.get(Template, source.template_id)
    failed = []
    for ref_id in params["refs"]:
        ref = db.session.get(TemplateStoreRef, ref_id)
        if ref is None:
            continue
        try:
            _copy_one(job, t, source, ref)
        except ServiceError as e:
            tpl._fail(ref.id, e.message)
            failed.append(f"{ref.zone.name}: {e.message}")
    if failed:
        raise ServiceError("Failed to copy template: " + "; ".join(failed))
    return {"template": {"id": t.uuid, "name": t.name, "status": "Download Complete"}}


def _copy_reaped(job: AsyncJob) -> None:
    """The worker died mid-copy: the copies it had not finished are failed, no partial file stays."""
    for ref_id in json.loads(job.params or "{}").get("params", {}).get("refs", []):
        ref = db.session.get(TemplateStoreRef, ref_id)
        if ref is None or ref.state not in (DownloadState.DOWNLOADING, DownloadState.NOT_DOWNLOADED):
            continue
        root = tpl.mounted_root(tpl.ref_store(ref))
        if root is not None:
            (root / (tpl.relative_path(ref.template) + ".part")).unlink(missing_ok=True)
        tpl._fail(ref.id, "The worker copying it stopped; copy it again")


jobs.on_reap("template.copy", _copy_reaped)
