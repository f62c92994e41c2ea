"""Volume snapshots and snapshot policies with the real `cs` client and Apache Libcloud's
CloudStack driver, on a Simulator zone: createSnapshot/deleteSnapshot/revertSnapshot polled
to completion, listSnapshots, createVolume from a snapshot, createTemplate from a snapshot and
from a stopped VM's volume, the four policy commands; Libcloud's create_volume_snapshot,
list_snapshots, destroy_volume_snapshot and ex_create_snapshot_template."""
from __future__ import annotations

import pytest
from cs import CloudStackApiException

from tests.api.test_templates_cs import files  # noqa: F401  (fixture)
from tests.api.test_vms_cs import deploy, simulator_zone

pytestmark = pytest.mark.xdist_group("live-api")
GIB = 1 << 30


def err(call):
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error


def test_snapshots_and_policies_with_cs(live, files, tmp_path):  # noqa: F811
    api, alice = live.client(), live.client("alice")
    z, _, t, so = simulator_zone(api, files, tmp_path, hosts=1)
    vm = deploy(alice, z, t, so, name="snapvm")
    root = alice.listVolumes(virtualmachineid=vm["id"], type="ROOT")["volume"][0]

    snap = alice.createSnapshot(volumeid=root["id"], fetch_result=True)["snapshot"]
    assert snap["state"] == "BackedUp" and snap["volumeid"] == root["id"] and snap["snapshottype"] == "MANUAL"
    assert snap["name"].startswith("snapvm_" + root["name"])  # CloudStack's default name: vm_volume_time
    assert alice.listSnapshots(id=snap["id"])["snapshot"][0]["id"] == snap["id"]
    assert api.listSnapshots(listall="true")["count"] == 1
    e = err(lambda: alice.revertSnapshot(id=snap["id"], fetch_result=True))
    assert e["errorcode"] == 431
    alice.stopVirtualMachine(id=vm["id"], fetch_result=True)
    assert alice.revertSnapshot(id=snap["id"], fetch_result=True)["snapshot"]["id"] == snap["id"]

    v = alice.createVolume(snapshotid=snap["id"], name="fromsnap", fetch_result=True)["volume"]
    assert v["state"] == "Ready" and v["size"] == root["size"]
    os_type = api.listOsTypes()["ostype"][0]["id"]
    t1 = alice.createTemplate(snapshotid=snap["id"], name="tsnap", displaytext="t", ostypeid=os_type,
                              fetch_result=True)["template"]
    t2 = alice.createTemplate(volumeid=root["id"], name="tvol", displaytext="t", ostypeid=os_type,
                              fetch_result=True)["template"]
    assert {x["name"] for x in alice.listTemplates(templatefilter="self")["template"]} == {"tsnap", "tvol"}
    assert t1["format"] == t2["format"] == "QCOW2"

    pol = alice.createSnapshotPolicy(volumeid=root["id"], intervaltype="DAILY", schedule="30:02", maxsnaps=3,
                                     timezone="Europe/Zurich")["snapshotpolicy"]
    assert pol["intervaltype"] == 1 and pol["schedule"] == "30:02" and pol["timezone"] == "Europe/Zurich"
    e = err(lambda: alice.createSnapshotPolicy(volumeid=root["id"], intervaltype="DAILY", schedule="99:02",
                                               maxsnaps=3, timezone="UTC"))
    assert e["errorcode"] == 431
    assert alice.listSnapshotPolicies(volumeid=root["id"])["snapshotpolicy"][0]["id"] == pol["id"]
    assert alice.updateSnapshotPolicy(id=pol["id"], fordisplay="false")["snapshotpolicy"]["fordisplay"] is False
    alice.deleteSnapshotPolicies(id=pol["id"])
    assert alice.listSnapshotPolicies(volumeid=root["id"]) == {}

    assert alice.deleteSnapshot(id=snap["id"], fetch_result=True)["success"] in (True, "true")
    assert alice.listSnapshots() == {}
    assert err(lambda: alice.deleteSnapshot(id=snap["id"]))["errorcode"] == 431


def test_libcloud_snapshot_methods(live, files, tmp_path):  # noqa: F811
    from libcloud.compute.providers import Provider, get_driver
    api, alice = live.client(), live.client("alice")
    z, _, t, so = simulator_zone(api, files, tmp_path, hosts=1)
    vm = deploy(alice, z, t, so, name="lcvm")
    key, secret = live.keys("alice")
    driver = get_driver(Provider.CLOUDSTACK)(key, secret, secure=False, url=live.url)
    root = alice.listVolumes(virtualmachineid=vm["id"], type="ROOT")["volume"][0]
    volume = next(v for v in driver.list_volumes() if v.id == root["id"])
    snap = driver.create_volume_snapshot(volume)
    assert snap.extra["volume_id"] == volume.id
    assert [s.id for s in driver.list_snapshots()] == [snap.id]
    alice.stopVirtualMachine(id=vm["id"], fetch_result=True)
    os_type = api.listOsTypes()["ostype"][0]["id"]
    image = driver.ex_create_snapshot_template(snap, "lc-template", os_type)
    assert image.name == "lc-template" and image.extra["format"] == "QCOW2"
    assert driver.destroy_volume_snapshot(snap) is True
    # (Libcloud's list_snapshots raises KeyError on an empty list: CloudStack, like Nubo, answers {})
    assert alice.listSnapshots() == {}
