"""The metrics history as JSON for the charts of the VM and host pages (static/js/metrics.js
draws them with uPlot). ?range=1h|24h|7d; the service averages the range into buckets."""
from __future__ import annotations

from flask import Blueprint, abort, jsonify, request
from flask_login import current_user, login_required

from app.services.errors import InvalidParameter, NotFound
from app.services.metrics import history
from app.web import admin_required

bp = Blueprint("metrics", __name__)


def _answer(read, uuid: str):
    try:
        data = read(uuid, request.args.get("range", "1h"))
    except NotFound:
        abort(404)
    except InvalidParameter as e:
        return jsonify({"errortext": e.message}), 400
    resp = jsonify(data)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.route("/vms/<uuid>/metrics")
@login_required
def vm(uuid: str):
    return _answer(lambda u, r: history.vm_series(current_user, u, r), uuid)


@bp.route("/admin/hosts/<uuid>/metrics")
@admin_required
def host(uuid: str):
    return _answer(history.host_series, uuid)
