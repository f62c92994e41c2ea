"""Global settings (admin): every setting with its category, description, type, default, whether
it applies at once, and the scopes it may be set in; search and category filter; inline edit
(HTMX: the row comes back, 422 with the message on a bad value; without JavaScript a form post
and a redirect). The values of one zone, cluster or account: the same rows for that scope, on
its own page and as the "Settings" card of the zone, cluster and account pages."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app.services import settings
from app.services.errors import ServiceError
from app.web import admin_required
from app.web.listing import wants_fragment

bp = Blueprint("settings_pages", __name__, url_prefix="/admin/settings")
bp.add_app_template_global(settings.readable, "settings_readable")

SCOPE_LABELS = {"zone": "Zone", "cluster": "Cluster", "account": "Account", "domain": "Domain",
                "storagepool": "Primary storage"}
_SCOPE_PARAM = {scope: param for param, scope in settings.SCOPE_PARAMS.items()}


def _target(scope: str, uuid: str):
    if scope not in SCOPE_LABELS:
        abort(404)
    try:
        return settings.find_target({_SCOPE_PARAM[scope]: uuid})[1]
    except ServiceError:
        abort(404)


def _back(scope: str, target) -> str:
    """The page a scope's values belong to."""
    pages = {"zone": "infra.zone", "cluster": "infra.cluster", "account": "accounts_admin.account",
             "storagepool": "infra.storage_pool"}
    return url_for(pages[scope], uuid=target.uuid) if scope in pages else url_for(".scoped", scope=scope,
                                                                                   uuid=target.uuid)


@bp.route("/")
@admin_required
def index():
    q, category = request.args.get("q", "").strip(), request.args.get("category", "").strip()
    rows = settings.search(q, category)
    ctx = {"rows": rows, "q": q, "category": category, "defs": settings.DEFINITIONS}
    if wants_fragment():
        return (render_template("settings/_list.html", **ctx),
                {"HX-Push-Url": url_for(".index", **{k: v for k, v in (("q", q), ("category", category)) if v})})
    return render_template("settings/index.html", categories=settings.categories(), **ctx)


def _save(name: str, scope: str | None = None, target=None):
    """Save (or with action=reset, reset) one setting; answers the row or the page."""
    if name not in settings.DEFINITIONS:
        abort(404)
    reset = request.form.get("action") == "reset"
    value = request.form.get("value", "")
    where = f" for {SCOPE_LABELS[scope].lower()} {target.name}" if scope else ""
    try:
        row = settings.reset(name, scope=scope, target=target, caller=current_user) if reset else \
            settings.update(name, value, scope=scope, target=target, caller=current_user)
    except ServiceError as e:
        error, status = e.message, 422
        row = settings.in_scope(name, scope, target.id) if scope else settings.list_settings(name=name)[0]
    else:
        error, status = None, 200
    if wants_fragment():
        return render_template("settings/_row.html", s=row, d=settings.DEFINITIONS[name], error=error,
                               tried=None if reset else value, scope=scope, target=target), status
    if error:
        flash(f"{name}: {error}", "error")
    else:
        flash(f"{name}{where} is now {row.value}.", "success")
    back = _back(scope, target) if scope else url_for(".index", q=request.form.get("q") or None,
                                                     category=request.form.get("category") or None)
    return redirect(back + (f"#setting-{name.replace('.', '-')}" if not error else ""))


@bp.route("/<name>", methods=["POST"])
@admin_required
def update(name: str):
    return _save(name)


@bp.route("/<scope>/<uuid>")
@admin_required
def scoped(scope: str, uuid: str):
    """The settings of one zone, cluster, account ...: the card alone for HTMX (the detail
    pages load it), else a page of its own."""
    target = _target(scope, uuid)
    ctx = {"rows": settings.list_settings(scope=scope, target=target), "scope": scope, "target": target,
           "defs": settings.DEFINITIONS, "label": SCOPE_LABELS[scope], "back": _back(scope, target)}
    if request.htmx:
        return render_template("settings/_scope_card.html", **ctx)
    return render_template("settings/scoped.html", **ctx)


@bp.route("/<scope>/<uuid>/<name>", methods=["POST"])
@admin_required
def update_scoped(scope: str, uuid: str, name: str):
    return _save(name, scope, _target(scope, uuid))
