"""Metrics history: the monitor's samples kept every vm.stats.interval, hourly averages,
retention pruning, the ranges read back averaged, and the JSON the charts read (a user
reads only their own VMs'; hosts are the admins')."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import HOURLY, RAW, MetricKind, MetricSample, ServiceOffering, VirtualMachine, new_uuid
from app.services import settings
from app.services.metrics import history
from tests.integration.test_infra_pages import _engines, build  # noqa: F401 - zone builder, autouse fixture

T0 = datetime(2026, 12, 1, 10, 0, 0)


@pytest.fixture(autouse=True)
def _fresh_interval():
    history._last.clear()
    yield
    history._last.clear()


def rows(kind=MetricKind.VM, period=RAW):
    return db.session.execute(select(MetricSample).where(MetricSample.kind == kind, MetricSample.period == period)
                              .order_by(MetricSample.resource_id, MetricSample.at)).scalars().all()


def vm_sample(vm_id, cpu, mem_kib=1024, rate=100.0):
    return {"id": vm_id, "cpu_used_pct": cpu, "memory_used_kib": mem_kib, "net_rx_bps": rate, "net_tx_bps": rate / 2,
            "disk_read_bps": rate * 2, "disk_write_bps": rate * 3}


def test_samples_are_kept_once_per_interval(app):
    with app.app_context():
        assert history.record_vms([vm_sample(1, 10.0), vm_sample(2, 20.0)], T0) == 2
        assert history.record_vms([vm_sample(1, 11.0)], T0 + timedelta(seconds=30)) == 0  # within vm.stats.interval
        assert history.record_vms([vm_sample(1, 12.0)], T0 + timedelta(seconds=60)) == 1
        assert history.record_hosts([(7, 50.0, 1 << 30)], T0) == 1  # hosts count on their own interval
        db.session.commit()
        got = rows()
        assert [(r.resource_id, r.cpu_pct, r.memory_used) for r in got] == [(1, 10.0, 1 << 20), (1, 12.0, 1 << 20),
                                                                             (2, 20.0, 1 << 20)]
        assert got[0].net_rx_bps == 100.0 and got[0].disk_write_bps == 300.0
        assert [(r.resource_id, r.cpu_pct) for r in rows(MetricKind.HOST)] == [(7, 50.0)]
        settings.update("vm.stats.interval", "300000")
        assert history.record_vms([vm_sample(1, 13.0)], T0 + timedelta(seconds=120)) == 0


@pytest.mark.db
def test_a_large_sweep_is_kept_whole(app):
    """2,000 VM samples at once (PostgreSQL writes 1,000 or more through COPY, in the sweep's
    transaction): every row with its figures; a rollback takes them away with the rest."""
    with app.app_context():
        samples = [vm_sample(i, i % 100 + 0.5, mem_kib=i, rate=float(i)) for i in range(1, 2001)]
        samples[7]["cpu_used_pct"] = None  # a first sample has only its memory
        assert history.record_vms(samples, T0) == 2000
        db.session.rollback()
        assert rows() == []
        history._last.clear()
        assert history.record_vms(samples, T0) == 2000
        db.session.commit()
        got = rows()
        assert len(got) == 2000 and got[0].at == T0
        assert (got[41].resource_id, got[41].cpu_pct, got[41].memory_used) == (42, 42.5, 42 * 1024)
        assert got[41].net_tx_bps == 21.0 and got[41].disk_write_bps == 126.0 and got[7].cpu_pct is None


def test_the_monitor_sweep_keeps_host_and_vm_samples(app):
    from app.monitor import sweep
    from tests.integration.test_monitor_hosts import _vm_on_sim
    with app.app_context():
        h, vm = _vm_on_sim("simulator://hist-1?cpus=4&memory=8192", "i-9-7-VM", running_in_nubo=True)
        sweep()
        assert [r.resource_id for r in rows(MetricKind.HOST)] == [h.id]
        host_row = rows(MetricKind.HOST)[0]
        assert host_row.memory_used > 0 and host_row.cpu_pct is not None
        assert [r.resource_id for r in rows(MetricKind.VM)] == [vm.id]  # a first sample: memory only
        assert rows(MetricKind.VM)[0].memory_used > 0
        sweep()  # again within the interval: nothing more
        assert len(rows(MetricKind.VM)) == 1 and len(rows(MetricKind.HOST)) == 1


@pytest.mark.db
def test_hours_are_averaged_then_old_samples_pruned(app):
    """Samples over three hours; at 13:10 the finished hours 10, 11, 12 become one row per
    resource each; with 60 min retention the samples before 12:10 go, the hourly rows stay;
    hourly rows older than metrics.hourly.retention.days go too."""
    with app.app_context():
        for minute in range(0, 190, 10):  # 10:00 … 13:00
            at = T0 + timedelta(minutes=minute)
            history._last.clear()
            history.record_vms([vm_sample(1, float(minute)), vm_sample(2, 50.0, mem_kib=2048)], at)
        db.session.commit()
        settings.update("vm.stats.max.retention.time", "60")
        now = T0 + timedelta(hours=3, minutes=10)
        hours, deleted = history.maintain(now)
        assert hours == 3
        hourly = rows(period=HOURLY)
        assert [(r.resource_id, r.at.hour) for r in hourly] == [(1, 10), (1, 11), (1, 12), (2, 10), (2, 11), (2, 12)]
        assert hourly[0].cpu_pct == pytest.approx(25.0)  # minutes 0-50
        assert hourly[1].cpu_pct == pytest.approx(85.0) and hourly[3].memory_used == 2048 * 1024
        assert hourly[0].net_rx_bps == pytest.approx(100.0)
        left = rows()
        assert min(r.at for r in left) == T0 + timedelta(hours=2, minutes=10) and deleted == 2 * 13
        assert history.maintain(now) == (0, 0)  # nothing twice
        # Not averaged yet (the hour is still running): never pruned, whatever the retention.
        settings.update("vm.stats.max.retention.time", "1")
        history.maintain(now)
        assert min(r.at for r in rows()) == T0 + timedelta(hours=3)
        history.maintain(now + timedelta(days=8))  # hourly rows past 7 days go
        assert rows(period=HOURLY) == []


def test_series_averages_buckets_and_falls_back_to_hourly_rows(app):
    with app.app_context():
        for second in range(0, 600, 60):  # ten samples over ten minutes, CPU 0, 10, … 90
            history._last.clear()
            history.record_vms([vm_sample(1, float(second // 6))], T0 + timedelta(seconds=second))
        db.session.commit()
        now = T0 + timedelta(minutes=10)
        s = history.series(MetricKind.VM, 1, "1h", now=now)
        assert s["step"] == 60 and len(s["t"]) == 10 and s["cpu_pct"][:3] == [0.0, 10.0, 20.0]
        assert s["memory_used"][0] == 1 << 20 and s["net_tx_bps"][0] == 50.0
        s = history.series(MetricKind.VM, 1, "24h", now=now)
        assert s["step"] == 600 and s["cpu_pct"] == [45.0]  # one 10-minute bucket, averaged
        db.session.add(MetricSample(kind=MetricKind.VM, resource_id=1, at=T0 - timedelta(hours=5), period=HOURLY,
                                    cpu_pct=77.0))
        db.session.commit()
        s = history.series(MetricKind.VM, 1, "7d", now=now)
        assert s["step"] == 3600 and s["cpu_pct"] == [77.0, 45.0]
        assert history.series(MetricKind.VM, 2, "1h", now=now)["t"] == []
        with pytest.raises(Exception, match="range must be one of"):
            history.series(MetricKind.VM, 1, "2y")


def _vm_of(app, username: str, host_uuid: str) -> tuple[int, str]:
    with app.app_context():
        from app.services import accounts, hosts
        user, host = accounts.get_user(username), hosts.get_host(host_uuid)
        so = db.session.scalar(select(ServiceOffering).limit(1)) or ServiceOffering(
            uuid=new_uuid(), name="s", cpu_number=1, cpu_speed=1000, memory=512)
        db.session.add(so)
        db.session.flush()
        vm = VirtualMachine(uuid=new_uuid(), name=f"{username}-vm", instance_name=f"i-{user.id}-1-VM",
                            state="Running", account_id=user.account_id, user_id=user.id, zone_id=host.zone_id,
                            host_id=host.id, last_host_id=host.id, service_offering_id=so.id,
                            hypervisor_type="Simulator", cpu_number=1, cpu_speed=1000, memory=512)
        db.session.add(vm)
        db.session.commit()
        return vm.id, vm.uuid


def test_the_json_endpoints_and_their_isolation(app, client, auth):
    ids = build(app, 1)
    vm_id, vm_uuid = _vm_of(app, "alice", ids.hosts[0])
    with app.app_context():
        from app.models import utcnow
        from app.services import hosts
        history.record_vms([vm_sample(vm_id, 42.0)], utcnow() - timedelta(minutes=1))
        history.record_hosts([(hosts.get_host(ids.hosts[0]).id, 5.0, 1 << 30)], utcnow() - timedelta(minutes=1))
        db.session.commit()
    auth.login("alice")
    data = client.get(f"/vms/{vm_uuid}/metrics?range=1h").get_json()
    assert data["cpu_pct"] == [42.0] and data["memory_total"] == 512 << 20 and len(data["t"]) == 1
    assert client.get(f"/vms/{vm_uuid}/metrics?range=2y").status_code == 400
    assert client.get(f"/admin/hosts/{ids.hosts[0]}/metrics").status_code == 403
    page = client.get(f"/vms/{vm_uuid}").get_data(as_text=True)
    assert f'data-metrics-url="/vms/{vm_uuid}/metrics"' in page and "uPlot.iife.min.js" in page
    assert "uPlot.iife.min.js" not in client.get("/vms/").get_data(as_text=True)  # only where charts are
    auth.logout()
    auth.login("bob")  # another account's VM is not found, exactly like a missing one
    assert client.get(f"/vms/{vm_uuid}/metrics").status_code == 404
    assert client.get("/vms/no-such-vm/metrics").status_code == 404
    auth.logout()
    assert client.get(f"/vms/{vm_uuid}/metrics").status_code in (302, 401)
    auth.login("admin")
    assert client.get(f"/vms/{vm_uuid}/metrics").get_json()["cpu_pct"] == [42.0]
    host = client.get(f"/admin/hosts/{ids.hosts[0]}/metrics?range=24h")
    assert host.status_code == 200 and host.get_json()["memory_total"] == 16384 << 20
    assert host.get_json()["cpu_pct"] == [5.0] and host.get_json()["memory_used"] == [1 << 30]
    page = client.get(f"/admin/hosts/{ids.hosts[0]}").get_data(as_text=True)
    assert f'data-metrics-url="/admin/hosts/{ids.hosts[0]}/metrics"' in page and 'data-chart="disk"' not in page


def test_list_virtual_machines_usage_history(app, client, auth):
    """CloudStack's listVirtualMachinesUsageHistory from the same samples: a user's own VMs
    only, startdate/enddate bound the samples, rates become KiB per vm.stats.interval."""
    import json
    from urllib.parse import urlencode

    from app.models import utcnow
    from tests.integration.test_api import signed
    ids = build(app, 1)
    vm_id, vm_uuid = _vm_of(app, "alice", ids.hosts[0])
    now = utcnow().replace(microsecond=0)
    with app.app_context():
        for minutes in (30, 20, 10):
            history._last.clear()
            history.record_vms([vm_sample(vm_id, float(minutes), mem_kib=256 * 1024, rate=1024.0)],
                               now - timedelta(minutes=minutes))
        db.session.commit()
        from app.services import accounts
        keys = {u: accounts.ensure_keys(accounts.get_user(u)) for u in ("alice", "bob")}

    def call(user, **params):
        resp = client.get("/client/api?" + urlencode(signed(keys, user, command="listVirtualMachinesUsageHistory",
                                                            **params)))
        assert resp.status_code == 200, resp.data
        return json.loads(resp.data)["listvirtualmachinesusagehistoryresponse"]

    got = call("alice")
    assert got["count"] == 1 and got["virtualmachine"][0]["id"] == vm_uuid
    stats = got["virtualmachine"][0]["stats"]
    assert [s["cpuused"] for s in stats] == ["30.00%", "20.00%", "10.00%"]
    assert stats[0]["memorykbs"] == 512 * 1024 and stats[0]["memoryintfreekbs"] == 256 * 1024
    assert stats[0]["networkkbsread"] == 60 and stats[0]["diskkbswrite"] == 180 and stats[0]["networkread"] == "0.06 MiB"
    start = (now - timedelta(minutes=25)).strftime("%Y-%m-%d %H:%M:%S")
    end = (now - timedelta(minutes=15)).strftime("%Y-%m-%d %H:%M:%S")
    assert [s["cpuused"] for s in call("alice", startdate=start, enddate=end)["virtualmachine"][0]["stats"]] == \
        ["20.00%"]
    assert call("bob") == {}  # another account's VM: not listed at all
