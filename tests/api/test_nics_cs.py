"""A VM's NICs with the real `cs` client: listNics (CloudStack's NicResponse), a deploy on two
networks with iptonetworklist, addNicToVirtualMachine / removeNicFromVirtualMachine /
updateDefaultNicForVirtualMachine (async) and their errors."""
from __future__ import annotations

import pytest
from cs import CloudStackApiException

from app.extensions import db
from app.models import Network, Zone, new_uuid
from tests.api.test_templates_cs import files  # noqa: F401  (fixture)
from tests.api.test_vms_cs import deploy, simulator_zone

pytestmark = pytest.mark.xdist_group("live-api")


def err(call):
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error


def _shared(live, zone_uuid, name, prefix):
    with live.flask_app.app_context():
        z = db.session.query(Zone).filter_by(uuid=zone_uuid).one()
        net = Network(uuid=new_uuid(), name=name, zone_id=z.id, guest_type="Shared", account_id=None,
                      cidr=f"{prefix}.0/24", gateway=f"{prefix}.1", netmask="255.255.255.0", start_ip=f"{prefix}.10",
                      end_ip=f"{prefix}.250", state="Implemented")
        db.session.add(net)
        db.session.commit()
        return net.uuid


def test_nics_with_cs(live, files, tmp_path):  # noqa: F811
    api, alice = live.client(), live.client("alice")
    z, hs, t, so = simulator_zone(api, files, tmp_path)
    a = _shared(live, z["id"], "net-a", "10.81.0")
    b = _shared(live, z["id"], "net-b", "10.82.0")
    c = _shared(live, z["id"], "net-c", "10.83.0")
    e = err(lambda: deploy(alice, z, t, so, networkids=a, **{"iptonetworklist[0].networkid": b}))
    assert e["errorcode"] == 431 and "can't be specified along with networkIds" in e["errortext"]
    vm = deploy(alice, z, t, so, name="two", startvm="false",
                **{"iptonetworklist[0].networkid": b, "iptonetworklist[0].ip": "10.82.0.33",
                   "iptonetworklist[1].networkid": a})
    nics = alice.listNics(virtualmachineid=vm["id"])["nic"]
    assert [(n["networkid"], n["isdefault"], n["deviceid"]) for n in nics] == [(b, True, "0"), (a, False, "1")]
    first = nics[0]
    assert first["ipaddress"] == "10.82.0.33" and first["gateway"] == "10.82.0.1"
    assert first["netmask"] == "255.255.255.0" and first["traffictype"] == "Guest" and first["type"] == "Shared"
    assert first["virtualmachineid"] == vm["id"] and first["macaddress"].startswith("02:00:")
    assert first["networkname"] == "net-b" and first["extradhcpoption"] == []
    assert alice.listNics(virtualmachineid=vm["id"], networkid=a)["nic"][0]["networkid"] == a

    e = err(lambda: alice.removeNicFromVirtualMachine(virtualmachineid=vm["id"], nicid=first["id"]))
    assert e["errorcode"] == 431 and "nic is default" in e["errortext"]
    e = err(lambda: alice.addNicToVirtualMachine(virtualmachineid=vm["id"], networkid=a))
    assert e["errorcode"] == 431 and "already has a NIC" in e["errortext"]
    e = err(lambda: alice.addNicToVirtualMachine(virtualmachineid=vm["id"], networkid=c, ipaddress="10.99.0.5"))
    assert e["errorcode"] == 431 and "is not in the range" in e["errortext"]
    after = alice.addNicToVirtualMachine(virtualmachineid=vm["id"], networkid=c, ipaddress="10.83.0.44",
                                         fetch_result=True)["virtualmachine"]
    added = next(n for n in after["nic"] if n["networkid"] == c)
    assert added["ipaddress"] == "10.83.0.44" and added["isdefault"] is False and added["deviceid"] == "2"
    made = alice.updateDefaultNicForVirtualMachine(virtualmachineid=vm["id"], nicid=added["id"],
                                                   fetch_result=True)["virtualmachine"]
    assert [n["networkid"] for n in made["nic"] if n["isdefault"]] == [c] and made["ipaddress"] == "10.83.0.44"
    gone = alice.removeNicFromVirtualMachine(virtualmachineid=vm["id"], nicid=first["id"],
                                             fetch_result=True)["virtualmachine"]
    assert sorted(n["networkid"] for n in gone["nic"]) == sorted([a, c])

    running = deploy(alice, z, t, so, name="run", networkids=a)
    assert running["state"] == "Running"
    e = err(lambda: alice.addNicToVirtualMachine(virtualmachineid=running["id"], networkid=b))
    assert e["errorcode"] == 431 and "only while it is Stopped" in e["errortext"]
    assert live.client("admin").listNics(virtualmachineid=vm["id"], nicid=first["id"]).get("nic", []) == []
    e = err(lambda: alice.listNics(virtualmachineid="00000000-0000-0000-0000-0000000000ff"))
    assert e["errorcode"] == 431
