"""The API reference, generated from the command registry (the same data as listApis)."""
from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import current_user, login_required

from app.api.registry import all_commands
from app.services import roles

bp = Blueprint("apidocs", __name__, url_prefix="/api-docs")


@bp.route("/")
@login_required
def index():
    q = (request.args.get("q") or "").strip().lower()
    commands = [c for c in all_commands() if roles.allowed(current_user, c)]
    if q:
        commands = [c for c in commands if q in c.name.lower() or q in c.description.lower()]
    template = "apidocs/_list.html" if request.htmx else "apidocs/index.html"
    return render_template(template, commands=commands, q=q)
