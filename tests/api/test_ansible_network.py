"""The Ansible collection ngine_io.cloudstack (from the `ansible` package) against Nubo's network
API on a Simulator zone: tests/api/ansible/network.yml sets up the zone's physical network,
traffic types, public range and a network offering as the admin, then a user's network, VM,
public IP, port forwarding, firewall and egress rules and a security group with its rules. The
playbook runs twice: the first run changes things and fails nothing, the second changes nothing
(each module compares what it wants with what Nubo lists). The result is then checked through
the API."""
from __future__ import annotations

import pytest

from tests.api.ansible_runner import Playbooks, require_ansible
from tests.api.test_libcloud_network import sim_zone
from tests.api.test_templates_cs import files  # noqa: F401  (fixture)

pytestmark = [pytest.mark.xdist_group("live-api"), pytest.mark.timeout(900)]

PUBLIC_IP = "198.18.0.40"  # the range's last address: the network's source NAT takes a free one


@pytest.fixture
def playbooks(live, files, tmp_path):  # noqa: F811
    require_ansible()
    z, t, so = sim_zone(live.client(), files, tmp_path)
    return z, Playbooks(live, z, t, so, tmp_path, public_ip=PUBLIC_IP)


def check_zone(api, z):
    """What zone.yml made, as the API lists it."""
    pn = api.listPhysicalNetworks(zoneid=z["id"])["physicalnetwork"]
    assert [(p["name"], p["isolationmethods"], p["vlan"], p["state"]) for p in pn] == \
        [("pn1", "VXLAN", "5000-5099", "Enabled")]
    tts = api.listTrafficTypes(physicalnetworkid=pn[0]["id"])["traffictype"]
    assert sorted((tt["traffictype"], tt["kvmnetworklabel"]) for tt in tts) == \
        [("Guest", "cloudbr0"), ("Management", "cloudbr0"), ("Public", "cloudbr0")]
    vr = api.listNetworkServiceProviders(physicalnetworkid=pn[0]["id"], name="VirtualRouter")
    assert vr["networkserviceprovider"][0]["state"] == "Enabled"
    element = api.listVirtualRouterElements(nspid=vr["networkserviceprovider"][0]["id"])["virtualrouterelement"]
    assert element[0]["enabled"] is True
    ranges = api.listVlanIpRanges(zoneid=z["id"])["vlaniprange"]
    assert [(r["startip"], r["endip"], r["gateway"], r["forvirtualnetwork"]) for r in ranges] == \
        [("198.18.0.10", "198.18.0.40", "198.18.0.1", True)]
    offering = api.listNetworkOfferings(name="nubo-isolated")["networkoffering"]
    assert [(o["guestiptype"], o["state"], o["egressdefaultpolicy"]) for o in offering] == \
        [("Isolated", "Enabled", True)]
    assert {s["name"] for s in offering[0]["service"]} == \
        {"Dhcp", "Dns", "UserData", "SourceNat", "StaticNat", "PortForwarding", "Firewall"}
    return offering[0]


def test_playbook_runs_twice_and_the_second_run_changes_nothing(live, playbooks):
    z, pb = playbooks
    api = live.client()
    first = pb.run("network.yml")
    assert first["changed"] > 0
    second = pb.run("network.yml")
    assert second["changed"] == 0, second

    offering = check_zone(api, z)
    alice = live.client("alice")
    nets = alice.listNetworks(zoneid=z["id"])["network"]
    assert [(n["name"], n["displaytext"], n["networkofferingid"], n["cidr"], n["state"]) for n in nets] == \
        [("web", "web tier", offering["id"], "10.1.1.0/24", "Implemented")]
    vms = alice.listVirtualMachines()["virtualmachine"]
    assert [(v["name"], v["state"], [n["networkid"] for n in v["nic"]]) for v in vms] == \
        [("web1", "Running", [nets[0]["id"]])]
    ips = alice.listPublicIpAddresses(associatednetworkid=nets[0]["id"])["publicipaddress"]
    assert sorted((i["ipaddress"] == PUBLIC_IP, i["issourcenat"]) for i in ips) == [(False, True), (True, False)]
    ip = next(i for i in ips if i["ipaddress"] == PUBLIC_IP)
    pfs = alice.listPortForwardingRules(ipaddressid=ip["id"])["portforwardingrule"]
    assert [(r["publicport"], r["privateport"], r["virtualmachineid"]) for r in pfs] == \
        [("2222", "22", vms[0]["id"])]  # strings, as CloudStack sends them
    fws = alice.listFirewallRules(ipaddressid=ip["id"])["firewallrule"]
    assert sorted((r["protocol"], r["cidrlist"], r.get("startport"), r.get("icmptype")) for r in fws) == \
        [("icmp", "0.0.0.0/0", None, 8), ("tcp", "198.19.0.0/16", 2222, None)]  # ports: integers here
    egress = alice.listEgressFirewallRules(networkid=nets[0]["id"])["firewallrule"]
    assert [(r["protocol"], r["cidrlist"], r["startport"]) for r in egress] == [("tcp", "10.1.1.0/24", 443)]
    sg = alice.listSecurityGroups(securitygroupname="websg")["securitygroup"][0]
    assert sorted((r["protocol"], r.get("startport"), r.get("cidr"), r.get("securitygroupname"))
                  for r in sg["ingressrule"]) == \
        [("icmp", None, "0.0.0.0/0", None), ("tcp", 22, None, "default"), ("tcp", 80, "198.19.0.0/16", None)]
    assert [(r["protocol"], r["startport"], r["cidr"]) for r in sg["egressrule"]] == [("udp", 53, "0.0.0.0/0")]
