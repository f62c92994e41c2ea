"""Resource tags with the real clients against a live server (a real huey consumer): the `cs`
client's full cycle (createTags and deleteTags as async jobs, listTags, the tags in the VM
and volume answers, the tags[0].key/value filter), CloudStack's errors; Apache Libcloud's
ex_create_tags / ex_delete_tags and the tags it reads from list_nodes and list_volumes."""
from __future__ import annotations

import pytest
from cs import CloudStackApiException

from tests.api.test_templates_cs import files  # noqa: F401  (fixture)
from tests.api.test_vms_cs import deploy, simulator_zone

import libcloud  # noqa: E402  (requirements-test.txt pins apache-libcloud: a missing one is a failure, not a skip)
from libcloud.compute.providers import Provider, get_driver  # noqa: E402

pytestmark = pytest.mark.xdist_group("live-api")


def err(call):
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error


def test_tags_with_cs_and_libcloud(live, files, tmp_path):  # noqa: F811
    api, alice = live.client(), live.client("alice")
    z, hs, t, so = simulator_zone(api, files, tmp_path)
    vm1, vm2 = deploy(alice, z, t, so, name="web1"), deploy(alice, z, t, so, name="web2")
    assert vm1["tags"] == []  # always present: the Ansible modules tag only what answers `tags`

    # cs: a list of dicts is sent as tags[0].key=...&tags[0].value=...
    done = alice.createTags(resourcetype="UserVm", resourceids=f"{vm1['id']},{vm2['id']}",
                            tags=[{"key": "env", "value": "prod"}, {"key": "team", "value": "web"}],
                            fetch_result=True)
    assert done["success"] is True
    listed = alice.listTags(resourcetype="UserVm")["tag"]
    assert len(listed) == 4 and {x["account"] for x in listed} == {"alice"}
    assert {(x["key"], x["value"]) for x in alice.listTags(resourceid=vm1["id"])["tag"]} == {
        ("env", "prod"), ("team", "web")}
    got = alice.listVirtualMachines(tags=[{"key": "env", "value": "prod"}])
    assert got["count"] == 2 and all({x["key"] for x in v["tags"]} == {"env", "team"} for v in got["virtualmachine"])
    one = alice.listVirtualMachines(id=vm1["id"])["virtualmachine"][0]
    assert {(x["key"], x["resourcetype"], x["resourceid"]) for x in one["tags"]} == {
        ("env", "UserVm", vm1["id"]), ("team", "UserVm", vm1["id"])}
    assert alice.listVirtualMachines(tags=[{"key": "env", "value": "dev"}]) == {}
    # The VM job's own answer carries them too
    stopped = alice.stopVirtualMachine(id=vm2["id"], fetch_result=True)["virtualmachine"]
    assert {x["key"] for x in stopped["tags"]} == {"env", "team"}

    e = err(lambda: alice.createTags(resourcetype="UserVm", resourceids=vm1["id"],
                                     tags=[{"key": "env", "value": "dev"}]))
    assert e["errorcode"] == 431 and f"tag env already on UserVm with id {vm1['id']}" in e["errortext"]
    e = err(lambda: alice.createTags(resourcetype="Nope", resourceids=vm1["id"], tags=[{"key": "a", "value": "b"}]))
    assert e["errorcode"] == 431 and e["errortext"] == "Invalid resource type Nope"
    e = err(lambda: alice.deleteTags(resourcetype="UserVm", resourceids=vm1["id"],
                                     tags=[{"key": "absent"}], fetch_result=True))
    assert e["errorcode"] == 530 and e["errortext"] == "Failed to delete tags"

    alice.deleteTags(resourcetype="UserVm", resourceids=vm1["id"], tags=[{"key": "team"}], fetch_result=True)
    assert [x["key"] for x in alice.listTags(resourceid=vm1["id"])["tag"]] == ["env"]
    alice.deleteTags(resourcetype="UserVm", resourceids=f"{vm1['id']},{vm2['id']}", fetch_result=True)
    assert alice.listTags() == {}

    # Volumes, through the same commands
    root = alice.listVolumes(virtualmachineid=vm1["id"])["volume"][0]
    alice.createTags(resourcetype="Volume", resourceids=root["id"], tags=[{"key": "tier", "value": "gold"}],
                     fetch_result=True)
    vols = alice.listVolumes(tags=[{"key": "tier", "value": "gold"}])["volume"]
    assert [v["id"] for v in vols] == [root["id"]] and vols[0]["tags"][0]["value"] == "gold"

    # Libcloud: its own methods, and the tags it reads into extra
    key, secret = live.keys("alice")
    drv = get_driver(Provider.CLOUDSTACK)(key, secret, secure=False, url=live.url)
    assert drv.ex_create_tags([vm1["id"]], "UserVm", {"role": "db", "owner": "ops"}) is True
    node = next(n for n in drv.list_nodes() if n.id == vm1["id"])
    assert node.extra["tags"] == {"role": "db", "owner": "ops"}
    vol = next(v for v in drv.list_volumes() if v.id == root["id"])
    assert vol.extra["tags"] == {"tier": "gold"}
    assert drv.ex_delete_tags([vm1["id"]], "UserVm", ["owner"]) is True
    node = next(n for n in drv.list_nodes() if n.id == vm1["id"])
    assert node.extra["tags"] == {"role": "db"}
    with pytest.raises(Exception, match="already on UserVm"):
        drv.ex_create_tags([vm1["id"]], "UserVm", {"role": "web"})
