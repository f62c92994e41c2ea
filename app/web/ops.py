"""Operations endpoints: /healthz (the process is up), /readyz (database and job
queue reachable) and /metrics for Prometheus.

Metrics from several processes (gunicorn workers, huey workers, the monitor) are
merged through prometheus-client's multiprocess mode when PROMETHEUS_MULTIPROC_DIR
is set (the Procfile sets it); otherwise each process reports its own. Gauges of
what the database holds (hosts and VMs by state, console sessions, queue depth)
are read at scrape time with a few grouped queries.

/metrics answers only addresses in `metrics.allowed.addresses` or a request with
`Authorization: Bearer <metrics.token>`.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
import time

from flask import Blueprint, Response, abort, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select, text

from app.extensions import csrf, db
from app.services import settings
from app.services.settings import Definition, define

bp = Blueprint("ops", __name__)
# nubo_job_seconds and nubo_monitor_sweep* are defined where they are measured (app/jobs/service.py,
# app/monitor/__init__.py), below this layer.

define(Definition("metrics.allowed.addresses", "127.0.0.1,::1", "Addresses or networks (CIDR) allowed to "
                  "read /metrics.", category="Monitoring", type="list"))
define(Definition("metrics.token", "", "A bearer token that also allows reading /metrics (empty: none).",
                  category="Monitoring"))

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
REQUEST_SECONDS = Histogram("nubo_request_seconds", "Time to answer a request", ["endpoint", "method"],
                            buckets=BUCKETS)
API_SECONDS = Histogram("nubo_api_command_seconds", "Time to answer an API command", ["command"], buckets=BUCKETS)


class DatabaseCollector:
    """Hosts and VMs by state, open console sessions, jobs waiting: read at scrape time."""

    def collect(self):
        from app.models import AsyncJob, ConsoleSession, Host, VirtualMachine
        hosts = GaugeMetricFamily("nubo_hosts", "Hosts by state", labels=["state"])
        for state, n in db.session.execute(select(Host.state, func.count()).where(Host.removed.is_(None))
                                           .group_by(Host.state)):
            hosts.add_metric([state], n)
        yield hosts
        vms = GaugeMetricFamily("nubo_vms", "VMs by state", labels=["state"])
        for state, n in db.session.execute(select(VirtualMachine.state, func.count())
                                           .where(VirtualMachine.removed.is_(None)).group_by(VirtualMachine.state)):
            vms.add_metric([state], n)
        yield vms
        yield GaugeMetricFamily("nubo_console_sessions", "Console sessions open now", value=db.session.scalar(
            select(func.count()).select_from(ConsoleSession).where(ConsoleSession.used.is_not(None),
                                                                   ConsoleSession.closed.is_(None))))
        yield GaugeMetricFamily("nubo_jobs_pending", "Jobs not finished (queued or running)", value=db.session.scalar(
            select(func.count()).select_from(AsyncJob).where(AsyncJob.status == 0)))
        from app import jobs
        try:
            queued = jobs.pending_count()
        except Exception:  # noqa: BLE001 - the queue may be down: /readyz says so
            queued = float("nan")
        yield GaugeMetricFamily("nubo_queue_depth", "Tasks waiting in the job queues (jobs and transfers)",
                                value=queued)


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY
        registry = REGISTRY
        if not getattr(registry, "_nubo_db", False):
            registry.register(DatabaseCollector())
            registry._nubo_db = True
        return registry
    registry.register(DatabaseCollector())
    return registry


def _allowed() -> bool:
    token = settings.get("metrics.token")
    auth = request.headers.get("Authorization", "")
    if token and auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip(), token):
        return True
    try:
        addr = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    for entry in settings.get("metrics.allowed.addresses"):
        try:
            if addr in ipaddress.ip_network(entry.strip(), strict=False):
                return True
        except ValueError:
            continue
    return False


@bp.route("/healthz")
@csrf.exempt
def healthz():
    return jsonify(status="ok")


@bp.route("/readyz")
@csrf.exempt
def readyz():
    checks = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as e:  # noqa: BLE001 - reported, not raised
        db.session.rollback()
        checks["database"] = f"error: {e.__class__.__name__}"
    from app import jobs
    try:
        jobs.pending_count()
        checks["queue"] = "ok"
    except Exception as e:  # noqa: BLE001
        checks["queue"] = f"error: {e.__class__.__name__}"
    ok = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ok else "unavailable", checks=checks), 200 if ok else 503


@bp.route("/metrics")
@csrf.exempt
def metrics():
    if not _allowed():
        abort(403)
    return Response(generate_latest(_registry()), mimetype=CONTENT_TYPE_LATEST)


def init_app(app) -> None:
    """Time every request (by endpoint) and every API command."""
    @app.before_request
    def _start_timer():
        g._nubo_t0 = time.perf_counter()

    @app.after_request
    def _observe(response):
        t0 = getattr(g, "_nubo_t0", None)
        if t0 is not None and request.endpoint not in ("ops.metrics", "static"):
            elapsed = time.perf_counter() - t0
            REQUEST_SECONDS.labels(request.endpoint or "unknown", request.method).observe(elapsed)
            command = getattr(g, "api_command", None)
            if command:
                API_SECONDS.labels(command).observe(elapsed)
        return response
