"""VM snapshots with real clients on a live server (werkzeug + a real huey consumer) and a
Simulator zone: the `cs` client over the whole life (create with and without memory, list with
CloudStack's filters and object name, revert both ways, delete, errors and their codes). The
Ansible collection's cs_vmsnapshot runs in the breadth playbook (breadth/vm_snapshots.yml, run
by tests/api/test_ansible_breadth.py). Apache Libcloud 3.9.1's CloudStack driver has no VM
snapshot method (it calls none of these commands), so there is nothing of it to drive here."""
from __future__ import annotations

import pytest
from cs import CloudStackApiException

from tests.api.test_templates_cs import files, wait_status  # noqa: F401  (fixture)
from tests.api.test_vms_cs import deploy, simulator_zone

pytestmark = [pytest.mark.xdist_group("live-api"), pytest.mark.timeout(900)]


def err(call):
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error


def test_vm_snapshot_life_with_the_cs_client(live, files, tmp_path):
    api, alice = live.client(), live.client("alice")
    z, hs, t, so = simulator_zone(api, files, tmp_path)
    vm = deploy(alice, z, t, so, name="web1")
    created = alice.createVMSnapshot(virtualmachineid=vm["id"], name="s1", description="first", snapshotmemory=True)
    assert set(created) >= {"id", "jobid"}  # BaseAsyncCreateCmd: the id at once
    done = alice.queryAsyncJobResult(jobid=created["jobid"])
    while done["jobstatus"] == 0:
        done = alice.queryAsyncJobResult(jobid=created["jobid"])
    assert done["jobstatus"] == 1 and done["jobresulttype"] == "object"
    s1 = done["jobresult"]["vmsnapshot"]
    assert s1["id"] == created["id"] and s1["displayname"] == "s1" and s1["type"] == "DiskAndMemory"
    assert s1["state"] == "Ready" and s1["current"] is True and s1["virtualmachineid"] == vm["id"]
    assert s1["created"].endswith("+0000") and s1["domain"] == "ROOT" and s1["account"] == "alice"

    s2 = alice.createVMSnapshot(virtualmachineid=vm["id"], name="s2", snapshotmemory=True,
                                fetch_result=True)["vmsnapshot"]
    assert s2["parent"] == s1["id"] and s2["parentName"] == "s1"
    listed = alice.listVMSnapshot(virtualmachineid=vm["id"])
    assert listed["count"] == 2 and {s["id"] for s in listed["vmSnapshot"]} == {s1["id"], s2["id"]}
    assert [s["id"] for s in alice.listVMSnapshot(name="s1")["vmSnapshot"]] == [s1["id"]]
    assert [s["id"] for s in alice.listVMSnapshot(vmsnapshotid=s2["id"])["vmSnapshot"]] == [s2["id"]]
    assert alice.listVMSnapshot(state="Error") == {}
    assert alice.listVMSnapshot(vmsnapshotids=f"{s1['id']},{s2['id']}")["count"] == 2

    # Errors: CloudStack's codes, nothing made.
    assert err(lambda: alice.createVMSnapshot(virtualmachineid=vm["id"], name="s1"))["errorcode"] == 431
    assert err(lambda: alice.revertToVMSnapshot(vmsnapshotid="5e1f0000-0000-4000-8000-00000000abcd"))[
        "errorcode"] == 431
    assert err(lambda: alice.deleteVMSnapshot())["errorcode"] == 431
    assert alice.listVMSnapshot(virtualmachineid=vm["id"])["count"] == 2

    # Revert: a disk-only snapshot leaves the VM Stopped, a memory one Running.
    s3 = alice.createVMSnapshot(virtualmachineid=vm["id"], name="disk", fetch_result=True)["vmsnapshot"]
    assert s3["type"] == "Disk"
    back = alice.revertToVMSnapshot(vmsnapshotid=s3["id"], fetch_result=True)["virtualmachine"]
    assert back["id"] == vm["id"] and back["state"] == "Stopped"
    back = alice.revertToVMSnapshot(vmsnapshotid=s1["id"], fetch_result=True)["virtualmachine"]
    assert back["state"] == "Running"
    assert alice.listVMSnapshot(vmsnapshotid=s1["id"])["vmSnapshot"][0]["current"] is True

    for s in (s1, s2, s3):
        assert alice.deleteVMSnapshot(vmsnapshotid=s["id"], fetch_result=True)["success"] is True
    assert alice.listVMSnapshot(virtualmachineid=vm["id"]) == {}


def test_vm_snapshot_tags(live, files, tmp_path):
    """createTags on a VMSnapshot: shown in its response, filtered by listVMSnapshot's tags[]."""
    api, alice = live.client(), live.client("alice")
    z, hs, t, so = simulator_zone(api, files, tmp_path)
    vm = deploy(alice, z, t, so, name="web1")
    a = alice.createVMSnapshot(virtualmachineid=vm["id"], name="a", snapshotmemory=True, fetch_result=True)
    b = alice.createVMSnapshot(virtualmachineid=vm["id"], name="b", snapshotmemory=True, fetch_result=True)
    alice.createTags(resourcetype="VMSnapshot", resourceids=a["vmsnapshot"]["id"],
                     tags=[{"key": "env", "value": "prod"}], fetch_result=True)
    listed = alice.listVMSnapshot(tags=[{"key": "env", "value": "prod"}])["vmSnapshot"]
    assert [s["id"] for s in listed] == [a["vmsnapshot"]["id"]]
    assert [(x["key"], x["value"]) for x in listed[0]["tags"]] == [("env", "prod")]
    assert alice.listVMSnapshot(vmsnapshotid=b["vmsnapshot"]["id"])["vmSnapshot"][0]["tags"] == []
