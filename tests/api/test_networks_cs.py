"""Guest networks and virtual routers through the real `cs` client on Simulator hosts:
createNetwork (a user's isolated network, CloudStack's default offering), listNetworks'
NetworkResponse fields, the router made on the first deploy (listRouters'
DomainRouterResponse), rebootRouter, restartNetwork cleanup=true, updateNetwork,
deleteNetwork refused with VMs then done (async), bad VLANs refused."""
from __future__ import annotations

import pytest

from app.extensions import db
from app.models import Zone
from tests.api.test_templates_cs import files  # noqa: F401  (fixture)
from tests.api.test_vms_cs import deploy, err, simulator_zone
from tests.helpers.net_zone import ISOLATED, network_zone, offering

pytestmark = pytest.mark.xdist_group("live-api")


def test_isolated_network_and_its_router(live, files, tmp_path):  # noqa: F811
    api, alice = live.client(), live.client("alice")
    z, hs, t, so = simulator_zone(api, files, tmp_path)
    with live.flask_app.app_context():
        network_zone(db.session.get(Zone, db.session.query(Zone.id).filter(Zone.uuid == z["id"]).scalar()))
        iso_offering = offering(ISOLATED).uuid
    net = alice.createNetwork(zoneid=z["id"], name="web", displaytext="web tier", gateway="10.50.0.1",
                              netmask="255.255.255.0")["network"]
    assert net["type"] == "Isolated" and net["state"] == "Allocated" and net["acltype"] == "Account"
    assert net["networkofferingid"] == iso_offering and net["networkofferingname"] == ISOLATED
    assert net["account"] == "alice" and net["cidr"] == "10.50.0.0/24" and net["gateway"] == "10.50.0.1"
    assert net["canusefordeploy"] is True and net["restartrequired"] is False and net["issystem"] is False
    assert {s["name"] for s in net["service"]} >= {"SourceNat", "Dhcp", "Dns", "UserData", "Firewall"}
    assert all(s["provider"][0]["name"] == "VirtualRouter" for s in net["service"])
    assert net["networkdomain"].startswith("cs") and net["networkdomain"].endswith("cloud.internal")
    listed = alice.listNetworks(id=net["id"])["network"][0]
    assert listed["name"] == "web" and "vlan" not in listed  # no VNI before the first start
    assert [n["id"] for n in alice.listNetworks(type="Isolated")["network"]] == [net["id"]]
    assert [n["id"] for n in alice.listNetworks(supportedservices="SourceNat")["network"]] == [net["id"]]

    vm = deploy(alice, z, t, so, name="w1", networkids=net["id"])
    assert vm["nic"][0]["networkid"] == net["id"] and vm["nic"][0]["ipaddress"].startswith("10.50.0.")
    net = api.listNetworks(id=net["id"])["network"][0]
    assert net["state"] == "Implemented" and net["broadcasturi"] == f"vxlan://{net['vlan']}"
    router = api.listRouters(networkid=net["id"])["router"][0]
    assert router["state"] == "Running" and router["role"] == "VIRTUAL_ROUTER" and router["guestnetworkid"] == net["id"]
    assert router["guestipaddress"] == "10.50.0.1" and router["publicip"].startswith("198.18.0.")
    assert router["hostid"] in {h["id"] for h in hs} and router["redundantstate"] == "UNKNOWN"
    assert router["requiresupgrade"] is False and router["account"] == "alice"
    assert {n["traffictype"] for n in router["nic"]} == {"Guest", "Public"}
    assert [r["id"] for r in alice.listRouters()["router"]] == [router["id"]]
    assert err(lambda: alice.rebootRouter(id=router["id"]))["errorcode"] == 432  # admins only

    rebooted = api.rebootRouter(id=router["id"], fetch_result=True)["router"]
    assert rebooted["state"] == "Running"
    restarted = alice.restartNetwork(id=net["id"], cleanup="true", fetch_result=True)["network"]
    assert restarted["state"] == "Implemented"
    new = api.listRouters(networkid=net["id"])["router"][0]
    assert new["id"] != router["id"] and new["publicip"] == router["publicip"]
    updated = alice.updateNetwork(id=net["id"], name="web2", networkdomain="web.example", fetch_result=True)["network"]
    assert updated["name"] == "web2" and updated["networkdomain"] == "web.example"

    e = err(lambda: alice.deleteNetwork(id=net["id"], fetch_result=True))
    assert e["errorcode"] == 536 and "VMs on it" in e["errortext"]
    alice.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)
    assert alice.deleteNetwork(id=net["id"], fetch_result=True)["success"] is True
    assert "network" not in alice.listNetworks(id=net["id"])
    assert "router" not in api.listRouters(networkid=net["id"])
    types = {e["type"] for e in api.listEvents(pagesize=500)["event"]}
    assert {"NETWORK.CREATE", "NETWORK.DELETE", "NETWORK.UPDATE", "NETWORK.RESTART", "ROUTER.START",
            "ROUTER.REBOOT", "ROUTER.DESTROY"} <= types


def test_bad_networks_are_refused(live, files, tmp_path):  # noqa: F811
    api, alice = live.client(), live.client("alice")
    z, hs, t, so = simulator_zone(api, files, tmp_path, hosts=1)
    with live.flask_app.app_context():
        network_zone(db.session.query(Zone).filter(Zone.uuid == z["id"]).one())
        iso = offering(ISOLATED).uuid
    e = err(lambda: api.createNetwork(zoneid=z["id"], name="x", networkofferingid=iso, account="alice",
                                      gateway="10.60.0.1", netmask="255.255.255.0", vlan="3999"))
    assert e["errorcode"] == 431 and "VLAN" in e["errortext"]
    e = err(lambda: alice.createNetwork(zoneid=z["id"], name="x", gateway="10.60.0.1", netmask="255.255.255.0",
                                        vlan="5001"))
    assert e["errorcode"] == 531  # only admins give a VLAN
    alice.createNetwork(zoneid=z["id"], name="a", gateway="10.61.0.1", netmask="255.255.255.0")
    e = err(lambda: alice.createNetwork(zoneid=z["id"], name="b", gateway="10.61.0.1", netmask="255.255.0.0"))
    assert e["errorcode"] == 431 and "overlaps" in e["errortext"]
    assert err(lambda: alice.deleteNetwork(id="5e1f0000-0000-4000-8000-00000000abcd"))["errorcode"] == 431
