"""Scoped settings through the real `cs` client: updateConfiguration, listConfigurations and
resetConfiguration with zoneid, clusterid and accountid, as CloudStack answers them."""
from __future__ import annotations

import pytest

from tests.api.test_vms_cs import err

pytestmark = pytest.mark.xdist_group("live-api")

CPU = "cpu.overprovisioning.factor"


def test_zone_cluster_and_account_values(live):
    api, alice = live.client(), live.client("alice")
    zone = api.createZone(name="SZ", dns1="8.8.8.8", internaldns1="10.0.0.2", networktype="Basic")["zone"]
    pod = api.createPod(zoneid=zone["id"], name="SP", gateway="192.168.9.1", netmask="255.255.255.0",
                        startip="192.168.9.10", endip="192.168.9.20")["pod"]
    cluster = api.addCluster(zoneid=zone["id"], podid=pod["id"], clustername="SC", clustertype="CloudManaged",
                             hypervisor="Simulator")["cluster"][0]

    got = api.updateConfiguration(name=CPU, value="4", zoneid=zone["id"])["configuration"]
    assert (got["name"], got["value"], got["scope"]) == (CPU, "4", "zone")
    # the cluster inherits its zone's value until it has its own
    assert api.listConfigurations(name=CPU, clusterid=cluster["id"])["configuration"][0]["value"] == "4"
    api.updateConfiguration(name=CPU, value="2", clusterid=cluster["id"])
    listed = {c["name"]: c for c in api.listConfigurations(clusterid=cluster["id"])["configuration"]}
    assert listed[CPU]["value"] == "2" and listed[CPU]["scope"] == "cluster"
    assert "mem.overprovisioning.factor" in listed and "vm.allocation.algorithm" not in listed
    glob = api.listConfigurations(name=CPU)["configuration"][0]
    assert (glob["value"], glob["defaultvalue"], glob["type"], glob["isdynamic"]) == ("1.0", "1.0", "Decimal", True)

    # CloudStack's refusals; nothing changes
    assert err(lambda: api.updateConfiguration(name=CPU, value="3", zoneid=zone["id"],
                                               clusterid=cluster["id"]))["errorcode"] == 431
    e = err(lambda: api.updateConfiguration(name="vm.allocation.algorithm", value="firstfit", zoneid=zone["id"]))
    assert e["errortext"] == "Invalid scope id provided for the parameter vm.allocation.algorithm"
    assert err(lambda: api.updateConfiguration(name=CPU, value="abc", clusterid=cluster["id"]))["errorcode"] == 431
    assert err(lambda: alice.updateConfiguration(name=CPU, value="3", clusterid=cluster["id"]))["errorcode"] == 432
    assert api.listConfigurations(name=CPU, clusterid=cluster["id"])["configuration"][0]["value"] == "2"

    reset = api.resetConfiguration(name=CPU, clusterid=cluster["id"])["configuration"]
    assert reset["value"] == "4"  # back to the zone's
    assert api.resetConfiguration(name=CPU, zoneid=zone["id"])["configuration"]["value"] == "1.0"

    account = alice.listAccounts()["account"][0]
    name = "allow.user.expunge.recover.vm"
    assert api.updateConfiguration(name=name, value="false", accountid=account["id"])["configuration"]["value"] \
        == "false"
    assert api.listConfigurations(name=name, accountid=account["id"])["configuration"][0]["value"] == "false"
    assert api.listConfigurations(name=name)["configuration"][0]["value"] == "true"
