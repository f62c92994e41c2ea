"""The portal's Download buttons (template, ISO and volume pages): they ask for an extract
(app.services.transfers.extracts: the same job as extractTemplate / extractIso /
extractVolume) and go to /downloads/<job>, which polls while a volume is copied and then
shows the URL and until when it works. Only the user who asked sees the URL."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app.jobs import service as jobs
from app.models import JobStatus
from app.services import templates, volumes
from app.services.errors import NotFound, ServiceError
from app.services.transfers import extracts
from app.web.forms import EmptyForm

bp = Blueprint("downloads", __name__, url_prefix="/downloads")


def _submit(submit, back: str):
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        job = submit()
    except NotFound:
        abort(404)
    except ServiceError as e:
        flash(e.message, "error")
        return redirect(back)
    return redirect(url_for(".show", job=job.uuid))


@bp.route("/template/<uuid>", methods=["POST"])
@login_required
def template(uuid: str):
    try:
        t = templates.get_visible(current_user, uuid)
    except NotFound:
        abort(404)
    return _submit(lambda: extracts.submit_template(current_user, uuid, zone_uuid=None, mode="HTTP_DOWNLOAD",
                                                    is_iso=t.is_iso), url_for("images.detail", uuid=uuid))


@bp.route("/volume/<uuid>", methods=["POST"])
@login_required
def volume(uuid: str):
    try:
        v = volumes.get_volume(current_user, uuid)
    except NotFound:
        abort(404)
    return _submit(lambda: extracts.submit_volume(current_user, uuid, zone_uuid=v.zone.uuid, mode="HTTP_DOWNLOAD"),
                   url_for("volumes.detail", uuid=uuid))


@bp.route("/<job>")
@login_required
def show(job: str):
    try:
        j = extracts.job_of(current_user, job)
    except NotFound:
        abort(404)
    out = jobs.job_result(j)
    result = next(iter((out.get("jobresult") or {}).values()), None) if j.status == JobStatus.SUCCEEDED else None
    error = (out.get("jobresult") or {}).get("errortext") if j.status == JobStatus.FAILED else None
    context = dict(job=j, x=result, error=error, pending=j.status == JobStatus.PENDING,
                   expires=extracts.expiry_of(result.get("extractId")) if result else None)
    if request.headers.get("HX-Request"):
        return render_template("downloads/_status.html", **context), {"Vary": "HX-Request"}
    return render_template("downloads/show.html", **context), {"Vary": "HX-Request"}
