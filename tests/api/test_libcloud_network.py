"""Apache Libcloud's CloudStack driver against Nubo's network API, on a Simulator zone:
list_nodes (with public IPs from static NAT and port forwarding), ex_list_networks,
ex_list_network_offerings, public IPs, IP and port forwarding, ingress and egress firewall
rules, security groups. Every call is the driver's own; the `cs` client only sets up the zone
(as an admin would) and does what the driver has no method for (enableStaticNat)."""
from __future__ import annotations

import ipaddress

import pytest

from tests.api.test_templates_cs import files, wait_status  # noqa: F401  (fixture)

import libcloud  # noqa: E402  (requirements-test.txt pins apache-libcloud: a missing one is a failure, not a skip)
from libcloud.compute.providers import Provider, get_driver  # noqa: E402
from libcloud.compute.types import NodeState  # noqa: E402

pytestmark = pytest.mark.xdist_group("live-api")

PUBLIC = ipaddress.ip_network("198.18.0.0/24")  # the zone's public range (test address space)
ISOLATED = "DefaultIsolatedNetworkOfferingWithSourceNatService"


def sim_zone(api, files, tmp_path):  # noqa: F811
    """An Advanced zone with two Simulator hosts, storage, a ready template (with its OS type, which
    Libcloud's list_images reads) and a service offering; no networking yet, and no guest CIDR
    (a zone with one gets a default shared network that would show in every list)."""
    z = api.createZone(name="NZ", networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2")["zone"]
    p = api.createPod(zoneid=z["id"], name="P", gateway="192.168.5.1", netmask="255.255.255.0",
                      startip="192.168.5.10", endip="192.168.5.99")["pod"]
    c = api.addCluster(zoneid=z["id"], podid=p["id"], clustername="C", hypervisor="Simulator",
                       clustertype="CloudManaged")["cluster"][0]
    for i in range(2):
        api.addHost(zoneid=z["id"], podid=p["id"], clusterid=c["id"],
                    url=f"simulator://net-h{i}?cpus=4&cpuspeed=2000&memory=4096&localstorage=100")
    api.createStoragePool(zoneid=z["id"], clusterid=c["id"], name="nfs", url="nfs://filer/export/vms")
    api.addImageStore(provider="Local", url=f"file://{tmp_path}/sec", zoneid=z["id"], name="sec")
    os_type = api.listOsTypes(keyword="Debian")["ostype"][0]
    t = api.registerTemplate(name="tiny", displaytext="tiny image", url=f"{files.url}/disk.raw", zoneid=z["id"],
                             hypervisor="Simulator", format="RAW", ispublic="true", ostypeid=os_type["id"])
    assert wait_status(api, t["template"][0]["id"])["isready"]
    so = api.createServiceOffering(name="s1", displaytext="1 vCPU 1 GiB", cpunumber=1, cpuspeed=1000,
                                   memory=1024)["serviceoffering"]
    return z, t["template"][0], so


def network_zone(api, files, tmp_path):  # noqa: F811
    """sim_zone made ready for guest networks the way CloudStack's API does it: a VXLAN physical
    network carrying Guest, Public and Management traffic, the VirtualRouter provider enabled,
    and a public range in 198.18.0.0/24."""
    z, t, so = sim_zone(api, files, tmp_path)
    pn = api.createPhysicalNetwork(zoneid=z["id"], name="pn1", isolationmethods="VXLAN", vlan="5000-5099",
                                   fetch_result=True)["physicalnetwork"]
    for traffic in ("Guest", "Public", "Management"):
        api.addTrafficType(physicalnetworkid=pn["id"], traffictype=traffic, kvmnetworklabel="cloudbr0",
                           fetch_result=True)
    vr = api.listNetworkServiceProviders(physicalnetworkid=pn["id"], name="VirtualRouter")["networkserviceprovider"][0]
    element = api.listVirtualRouterElements(nspid=vr["id"])["virtualrouterelement"][0]
    api.configureVirtualRouterElement(id=element["id"], enabled="true", fetch_result=True)
    api.updateNetworkServiceProvider(id=vr["id"], state="Enabled", fetch_result=True)
    api.updatePhysicalNetwork(id=pn["id"], state="Enabled", fetch_result=True)
    api.createVlanIpRange(zoneid=z["id"], physicalnetworkid=pn["id"], forvirtualnetwork="true", vlan="untagged",
                          gateway="198.18.0.1", netmask="255.255.255.0", startip="198.18.0.10", endip="198.18.0.40")
    return z, t, so


def driver(live, user):
    key, secret = live.keys(user)
    return get_driver(Provider.CLOUDSTACK)(key, secret, secure=False, url=live.url)


def one(items, **attrs):
    found = [i for i in items if all(getattr(i, k) == v for k, v in attrs.items())]
    assert len(found) == 1, (attrs, items)
    return found[0]


def test_libcloud_networks_public_ips_and_rules(live, files, tmp_path):  # noqa: F811
    api, alice = live.client(), live.client("alice")
    z, t, so = network_zone(api, files, tmp_path)
    drv = driver(live, "alice")
    assert drv.list_nodes() == []  # listPublicIpAddresses, listPortForwardingRules, listIpForwardingRules

    # Offerings and networks.
    offerings = drv.ex_list_network_offerings()
    assert {"DefaultSharedNetworkOffering", "DefaultSharedNetworkOfferingWithSGService", ISOLATED,
            "DefaultL2NetworkOffering"} <= {o.name for o in offerings}
    offering = one(offerings, name=ISOLATED)
    assert offering.guest_ip_type == "Isolated" and offering.for_vpc is False
    loc = one(drv.list_locations(), id=z["id"])
    net = drv.ex_create_network("web tier", "web", offering, loc, gateway="10.1.1.1", netmask="255.255.255.0")
    listed = one(drv.ex_list_networks(), id=net.id)
    assert (listed.name, listed.displaytext, listed.networkofferingid, listed.zoneid) == \
        ("web", "web tier", offering.id, z["id"])
    assert listed.extra["type"] == "Isolated" and listed.extra["traffic_type"] == "Guest"
    assert listed.extra["network_offering_name"] == ISOLATED and listed.extra["gateway"] == "10.1.1.1"
    assert listed.extra["netmask"] == "255.255.255.0" and listed.extra["state"] == "Allocated"

    # A VM on it: the network is implemented (router, source-NAT IP) at its first start.
    size = one(drv.list_sizes(), id=so["id"])
    image = one(drv.list_images(loc), id=t["id"])
    node = drv.create_node(name="web1", size=size, image=image, location=loc, networks=[net], ex_start_vm=True)
    assert node.state == NodeState.RUNNING and node.public_ips == []
    assert ipaddress.ip_address(node.private_ips[0]) in ipaddress.ip_network("10.1.1.0/24")
    assert one(drv.ex_list_networks(), id=net.id).extra["state"] == "Implemented"
    source_nat = alice.listPublicIpAddresses(associatednetworkid=net.id, issourcenat="true")["publicipaddress"]
    assert len(source_nat) == 1 and ipaddress.ip_address(source_nat[0]["ipaddress"]) in PUBLIC
    assert one(drv.ex_list_public_ips(), id=source_nat[0]["id"]).associated_network_id == net.id

    # Public IPs: allocate, static NAT (list_nodes shows it), IP forwarding, release.
    ip1 = drv.ex_allocate_public_ip(network_id=net.id, location=loc)
    assert ipaddress.ip_address(ip1.address) in PUBLIC and ip1.address != source_nat[0]["ipaddress"]
    assert one(drv.ex_list_public_ips(), id=ip1.id).associated_network_id == net.id
    alice.enableStaticNat(ipaddressid=ip1.id, virtualmachineid=node.id)  # no driver method for it
    node = one(drv.list_nodes(), id=node.id)
    assert node.public_ips == [ip1.address] and [a.id for a in node.extra["ip_addresses"]] == [ip1.id]
    assert one(drv.ex_list_public_ips(), id=ip1.id).virtualmachine_id == node.id
    fwd = drv.ex_create_ip_forwarding_rule(node, ip1, "tcp", 8000, 8100)
    rules = drv.ex_list_ip_forwarding_rules(ipaddress_id=ip1.id)
    assert [(r.id, r.node.id, r.address.id, r.protocol.lower(), int(r.start_port), int(r.end_port))
            for r in rules] == [(fwd.id, node.id, ip1.id, "tcp", 8000, 8100)]
    assert [r.id for r in one(drv.list_nodes(), id=node.id).extra["ip_forwarding_rules"]] == [fwd.id]
    assert drv.ex_delete_ip_forwarding_rule(node, fwd) is True
    assert drv.ex_list_ip_forwarding_rules(ipaddress_id=ip1.id) == []
    alice.disableStaticNat(ipaddressid=ip1.id, fetch_result=True)
    assert one(drv.list_nodes(), id=node.id).public_ips == []
    assert drv.ex_release_public_ip(ip1) is True
    assert ip1.id not in {a.id for a in drv.ex_list_public_ips()}

    # Port forwarding (openfirewall: CloudStack adds the matching firewall rule and removes it with the PF rule).
    ip2 = drv.ex_allocate_public_ip(network_id=net.id, location=loc)
    pf = drv.ex_create_port_forwarding_rule(node, ip2, 22, 2222, "tcp")
    rules = drv.ex_list_port_forwarding_rules(ipaddress_id=ip2.id)
    assert [(r.id, r.node.id, r.address.id, r.protocol, int(r.public_port), int(r.private_port),
             int(r.public_end_port), int(r.private_end_port)) for r in rules] == \
        [(pf.id, node.id, ip2.id, "tcp", 2222, 22, 2222, 22)]
    listed_node = one(drv.list_nodes(), id=node.id)
    assert listed_node.public_ips == [ip2.address]
    assert [r.id for r in listed_node.extra["port_forwarding_rules"]] == [pf.id]
    opened = [r for r in drv.ex_list_firewall_rules() if r.address.id == ip2.id]
    assert [(r.cidr_list, r.protocol, int(r.start_port), int(r.end_port)) for r in opened] == \
        [("0.0.0.0/0", "tcp", 2222, 2222)]
    assert drv.ex_delete_port_forwarding_rule(node, pf) is True
    assert drv.ex_list_port_forwarding_rules(ipaddress_id=ip2.id) == []
    assert [r for r in drv.ex_list_firewall_rules() if r.address.id == ip2.id] == []  # went with the PF rule
    pf = drv.ex_create_port_forwarding_rule(node, ip2, 80, 8080, "tcp", openfirewall=False)
    assert [r for r in drv.ex_list_firewall_rules() if r.address.id == ip2.id] == []

    # Ingress firewall rules on a public IP.
    fw = drv.ex_create_firewall_rule(ip2, "198.19.0.0/16", "tcp", start_port=8080, end_port=8081)
    icmp = drv.ex_create_firewall_rule(ip2, "0.0.0.0/0", "icmp", icmp_code=0, icmp_type=8)
    rules = {r.id: r for r in drv.ex_list_firewall_rules()}
    assert (rules[fw.id].address.id, rules[fw.id].cidr_list, rules[fw.id].protocol,
            int(rules[fw.id].start_port), int(rules[fw.id].end_port)) == (ip2.id, "198.19.0.0/16", "tcp", 8080, 8081)
    assert (rules[icmp.id].protocol, int(rules[icmp.id].icmp_type), int(rules[icmp.id].icmp_code)) == ("icmp", 8, 0)
    assert drv.ex_delete_firewall_rule(fw) is True and drv.ex_delete_firewall_rule(icmp) is True
    assert {fw.id, icmp.id}.isdisjoint(r.id for r in drv.ex_list_firewall_rules())

    # Egress firewall rules on the network.
    egress = drv.ex_create_egress_firewall_rule(net.id, "10.1.1.0/24", "tcp", start_port=443, end_port=443)
    rules = {r.id: r for r in drv.ex_list_egress_firewall_rules()}
    assert (rules[egress.id].network_id, rules[egress.id].cidr_list, rules[egress.id].protocol,
            int(rules[egress.id].start_port), int(rules[egress.id].end_port)) == \
        (net.id, "10.1.1.0/24", "tcp", 443, 443)
    assert drv.ex_delete_egress_firewall_rule(egress) is True
    assert egress.id not in {r["id"] for r in alice.listEgressFirewallRules(networkid=net.id).get("firewallrule", [])}

    # Releasing an IP removes its rules.
    assert drv.ex_release_public_ip(ip2) is True
    assert alice.listPortForwardingRules().get("portforwardingrule", []) == []
    assert one(drv.list_nodes(), id=node.id).public_ips == []

    # The VM and the network go away with the driver's calls too.
    assert driver(live, "admin").destroy_node(node, ex_expunge=True) is True
    # force=False: without it the driver sends "forced=None", which CloudStack reads as false
    # (Boolean.valueOf) and Nubo refuses (431: must be true or false).
    assert drv.ex_delete_network(net, force=False) is True
    assert net.id not in {n.id for n in drv.ex_list_networks()}


def test_libcloud_security_groups(live):
    """Create, authorize ingress (the driver sends TCP and ICMP in capitals), list, revoke, delete."""
    drv = driver(live, "alice")
    sg = drv.ex_create_security_group("web", description="web servers")
    assert (sg["name"], sg["description"], sg["account"]) == ("web", "web servers", "alice")
    tcp_rule = drv.ex_authorize_security_group_ingress("web", "tcp", "198.19.0.0/16", startport=80, endport=81)
    assert [(r["protocol"], r["startport"], r["endport"], r["cidr"]) for r in tcp_rule["ingressrule"]] == \
        [("tcp", 80, 81, "198.19.0.0/16")]
    drv.ex_authorize_security_group_ingress("web", "icmp", "0.0.0.0/0")  # all types and codes: -1/-1
    groups = {g["name"]: g for g in drv.ex_list_security_groups()}
    assert "default" in groups  # every account has its default group
    rules = {r["protocol"]: r for r in groups["web"]["ingressrule"]}
    assert set(rules) == {"tcp", "icmp"} and (rules["icmp"]["icmptype"], rules["icmp"]["icmpcode"]) == (-1, -1)
    assert drv.ex_revoke_security_group_ingress(rules["tcp"]["ruleid"]) is True
    web = drv.ex_list_security_groups(securitygroupname="web")
    assert [r["ruleid"] for r in web[0]["ingressrule"]] == [rules["icmp"]["ruleid"]]
    assert drv.ex_delete_security_group("web") is True
    assert "web" not in {g["name"] for g in drv.ex_list_security_groups()}
