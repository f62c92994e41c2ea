"""Disk offerings and volumes with the real `cs` client: async createVolume /
resizeVolume polled to completion, the rules, and another account's volume."""
import pytest
from cs import CloudStackApiException

pytestmark = pytest.mark.xdist_group("live-api")
GIB = 1 << 30


def err(call):
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error


def test_offerings_and_volume_lifecycle(live):
    api, alice = live.client(), live.client("alice")
    z = api.createZone(name="VZ", networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2")["zone"]
    fixed = api.createDiskOffering(name="small", displaytext="5 GiB", disksize=5)["diskoffering"]
    custom = api.createDiskOffering(name="custom", customized="true")["diskoffering"]
    assert fixed["disksize"] == 5 and custom["iscustomized"] is True
    assert err(lambda: alice.createDiskOffering(name="x", disksize=1))["errorcode"] == 432  # admin command
    assert err(lambda: api.createDiskOffering(name="x"))["errorcode"] == 431
    v = alice.createVolume(name="data1", zoneid=z["id"], diskofferingid=fixed["id"], fetch_result=True)["volume"]
    assert v["state"] == "Allocated" and v["size"] == 5 * GIB and v["type"] == "DATADISK"
    e = err(lambda: alice.createVolume(name="d2", zoneid=z["id"], diskofferingid=custom["id"]))
    assert e["errorcode"] == 431 and "custom" in e["errortext"]
    c = alice.createVolume(name="d3", zoneid=z["id"], diskofferingid=custom["id"], size=20, fetch_result=True)
    assert c["volume"]["size"] == 20 * GIB
    grown = alice.resizeVolume(id=v["id"], size=10, fetch_result=True)["volume"]
    assert grown["size"] == 10 * GIB
    e = err(lambda: alice.resizeVolume(id=v["id"], size=1, fetch_result=True))
    assert e["errorcode"] == 431 and "never shrink" in e["errortext"]  # the job failed with the reason
    assert {x["name"] for x in alice.listVolumes()["volume"]} == {"data1", "d3"}
    # Admins see them; another user sees nothing and gets "not found".
    assert api.listVolumes(listall="true")["count"] == 2
    assert err(lambda: api.deleteVolume(id="00000000-0000-0000-0000-00000000beef"))["errorcode"] == 431
    alice.deleteVolume(id=v["id"])
    assert [x["name"] for x in alice.listVolumes()["volume"]] == ["d3"]
