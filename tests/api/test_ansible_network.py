"""The Ansible collection ngine_io.cloudstack (from the `ansible` package) against Nubo's network
API on a Simulator zone: tests/api/ansible/network.yml sets up the zone's physical network,
traffic types, public range and a network offering as the admin, then a user's network, VM,
public IP, port forwarding, firewall and egress rules and a security group with its rules. The
playbook runs twice: the first run changes things and fails nothing, the second changes nothing
(each module compares what it wants with what Nubo lists). The result is then checked through
the API."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.test_libcloud_network import sim_zone
from tests.api.test_templates_cs import files  # noqa: F401  (fixture)

pytestmark = [pytest.mark.xdist_group("live-api"), pytest.mark.timeout(900)]

PLAYBOOKS = Path(__file__).parent / "ansible"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
PUBLIC_IP = "198.18.0.40"  # the range's last address: the network's source NAT takes a free one


def recap(output: str) -> dict[str, int]:
    m = re.search(r"^localhost\s*:\s*(.*)$", output, re.M)
    assert m, output
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


class Playbooks:
    """ansible-playbook against the live server: admin credentials in CLOUDSTACK_*, the user's
    and the zone's names in extra vars; the collection's modules run with this venv's Python."""

    def __init__(self, live, z, t, so, tmp_path):
        admin_key, admin_secret = live.keys("admin")
        user_key, user_secret = live.keys("alice")
        home = tmp_path / "ansible-home"
        self.env = {**os.environ, "CLOUDSTACK_ENDPOINT": live.url, "CLOUDSTACK_KEY": admin_key,
                    "CLOUDSTACK_SECRET": admin_secret, "CLOUDSTACK_TIMEOUT": "60", "ANSIBLE_HOME": str(home),
                    "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_DEPRECATION_WARNINGS": "0",
                    "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
        self.extra = {"ansible_python_interpreter": sys.executable, "zone": z["name"], "template": t["name"],
                      "service_offering": so["name"], "public_ip": PUBLIC_IP, "user_key": user_key,
                      "user_secret": user_secret}

    def run(self, playbook: str) -> dict[str, int]:
        cmd = [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(PLAYBOOKS / playbook)]
        for k, v in self.extra.items():
            cmd += ["-e", f"{k}={v}"]
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=600)
        print(out.stdout[-20000:], out.stderr[-5000:])  # shown when the test fails
        stats = recap(out.stdout)
        assert out.returncode == 0 and stats["failed"] == 0, out.stdout[-8000:]
        return stats


@pytest.fixture
def playbooks(live, files, tmp_path):  # noqa: F811
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip("ansible-playbook is not installed (requirements-test.txt pins `ansible`)")
    z, t, so = sim_zone(live.client(), files, tmp_path)
    return z, Playbooks(live, z, t, so, tmp_path)


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
