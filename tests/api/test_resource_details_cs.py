"""Resource details and regions with the real `cs` client against a live server (a real huey
consumer): addResourceDetail / removeResourceDetail as async jobs (a list of dicts sent as
details[0].key=...&details[0].value=...), listResourceDetails, the VM's `details` the same data,
another account's VM "not found", CloudStack's errors; addRegion / updateRegion / removeRegion."""
from __future__ import annotations

import pytest
from cs import CloudStack

from tests.api.test_tags_cs import err
from tests.api.test_templates_cs import files  # noqa: F401  (fixture)
from tests.api.test_vms_cs import deploy, simulator_zone

pytestmark = pytest.mark.xdist_group("live-api")


def test_resource_details_and_regions_with_cs(live, files, tmp_path):  # noqa: F811
    api, alice = live.client(), live.client("alice")
    z, hs, t, so = simulator_zone(api, files, tmp_path)
    vm = deploy(alice, z, t, so, name="web1")

    done = alice.addResourceDetail(resourcetype="UserVm", resourceid=vm["id"],
                                   details=[{"key": "env", "value": "prod"}, {"key": "team", "value": "web"}],
                                   fetch_result=True)
    assert done["success"] is True
    got = alice.listResourceDetails(resourcetype="UserVm", resourceid=vm["id"])
    assert got["count"] == 2 and {(d["key"], d["value"], d["fordisplay"], d["resourceid"], d["resourcetype"])
                                  for d in got["resourcedetail"]} == {("env", "prod", True, vm["id"], "UserVm"),
                                                                      ("team", "web", True, vm["id"], "UserVm")}
    assert alice.listVirtualMachines(id=vm["id"])["virtualmachine"][0]["details"] == {"env": "prod", "team": "web"}
    api.addResourceDetail(resourcetype="UserVm", resourceid=vm["id"], fordisplay=False,
                          details=[{"key": "rack", "value": "r1"}], fetch_result=True)
    assert {d["key"] for d in alice.listResourceDetails(resourcetype="UserVm",
                                                        resourceid=vm["id"])["resourcedetail"]} == {"env", "team"}
    assert [d["resourceid"] for d in api.listResourceDetails(resourcetype="UserVm", key="rack",
                                                             value="r1")["resourcedetail"]] == [vm["id"]]
    alice.removeResourceDetail(resourcetype="UserVm", resourceid=vm["id"], key="team", fetch_result=True)
    assert alice.listVirtualMachines(id=vm["id"])["virtualmachine"][0]["details"] == {"env": "prod"}

    # Errors: at once (431), or the job's
    e = err(lambda: alice.addResourceDetail(resourcetype="Nope", resourceid=vm["id"],
                                            details=[{"key": "a", "value": "b"}]))
    assert e["errorcode"] == 431 and "Invalid resource type" in e["errortext"]
    e = err(lambda: alice.addResourceDetail(resourcetype="UserVm", resourceid=vm["id"], details=[{"key": "a"}]))
    assert e["errorcode"] == 431 and "Value for the key a is either null or empty" in e["errortext"]
    e = err(lambda: alice.listResourceDetails(resourcetype="UserVm"))
    assert e["errorcode"] == 431 and "Insufficient parameters" in e["errortext"]
    e = err(lambda: alice.addResourceDetail(resourcetype="Zone", resourceid=z["id"],
                                            details=[{"key": "a", "value": "b"}]))
    assert e["errorcode"] == 531

    # Another account: alice's VM is "not found", as a missing one
    acct = api.createAccount(accounttype=0, username="bob", password="bob-pass-1234", firstname="B", lastname="B",
                             email="bob@example.org", account="bob")["account"]
    keys = api.registerUserKeys(id=acct["user"][0]["id"])["userkeys"]
    bob = CloudStack(endpoint=live.url, key=keys["apikey"], secret=keys["secretkey"], poll_interval=0.2)
    for call in (lambda: bob.listResourceDetails(resourcetype="UserVm", resourceid=vm["id"]),
                 lambda: bob.addResourceDetail(resourcetype="UserVm", resourceid=vm["id"],
                                               details=[{"key": "x", "value": "y"}]),
                 lambda: bob.removeResourceDetail(resourcetype="UserVm", resourceid=vm["id"])):
        e = err(call)
        assert e["errorcode"] == 431 and f"Unable to find resource by uuid {vm['id']}" in e["errortext"]
    assert alice.listVirtualMachines(id=vm["id"])["virtualmachine"][0]["details"] == {"env": "prod"}

    # Regions
    assert [r["id"] for r in alice.listRegions()["region"]] == [1]
    region = api.addRegion(id=2, name="west", endpoint="https://west.example/client/")["region"]
    assert (region["id"], region["name"], region["endpoint"]) == (2, "west", "https://west.example/client/")
    assert api.updateRegion(id=2, name="west-2")["region"]["name"] == "west-2"
    e = err(lambda: api.addRegion(id=2, name="again", endpoint="e"))
    assert e["errorcode"] == 431 and e["errortext"] == "Region with id: 2 already exists"
    e = err(lambda: alice.addRegion(id=3, name="mine", endpoint="e"))
    assert e["errorcode"] == 432
    e = err(lambda: api.removeRegion(id=1))
    assert e["errorcode"] == 431
    assert api.removeRegion(id=2)["success"] is True
    assert [r["id"] for r in api.listRegions()["region"]] == [1]
