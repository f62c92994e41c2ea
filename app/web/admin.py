"""Admin portal pages. Each view parses input, calls a service, renders."""
from __future__ import annotations

from flask import Blueprint, render_template

from app.services import dashboard as dashboard_service
from app.web import admin_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/")
@admin_required
def dashboard():
    tree, limits = dashboard_service.capacity_tree()
    alerts, open_total = dashboard_service.open_alerts()
    vms = dashboard_service.vms_by_state()
    return render_template("admin/dashboard.html", counts=dashboard_service.counts(vms),
                           capacity=dashboard_service.capacity_by_zone(), capacity_tree=tree, limits=limits,
                           hosts_by_state=dashboard_service.hosts_by_state(),
                           vms_by_state=vms, failed_jobs=dashboard_service.failed_jobs(),
                           alerts=alerts, open_alerts_total=open_total)
