"""Nubo: a cloud management server for mixed hypervisors.

create_app() builds the Flask application: configuration, extensions,
blueprints, error handlers, hypervisor plugins and CLI commands.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask
from app import config as nubo_config, engine
from app.extensions import csrf, db, htmx, login_manager, migrate


def create_app(overrides: dict | None = None) -> Flask:
    instance = nubo_config.instance_path_from_env()
    if overrides and overrides.get("INSTANCE_PATH"):
        instance = Path(overrides["INSTANCE_PATH"]).resolve()
    app = Flask(__name__, instance_path=str(instance), instance_relative_config=False,
                template_folder="../templates", static_folder="../static")
    app.config.from_object(nubo_config.Defaults)
    app.config.from_prefixed_env("NUBO")
    if overrides:
        app.config.update(overrides)
    nubo_config.finalize(app.config, instance)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if app.config["TRUSTED_PROXY_NETWORKS"]:
        from app.proxies import TrustedProxyFix
        app.wsgi_app = TrustedProxyFix(app.wsgi_app, app.config["TRUSTED_PROXY_NETWORKS"])

    db.init_app(app)
    with app.app_context():
        engine.keep_prepared_statements(db.engine)
    migrate.init_app(app, db, directory=os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, "migrations")),
                     render_as_batch=True)
    login_manager.init_app(app)
    csrf.init_app(app)
    htmx.init_app(app)

    from app import models  # noqa: F401  (register tables with the metadata)
    from app.hypervisors import registry
    registry.load_plugins()
    # Modules that declare settings must be imported before settings are read.
    from app.services import hypervisors as _hv, planner as _planner  # noqa: F401
    from app.monitor import hosts as _monitor_hosts  # noqa: F401  (its settings)
    from app.services import changes as _changes  # noqa: F401  (the change stream's ORM hooks, settings)

    from app import jobs
    jobs.configure(app.config["JOBS_URL"], immediate=bool(app.config.get("JOBS_IMMEDIATE")))
    from app.jobs import service as _jobs_service, tasks as _tasks  # noqa: F401  (tasks and settings)

    from app.web import register_blueprints
    register_blueprints(app)
    from app.api import bp as api_bp
    from app.api import commands as _commands  # noqa: F401  (declares every command)
    app.register_blueprint(api_bp)
    from app.web.errors import register_error_handlers
    register_error_handlers(app)
    from app.web.filters import register_filters
    register_filters(app)

    from app.cli import register_cli
    register_cli(app)
    register_security_headers(app)
    return app


def _served_over_tls(config) -> bool:
    return any(o.lower().startswith("https://") for o in str(config.get("PUBLIC_ORIGINS", "")).split())


def content_security_policy(config) -> str:
    """No inline script or style anywhere (templates load static/js and static/css;
    htmx runs with allowEval and its inline indicator style off: see base.html);
    websockets only to this site and the console proxy; never framed."""
    connect = ["'self'"]
    console = urlsplit(str(config.get("CONSOLE_PUBLIC_URL") or ""))
    if console.scheme in ("ws", "wss") and console.netloc:
        # console.js upgrades ws: to wss: when the page itself came over https.
        connect += [f"ws://{console.netloc}", f"wss://{console.netloc}"]
    upload = urlsplit(str(config.get("UPLOAD_PUBLIC_URL") or ""))
    if upload.scheme in ("http", "https") and upload.netloc:
        # The upload page POSTs the file to the upload process (NUBO_UPLOAD_PUBLIC_URL).
        connect.append(f"{upload.scheme}://{upload.netloc}")
    return "; ".join([
        "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
        "font-src 'self'", "connect-src " + " ".join(dict.fromkeys(connect)), "object-src 'none'",
        "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'"])


def register_security_headers(app: Flask) -> None:
    """Headers on every answer (pages, fragments, the API, static files): the CSP,
    nosniff, no framing, a short referrer; HSTS and a Secure session cookie when the
    public origins say https (NUBO_PUBLIC_ORIGINS)."""
    tls = _served_over_tls(app.config)
    if tls:
        app.config["SESSION_COOKIE_SECURE"] = True
        app.config["REMEMBER_COOKIE_SECURE"] = True
    csp = content_security_policy(app.config)

    @app.after_request
    def _security_headers(response):
        h = response.headers
        h.setdefault("Content-Security-Policy", csp)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")  # frame-ancestors for browsers without CSP 2
        h.setdefault("Referrer-Policy", "same-origin")
        if tls:
            h.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response
