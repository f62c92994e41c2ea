"""Nubo: a cloud management server for mixed hypervisors.

create_app() builds the Flask application: configuration, extensions,
blueprints, error handlers, hypervisor plugins and CLI commands.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from app import config as nubo_config
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

    db.init_app(app)
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
    return app


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """WAL (readers never block the writer) and enforced foreign keys on SQLite."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()
