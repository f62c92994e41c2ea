"""Alerts: raised once per condition, cleared when it ends, archived and deleted; each
trigger (a Simulator host going Alert and Down, capacity thresholds, a failing job, a router
that cannot be repaired, a pool that cannot enter maintenance); delivery by SMTP and webhook
over loopback, the webhook through the SSRF filter."""
from __future__ import annotations

import http.server
import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.jobs import service as jobs
from app.models import Alert, Event, Host, utcnow
from app.monitor.hosts import ping_hosts
from app.services import alerts, hosts, settings, zones
from app.services import simulator as sim
from app.services.alerts import delivery, triggers
from app.services.errors import InvalidParameter, ResourceUnavailable
from tests.helpers.smtp import SmtpServer
from tests.helpers.users import existing_user


def _cluster(name="az"):
    z = zones.create_zone(None, name=name, dns1="8.8.8.8", internal_dns1="10.0.0.2")
    p = zones.create_pod(None, zone_uuid=z.uuid, name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                         start_ip="10.0.0.10")
    return zones.add_cluster(None, pod_uuid=p.uuid, name="c", hypervisor="Simulator")


def _open():
    return list(db.session.scalars(select(Alert).where(Alert.archived.is_(False)).order_by(Alert.id)))


@pytest.mark.db
def test_one_open_alert_per_condition_until_it_clears(app):
    with app.app_context():
        first = alerts.raise_alert(alerts.HOST, "Host h is Down", resource=("Host", "h-1"))
        db.session.commit()
        assert first is not None and first.name == "ALERT.COMPUTE.HOST" and first.alert_type == 7
        assert alerts.raise_alert(alerts.HOST, "Host h is Down", resource=("Host", "h-1")) is None
        other = alerts.raise_alert(alerts.HOST, "Host g is Down", resource=("Host", "h-2"))  # another host
        db.session.commit()
        assert other is not None and alerts.open_count() == 2
        assert alerts.clear(alerts.HOST, resource=("Host", "h-1"))
        db.session.commit()
        assert alerts.open_count() == 1
        assert db.session.get(Alert, first.id).resolved is not None  # listed (not archived) until archived
        again = alerts.raise_alert(alerts.HOST, "Host h is Down", resource=("Host", "h-1"))
        db.session.commit()
        assert again is not None and again.id != first.id


@pytest.mark.db
def test_archive_and_delete_as_cloudstack(app, users):
    with app.app_context():
        from app.services.accounts import get_user
        admin = get_user("admin")
        a = alerts.raise_alert(alerts.HOST, "one", resource=("Host", "1"))
        b = alerts.raise_alert(alerts.CPU, "two", zone_id=None)
        c = alerts.raise_alert(alerts.CPU, "three", resource=("x", "y"))
        db.session.commit()
        with pytest.raises(InvalidParameter, match="either ids, type, startdate or enddate"):
            alerts.archive(admin)
        with pytest.raises(InvalidParameter, match="enddate must be specified with startdate"):
            alerts.archive(admin, type="7", start=utcnow())
        assert alerts.archive(admin, ids=[a.uuid]) == 1
        rows, total = alerts.list_alerts()
        assert total == 2 and {r.uuid for r in rows} == {b.uuid, c.uuid}
        assert alerts.list_alerts(archived=True)[0][0].uuid == a.uuid
        assert alerts.open_count() == 2  # the archived one no longer holds its condition
        assert alerts.raise_alert(alerts.HOST, "one", resource=("Host", "1")) is not None
        db.session.commit()
        assert alerts.archive(admin, type="1") == 2  # by type id (CPU = 1)
        with pytest.raises(alerts.NothingMatched):
            alerts.archive(admin, type="ALERT.CPU")  # by name: both archived already
        assert alerts.delete_alerts(admin, end=utcnow() + timedelta(days=1)) == 4  # archived or not
        assert db.session.scalar(select(Alert.id)) is None
        assert [e.type for e in db.session.scalars(select(Event).where(Event.type.like("ALERT.%")).order_by(Event.id))] == \
            ["ALERT.ARCHIVE", "ALERT.ARCHIVE", "ALERT.DELETE"]


def test_a_host_going_alert_then_down_raises_one_alert_cleared_when_up(app):
    with app.app_context():
        c = _cluster()
        h = hosts.add_host(None, cluster_uuid=c.uuid, url="simulator://al-1", fields={})
        ping_hosts()
        assert alerts.open_count() == 0
        sim.set_host_up("al-1", False)
        t0 = utcnow()
        ping_hosts(now=t0)
        ping_hosts(now=t0)  # still Alert: no second alert
        rows = _open()
        assert len(rows) == 1 and rows[0].alert_type == 7 and "Host is Alert, name: al-1" in rows[0].subject
        assert (rows[0].zone_id, rows[0].pod_id, rows[0].cluster_id) == (h.zone_id, h.pod_id, h.cluster_id)
        later = t0 + timedelta(seconds=settings.get("ping.interval") * settings.get("ping.timeout") + 1)
        ping_hosts(now=later)
        assert db.session.get(Host, h.id).state == "Down"
        assert len(_open()) == 1 and alerts.open_count() == 1  # Alert → Down: the same condition
        sim.set_host_up("al-1", True)
        ping_hosts(now=later)
        assert alerts.open_count() == 0 and _open()[0].resolved is not None


def test_capacity_thresholds_at_zone_cluster_and_pool(app):
    from app.models import StoragePool
    with app.app_context():
        c = _cluster()
        h = hosts.add_host(None, cluster_uuid=c.uuid, url="simulator://cap-1?cpus=4&memory=8192", fields={})
        host = db.session.get(Host, h.id)
        total_mhz = host.cpu_number * host.cpu_speed
        host.cpu_allocated = int(total_mhz * 0.8)  # over 0.75 (CloudStack's default), memory under
        pool = StoragePool(name="ps", zone_id=h.zone_id, pod_id=h.pod_id, cluster_id=h.cluster_id, pool_type="NFS",
                           url="nfs://x/y", path="/y", capacity_bytes=100 << 30, allocated_bytes=80 << 30)
        db.session.add(pool)
        db.session.commit()
        assert triggers.check_capacity() == 3  # CPU of the zone and of the cluster; the pool
        assert triggers.check_capacity() == 0  # seen again: nothing new
        rows = _open()
        assert sorted((r.alert_type, r.cluster_id is not None) for r in rows) == [(1, False), (1, True), (3, True)]
        assert any("cluster c" in r.subject and "Low Available CPU" in r.subject for r in rows)
        settings.update("cluster.cpu.allocated.capacity.notificationthreshold", "0.9")
        settings.clear_cache()
        triggers.check_capacity()
        assert {r.alert_type for r in db.session.scalars(select(Alert).where(Alert.open_key.is_not(None)))} == {3}
        # CloudStack's scope of these settings: a cluster's own value (the zone keeps the global one).
        settings.update("cluster.cpu.allocated.capacity.notificationthreshold", "0.5", scope="cluster",
                        target=h.cluster_id)
        settings.clear_cache()
        assert triggers.check_capacity() == 1
        assert sorted((r.alert_type, r.cluster_id is not None) for r in db.session.scalars(
            select(Alert).where(Alert.open_key.is_not(None)))) == [(1, True), (3, True)]
        with pytest.raises(InvalidParameter):
            settings.update("cluster.memory.allocated.capacity.notificationthreshold", "1.5")


@jobs.handler("test.alert.fails")
def _fails(job, params):
    if params.get("fail"):
        raise ResourceUnavailable("the host refused")
    return {}


@jobs.handler("test.alert.bad_input")
def _bad_input(job, params):
    raise InvalidParameter("no such thing")


def test_a_failing_job_raises_an_alert_per_command_cleared_by_a_success(app):
    with app.app_context():
        jobs.submit("startVirtualMachine", None, "test.alert.fails", {"fail": True})
        jobs.submit("startVirtualMachine", None, "test.alert.fails", {"fail": True})
        jobs.submit("deployVirtualMachine", None, "test.alert.bad_input")  # the caller's mistake: no alert
        rows = _open()
        assert len(rows) == 1 and rows[0].name == "ALERT.ASYNC.JOB" and rows[0].alert_type == 100
        assert rows[0].subject == "Async job startVirtualMachine failed: the host refused"
        assert json.loads(rows[0].content)["cmd"] == "startVirtualMachine"
        jobs.submit("startVirtualMachine", None, "test.alert.fails", {"fail": False})
        assert alerts.open_count() == 0


def test_a_reaped_job_raises_an_alert(app):
    from app.models import AsyncJob
    with app.app_context():
        job = AsyncJob(cmd="migrateVirtualMachine", status=0, started=utcnow() - timedelta(hours=2),
                       heartbeat=utcnow() - timedelta(hours=2), params=json.dumps({"handler": "none"}))
        db.session.add(job)
        db.session.commit()
        assert jobs.reap() == 1
        rows = _open()
        assert len(rows) == 1 and "migrateVirtualMachine failed: Job failed: the worker" in rows[0].subject


def test_router_and_pool_failures(app):
    from types import SimpleNamespace

    from app.models import StoragePool
    with app.app_context():
        c = _cluster()
        pool = StoragePool(name="ps", zone_id=c.zone_id, pod_id=c.pod_id, cluster_id=c.id, pool_type="NFS",
                           url="nfs://x/y", path="/y")
        db.session.add(pool)
        db.session.commit()
        triggers.pool_failed(pool, "could not be emptied for maintenance: v1: stuck")
        triggers.pool_failed(pool, "again")
        db.session.commit()
        assert [(r.alert_type, r.resource_id) for r in _open()] == [(12, pool.uuid)]
        triggers.pool_recovered(pool)
        router = SimpleNamespace(name="r-1", uuid="r-uuid", network=SimpleNamespace(name="net", zone_id=c.zone_id))
        triggers.router_failed(router, "not running; re-apply failed")
        db.session.commit()
        assert alerts.open_count() == 1 and _open()[-1].name == "ALERT.SERVICE.DOMAINROUTER"
        triggers.router_recovered(router)
        db.session.commit()
        assert alerts.open_count() == 0


# --- Delivery ------------------------------------------------------------------------------

def _wait_delivered(alert_id: int, deadline: float = 15.0) -> Alert:
    for f in list(delivery.futures):
        f.result(timeout=deadline)
    db.session.expire_all()
    return db.session.get(Alert, alert_id)


class _Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.server.bodies.append((self.headers["Content-Type"], self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def webhook():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.bodies = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_delivery_by_email_and_webhook_over_loopback(app, webhook):
    smtp = SmtpServer()
    try:
        with app.app_context():
            settings.update("alert.smtp.host", "127.0.0.1")
            settings.update("alert.smtp.port", str(smtp.port))
            settings.update("alert.email.addresses", "ops@example.org,oncall@example.org")
            settings.update("alert.webhook.url", f"http://127.0.0.1:{webhook.server_address[1]}/hook")
            settings.update("alert.webhook.allowed.internal.sites", "127.0.0.0/8")
            settings.clear_cache()
            started, before = time.monotonic(), len(delivery.futures)
            a = alerts.raise_alert(alerts.HOST, "Host is Down, name: h9", content="no answer", resource=("Host", "9"))
            db.session.commit()
            assert time.monotonic() - started < 1  # the sends are not the caller's
            a = _wait_delivered(a.id)
            assert a.sent_count == 1 and a.last_sent is not None and a.delivery_error is None
            assert len(smtp.messages) == 1
            mail = smtp.messages[0]
            assert "Subject: Host is Down, name: h9" in mail and "ops@example.org, oncall@example.org" in mail
            assert len(webhook.bodies) == 1
            ctype, body = webhook.bodies[0]
            assert ctype == "application/json"
            sent = json.loads(body)["alert"]
            assert (sent["id"], sent["type"], sent["name"], sent["resourceid"]) == (a.uuid, 7, "ALERT.COMPUTE.HOST", "9")
            # A rolled back raise sends nothing.
            alerts.raise_alert(alerts.HOST, "never", resource=("Host", "10"))
            db.session.rollback()
            db.session.commit()
            assert len(delivery.futures) == min(before + 1, 51) and len(smtp.messages) == 1
    finally:
        smtp.close()


def test_a_failed_delivery_is_recorded_and_the_ssrf_filter_still_refuses(app, webhook):
    with app.app_context():
        # The webhook on loopback without the allowed network: refused before connecting.
        settings.update("alert.webhook.url", f"http://127.0.0.1:{webhook.server_address[1]}/hook")
        settings.update("alert.smtp.host", "127.0.0.1")
        settings.update("alert.smtp.port", "1")  # nothing listens: connection refused
        settings.update("alert.email.addresses", "ops@example.org")
        settings.clear_cache()
        a = alerts.raise_alert(alerts.HOST, "Host is Down", resource=("Host", "1"))
        db.session.commit()
        a = _wait_delivered(a.id)
        assert a.sent_count == 0 and webhook.bodies == []
        assert "webhook: The URL points at an internal address" in a.delivery_error
        assert "e-mail:" in a.delivery_error
        ev = db.session.scalar(select(Event).where(Event.type == "ALERT.DELIVERY"))
        assert ev.level == "WARN" and a.uuid == ev.resource_id


def test_an_unreachable_image_store_raises_an_alert_cleared_when_ready(app, tmp_path):
    from app.monitor import sweep
    from app.services import storage
    with app.app_context():
        z = zones.create_zone(None, name="SZ", dns1="8.8.8.8", internal_dns1="10.0.0.2")
        root = tmp_path / "sec"
        store = storage.add_image_store(None, provider="Local", url=f"file://{root}", zone_uuid=z.uuid)
        root.rename(tmp_path / "gone")
        sweep()
        sweep()  # still gone: the same alert
        rows = _open()
        assert [(r.name, r.resource_id) for r in rows] == [("ALERT.STORAGE.SECONDARY", store.uuid)]
        assert "Secondary storage" in rows[0].subject and "unreachable" in rows[0].subject
        (tmp_path / "gone").rename(root)
        sweep()
        assert alerts.open_count() == 0


@pytest.mark.db
def test_two_processes_raising_the_same_condition_open_one_alert(app, monkeypatch):
    """The second raise, whose check did not see the first's row (not committed yet when it
    looked), hits the unique open key and opens nothing."""
    from sqlalchemy.orm import Session
    with app.app_context():
        first = alerts.raise_alert(alerts.HOST, "Host is Down", resource=("Host", "race"))
        assert first is not None
        key = first.open_key
        db.session.commit()
        # As if another monitor had passed the check before that commit: its insert is refused.
        with Session(db.engine) as other:
            from app.models import Alert as A
            other.add(A(alert_type=7, name="ALERT.COMPUTE.HOST", subject="dup", open_key=key))
            with pytest.raises(Exception) as e:
                other.commit()
            assert "unique" in str(e.value).lower() or "duplicate" in str(e.value).lower()
        # And raise_alert itself, when its check misses the row, answers None and leaves the session usable.
        real = db.session.scalar
        calls = {"n": 0}

        def miss_once(stmt, *a, **kw):
            calls["n"] += 1
            return None if calls["n"] == 1 else real(stmt, *a, **kw)
        with monkeypatch.context() as m:
            m.setattr(db.session, "scalar", miss_once)
            assert alerts.raise_alert(alerts.HOST, "Host is Down", resource=("Host", "race")) is None
        db.session.commit()
        assert alerts.open_count() == 1
