"""VM snapshots on the Simulator through the services and the API (CloudStack 4.19's rules):
both kinds, `current` and `parent`, revert leaving the VM Running (memory) or Stopped (disk),
delete re-parenting, the Simulator's own rows and what the monitor sees, bad input changing
nothing, the per-VM limit, the restrictions on a VM that has snapshots, and isolation."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AsyncJob, SimVM, SimVMSnapshot, VirtualMachine, VMSnapshot
from app.services import accounts, settings, vms, volumes
from app.services.snapshots import vm_snapshots
from tests.integration.test_quotas import api
from tests.integration.test_vm_pages import _engines, deploy, state_of, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.db


def _job(app, jobid):
    with app.app_context():
        job = db.session.scalar(select(AsyncJob).where(AsyncJob.uuid == jobid))
        return job.status, job.result_code, job.result


def _rows(app):
    """Everything a refused call must leave as it was."""
    with app.app_context():
        return (db.session.scalar(select(func.count()).select_from(VMSnapshot)),
                db.session.scalar(select(func.count()).select_from(SimVMSnapshot)),
                tuple(db.session.execute(select(VirtualMachine.uuid, VirtualMachine.state,
                                                VirtualMachine.active_job_id).order_by(VirtualMachine.id)).all()))


def _snap(app, client, user, vm, **kw):
    code, body = api(app, client, user, command="createVMSnapshot", virtualmachineid=vm, **kw)
    assert code == 200, body
    status, rc, result = _job(app, body["jobid"])
    assert status == 1, result
    return body["id"]


def _listed(app, client, user, **kw):
    code, body = api(app, client, user, command="listVMSnapshot", **kw)
    assert code == 200, body
    return {s["id"]: s for s in body.get("vmSnapshot", [])}


def test_both_kinds_current_parent_revert_delete(app, client, world):
    vm = deploy(app, world, name="web1")
    assert state_of(app, vm) == "Running"
    s1 = _snap(app, client, "alice", vm, name="before-upgrade", description="first", snapshotmemory="true")
    s2 = _snap(app, client, "alice", vm, snapshotmemory="true")
    listed = _listed(app, client, "alice", virtualmachineid=vm)
    assert listed[s1]["type"] == "DiskAndMemory" and listed[s1]["state"] == "Ready"
    assert listed[s1]["displayname"] == "before-upgrade" and listed[s1]["description"] == "first"
    assert listed[s1]["name"].startswith("i-") and "_VS_" in listed[s1]["name"]
    assert listed[s2]["displayname"] == listed[s2]["name"]  # no name given: CloudStack's own
    assert listed[s2]["parent"] == s1 and listed[s2]["parentName"] == "before-upgrade"
    assert listed[s2]["current"] is True and listed[s1]["current"] is False
    assert listed[s1]["virtualmachineid"] == vm and listed[s1]["account"] == "alice"
    assert listed[s1]["hypervisor"] == "Simulator" and listed[s1]["zoneid"]
    assert list(_listed(app, client, "alice", name="before-upgrade")) == [s1]
    # The Simulator keeps them with its VM.
    with app.app_context():
        inst = db.session.scalar(select(VirtualMachine.instance_name).where(VirtualMachine.uuid == vm))
        sim = db.session.scalar(select(SimVM).where(SimVM.name == inst))
        assert db.session.scalar(select(func.count()).select_from(SimVMSnapshot)
                                 .where(SimVMSnapshot.vm_id == sim.id)) == 2

    # A disk-only snapshot of the running VM: the Simulator can (KVM cannot, see test_vm_kvm).
    s3 = _snap(app, client, "alice", vm, name="disk-only")
    assert _listed(app, client, "alice", vmsnapshotid=s3)[s3]["type"] == "Disk"

    # Revert to the disk-only one: the VM ends Stopped; to a memory one: Running again.
    code, body = api(app, client, "alice", command="revertToVMSnapshot", vmsnapshotid=s3)
    assert code == 200, body
    status, _, result = _job(app, body["jobid"])
    assert status == 1, result
    assert state_of(app, vm) == "Stopped"
    with app.app_context():
        assert db.session.scalar(select(SimVM.state).where(SimVM.name == inst)) == "stopped"
    code, body = api(app, client, "alice", command="revertToVMSnapshot", vmsnapshotid=s1)
    status, _, result = _job(app, body["jobid"])
    assert status == 1, result
    assert '"virtualmachine"' in result and '"Running"' in result
    assert state_of(app, vm) == "Running"
    with app.app_context():  # the monitor reads what the Simulator says: running
        from app.monitor import vms as monitor_vms
        monitor_vms.reconcile_vm(db.session.scalar(select(VirtualMachine).where(VirtualMachine.uuid == vm)))
    assert state_of(app, vm) == "Running"
    listed = _listed(app, client, "alice", virtualmachineid=vm)
    assert listed[s1]["current"] is True and [s for s in listed if listed[s]["current"]] == [s1]

    # Delete s1 (current, parent of s2): s2's parent is none now, nothing is current (s1 had no parent).
    code, body = api(app, client, "alice", command="deleteVMSnapshot", vmsnapshotid=s1)
    assert code == 200, body
    status, _, result = _job(app, body["jobid"])
    assert status == 1 and '"success": true' in result
    listed = _listed(app, client, "alice", virtualmachineid=vm)
    assert s1 not in listed and "parent" not in listed[s2]
    with app.app_context():
        sim = db.session.scalar(select(SimVM).where(SimVM.name == inst))
        assert set(db.session.scalars(select(SimVMSnapshot.name).where(SimVMSnapshot.vm_id == sim.id))) == {
            listed[s2]["name"], listed[s3]["name"]}

    # Expunging the VM takes its snapshots with it.
    with app.app_context():
        alice = accounts.get_user("alice")
        vms.destroy(alice, vm, expunge=True)
        assert db.session.scalar(select(func.count()).select_from(VMSnapshot).where(
            VMSnapshot.removed.is_(None))) == 0
    assert _listed(app, client, "alice") == {}


def test_bad_input_changes_nothing(app, client, world):
    vm = deploy(app, world, name="web2")
    stopped = deploy(app, world, name="off2", start=False)
    before = _rows(app)
    cases = [
        (dict(virtualmachineid="5e1f0000-0000-4000-8000-00000000abcd"), 431, "Unable to find virtual machine"),
        (dict(virtualmachineid=vm, name="x" * 256), 431, "should not exceed 255"),
        (dict(virtualmachineid=vm, description="d" * 256), 431, "should not exceed 255"),
        (dict(virtualmachineid=stopped, snapshotmemory="true"), 431, None),  # never started: no root volume
        (dict(virtualmachineid="not-a-uuid"), 431, None),
        (dict(), 431, None),
    ]
    for params, code, text in cases:
        got, body = api(app, client, "alice", command="createVMSnapshot", **params)
        assert got == code, (params, body)
        if text:
            assert text in body["errortext"], body
    assert _rows(app) == before
    for cmd in ("revertToVMSnapshot", "deleteVMSnapshot"):
        got, body = api(app, client, "alice", command=cmd, vmsnapshotid="5e1f0000-0000-4000-8000-00000000abcd")
        assert got == 431 and "Unable to find the VM snapshot" in body["errortext"]
    assert _rows(app) == before

    # A stopped VM: memory cannot be snapshot; disk-only works and leaves a Disk snapshot.
    code, body = api(app, client, "alice", command="stopVirtualMachine", id=vm)
    assert _job(app, body["jobid"])[0] == 1
    before = _rows(app)
    got, body = api(app, client, "alice", command="createVMSnapshot", virtualmachineid=vm, snapshotmemory="true")
    assert got == 431 and body["errortext"] == "Can not snapshot memory when VM is not in Running state"
    assert _rows(app) == before
    s = _snap(app, client, "alice", vm, name="cold")
    # Same display name again: refused. Revert of a Disk snapshot on the stopped VM: stays Stopped.
    got, body = api(app, client, "alice", command="createVMSnapshot", virtualmachineid=vm, name="cold")
    assert got == 431 and "already exists" in body["errortext"]
    code, body = api(app, client, "alice", command="revertToVMSnapshot", vmsnapshotid=s)
    assert _job(app, body["jobid"])[0] == 1 and state_of(app, vm) == "Stopped"

    # The per-VM limit (vmsnapshot.max), CloudStack's text; 535 here (530's text is hidden from users).
    with app.app_context():
        settings.set_raw("vmsnapshot.max", "1")
        db.session.commit()
    before = _rows(app)
    got, body = api(app, client, "alice", command="createVMSnapshot", virtualmachineid=vm, name="two")
    assert got == 535 and "can just have : 1 VM snapshots" in body["errortext"]
    assert _rows(app) == before

    # A VM with snapshots: no attach, detach, resize, offering change or migration (CloudStack's rules).
    with app.app_context():
        alice, admin = accounts.get_user("alice"), accounts.get_user("admin")
        off = volumes.create_disk_offering(admin, name="d1", disk_size=1)
        v = volumes.create_volume(alice, name="data1", zone_uuid=world.zone, disk_offering_uuid=off.uuid)
        with pytest.raises(Exception, match="does not have VM snapshots"):
            volumes.attach_volume(alice, v.uuid, vm)
        with pytest.raises(Exception, match="remove VM snapshots"):
            vms.change_offering(alice, vm, world.small)


def test_kvm_rule_and_disabled_type(app, client, world):
    """A type without the capability refuses with CloudStack's text; the table's flag turns it off too."""
    vm = deploy(app, world, name="web3")
    with app.app_context():
        from app.models import HypervisorCapability
        rows = {r.hypervisor_type: r.uuid for r in db.session.scalars(select(HypervisorCapability))}
    listed = api(app, client, "admin", command="listHypervisorCapabilities", hypervisor="Simulator")[1]
    assert listed["hypervisorCapabilities"][0]["vmsnapshotenabled"] is True  # declared by the type
    # The table cannot give a type what it cannot do (Hyper-V), but can turn it off.
    got, body = api(app, client, "admin", command="updateHypervisorCapabilities", id=rows["Hyperv"],
                    vmsnapshotenabled="true")
    assert got == 431 and "does not support VM snapshots" in body["errortext"]
    got, body = api(app, client, "admin", command="updateHypervisorCapabilities", id=rows["Simulator"],
                    vmsnapshotenabled="false")
    assert got == 200 and body["hypervisorCapabilities"]["vmsnapshotenabled"] is False
    before = _rows(app)
    got, body = api(app, client, "alice", command="createVMSnapshot", virtualmachineid=vm, snapshotmemory="true")
    assert got == 431 and body["errortext"] == "VM snapshot is not enabled for hypervisor type: Simulator"
    assert _rows(app) == before


def test_isolation_and_busy(app, client, world):
    vm = deploy(app, world, name="web4")
    s = _snap(app, client, "alice", vm, name="mine", snapshotmemory="true")
    before = _rows(app)
    for cmd, params in (("revertToVMSnapshot", {"vmsnapshotid": s}), ("deleteVMSnapshot", {"vmsnapshotid": s}),
                        ("createVMSnapshot", {"virtualmachineid": vm})):
        got, body = api(app, client, "bob", command=cmd, **params)
        assert got == 431, (cmd, body)
    assert _listed(app, client, "bob") == {} and _listed(app, client, "bob", vmsnapshotid=s) == {}
    assert _rows(app) == before
    assert s in _listed(app, client, "admin", listall="true")
    # While another action holds the VM, a snapshot action is "busy" (536) and changes nothing.
    with app.app_context():
        row = db.session.scalar(select(VirtualMachine).where(VirtualMachine.uuid == vm))
        token = vms.lock(row, "reboot", ("Running",))
        row_id = row.id
    before = _rows(app)
    got, body = api(app, client, "alice", command="createVMSnapshot", virtualmachineid=vm, snapshotmemory="true")
    assert got == 536, body
    got, body = api(app, client, "alice", command="deleteVMSnapshot", vmsnapshotid=s)
    assert got == 536, body
    assert _rows(app) == before
    with app.app_context():
        vms.unlock(row_id, token)


def test_failed_snapshot_is_error_and_deletable(app, client, world):
    """A hypervisor that fails the snapshot: the job fails with its reason, the snapshot is Error,
    the VM is free again; an Error snapshot can be deleted."""
    from app.services import simulator as simsvc
    vm = deploy(app, world, name="web5")
    with app.app_context():
        inst = db.session.scalar(select(VirtualMachine.instance_name).where(VirtualMachine.uuid == vm))
        simsvc.arm_fault(vm=inst, operations="create_vm_snapshot", count=1, message="disk full")
    code, body = api(app, client, "alice", command="createVMSnapshot", virtualmachineid=vm, snapshotmemory="true")
    status, rc, result = _job(app, body["jobid"])
    assert status == 2 and rc == 534 and "disk full" in result
    listed = _listed(app, client, "alice", virtualmachineid=vm)
    assert [x["state"] for x in listed.values()] == ["Error"]
    with app.app_context():
        assert db.session.scalar(select(VirtualMachine.active_job_id).where(VirtualMachine.uuid == vm)) is None
    code, body = api(app, client, "alice", command="deleteVMSnapshot", vmsnapshotid=body["id"])
    assert _job(app, body["jobid"])[0] == 1
    assert _listed(app, client, "alice", virtualmachineid=vm) == {}


def test_vm_page_takes_reverts_and_deletes(app, client, auth, world):
    """The VM page's card: take (memory), revert, delete; another account's snapshot is a 404."""
    vm = deploy(app, world, name="web6")
    auth.login("alice")
    page = client.get(f"/vms/{vm}").get_data(as_text=True)
    assert "VM snapshots" in page and "No VM snapshots." in page and "Take snapshot" in page
    token = auth.csrf(f"/vms/{vm}")
    resp = client.post(f"/vms/{vm}/snapshots", data={"csrf_token": token, "name": "from-page", "memory": "y"})
    assert resp.status_code == 302
    page = client.get(f"/vms/{vm}").get_data(as_text=True)
    assert "from-page" in page and "Disk and memory" in page and "current" in page
    with app.app_context():
        snap = db.session.scalar(select(VMSnapshot).where(VMSnapshot.display_name == "from-page"))
        assert snap.state == "Ready"
        uuid = snap.uuid
    # Bad input: a name too long is refused by the form; nothing made.
    before = _rows(app)
    resp = client.post(f"/vms/{vm}/snapshots", data={"csrf_token": token, "name": "n" * 300},
                       headers={"HX-Request": "true", "X-CSRFToken": token})
    assert resp.status_code == 422 and _rows(app) == before
    assert client.post(f"/vmsnapshots/{uuid}/revert", data={"csrf_token": token}).status_code == 302
    assert state_of(app, vm) == "Running"
    # Bob: not found, nothing changes.
    auth.logout()
    auth.login("bob")
    bob_token = auth.csrf()
    before = _rows(app)
    for action in ("revert", "delete"):
        assert client.post(f"/vmsnapshots/{uuid}/{action}", data={"csrf_token": bob_token}).status_code == 404
    assert client.post(f"/vms/{vm}/snapshots", data={"csrf_token": bob_token}).status_code == 404
    assert _rows(app) == before
    auth.logout()
    auth.login("alice")
    token = auth.csrf(f"/vms/{vm}")
    assert client.post(f"/vmsnapshots/{uuid}/delete", data={"csrf_token": token}).status_code == 302
    assert "No VM snapshots." in client.get(f"/vms/{vm}").get_data(as_text=True)


def test_killed_jobs_and_requests_are_repaired(app, client, world):
    """The reaper's hook gives a snapshot the state the hypervisor shows and frees the VM; a
    row whose request died before its job was queued is removed by the sweep."""
    from datetime import timedelta

    from app.models import VMSnapshotState, utcnow
    vm = deploy(app, world, name="web7")
    sid = _snap(app, client, "alice", vm, name="kept", snapshotmemory="true")
    with app.app_context():
        snap = db.session.scalar(select(VMSnapshot).where(VMSnapshot.uuid == sid))
        job = db.session.scalar(select(AsyncJob).where(AsyncJob.instance_id == sid))
        row = db.session.get(VirtualMachine, snap.vm_id)
        # As a worker killed while the snapshot was being taken (the hypervisor has it) leaves it:
        snap.state, snap.current, row.active_job_id = VMSnapshotState.CREATING, False, job.id
        db.session.commit()
        vm_snapshots._reaped(job)
        db.session.expire_all()
        snap = db.session.get(VMSnapshot, snap.id)
        assert snap.state == "Ready" and snap.current
        assert db.session.get(VirtualMachine, snap.vm_id).active_job_id is None
        # ... and when the hypervisor never made it: Error (deletable).
        from app.services import simulator as simsvc  # noqa: F401
        from app.models import SimVMSnapshot
        db.session.execute(SimVMSnapshot.__table__.delete())
        snap.state = VMSnapshotState.CREATING
        db.session.commit()
        vm_snapshots._reaped(job)
        db.session.expire_all()
        assert db.session.get(VMSnapshot, snap.id).state == "Error"
        # A row left Allocated by a request that died before submitting its job: swept.
        orphan = VMSnapshot(name="x_VS_1", display_name="orphan", vm_id=snap.vm_id, account_id=snap.account_id,
                            state=VMSnapshotState.ALLOCATED, created=utcnow() - timedelta(hours=1))
        db.session.add(orphan)
        db.session.commit()
        assert vm_snapshots.recover_orphans() == 1
        assert db.session.get(VMSnapshot, orphan.id).removed is not None
        assert vm_snapshots.recover_orphans() == 0
