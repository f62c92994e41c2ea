"""Volume snapshots and snapshot policies on the Simulator, through the API: taken (a copy on the
zone's image store), listed, reverted (VM stopped), a volume and a template made from one,
deleted; the limits (snapshots, secondary storage) under parallel requests on SQLite,
PostgreSQL and MariaDB; bad input refused with CloudStack's codes and nothing changed;
policies' schedules as CloudStack parses them, run by the scheduler (a missed run taken
once), the oldest beyond maxsnaps deleted; Hyper-V refused as not supported."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Snapshot, SnapshotPolicy, Template, Volume
from app.services import accounts, settings
from app.services.snapshots import policies, schedule
from app.services.errors import InvalidParameter
from tests.integration.test_quotas import api, counts
from tests.integration.test_vm_pages import _engines, deploy, set_vm, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.db
GIB = 1 << 30


def root_of(app, vm_uuid) -> str:
    with app.app_context():
        from app.models import VirtualMachine
        vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.uuid == vm_uuid))
        return next(v.uuid for v in vm.volumes if v.volume_type == "ROOT")


def job_result(app, client, user, jobid) -> dict:
    status, body = api(app, client, user, command="queryAsyncJobResult", jobid=jobid)
    assert status == 200
    assert body["jobstatus"] != 0, body  # immediate mode: done already
    return body


def snap_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Snapshot).where(Snapshot.removed.is_(None)))


def test_snapshot_life_on_the_simulator(app, client, world, tmp_path):
    vm = deploy(app, world)
    root = root_of(app, vm)
    status, body = api(app, client, "alice", command="createSnapshot", volumeid=root, name="first")
    assert status == 200, body
    res = job_result(app, client, "alice", body["jobid"])
    snap = res["jobresult"]["snapshot"]
    assert snap["id"] == body["id"] and snap["state"] == "BackedUp" and snap["name"] == "first"
    assert snap["volumeid"] == root and snap["volumetype"] == "ROOT" and snap["snapshottype"] == "MANUAL"
    assert snap["virtualsize"] == GIB and snap["physicalsize"] > 0 and snap["account"] == "alice"
    assert snap["hypervisor"] == "Simulator" and snap["revertable"] is True
    # The copy is on the zone's image store
    with app.app_context():
        s = db.session.scalar(select(Snapshot).where(Snapshot.uuid == snap["id"]))
        assert (tmp_path / "sec" / s.install_path).exists()
    c = counts(app)
    assert c["snapshot"] == 1 and c["secondary_storage"] == 1

    # Listed, by volume and id; bob sees nothing and cannot touch it
    _, listed = api(app, client, "alice", command="listSnapshots", volumeid=root)
    assert [x["id"] for x in listed["snapshot"]] == [snap["id"]] and listed["count"] == 1
    _, other = api(app, client, "bob", command="listSnapshots")
    assert other == {}
    # Tagged like any taggable object, and filtered by its tags
    status, body = api(app, client, "alice", command="createTags", resourcetype="Snapshot",
                       **{"resourceids": snap["id"], "tags[0].key": "tier", "tags[0].value": "gold"})
    assert status == 200 and job_result(app, client, "alice", body["jobid"])["jobstatus"] == 1, body
    _, tagged = api(app, client, "alice", command="listSnapshots", **{"tags[0].key": "tier", "tags[0].value": "gold"})
    assert [(x["id"], [(t["key"], t["value"]) for t in x["tags"]]) for x in tagged["snapshot"]] == \
        [(snap["id"], [("tier", "gold")])]
    assert api(app, client, "alice", command="listSnapshots", **{"tags[0].key": "tier", "tags[0].value": "x"})[1] == {}
    assert api(app, client, "bob", command="deleteSnapshot", id=snap["id"])[0] == 431
    assert api(app, client, "bob", command="createSnapshot", volumeid=root)[0] == 431

    # Revert needs the VM stopped: 431, nothing changes
    status, body = api(app, client, "alice", command="revertSnapshot", id=snap["id"])
    assert status == 431 and "shutdown" in body["errortext"]
    set_vm(app, vm, state="Stopped")
    status, body = api(app, client, "alice", command="revertSnapshot", id=snap["id"])
    assert status == 200
    assert job_result(app, client, "alice", body["jobid"])["jobresult"]["snapshot"]["id"] == snap["id"]

    # A volume from the snapshot: counted as a volume, Ready on the pool
    before = counts(app)
    status, body = api(app, client, "alice", command="createVolume", snapshotid=snap["id"], name="restored")
    assert status == 200, body
    vol = job_result(app, client, "alice", body["jobid"])["jobresult"]["volume"]
    assert vol["name"] == "restored" and vol["state"] == "Ready" and vol["size"] == GIB and vol["type"] == "DATADISK"
    after = counts(app)
    assert after["volume"] == before["volume"] + 1 and after["primary_storage"] == before["primary_storage"] + 1

    # A template from the snapshot, and one from the stopped VM's root volume
    with app.app_context():
        from app.models import OsType
        os_type = db.session.scalars(select(OsType)).first().uuid
    status, body = api(app, client, "alice", command="createTemplate", snapshotid=snap["id"], name="from-snap",
                       displaytext="from a snapshot", ostypeid=os_type)
    assert status == 200, body
    tpl = job_result(app, client, "alice", body["jobid"])["jobresult"]["template"]
    assert tpl["name"] == "from-snap" and tpl["hypervisor"] == "Simulator" and tpl["format"] == "QCOW2"
    status, body = api(app, client, "alice", command="createTemplate", volumeid=root, name="from-vol",
                       ostypeid=os_type)
    assert status == 200, body
    tpl2 = job_result(app, client, "alice", body["jobid"])["jobresult"]["template"]
    _, listed = api(app, client, "alice", command="listTemplates", templatefilter="self")
    ready = {t["name"]: t["isready"] for t in listed["template"]}
    assert ready == {"from-snap": True, "from-vol": True}
    # ... and a VM deploys from it
    with app.app_context():
        from app.services import vms
        new, _ = vms.deploy(accounts.get_user("alice"), zone_uuid=world.zone, service_offering_uuid=world.small,
                            template_uuid=tpl2["id"], name="from-template")
        assert new.state in ("Running", "Starting")

    # A VM busy with another action is not snapshotted meanwhile: the job fails, nothing stays counted
    before = counts(app)
    set_vm(app, vm, active_job_id=987654)
    status, body = api(app, client, "alice", command="createSnapshot", volumeid=root)
    failed = job_result(app, client, "alice", body["jobid"])
    assert failed["jobstatus"] == 2 and "busy" in failed["jobresult"]["errortext"]
    set_vm(app, vm, active_job_id=None)
    assert counts(app) == before and snap_count(app) == 1

    # Delete: the file and the counts go
    status, body = api(app, client, "alice", command="deleteSnapshot", id=snap["id"])
    assert status == 200 and job_result(app, client, "alice", body["jobid"])["jobresult"]["success"] is True
    assert not (tmp_path / "sec" / s.install_path).exists()
    c = counts(app)
    assert c["snapshot"] == 0 and c["secondary_storage"] == 0
    assert api(app, client, "alice", command="listSnapshots")[1] == {}


def test_bad_input_changes_nothing(app, client, world):
    vm = deploy(app, world)
    root = root_of(app, vm)
    with app.app_context():
        from app.services import volumes
        zone = world.zone
        off = volumes.create_disk_offering(None, name="1G", disk_size=1).uuid
        allocated = volumes.create_volume(accounts.get_user("alice"), name="empty", zone_uuid=zone,
                                          disk_offering_uuid=off).uuid
    before = counts(app)
    for params in (dict(volumeid="0b6d7ce6-0000-4000-8000-000000000000"), dict(volumeid="not-a-uuid"), dict(),
                   dict(volumeid=allocated)):
        status, body = api(app, client, "alice", command="createSnapshot", **params)
        assert status == 431, (params, body)
    assert "is not in Ready state but Allocated" in api(app, client, "alice", command="createSnapshot",
                                                        volumeid=allocated)[1]["errortext"]
    bad_policies = [dict(intervaltype="YEARLY", schedule="00:01", maxsnaps=3),
                    dict(intervaltype="DAILY", schedule="61:01", maxsnaps=3),
                    dict(intervaltype="DAILY", schedule="5", maxsnaps=3),
                    dict(intervaltype="WEEKLY", schedule="00:01:8", maxsnaps=3),
                    dict(intervaltype="MONTHLY", schedule="00:01:29", maxsnaps=3),
                    dict(intervaltype="HOURLY", schedule="5", maxsnaps=0),
                    dict(intervaltype="HOURLY", schedule="5", maxsnaps=9),
                    dict(intervaltype="HOURLY", schedule="5", maxsnaps=2, timezone="Mars/Olympus")]
    for params in bad_policies:
        status, body = api(app, client, "alice", command="createSnapshotPolicy", volumeid=root,
                           **{"timezone": "UTC", **params})
        assert status == 431, (params, body)
    for params in (dict(), dict(snapshotid=root), dict(volumeid=root, snapshotid=root)):
        status, _ = api(app, client, "alice", command="createTemplate", name="x", ostypeid=root, **params)
        assert status == 431, params
    assert api(app, client, "alice", command="createTemplate", name="x", ostypeid=root, volumeid=root)[0] == 431
    assert counts(app) == before and snap_count(app) == 0
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SnapshotPolicy)) == 0
        assert db.session.scalar(select(func.count()).select_from(Template).where(Template.name == "x")) == 0


def test_limits_hold_under_parallel_requests(app, client, world):
    """10 parallel createSnapshot at a limit of 3 snapshots: exactly 3 rows and 3 counted."""
    vm = deploy(app, world)
    root = root_of(app, vm)
    api(app, client, "admin", command="updateResourceLimit", account="alice", resourcetype=3, max=3)
    results, lock = [], threading.Lock()

    def one():
        with app.app_context():
            from app.services.snapshots import volume as snaps
            try:
                snaps.allocate(0, db.session.scalar(select(Volume).where(Volume.uuid == root)))
                out = "ok"
            except Exception as e:  # noqa: BLE001
                db.session.rollback()
                out = getattr(e, "code", repr(e))
            with lock:
                results.append(out)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 3 and results.count(532) == 7, results
    assert counts(app)["snapshot"] == 3 and snap_count(app) == 3
    # The secondary storage limit: 1 GiB volume, 0 GiB left
    api(app, client, "admin", command="updateResourceLimit", account="alice", resourcetype=3, max=-1)
    api(app, client, "admin", command="updateResourceLimit", account="alice", resourcetype=11, max=3)
    status, body = api(app, client, "alice", command="createSnapshot", volumeid=root)
    assert status == 532 and "secondary storage" in body["errortext"]
    assert snap_count(app) == 3


def test_schedules_as_cloudstack_parses_them():
    t0 = datetime(2026, 3, 4, 10, 30)  # a Wednesday
    assert schedule.parse("HOURLY", "15").next_after(t0) == datetime(2026, 3, 4, 11, 15)
    assert schedule.parse("HOURLY", "45").next_after(t0) == datetime(2026, 3, 4, 10, 45)
    assert schedule.parse("DAILY", "00:01").next_after(t0) == datetime(2026, 3, 5, 1, 0)
    assert schedule.parse("DAILY", "00:12").next_after(t0) == datetime(2026, 3, 4, 12, 0)
    assert schedule.parse("WEEKLY", "00:05:1").next_after(t0) == datetime(2026, 3, 8, 5, 0)  # 1 = Sunday
    assert schedule.parse("MONTHLY", "30:02:4").next_after(t0) == datetime(2026, 4, 4, 2, 30)
    assert schedule.parse("MONTHLY", "30:12:4").next_after(t0) == datetime(2026, 3, 4, 12, 30)
    # 05:00 in Zurich (UTC+1 in March before the change) is 04:00 UTC
    assert schedule.parse("DAILY", "00:05", "Europe/Zurich").next_after(t0) == datetime(2026, 3, 5, 4, 0)
    assert schedule.interval_of(2) == "WEEKLY"
    with pytest.raises(InvalidParameter):
        schedule.parse("HOURLY", "00:01")


def test_policy_runs_once_for_missed_slots_and_keeps_maxsnaps(app, client, world):
    vm = deploy(app, world)
    root = root_of(app, vm)
    status, body = api(app, client, "alice", command="createSnapshotPolicy", volumeid=root, intervaltype="HOURLY",
                       schedule="5", maxsnaps=2, timezone="UTC")
    assert status == 200, body
    body = body["snapshotpolicy"]
    assert body["intervaltype"] == 0 and body["schedule"] == "5" and body["maxsnaps"] == 2
    # The same interval again replaces its schedule (Ansible's cs_snapshot_policy relies on it)
    status, again = api(app, client, "alice", command="createSnapshotPolicy", volumeid=root, intervaltype="hourly",
                        schedule="10", maxsnaps=2, timezone="Europe/Zurich")
    again = again["snapshotpolicy"]
    assert again["id"] == body["id"] and again["schedule"] == "10" and again["timezone"] == "Europe/Zurich"
    _, listed = api(app, client, "alice", command="listSnapshotPolicies", volumeid=root)
    assert listed["count"] == 1 and listed["snapshotpolicy"][0]["id"] == body["id"]
    assert api(app, client, "bob", command="listSnapshotPolicies", volumeid=root)[0] == 431
    assert api(app, client, "bob", command="deleteSnapshotPolicies", id=body["id"])[0] == 431

    with app.app_context():
        p = db.session.scalar(select(SnapshotPolicy).where(SnapshotPolicy.uuid == body["id"]))
        now = p.next_run + timedelta(hours=5, minutes=1)  # five slots missed
        assert policies.run_due(now) == 1  # caught up once
        assert policies.run_due(now) == 0
        p = db.session.get(SnapshotPolicy, p.id)
        assert now < p.next_run <= now + timedelta(hours=1)
        for hours in (1, 2, 3):
            assert policies.run_due(now + timedelta(hours=hours)) == 1
        rows = db.session.scalars(select(Snapshot).where(Snapshot.removed.is_(None))).all()
        assert len(rows) == 2 and {r.snapshot_type for r in rows} == {"HOURLY"}
    c = counts(app)
    assert c["snapshot"] == 2
    _, listed = api(app, client, "alice", command="listSnapshots", intervaltype="HOURLY")
    assert listed["count"] == 2 and all(s["snapshottype"] == "RECURRING" for s in listed["snapshot"])
    assert api(app, client, "alice", command="listSnapshots", snapshottype="RECURRING")[1]["count"] == 2
    assert api(app, client, "alice", command="listSnapshots", snapshottype="MANUAL")[1] == {}

    status, upd = api(app, client, "alice", command="updateSnapshotPolicy", id=body["id"], fordisplay="false")
    assert status == 200 and upd["snapshotpolicy"]["fordisplay"] is False
    status, _ = api(app, client, "alice", command="deleteSnapshotPolicies", ids=body["id"])
    assert status == 200
    assert api(app, client, "alice", command="listSnapshotPolicies", volumeid=root)[1] == {}
    assert snap_count(app) == 2  # the snapshots stay


def test_hyperv_declares_no_volume_snapshots(app):
    from app.services import hypervisors as hv
    from app.services.snapshots import volume as snaps
    assert hv.resolve("Hyperv").capabilities.volume_snapshots is False
    assert hv.resolve("KVM").capabilities.volume_snapshots is True
    with app.app_context(), pytest.raises(InvalidParameter, match="not supported for hypervisor"):
        snaps.check_supported("Hyperv")
    with app.app_context():
        assert settings.get("max.account.snapshots") == 20


def test_pages_take_revert_schedule_and_make_from_a_snapshot(app, client, auth, world):
    """The volume page's and VM page's Snapshots card: take, schedule, create a volume, revert
    (refused while running, with CloudStack's reason), delete; bob gets 404 on alice's."""
    vm = deploy(app, world)
    root = root_of(app, vm)
    auth.login("alice")
    page = client.get(f"/volumes/{root}").get_data(as_text=True)
    assert "Take a snapshot" in page and "No snapshots yet." in page and "Schedules" in page
    token = auth.csrf(f"/volumes/{root}")
    back = f"volume:{root}"
    r = client.post(f"/snapshots/volume/{root}/take", data={"csrf_token": token, "back": back, "name": "paged"})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/volumes/{root}")
    with app.app_context():
        s = db.session.scalar(select(Snapshot).where(Snapshot.name == "paged"))
        assert s.state == "BackedUp"
        sid = s.uuid
    page = client.get(f"/volumes/{root}").get_data(as_text=True)
    assert "paged" in page and "Create template" in page
    assert "paged" in client.get(f"/vms/{vm}").get_data(as_text=True)
    assert "paged" in client.get("/snapshots/").get_data(as_text=True)
    r = client.post(f"/snapshots/volume/{root}/policies", data={"csrf_token": token, "back": back,
                                                                  "intervaltype": "DAILY", "schedule": "30:02",
                                                                  "timezone": "UTC", "maxsnaps": "2"})
    assert r.status_code == 302
    assert "30:02" in client.get(f"/volumes/{root}").get_data(as_text=True)
    r = client.post(f"/snapshots/{sid}/revert", data={"csrf_token": token, "back": back}, follow_redirects=True)
    assert "shutdown state" in r.get_data(as_text=True)
    r = client.post(f"/snapshots/{sid}/volume", data={"csrf_token": token, "back": back, "name": "paged-vol"})
    assert r.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Volume).where(Volume.name == "paged-vol")).state == "Ready"
    assert client.post(f"/snapshots/{sid}/delete", data={"back": back}).status_code == 400  # no CSRF token
    auth.logout()
    auth.login("bob")
    token = auth.csrf()
    for url in (f"/snapshots/{sid}/delete", f"/snapshots/volume/{root}/take", f"/volumes/{root}"):
        r = client.post(url, data={"csrf_token": token}) if "snapshots" in url else client.get(url)
        assert r.status_code == 404, url
    auth.logout()
    auth.login("alice")
    token = auth.csrf()
    r = client.post(f"/snapshots/{sid}/delete", data={"csrf_token": token, "back": back})
    assert r.status_code == 302 and snap_count(app) == 0
