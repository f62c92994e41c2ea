"""Security groups with the real `cs` client: create, list, authorize and revoke ingress and
egress rules (async, as in CloudStack), CloudStack's errors, a deploy with
securitygroupnames on a security-group network and the VM's securitygroup[] field."""
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


def _sg_network(live, zone_uuid):
    with live.flask_app.app_context():
        z = db.session.query(Zone).filter_by(uuid=zone_uuid).one()
        net = Network(uuid=new_uuid(), name="sg-shared", zone_id=z.id, guest_type="Shared", account_id=None,
                      cidr="10.77.0.0/24", gateway="10.77.0.1", netmask="255.255.255.0", start_ip="10.77.0.10",
                      end_ip="10.77.0.250", security_groups=True, state="Implemented")
        db.session.add(net)
        db.session.commit()
        return net.uuid


def test_security_groups_with_cs(live, files, tmp_path):  # noqa: F811
    api, alice = live.client(), live.client("alice")
    groups = alice.listSecurityGroups()["securitygroup"]
    assert [g["name"] for g in groups] == ["default"]  # every account has its default group
    assert groups[0]["ingressrule"] == [] and groups[0]["egressrule"] == []

    web = alice.createSecurityGroup(name="web", description="web servers")["securitygroup"]
    assert web["name"] == "web" and web["account"] == "alice" and web["virtualmachinecount"] == 0
    e = err(lambda: alice.createSecurityGroup(name="web"))
    assert e["errorcode"] == 431 and "already exists" in e["errortext"]
    e = err(lambda: alice.deleteSecurityGroup(name="default"))
    assert e["errorcode"] == 431 and "default is reserved" in e["errortext"]

    sg = alice.authorizeSecurityGroupIngress(securitygroupid=web["id"], protocol="tcp", startport=80, endport=80,
                                             cidrlist="0.0.0.0/0,10.1.0.0/16", fetch_result=True)["securitygroup"]
    assert sorted(r["cidr"] for r in sg["ingressrule"]) == ["0.0.0.0/0", "10.1.0.0/16"]
    sg = alice.authorizeSecurityGroupIngress(securitygroupname="web", protocol="icmp", icmptype=8, icmpcode=0,
                                             **{"usersecuritygrouplist[0].account": "alice",
                                                "usersecuritygrouplist[0].group": "default"},
                                             fetch_result=True)["securitygroup"]
    rule = sg["ingressrule"][0]
    assert (rule["protocol"], rule["icmptype"], rule["icmpcode"]) == ("icmp", 8, 0)
    assert (rule["securitygroupname"], rule["account"]) == ("default", "alice")
    eg = alice.authorizeSecurityGroupEgress(securitygroupid=web["id"], protocol="udp", startport=53, endport=53,
                                            cidrlist="10.0.0.0/8", fetch_result=True)["securitygroup"]
    assert eg["egressrule"][0]["startport"] == 53
    e = err(lambda: alice.authorizeSecurityGroupIngress(securitygroupid=web["id"], protocol="tcp", startport=80,
                                                        cidrlist="0.0.0.0/0"))
    assert e["errorcode"] == 431 and "Invalid port range" in e["errortext"]
    e = err(lambda: alice.authorizeSecurityGroupIngress(securitygroupid=web["id"], protocol="tcp", startport=22,
                                                        endport=22))
    assert e["errorcode"] == 431 and "At least one cidr" in e["errortext"]

    listed = alice.listSecurityGroups(securitygroupname="web")["securitygroup"][0]
    assert len(listed["ingressrule"]) == 3 and len(listed["egressrule"]) == 1
    e = err(lambda: alice.revokeSecurityGroupIngress(id=listed["egressrule"][0]["ruleid"]))
    assert e["errorcode"] == 431 and "Mismatch in rule type" in e["errortext"]
    assert alice.revokeSecurityGroupEgress(id=listed["egressrule"][0]["ruleid"], fetch_result=True)["success"]
    e = err(lambda: alice.deleteSecurityGroup(name="default"))
    assert e["errorcode"] == 431

    # A deploy on a security-group network, with its groups by name
    z, hs, t, so = simulator_zone(api, files, tmp_path)
    net = _sg_network(live, z["id"])
    e = err(lambda: deploy(alice, z, t, so, networkids=net, securitygroupids=web["id"], securitygroupnames="web"))
    assert e["errorcode"] == 431 and "mutually exclusive" in e["errortext"]
    vm = deploy(alice, z, t, so, name="sgvm", networkids=net, securitygroupnames="web", ipaddress="10.77.0.42")
    assert [g["name"] for g in vm["securitygroup"]] == ["web"]
    assert vm["nic"][0]["ipaddress"] == "10.77.0.42" and vm["nic"][0]["type"] == "Shared"
    assert vm["nic"][0]["traffictype"] == "Guest" and vm["nic"][0]["isdefault"] is True
    listed = alice.listSecurityGroups(virtualmachineid=vm["id"])["securitygroup"]
    assert [g["name"] for g in listed] == ["web"] and listed[0]["virtualmachineids"] == [vm["id"]]
    e = err(lambda: alice.deleteSecurityGroup(id=web["id"]))
    assert e["errorcode"] == 536 and "in use by virtual machines" in e["errortext"]
    vm2 = deploy(alice, z, t, so, name="anon", networkids=net)
    assert [g["name"] for g in vm2["securitygroup"]] == ["default"]
    lv = alice.listVirtualMachines(id=vm["id"])["virtualmachine"][0]
    assert [g["name"] for g in lv["securitygroup"]] == ["web"] and lv["nic"][0]["networkid"] == net

    other = alice.createSecurityGroup(name="spare")["securitygroup"]
    assert alice.deleteSecurityGroup(id=other["id"])["success"]
    assert {g["name"] for g in api.listSecurityGroups(listall=True)["securitygroup"]} >= {"default", "web"}
