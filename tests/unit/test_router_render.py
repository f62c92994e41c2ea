"""The virtual router's renderers (nft script, dnsmasq files, metadata JSON) and the metadata
agent's answers: pure functions, no host needed. tests/network/test_router_host.py loads the
same output into real namespaces."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from app.network.agent import metadata as agent
from app.network.host import dnsmasq, nft, router
from app.network.host.specs import (
    DhcpEntry, FirewallSpec, NatRule, RouterSpec, SegmentSpec, VmMetadata,
)

G, P = "vrabc123g", "vrabc123p"


def _spec(**kw) -> RouterSpec:
    base = RouterSpec(
        key="abc123", name="r-3-VM", guest=SegmentSpec("VXLAN", "eth0", 5000),
        guest_ip="10.1.1.1", guest_cidr="10.1.1.0/24", guest_mac="02:00:00:00:00:01",
        dhcp_range=("10.1.1.2", "10.1.1.254"), gateway="10.1.1.1", domain="cs1cloud.internal",
        dns_upstream=("198.18.0.53",),
        leases=(DhcpEntry("02:00:00:00:00:0a", "10.1.1.10", "vm-a"),
                DhcpEntry("02:00:00:00:00:0b", "10.1.1.11", "vm-b", default=False)),
        metadata=(VmMetadata("10.1.1.10", "uuid-a", "vm-a", "#cloud-config", ("ssh-rsa AAA a",),
                             (("service-offering", "Small"),)),),
        public=SegmentSpec("untagged", "pub0"), public_mac="02:00:00:00:00:02",
        public_ips=("198.18.0.10/24", "198.18.0.11/24"), public_gateway="198.18.0.1",
        source_nat_ip="198.18.0.10",
    )
    return replace(base, **kw)


def _rules(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines()]


# --- nftables ---------------------------------------------------------------------------

def test_nft_replaces_both_tables_in_one_script():
    s = nft.render(_spec(), G, P)
    lines = _rules(s)
    # declare + delete first: the load is one transaction whether the tables exist or not
    assert lines[2:6] == ["table inet nubo", "delete table inet nubo", "table ip nubo_nat", "delete table ip nubo_nat"]
    assert "type filter hook prerouting priority mangle; policy accept;" in lines
    assert "type filter hook input priority filter; policy drop;" in lines
    assert "type filter hook forward priority filter; policy drop;" in lines


def test_nft_source_nat_is_the_exact_ip_and_static_nat_vms_leave_from_their_own():
    s = _rules(nft.render(_spec(nat=(NatRule("198.18.0.11", "10.1.1.11", "all"),)), G, P))
    snat_vm = f'oifname "{P}" ip saddr 10.1.1.11 snat to 198.18.0.11'
    snat_all = f'oifname "{P}" ip saddr 10.1.1.0/24 snat to 198.18.0.10'
    assert snat_vm in s and snat_all in s and s.index(snat_vm) < s.index(snat_all)
    assert f'iifname "{P}" ip daddr 198.18.0.11 dnat to 10.1.1.11' in s
    assert not any("masquerade" in x for x in s)


def test_nft_port_forwarding_maps_port_to_port():
    rules = (NatRule("198.18.0.10", "10.1.1.10", "tcp", 8080, 8080, 80, 80),
             NatRule("198.18.0.10", "10.1.1.10", "udp", 5000, 5002, 5000, 5002),
             NatRule("198.18.0.10", "10.1.1.11", "tcp", 9000, 9001, 7000, 7001))
    s = _rules(nft.render(_spec(nat=rules), G, P))
    assert f'iifname "{P}" ip daddr 198.18.0.10 tcp dport 8080 dnat to 10.1.1.10:80' in s
    assert f'iifname "{P}" ip daddr 198.18.0.10 udp dport 5000-5002 dnat to 10.1.1.10' in s
    assert (f'iifname "{P}" ip daddr 198.18.0.10 tcp dport 9000-9001 dnat ip to tcp dport map '
            '{ 9000 : 10.1.1.11 . 7000, 9001 : 10.1.1.11 . 7001 }') in s


def test_nft_ingress_firewall_on_public_addresses_before_dnat():
    fw = (FirewallSpec("tcp", ("0.0.0.0/0",), 22, 22, public_ip="198.18.0.10"),
          FirewallSpec("udp", ("203.0.113.0/24", "198.51.100.7/32"), 1000, 2000, public_ip="198.18.0.11"),
          FirewallSpec("icmp", ("0.0.0.0/0",), icmp_type=8, icmp_code=-1, public_ip="198.18.0.10"),
          FirewallSpec("all", ("192.0.2.0/24",), public_ip="198.18.0.11"))
    s = _rules(nft.render(_spec(ingress=fw), G, P))
    i = s.index("chain ingress {")
    chain = s[i:s.index("}", i)]
    assert chain[2:5] == [f'iifname != "{P}" accept', "ct state established,related accept", "ct state invalid drop"]
    assert "ip daddr 198.18.0.10 tcp dport 22 accept" in chain
    assert "ip daddr 198.18.0.11 ip saddr { 198.51.100.7/32, 203.0.113.0/24 } udp dport 1000-2000 accept" in chain
    assert "ip daddr 198.18.0.10 icmp type 8 accept" in chain
    assert "ip daddr 198.18.0.11 ip saddr 192.0.2.0/24 accept" in chain
    assert chain[-1] == "drop"
    # Only DNATed connections are forwarded inwards.
    assert f'iifname "{P}" oifname "{G}" ip daddr 10.1.1.0/24 ct status dnat accept' in s


def test_nft_egress_follows_cloudstacks_default_policy():
    rules = (FirewallSpec("tcp", ("0.0.0.0/0",), 25, 25), FirewallSpec("all", ("192.0.2.0/24",)))

    def chain(spec):
        s = _rules(nft.render(spec, G, P))
        i = s.index("chain egress {")
        return s[i + 1:s.index("}", i)]

    # egressdefaultpolicy=true (allow): each rule is a deny, then accept (CsAcl.AclIP)
    assert chain(_spec(egress=rules)) == ["tcp dport 25 drop", "ip daddr 192.0.2.0/24 drop", "accept"]
    # egressdefaultpolicy=false (deny): each rule is an allow, then drop
    assert chain(_spec(egress=rules, egress_default_allow=False)) == [
        "tcp dport 25 accept", "ip daddr 192.0.2.0/24 accept", "drop"]
    assert chain(_spec(egress_default_allow=False)) == ["drop"]
    assert chain(_spec()) == ["accept"]


def test_nft_router_services_from_the_guest_side_only():
    s = _rules(nft.render(_spec(), G, P))
    assert f'iifname "{G}" udp dport 67 accept' in s
    assert f'iifname "{G}" meta l4proto {{ tcp, udp }} th dport 53 accept' in s
    assert f'iifname "{G}" ip daddr 10.1.1.1 tcp dport {{ 80, 8080 }} accept' in s
    assert not any(f'iifname "{P}"' in x and ("dport 53" in x or "dport 80" in x or "dport 67" in x) for x in s)


def test_nft_without_public_side_routes_nothing():
    spec = _spec(public=None, public_mac=None, public_ips=(), public_gateway=None, source_nat_ip=None)
    s = nft.render(spec, G, None)
    assert "chain ingress" not in s and "chain egress" not in s
    assert "snat" not in s and "dnat" not in s
    with pytest.raises(ValueError):
        nft.render(replace(spec, nat=(NatRule("198.18.0.10", "10.1.1.10", "all"),)), G, None)


@pytest.mark.parametrize("kw", [
    {"nat": (NatRule("198.18.0.10", "10.1.1.10", "tcp", 80, 81, 80, 80),)},  # lengths differ
    {"nat": (NatRule("198.18.0.10", "10.1.1.10", "tcp", 0, 0, 80, 80),)},
    {"nat": (NatRule("198.18.0.10", "10.1.1.10", "tcp", 90, 80, 90, 80),)},
    {"nat": (NatRule("198.18.0.10", "10.1.1.10", "all", 80, 80, 80, 80),)},
    {"nat": (NatRule("198.18.0.10", "10.1.1.10", "icmp", 80, 80, 80, 80),)},
    {"nat": (NatRule("198.18.0.10; flush ruleset", "10.1.1.10", "all"),)},
    {"nat": (NatRule("198.18.0.10", "10.1.1.10", "tcp"),)},
    {"ingress": (FirewallSpec("tcp", ("0.0.0.0/0",), 22, 22),)},  # no public IP
    {"ingress": (FirewallSpec("tcp", ("10.0.0.0/33",), 22, 22, public_ip="198.18.0.10"),)},
    {"ingress": (FirewallSpec("gre", public_ip="198.18.0.10"),)},
    {"ingress": (FirewallSpec("icmp", icmp_type=300, public_ip="198.18.0.10"),)},
    {"ingress": (FirewallSpec("icmp", icmp_code=1, public_ip="198.18.0.10"),)},
    {"ingress": (FirewallSpec("tcp", start_port=True, public_ip="198.18.0.10"),)},
    {"egress": (FirewallSpec("tcp", ("any",), 22, 22),)},
    {"source_nat_ip": "198.18.0.999"},
    {"name": 'r-1\n}\ntable ip x {'},
    {"key": "ABC/.."},
])
def test_nft_refuses_bad_values(kw):
    with pytest.raises(ValueError):
        nft.render(_spec(**kw), G, P)


def test_nft_refuses_bad_device_names():
    with pytest.raises(ValueError):
        nft.render(_spec(), 'x" accept', P)


# --- dnsmasq ----------------------------------------------------------------------------

def test_dnsmasq_conf_binds_the_guest_veth_and_uses_only_its_files():
    conf = dnsmasq.render_conf(_spec(), "/var/lib/nubo/routers/abc123", G).splitlines()
    d = "/var/lib/nubo/routers/abc123"
    for line in (f"interface={G}", "bind-interfaces", "except-interface=lo",
                 "dhcp-range=10.1.1.2,static,255.255.255.0,infinite",
                 f"dhcp-hostsfile={d}/dhcp-hosts", f"dhcp-optsfile={d}/dhcp-opts", f"addn-hosts={d}/addn-hosts",
                 f"dhcp-leasefile={d}/dnsmasq.leases", f"pid-file={d}/dnsmasq.pid",
                 "dhcp-authoritative", "domain=cs1cloud.internal", "no-resolv", "no-hosts",
                 "server=198.18.0.53"):
        assert line in conf, line
    assert not any(x.startswith("conf-file") or x.startswith("conf-dir") for x in conf)


def test_dnsmasq_leases_options_and_names():
    spec = _spec()
    assert dnsmasq.render_hosts(spec) == "02:00:00:00:00:0a,10.1.1.10,vm-a\n02:00:00:00:00:0b,set:nodefault,10.1.1.11,vm-b\n"
    opts = dnsmasq.render_opts(spec).splitlines()
    assert opts == ["option:router,10.1.1.1", "tag:nodefault,option:router", "option:dns-server,10.1.1.1"]
    assert dnsmasq.render_opts(replace(spec, gateway=None)).splitlines() == ["option:dns-server,10.1.1.1"]
    hosts = dnsmasq.render_addn_hosts(spec).splitlines()
    assert hosts == ["10.1.1.1 data-server.cs1cloud.internal data-server",
                     "10.1.1.10 vm-a.cs1cloud.internal vm-a", "10.1.1.11 vm-b.cs1cloud.internal vm-b"]


@pytest.mark.parametrize("kw", [
    {"leases": (DhcpEntry("02:00:00:00:00:0g", "10.1.1.10", "vm-a"),)},
    {"leases": (DhcpEntry("02:00:00:00:00:0a", "10.1.2.10", "vm-a"),)},  # outside the CIDR
    {"leases": (DhcpEntry("02:00:00:00:00:0a", "10.1.1.10", "vm a"),)},
    {"leases": (DhcpEntry("02:00:00:00:00:0a", "10.1.1.10", "vm-a\ndhcp-script=/bin/sh"),)},
    {"leases": (DhcpEntry("02:00:00:00:00:0a", "10.1.1.10", "a"), DhcpEntry("02:00:00:00:00:0a", "10.1.1.11", "b"))},
    {"domain": "cs1cloud.internal\nconf-file=/etc/passwd"},
    {"domain": "-bad-.internal"},
    {"dns_upstream": ("8.8.8.8,1.1.1.1",)},
    {"dhcp_range": ("10.1.2.2", "10.1.1.254")},
    {"gateway": "10.1.1.1 "},
])
def test_dnsmasq_refuses_bad_values(kw):
    spec = _spec(**kw)
    with pytest.raises(ValueError):
        dnsmasq.render_conf(spec, "/var/lib/nubo/routers/abc123", G)
        dnsmasq.render_hosts(spec)
        dnsmasq.render_opts(spec)
        dnsmasq.render_addn_hosts(spec)


# --- the router's files, its hash -------------------------------------------------------

def test_render_writes_every_file_and_the_hash_follows_the_spec():
    files = router.render(_spec())
    assert set(files) == {"dnsmasq.conf", "dhcp-hosts", "dhcp-opts", "addn-hosts", "rules.nft",
                          "metadata.json", "metadata.py", "spec.json"}
    md = json.loads(files["metadata.json"])
    assert md == {"10.1.1.10": {"instance-id": "uuid-a", "local-hostname": "vm-a", "user-data": "#cloud-config",
                                "public-keys": ["ssh-rsa AAA a"], "items": {"service-offering": "Small"}}}
    assert files["metadata.py"].startswith("#!/usr/bin/env python3")
    assert router.config_hash(_spec()) == router.config_hash(_spec())
    assert router.config_hash(_spec()) != router.config_hash(_spec(egress_default_allow=False))


@pytest.mark.parametrize("kw", [
    {"guest_ip": "10.1.2.1"},
    {"guest_mac": "02:00:00:00:00"},
    {"public_ips": ()},
    {"public_ips": ("198.18.0.10",)},  # no prefix
    {"public_ips": ("198.18.0.10/24", "198.18.0.10/24")},
    {"source_nat_ip": "198.18.0.99"},
    {"nat": (NatRule("198.18.0.99", "10.1.1.10", "all"),)},  # not one of the public IPs
    {"public": None},  # public IPs without a public side
    {"public_mac": None},
    {"mtu": 70000},
    {"metadata": (VmMetadata("10.1.1.10", "uuid a", "vm-a"),)},
    {"metadata": (VmMetadata("10.1.1.10", "uuid-a", "vm-a", public_keys=("ssh-rsa A\nssh-rsa B",)),)},
    {"metadata": (VmMetadata("10.1.1.10", "uuid-a", "vm-a", items=(("../x", "y"),)),)},
    {"metadata": (VmMetadata("10.1.1.10", "a", "vm-a"), VmMetadata("10.1.1.10", "b", "vm-b"))},
    {"key": "a" * 13},  # vr<key>g would exceed 15 characters
])
def test_router_render_refuses_bad_specs(kw):
    with pytest.raises(ValueError):
        router.render(_spec(**kw))


def test_names_fit_linux_device_names():
    n = router.names("0123456789ab")
    assert n.ns == "nr-0123456789ab" and n.dir == "/var/lib/nubo/routers/0123456789ab"
    assert {n.guest_dev, n.guest_peer, n.public_dev, n.public_peer} == {
        "vr0123456789abg", "vh0123456789abg", "vr0123456789abp", "vh0123456789abp"}
    assert all(len(x) <= 15 for x in (n.guest_dev, n.guest_peer, n.public_dev, n.public_peer))


# --- the metadata agent -----------------------------------------------------------------

VM = {"instance-id": "uuid-a", "local-hostname": "vm-a", "user-data": "hello",
      "public-keys": ["ssh-rsa AAA a", "ssh-ed25519 BBB b"], "items": {"service-offering": "Small", "Bad/Key": "x"}}


@pytest.mark.parametrize("path, expected", [
    ("/latest/user-data", (200, "hello")),
    ("/latest/meta-data/instance-id", (200, "uuid-a")),
    ("/latest/meta-data/local-ipv4", (200, "10.1.1.10")),
    ("/latest/meta-data/public-keys", (200, "ssh-rsa AAA a\nssh-ed25519 BBB b")),
    ("/latest/meta-data/service-offering", (200, "Small")),
    ("/latest/local-hostname", (200, "vm-a")),
    ("/latest/meta-data/", (200, "instance-id\nlocal-hostname\nlocal-ipv4\npublic-keys\nservice-offering\n")),
    ("/latest/meta-data", (200, "instance-id\nlocal-hostname\nlocal-ipv4\npublic-keys\nservice-offering\n")),
    ("/latest/meta-data/Bad/Key", (404, "")),
    ("/latest/meta-data/../user-data", (404, "")),
    ("/latest/meta-data/instance-id/", (404, "")),
    ("/latest/nothing", (404, "")),
    ("/metadata.json", (404, "")),
])
def test_agent_answers_cloudstacks_paths(path, expected):
    assert agent.answer(path, "10.1.1.10", VM) == expected


def test_agent_answers_nothing_to_an_unknown_address_and_no_user_data_is_404():
    assert agent.answer("/latest/user-data", "10.1.1.99", None) == (404, "")
    assert agent.answer("/latest/user-data", "10.1.1.10", dict(VM, **{"user-data": None})) == (404, "")


def test_agent_store_rereads_the_file_when_it_changes(tmp_path):
    f = tmp_path / "metadata.json"
    f.write_text(json.dumps({"10.1.1.10": VM}))
    store = agent.Store(str(f))
    assert store.get("10.1.1.10")["user-data"] == "hello"
    assert store.get("10.1.1.11") is None
    f.write_text(json.dumps({"10.1.1.11": dict(VM, **{"user-data": "changed, and longer"})}))
    assert store.get("10.1.1.10") is None
    assert store.get("10.1.1.11")["user-data"] == "changed, and longer"
    f.write_text("not json")
    assert store.get("10.1.1.11") is None


def test_agent_password_server_speaks_cloudstacks_protocol(tmp_path):
    f = tmp_path / "metadata.json"
    f.write_text(json.dumps({"10.1.1.10": VM, "10.1.1.11": dict(VM, password="s3cret")}))
    store, saved = agent.Store(str(f)), set()
    assert agent.password_answer("send_my_password", "10.1.1.10", store, saved) == "saved_password"
    assert agent.password_answer("send_my_password", "10.1.1.11", store, saved) == "s3cret"
    assert agent.password_answer("saved_password", "10.1.1.11", store, saved) == "saved_password"
    assert agent.password_answer("send_my_password", "10.1.1.11", store, saved) == "saved_password"
    assert agent.password_answer("send_my_password", "10.1.1.99", store, saved) == "bad_request"
    assert agent.password_answer("something", "10.1.1.10", store, saved) == "bad_request"
