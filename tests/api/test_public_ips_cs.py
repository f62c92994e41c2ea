"""Public IPs and their rules through the API with the real `cs` client (a live server and a
huey consumer): associateIpAddress and the async rule commands answer CloudStack's shapes
(ids with the job, IPAddressResponse, FirewallResponse, FirewallRuleResponse with string
ports, IpForwardingRuleResponse), CloudStack's errors (another account's address answered as a missing one, 537
on colliding ranges, the source NAT address not releasable), and Apache Libcloud's CloudStack
driver reads them (list_nodes with public IPs, its public IP and rule methods)."""
from __future__ import annotations

import json
import time

import pytest
from cs import CloudStack, CloudStackApiException

from app.extensions import db
from app.models import NetworkOffering, PublicIpAddress, VlanIpRange, new_uuid
from app.services import accounts, settings
from app.services.network import public_ips
from tests.helpers.sim_zone import simulator_zone
from tests.helpers.users import existing_user
from tests.integration.test_public_ips import ISOLATED_SERVICES, _isolated, _vm_on

pytestmark = pytest.mark.xdist_group("live-api")


def err(call) -> dict:
    with pytest.raises(CloudStackApiException) as e:
        call()
    return e.value.error


@pytest.fixture
def world(live, tmp_path):
    with live.flask_app.app_context():
        existing_user("bob", "bobpass")
        admin, alice, bob = (accounts.get_user(n) for n in ("admin", "alice", "bob"))
        bob_keys = accounts.ensure_keys(bob)
        sz = simulator_zone(admin, tmp_path, name="PZ", guest_cidr="10.9.0.0/24",
                            host_urls=["simulator://ph1?cpus=8&memory=16384"])
        off = NetworkOffering(uuid=new_uuid(), name="DefaultIsolatedNetworkOfferingWithSourceNatService",
                              display_text="iso", guest_ip_type="Isolated", services=json.dumps(ISOLATED_SERVICES))
        db.session.add(off)
        db.session.flush()
        anet = _isolated(sz.zone, alice.account_id, off, "10.1.1.0/24", "alice-net")
        bnet = _isolated(sz.zone, bob.account_id, off, "10.1.2.0/24", "bob-net")
        rng = VlanIpRange(uuid=new_uuid(), zone_id=sz.zone.id, vlan="untagged", gateway="198.18.1.1",
                          netmask="255.255.255.0", start_ip="198.18.1.10", end_ip="198.18.1.19")
        db.session.add(rng)
        db.session.flush()
        db.session.add_all([PublicIpAddress(uuid=new_uuid(), zone_id=sz.zone.id, vlan_range_id=rng.id,
                                            address=f"198.18.1.{i}") for i in range(10, 20)])
        db.session.commit()
        for limit in ("max.account.user.vms", "max.account.cpus", "max.account.memory", "max.account.volumes",
                      "max.account.primary.storage"):
            settings.update(limit, "-1")
        vm = _vm_on(alice, sz, anet, "10.1.1.10", "web")
        snat = public_ips.claim(sz.zone.id, alice.account_id, anet.id, source_nat=True)
        out = dict(zone=sz.zone.uuid, anet=anet.uuid, bnet=bnet.uuid, vm=vm.uuid, snat=snat.uuid, range=rng.uuid)
    out["bob"] = CloudStack(endpoint=live.url, key=bob_keys[0], secret=bob_keys[1], poll_interval=0.2)
    return out


def wait_job(client, jobid: str, seconds: float = 30) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        job = client.queryAsyncJobResult(jobid=jobid)
        if job["jobstatus"] != 0 or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


IP_FIELDS = {"id", "ipaddress", "allocated", "zoneid", "zonename", "issourcenat", "isstaticnat", "issystem",
             "forvirtualnetwork", "account", "domainid", "domain", "associatednetworkid", "associatednetworkname",
             "networkid", "state", "fordisplay", "tags", "hasrules"}


def test_addresses_and_rules_through_the_api(live, world):
    api, alice = live.client(), live.client("alice", fetch_result=True)
    got = live.client("alice").associateIpAddress(networkid=world["anet"])
    assert set(got) == {"id", "jobid"}  # BaseAsyncCreateCmd: the id at once
    job = wait_job(live.client("alice"), got["jobid"])
    assert (job["jobstatus"], job["jobinstancetype"], job["jobinstanceid"]) == (1, "IpAddress", got["id"])
    ip = job["jobresult"]["ipaddress"]
    assert IP_FIELDS <= set(ip), IP_FIELDS - set(ip)
    assert (ip["state"], ip["issourcenat"], ip["isstaticnat"], ip["associatednetworkid"]) == (
        "Allocated", False, False, world["anet"])
    assert "vlanid" not in ip  # the range is the admins' business
    listed = alice.listPublicIpAddresses()["publicipaddress"]
    assert len(listed) == 2 and {x["issourcenat"] for x in listed} == {True, False}
    assert api.listPublicIpAddresses(id=ip["id"], listall=True)["publicipaddress"][0]["vlanid"] == world["range"]
    assert alice.listPublicIpAddresses(issourcenat=True)["publicipaddress"][0]["id"] == world["snat"]
    assert alice.listPublicIpAddresses(allocatedonly=False)["count"] == 10

    fw = alice.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=22, endport=22,
                                  cidrlist="203.0.113.0/24")["firewallrule"]
    assert (fw["startport"], fw["endport"], fw["state"], fw["cidrlist"], fw["ipaddress"]) == (
        22, 22, "Active", "203.0.113.0/24", ip["ipaddress"])
    pf = alice.createPortForwardingRule(ipaddressid=ip["id"], protocol="tcp", publicport=8080, privateport=80,
                                        virtualmachineid=world["vm"])["portforwardingrule"]
    assert (pf["publicport"], pf["privateport"], pf["publicendport"], pf["privateendport"]) == ("8080", "80", "8080",
                                                                                            "80")
    assert (pf["virtualmachineid"], pf["vmguestip"], pf["virtualmachinename"], pf["state"]) == (
        world["vm"], "10.1.1.10", "web", "Active")
    rules = alice.listFirewallRules(ipaddressid=ip["id"])["firewallrule"]
    assert sorted(r["startport"] for r in rules) == [22, 8080]  # openfirewall made the second
    assert alice.listPortForwardingRules()["portforwardingrule"][0]["id"] == pf["id"]
    assert alice.listPublicIpAddresses(id=ip["id"])["publicipaddress"][0]["hasrules"] is True

    # CloudStack's errors: another account's address, colliding ranges, the source NAT address
    e = err(lambda: world["bob"].createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=1))
    assert e["errorcode"] == 431 and e["errortext"] == f"Unable to find IP address by ID {ip['id']}"  # as if missing
    e = err(lambda: live.client("alice").createPortForwardingRule(
        ipaddressid=ip["id"], protocol="tcp", publicport=8080, privateport=81, virtualmachineid=world["vm"]))
    assert e["errorcode"] == 537 and "conflicts with rule" in e["errortext"]
    e = err(lambda: alice.disassociateIpAddress(id=world["snat"]))
    assert e["errorcode"] == 431 and "source nat" in e["errortext"]
    assert len(alice.listFirewallRules(ipaddressid=ip["id"])["firewallrule"]) == 2

    # static NAT on a second address, its ip forwarding rule
    ip2 = alice.associateIpAddress(networkid=world["anet"])["ipaddress"]
    assert live.client("alice").enableStaticNat(ipaddressid=ip2["id"], virtualmachineid=world["vm"]) == {
        "success": True}
    snat = alice.listPublicIpAddresses(isstaticnat=True)["publicipaddress"][0]
    assert (snat["virtualmachineid"], snat["vmipaddress"], snat["virtualmachinename"]) == (world["vm"], "10.1.1.10",
                                                                                           "web")
    ipf = alice.createIpForwardingRule(ipaddressid=ip2["id"], protocol="tcp", startport=443)["ipforwardingrule"]
    assert (ipf["startport"], ipf["endport"], ipf["virtualmachineid"], ipf["ipaddress"]) == (
        443, 443, world["vm"], ip2["ipaddress"])

    # egress
    eg = alice.createEgressFirewallRule(networkid=world["anet"], protocol="udp", startport=53)["firewallrule"]
    assert eg["networkid"] == world["anet"] and eg["cidrlist"] == "10.1.1.0/24" and "ipaddressid" not in eg
    assert [r["id"] for r in alice.listEgressFirewallRules(networkid=world["anet"])["firewallrule"]] == [eg["id"]]
    assert alice.deleteEgressFirewallRule(id=eg["id"]) == {"success": True}
    assert alice.listEgressFirewallRules() == {}

    # deleting the PF rule takes its firewall rule; releasing the address takes the rest
    assert alice.deletePortForwardingRule(id=pf["id"])["success"] is True
    assert [r["startport"] for r in alice.listFirewallRules(ipaddressid=ip["id"])["firewallrule"]] == [22]
    assert alice.disassociateIpAddress(id=ip["id"])["success"] is True
    assert alice.listFirewallRules(ipaddressid=ip2["id"])["count"] == 1
    assert alice.disableStaticNat(ipaddressid=ip2["id"])["success"] is True
    assert alice.listFirewallRules() == {} and alice.listIpForwardingRules() == {}
    assert alice.listPublicIpAddresses()["count"] == 2
    events = {e["type"] for e in alice.listEvents(pagesize=200)["event"]}
    assert {"NET.IPASSIGN", "NET.IPRELEASE", "NET.RULEADD", "NET.RULEDELETE", "FIREWALL.OPEN", "FIREWALL.CLOSE",
            "STATICNAT.ENABLE", "STATICNAT.DISABLE", "FIREWALL.EGRESS.OPEN", "FIREWALL.EGRESS.CLOSE"} <= events


def test_libcloud_reads_addresses_and_rules(live, world):
    from libcloud.compute.providers import Provider, get_driver
    alice = live.client("alice", fetch_result=True)
    key, secret = live.keys("alice")
    from urllib.parse import urlsplit
    u = urlsplit(live.url)
    driver = get_driver(Provider.CLOUDSTACK)(key, secret, secure=False, host=u.hostname, port=u.port, path=u.path)
    ip = alice.associateIpAddress(networkid=world["anet"])["ipaddress"]
    ip2 = alice.associateIpAddress(networkid=world["anet"])["ipaddress"]
    alice.createPortForwardingRule(ipaddressid=ip["id"], protocol="tcp", publicport=2222, privateport=22,
                                   virtualmachineid=world["vm"])
    alice.enableStaticNat(ipaddressid=ip2["id"], virtualmachineid=world["vm"])
    alice.createIpForwardingRule(ipaddressid=ip2["id"], protocol="tcp", startport=80)
    addresses = {a.address: a for a in driver.ex_list_public_ips()}
    assert set(addresses) >= {ip["ipaddress"], ip2["ipaddress"]}
    node = next(n for n in driver.list_nodes() if n.id == world["vm"])
    assert set(node.public_ips) >= {ip["ipaddress"], ip2["ipaddress"]}
    assert [(r.public_port, r.private_port) for r in node.extra["port_forwarding_rules"]] == [("2222", "22")]
    assert [(r.start_port, r.end_port) for r in node.extra["ip_forwarding_rules"]] == [(80, 80)]
    assert {r.start_port for r in driver.ex_list_firewall_rules()} == {2222, 80}
    fw = driver.ex_create_firewall_rule(addresses[ip["ipaddress"]], "198.51.100.0/24", "tcp", start_port=443,
                                        end_port=443)
    assert driver.ex_delete_firewall_rule(fw) is True
    new = driver.ex_allocate_public_ip(network_id=world["anet"])
    assert new.address.startswith("198.18.1.") and driver.ex_release_public_ip(new) is True
