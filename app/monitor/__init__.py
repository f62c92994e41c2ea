"""State sync between hypervisors and Nubo's records (the `monitor` process).

Each sweep pings every host (app/monitor/hosts.py) and reconciles the VMs of
the hosts that answered (app/monitor/vms.py); between sweeps, libvirt lifecycle
events are applied as they arrive. A host added, enabled or back Up between sweeps
is listened to at once: the monitor follows the change stream's host changes
(app/services/changes/), not only its own sweep.
"""
from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Gauge

log = logging.getLogger("nubo.monitor")
MONITOR_SWEEP_SECONDS = Gauge("nubo_monitor_sweep_seconds", "Duration of the monitor's last sweep",
                              multiprocess_mode="max")
MONITOR_SWEEPS = Counter("nubo_monitor_sweeps", "Sweeps the monitor has made")


def sweep(listener=None):
    from app.monitor.hosts import ping_hosts
    from app.monitor.vms import apply_answers
    started = time.monotonic()
    from app.services.ha import work as ha_work
    result = ping_hosts(with_vms=True)  # one driver session per host: ping, VMs, stats
    # HA (app/services/ha/): copies left on hosts back from Down destroyed, restarts worked off.
    result.vm_answers = ha_work.sweep(result.vm_answers)
    changed = apply_answers(result.vm_answers, result.seen_at)
    reconcile_records()
    check_routers()
    keep_metrics()
    check_image_stores()
    check_capacity_alerts()
    if listener is not None:
        listener.sync(_up_hosts())
    MONITOR_SWEEP_SECONDS.set(time.monotonic() - started)
    MONITOR_SWEEPS.inc()
    log.info("sweep: %d hosts, %d up, %d not answering, %d changed state, %d VM records corrected, %.2f s",
             result.hosts, result.up, result.failed, result.changed, changed, result.seconds)
    return result


def reconcile_records() -> None:
    """What killed processes left half done (locks no job holds, deploys never submitted,
    uploads cut off, account deletions whose job was lost), capacity that drifted from the VMs that hold it, revoked sessions
    past their end and zone wizard drafts past their time: put right at start-up and after every sweep. Each part is guarded, so several monitors may run it."""
    from app.extensions import db
    from app.services import capacity, sessions, templates, vms, zone_wizard
    from app.services.network import networks
    from app.services import account_deletion, changes
    from app.services.snapshots import vm_snapshots
    from app.services.extensions import registry as extensions
    for part in (vms.recover_orphans, templates.recover_uploads, capacity.check_hosts, sessions.prune,
                 networks.repair_orphans, account_deletion.resume_all, vm_snapshots.recover_orphans,
                 zone_wizard.purge_expired, changes.prune, extensions.check_paths):
        try:
            part()
        except Exception:  # noqa: BLE001 - one failing part must not stop the others
            log.exception("%s failed", part.__name__)
            db.session.rollback()


def keep_metrics() -> None:
    """The metrics history: finished hours averaged, old samples pruned (services/metrics/history.py)."""
    from app.extensions import db
    from app.services.metrics import history
    try:
        hours, deleted = history.maintain()
        if hours or deleted:
            log.info("metrics history: %d hours averaged, %d old rows pruned", hours, deleted)
    except Exception:  # noqa: BLE001 - the sweep goes on
        log.exception("metrics history upkeep failed")
        db.session.rollback()


def check_image_stores() -> None:
    """Secondary storage: each image store's directory read and written (Ready, ReadOnly,
    Unreachable; app/services/storage.py)."""
    from app.extensions import db
    from app.services import storage
    try:
        storage.check_image_stores()
    except Exception:  # noqa: BLE001 - the sweep goes on
        log.exception("image store check failed")
        db.session.rollback()


def check_routers() -> None:
    """Virtual routers against the database: re-applied when they differ, rebuilt elsewhere
    when their host is Down (app/services/network/routers.py check_all)."""
    from app.extensions import db
    from app.services.network import routers
    try:
        routers.check_all()
    except Exception:  # noqa: BLE001 - the sweep goes on
        log.exception("router health check failed")
        db.session.rollback()


def check_capacity_alerts() -> None:
    """Zones, clusters and pools over their capacity notification thresholds raise an alert
    (one until it clears): app/services/alerts/triggers.py."""
    from app.extensions import db
    from app.services.alerts import triggers
    try:
        triggers.check_capacity()
    except Exception:  # noqa: BLE001 - the sweep goes on
        log.exception("capacity alert check failed")
        db.session.rollback()


def _up_hosts():
    from sqlalchemy import select

    from app.extensions import db
    from app.models import Host, HostState
    return list(db.session.scalars(select(Host).where(Host.removed.is_(None), Host.state == HostState.UP)))


def follow_hosts(app, listener):
    """Listen to a host's libvirt events as soon as the change stream says a host changed
    (added, enabled, Up again), rather than at the next sweep (up to ping.interval later)."""
    import threading

    from app.extensions import db
    from app.services.changes import tail
    hosts_only = tail.Viewer(root=True, kinds=frozenset({"host"}))

    def loop():
        sub = tail.tailer(app).subscribe(hosts_only)
        while True:
            item = sub.queue.get()
            if item is None:  # fell behind: look at every host anyway
                sub = tail.tailer(app).subscribe(hosts_only)
            while not sub.queue.empty():  # a burst of host changes: one sync
                sub.queue.get_nowait()
            with app.app_context():
                try:
                    listener.sync(_up_hosts())
                except Exception:  # noqa: BLE001 - the sweep syncs again anyway
                    log.exception("subscribing to host events failed")
                finally:
                    db.session.remove()

    thread = threading.Thread(target=loop, daemon=True, name="nubo-monitor-hosts")
    thread.start()
    return thread


def run(once: bool = False) -> None:
    from flask import current_app

    from app.extensions import db
    from app.monitor.vms import EventListener
    from app.services import settings
    log.info("monitor started")
    reconcile_records()  # start-up: whatever a killed web, worker or monitor left behind
    app = current_app._get_current_object()
    listener = None if once else EventListener(app)
    if listener is not None:
        follow_hosts(app, listener)
    while True:
        started = time.monotonic()
        try:
            sweep(listener)
        except Exception:  # noqa: BLE001 - the monitor outlives a bad sweep (database restart, ...)
            log.exception("monitor sweep failed")
            db.session.rollback()
        if once:
            return
        # Until the next sweep, in short naps: a ping.interval changed meanwhile applies now,
        # not after the old interval (30 s by default).
        while time.monotonic() - started < max(1.0, settings.get("ping.interval")):
            time.sleep(0.5)
