"""Self-service pages for users (and admins acting as users)."""
from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required
from sqlalchemy import select

from app.extensions import db
from app.models import VirtualMachine

bp = Blueprint("portal", __name__, url_prefix="/portal")


@bp.route("/")
@login_required
def my_vms():
    vms = db.session.scalars(
        select(VirtualMachine).where(VirtualMachine.account_id == current_user.account_id,
                                     VirtualMachine.removed.is_(None))
        .order_by(VirtualMachine.id.desc()).limit(100)).all()
    return render_template("portal/my_vms.html", vms=vms)
