"""Volume snapshots and their schedules in the UI (every rule is app/services/snapshots/'s).

- /snapshots/ — the caller's snapshots (admins: all): volume, state, sizes, zone.
- The volume page and the VM page show a "Snapshots" card (snapshots/_card.html, filled by
  the `snapshot_panel` template helper): take one of a volume, revert (VM stopped), delete,
  make a volume or a template from one; the volume page also lists its schedules (policies)
  with a form to add one and a button to delete each.
- POST /snapshots/volume/<uuid>/take | /snapshots/volume/<uuid>/policies |
  /snapshots/<uuid>/<revert|delete|volume|template> | /snapshots/policies/<uuid>/delete
  queue the job (or write the row) and go back to the page the form came from
  (`back`: "volume" or "vm", resolved here, never a URL from the client) with a message.
"""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from app.extensions import db
from app.models import OsType, VolumeState
from app.services import volumes
from app.services import vms as vms_service
from app.services.errors import NotFound, ServiceError
from app.services.snapshots import policies
from app.services.snapshots import schedule as sched
from app.services.snapshots import volume as snapshots
from app.web.forms import EmptyForm

bp = Blueprint("snapshots", __name__, url_prefix="/snapshots")
INTERVAL_HELP = {"HOURLY": "MM (minute)", "DAILY": "MM:HH", "WEEKLY": "MM:HH:DD (1 = Sunday … 7)",
                 "MONTHLY": "MM:HH:DD (1–28)"}


def snapshot_panel(*, volume=None, vm=None) -> dict:
    """What the Snapshots card of a volume page or VM page shows."""
    if volume is not None:
        rows = snapshots.snapshots_of_volume(current_user, volume)
        vols = [volume]
        plans = policies.policies_of_volume(current_user, volume)
        back = ("volume", volume.uuid)
    else:
        rows = snapshots.snapshots_of_vm(current_user, vm)
        vols = [v for v in vm.volumes if v.removed is None]
        plans = []
        back = ("vm", vm.uuid)
    takeable = [v for v in vols if v.state == VolumeState.READY and _supported(v)]
    os_types = db.session.execute(select(OsType.uuid, OsType.description).order_by(OsType.description)).all()
    return dict(snapshots=rows, takeable=takeable, policies=plans, back=back, os_types=os_types,
                intervals=sched.INTERVALS, interval_help=INTERVAL_HELP, supported=bool(takeable) or bool(rows),
                volume=volume)


def _supported(v) -> bool:
    try:
        snapshots.check_supported(snapshots.type_of(v))
        return True
    except ServiceError:
        return False


@bp.app_context_processor
def _helpers():
    return {"snapshot_panel": snapshot_panel}


def _back():
    kind, _, uuid = (request.form.get("back") or "").partition(":")
    try:
        if kind == "vm":
            return url_for("vms.detail", uuid=vms_service.get_vm(current_user, uuid).uuid)
        if kind == "volume":
            return url_for("volumes.detail", uuid=volumes.get_volume(current_user, uuid).uuid)
    except NotFound:
        pass
    return url_for(".index")


def _checked() -> None:
    if not EmptyForm().validate_on_submit():
        abort(400)  # the CSRF token is missing or wrong


def _found(lookup) -> None:
    """Another account's object is a 404, exactly like a missing one."""
    try:
        lookup()
    except NotFound:
        abort(404)


def _done(run, message: str):
    """Run the service call; flash its message or the refusal; back to the page."""
    _checked()
    try:
        run()
        flash(message, "success")
    except ServiceError as e:
        flash(e.message, "error")
    return redirect(_back())


@bp.route("/")
@login_required
def index():
    rows, total = snapshots.list_snapshots(current_user, keyword=request.args.get("q") or None, page=(1, 500))
    return render_template("snapshots/index.html", snapshots=rows, total=total)


@bp.route("/volume/<uuid>/take", methods=["POST"])
@login_required
def take(uuid: str):
    _found(lambda: volumes.get_volume(current_user, uuid))
    return _done(lambda: snapshots.submit_create(current_user, uuid, name=request.form.get("name") or None),
                 "Snapshot requested: it is being copied to secondary storage.")


@bp.route("/volume/<uuid>/policies", methods=["POST"])
@login_required
def add_policy(uuid: str):
    _found(lambda: volumes.get_volume(current_user, uuid))
    f = request.form

    def run():
        try:
            most = int(f.get("maxsnaps") or 0)
        except ValueError:
            most = 0
        policies.create_policy(current_user, volume_uuid=uuid, interval_type=f.get("intervaltype", ""),
                               schedule=f.get("schedule", ""), timezone=f.get("timezone") or "UTC", max_snaps=most)
    return _done(run, "Snapshot schedule saved.")


@bp.route("/policies/<uuid>/delete", methods=["POST"])
@login_required
def delete_policy(uuid: str):
    _found(lambda: policies.get_policy(current_user, uuid))
    return _done(lambda: policies.delete_policies(current_user, id=uuid), "Snapshot schedule deleted.")


@bp.route("/<uuid>/<action>", methods=["POST"])
@login_required
def act(uuid: str, action: str):
    f = request.form
    runs = {
        "revert": (lambda: snapshots.submit_revert(current_user, uuid), "Reverting the volume to the snapshot."),
        "delete": (lambda: snapshots.submit_delete(current_user, uuid), "Snapshot being deleted."),
        "volume": (lambda: snapshots.submit_create_volume(current_user, uuid, name=f.get("name") or None),
                   "A volume is being made from the snapshot."),
        "template": (lambda: snapshots.submit_create_template(
            current_user, name=f.get("name", ""), display_text=None, os_type_uuid=f.get("ostypeid", ""),
            snapshot_uuid=uuid), "A template is being made from the snapshot."),
    }
    if action not in runs:
        abort(404)
    _found(lambda: snapshots.get_snapshot(current_user, uuid))
    run, message = runs[action]
    return _done(run, message)
