"""Admin portal pages. Each view parses input, calls a service, renders."""
from __future__ import annotations

from flask import Blueprint, render_template

from app.services import dashboard as dashboard_service
from app.web import admin_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/")
@admin_required
def dashboard():
    return render_template("admin/dashboard.html", counts=dashboard_service.counts(),
                           capacity=dashboard_service.capacity_by_zone())
