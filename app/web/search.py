"""The global search of the top bar: /search?q= (app/services/search)."""
from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import current_user, login_required

from app.services import search as search_service

bp = Blueprint("search", __name__, url_prefix="/search")


@bp.route("/")
@login_required
def index():
    q = request.args.get("find", "").strip()[:100]
    results = search_service.search(current_user, q)
    return render_template("search/index.html", q=q, results=results, too_short=bool(q) and not results,
                           min_length=search_service.MIN_LENGTH)
