"""Whose is a snapshot made by someone else (CloudStack's rules, checked in its source):
a volume snapshot and a VM snapshot belong to the volume's / VM's account whoever takes it
(CreateSnapshotCmd / CreateVMSnapshotCmd: the entity owner is the volume's / VM's owner);
a template made from a snapshot or a volume belongs to the caller, or the project it names
(CreateTemplateCmd.getEntityOwnerId: "TemplateOwner should be the caller")."""
from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import OsType, Snapshot, Template, VMSnapshot
from tests.integration.test_quotas import api
from tests.integration.test_snapshots import job_result, root_of
from tests.integration.test_vm_pages import _engines, deploy, set_vm, world  # noqa: F401  (fixtures)


def _owner(app, model, uuid) -> str:
    with app.app_context():
        return db.session.scalar(select(model).where(model.uuid == uuid)).account.name


def test_an_admins_snapshots_of_a_users_things_are_the_users_and_its_templates_the_admins(app, client, world):
    vm = deploy(app, world)
    root = root_of(app, vm)
    status, body = api(app, client, "admin", command="createSnapshot", volumeid=root)
    assert status == 200, body
    snap = job_result(app, client, "admin", body["jobid"])["jobresult"]["snapshot"]
    assert snap["account"] == "alice" and _owner(app, Snapshot, snap["id"]) == "alice"
    # alice sees it as hers
    _, listed = api(app, client, "alice", command="listSnapshots")
    assert [s["id"] for s in listed["snapshot"]] == [snap["id"]]

    status, body = api(app, client, "admin", command="createVMSnapshot", virtualmachineid=vm)
    assert status == 200, body
    vmsnap = job_result(app, client, "admin", body["jobid"])["jobresult"]["vmsnapshot"]
    assert vmsnap["account"] == "alice" and _owner(app, VMSnapshot, vmsnap["id"]) == "alice"

    with app.app_context():
        os_type = db.session.scalars(select(OsType)).first().uuid
    status, body = api(app, client, "admin", command="createTemplate", snapshotid=snap["id"], name="admins",
                       ostypeid=os_type)
    assert status == 200, body
    tpl = job_result(app, client, "admin", body["jobid"])["jobresult"]["template"]
    assert tpl["account"] == "admin" and _owner(app, Template, tpl["id"]) == "admin"
    # alice's own template of her stopped VM's volume is hers
    set_vm(app, vm, state="Stopped")
    status, body = api(app, client, "alice", command="createTemplate", volumeid=root, name="hers",
                       ostypeid=os_type)
    assert status == 200, body
    tpl = job_result(app, client, "alice", body["jobid"])["jobresult"]["template"]
    assert _owner(app, Template, tpl["id"]) == "alice"


def test_a_volume_from_someone_elses_snapshot_is_the_callers_or_the_named_accounts(app, client, world):
    """CreateVolumeCmd: the entity owner is the caller, or `account`+`domainid` (admins)."""
    from app.models import Volume
    vm = deploy(app, world)
    status, body = api(app, client, "alice", command="createSnapshot", volumeid=root_of(app, vm))
    snap = job_result(app, client, "alice", body["jobid"])["jobresult"]["snapshot"]
    status, body = api(app, client, "admin", command="createVolume", snapshotid=snap["id"], name="admins")
    assert status == 200, body
    vol = job_result(app, client, "admin", body["jobid"])["jobresult"]["volume"]
    assert vol["account"] == "admin" and _owner(app, Volume, vol["id"]) == "admin"
    status, body = api(app, client, "admin", command="createVolume", snapshotid=snap["id"], name="hers",
                       account="alice", domainid=snap["domainid"])
    assert status == 200, body
    vol = job_result(app, client, "admin", body["jobid"])["jobresult"]["volume"]
    assert _owner(app, Volume, vol["id"]) == "alice"
