"""The virtual router on this host, with real packets (app/network/host/router.py).

Each test builds a router from a RouterSpec on bridges it made, and namespaces standing for
guests (on the guest bridge) and for the outside world (on the "public" bridge, 198.18.x).
Everything carries a random suffix and is removed at teardown. Needs root, iproute2,
nftables, dnsmasq-base and busybox-static (scripts/sysdeps.sh test)."""
from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
from dataclasses import replace

import pytest

from app.network.host import router
from app.network.host.channel import ChannelError, LocalChannel
from app.network.host.specs import (
    DhcpEntry, FirewallSpec, NatRule, RouterSpec, SegmentSpec, VmMetadata,
)
from tests.network.test_ssh_channel import _channel, sshd  # noqa: F401 (a fixture)
from tests.network.netns import (
    Lab, link_exists, netns_exists, pids_matching, random_mac, sh, wait_until,
)

DOMAIN = "cs1cloud.internal"
_PASSWORD_GET = (
    "import http.client, sys\n"
    "c = http.client.HTTPConnection(sys.argv[1], 8080, timeout=5)\n"
    "c.request('GET', '/', headers={'DomU_Request': 'send_my_password'})\n"
    "r = c.getresponse(); sys.stdout.write('%d %s' % (r.status, r.read().decode()))\n")


@pytest.fixture(scope="module", autouse=True)
def _host_tools():
    if os.geteuid() != 0:
        pytest.fail("router tests need root (namespaces, bridges, nftables)")
    missing = [t for t in ("ip", "nft", "dnsmasq", "busybox") if not shutil.which(t)]
    if missing or not os.path.exists(router.PYTHON):
        pytest.fail(f"missing on this host: {missing or [router.PYTHON]} (scripts/sysdeps.sh test installs them)")


@pytest.fixture
def ch():
    c = LocalChannel()
    yield c
    c.close()


@pytest.fixture
def lab(ch):
    lab = Lab()
    keys: list[str] = []
    lab.router_keys = keys
    yield lab
    try:
        for k in keys:
            router.destroy(ch, k)
    finally:
        lab.close()


class Net:
    """One router's world: guest and public bridges, address plan, the spec's base."""

    def __init__(self, lab: Lab, public: bool = True):
        self.lab = lab
        self.key = secrets.token_hex(5)
        lab.router_keys.append(self.key)
        a, b, c = secrets.randbelow(250) + 1, secrets.randbelow(250) + 1, secrets.randbelow(250) + 1
        self.g = f"10.{a}.{b}"  # guest /24
        self.p = f"198.18.{c}"  # public /24
        self.gbr = lab.bridge()
        self.pbr = lab.bridge() if public else None
        self.guest_seg = SegmentSpec("VXLAN", "eth0", 100000 + secrets.randbelow(10000))
        self.public_seg = SegmentSpec("untagged", "pub0") if public else None
        self.mac_a, self.mac_b, self.mac_c = random_mac(), random_mac(), random_mac()
        self.ip_a, self.ip_b, self.ip_c = f"{self.g}.10", f"{self.g}.11", f"{self.g}.12"
        self.router_ip = f"{self.g}.1"
        self.snat_ip, self.static_ip = f"{self.p}.10", f"{self.p}.11"
        self.outside_ip = f"{self.p}.1"
        self.spec = RouterSpec(
            key=self.key, name="r-7-VM", guest=self.guest_seg,
            guest_ip=self.router_ip, guest_cidr=f"{self.g}.0/24", guest_mac=random_mac(),
            dhcp_range=(f"{self.g}.2", f"{self.g}.254"), gateway=self.router_ip, domain=DOMAIN,
            dns_upstream=(self.outside_ip,),
            leases=(DhcpEntry(self.mac_a, self.ip_a, "vm-a"), DhcpEntry(self.mac_b, self.ip_b, "vm-b")),
            metadata=(
                VmMetadata(self.ip_a, "11111111-aaaa", "vm-a", "#cloud-config\nA's user data\n",
                           ("ssh-ed25519 AAAAKEYA a@nubo",), (("service-offering", "Small"),
                                                             ("availability-zone", "zone1"))),
                VmMetadata(self.ip_b, "22222222-bbbb", "vm-b", "#!/bin/sh\necho B\n",
                           ("ssh-ed25519 AAAAKEYB b@nubo",)),
            ),
            public=self.public_seg, public_mac=random_mac() if public else None,
            public_ips=(f"{self.snat_ip}/24", f"{self.static_ip}/24") if public else (),
            public_gateway=self.outside_ip if public else None,
            source_nat_ip=self.snat_ip if public else None,
        )

    def bridge_of(self, seg: SegmentSpec) -> str:
        return self.gbr if seg == self.guest_seg else self.pbr

    def apply(self, ch, spec: RouterSpec | None = None):
        return router.apply(ch, spec or self.spec, self.bridge_of)

    def guest(self, mac: str, ip: str | None = None):
        """A guest namespace on the guest bridge; with `ip`, configured statically."""
        return self.lab.netns(self.gbr, mac=mac, addr=f"{ip}/24" if ip else None,
                              gateway=self.router_ip if ip else None)

    def outside(self):
        return self.lab.netns(self.pbr, addr=f"{self.outside_ip}/24")


def _pid(path: str) -> int:
    with open(path) as f:
        return int(f.read().strip())


def _dir(net: Net) -> str:
    return router.names(net.key).dir


def test_dhcp_gives_exactly_the_leased_address_and_dns_answers_vm_names(ch, lab):
    net = Net(lab, public=False)
    t0 = time.monotonic()
    facts = net.apply(ch)
    took = time.monotonic() - t0
    assert facts.healthy and facts.config_hash == router.config_hash(net.spec), facts
    print(f"apply (new router, no public side): {took:.3f} s")

    a, b, c = net.guest(net.mac_a), net.guest(net.mac_b), net.guest(net.mac_c)
    la = a.dhcp()
    assert la and la["ip"] == net.ip_a and la["mask"] == "24", la
    assert la["router"] == net.router_ip and la["dns"] == net.router_ip and la["domain"] == DOMAIN
    assert la["serverid"] == net.router_ip
    lb = b.dhcp()
    assert lb and lb["ip"] == net.ip_b
    assert c.dhcp(tries=2) is None  # an unknown MAC gets no address

    # DNS: the network's VMs by name (short and in the domain), and data-server.
    assert a.dns_a(net.router_ip, "vm-b") == [net.ip_b]
    assert a.dns_a(net.router_ip, f"vm-b.{DOMAIN}") == [net.ip_b]
    assert b.dns_a(net.router_ip, "data-server") == [net.router_ip]

    # A new lease: dnsmasq rereads its files on SIGHUP, no restart.
    dns_pid = _pid(f"{_dir(net)}/dnsmasq.pid")
    spec2 = replace(net.spec, leases=net.spec.leases + (DhcpEntry(net.mac_c, net.ip_c, "vm-c"),))
    assert net.apply(ch, spec2).config_hash == router.config_hash(spec2)
    assert _pid(f"{_dir(net)}/dnsmasq.pid") == dns_pid
    lc = wait_until("vm-c's lease", lambda: c.dhcp(tries=2))
    assert lc["ip"] == net.ip_c
    assert a.dns_a(net.router_ip, "vm-c") == [net.ip_c]


def test_metadata_answers_each_vm_its_own_data_only(ch, lab):
    net = Net(lab, public=False)
    net.apply(ch)
    a = net.guest(net.mac_a, net.ip_a)
    b = net.guest(net.mac_b, net.ip_b)
    stranger = net.guest(net.mac_c, net.ip_c)  # on the network, not in the metadata
    r = net.router_ip

    assert a.http_get(r, 80, "/latest/user-data") == (200, "#cloud-config\nA's user data\n")
    assert a.http_get(r, 80, "/latest/meta-data/public-keys") == (200, "ssh-ed25519 AAAAKEYA a@nubo")
    assert a.http_get(r, 80, "/latest/meta-data/instance-id") == (200, "11111111-aaaa")
    assert a.http_get(r, 80, "/latest/meta-data/local-hostname") == (200, "vm-a")
    assert a.http_get(r, 80, "/latest/meta-data/local-ipv4") == (200, net.ip_a)
    assert a.http_get(r, 80, "/latest/meta-data/service-offering") == (200, "Small")
    assert a.http_get(r, 80, "/latest/instance-id") == (200, "11111111-aaaa")  # the VR's shortcut
    status, listing = a.http_get(r, 80, "/latest/meta-data/")
    assert status == 200 and {"instance-id", "local-hostname", "public-keys", "availability-zone"} <= set(listing.split())

    assert b.http_get(r, 80, "/latest/user-data") == (200, "#!/bin/sh\necho B\n")
    assert b.http_get(r, 80, "/latest/meta-data/public-keys") == (200, "ssh-ed25519 AAAAKEYB b@nubo")
    assert b.http_get(r, 80, "/latest/meta-data/instance-id") == (200, "22222222-bbbb")
    assert b.http_get(r, 80, "/latest/meta-data/service-offering")[0] == 404  # B has none: not A's

    # CloudStack's password server (cloud-init asks it at boot): answered at once.
    assert a.run([sys.executable, "-c", _PASSWORD_GET, r]).stdout == "200 saved_password"
    assert stranger.run([sys.executable, "-c", _PASSWORD_GET, r]).stdout == "200 bad_request"

    assert stranger.http_get(r, 80, "/latest/user-data") == (404, "")
    assert stranger.http_get(r, 80, "/latest/meta-data/") == (404, "")
    for path in ("/latest/../etc/passwd", "/latest/meta-data/../../spec.json", "/metadata.json", "/"):
        assert a.http_get(r, 80, path) == (404, ""), path

    # Changed user data is served at once, by the same server (it rereads metadata.json).
    meta_pid = _pid(f"{_dir(net)}/metadata.pid")
    md = list(net.spec.metadata)
    md[0] = replace(md[0], user_data="new data for A")
    net.apply(ch, replace(net.spec, metadata=tuple(md)))
    assert a.http_get(r, 80, "/latest/user-data") == (200, "new data for A")
    assert _pid(f"{_dir(net)}/metadata.pid") == meta_pid


def test_port_forwarding_needs_both_a_pf_rule_and_a_firewall_rule(ch, lab):
    net = Net(lab)
    pf = NatRule(net.snat_ip, net.ip_a, "tcp", 8080, 8080, 80, 80)
    pf_range = NatRule(net.snat_ip, net.ip_a, "tcp", 9000, 9001, 7000, 7001)
    fw = FirewallSpec("tcp", ("0.0.0.0/0",), 8080, 8080, public_ip=net.snat_ip)
    fw_range = FirewallSpec("tcp", (f"{net.p}.0/24",), 9000, 9001, public_ip=net.snat_ip)
    both = replace(net.spec, nat=(pf, pf_range), ingress=(fw, fw_range))
    net.apply(ch, both)
    a = net.guest(net.mac_a, net.ip_a)
    for port in (80, 7000, 7001):
        a.serve_echo(net.ip_a, port)
    out = net.outside()

    # The guest sees the outside's own address (DNAT only).
    assert out.tcp(net.snat_ip, 8080) == net.outside_ip
    assert out.tcp(net.snat_ip, 9000) == net.outside_ip  # 9000 -> 7000
    assert out.tcp(net.snat_ip, 9001) == net.outside_ip  # 9001 -> 7001
    assert out.tcp(net.snat_ip, 80, timeout=1).startswith("FAIL")  # the private port is not public
    assert out.tcp(net.static_ip, 8080, timeout=1).startswith("FAIL")  # nor on another public IP

    net.apply(ch, replace(both, ingress=(fw_range,)))  # firewall rule removed, PF kept
    assert out.tcp(net.snat_ip, 8080, timeout=1).startswith("FAIL")
    assert out.tcp(net.snat_ip, 9000) == net.outside_ip

    net.apply(ch, replace(both, nat=(pf_range,)))  # PF removed, firewall rule kept
    assert out.tcp(net.snat_ip, 8080, timeout=1).startswith("FAIL")

    net.apply(ch, replace(both, ingress=(replace(fw, cidrs=(f"{net.p}.200/32",)), fw_range)))
    assert out.tcp(net.snat_ip, 8080, timeout=1).startswith("FAIL")  # not from our address

    net.apply(ch, both)
    assert out.tcp(net.snat_ip, 8080) == net.outside_ip


def test_source_nat_static_nat_and_egress_rules(ch, lab):
    net = Net(lab)
    static = NatRule(net.static_ip, net.ip_b, "all")
    fw_static = FirewallSpec("tcp", ("0.0.0.0/0",), 2222, 2222, public_ip=net.static_ip)
    spec = replace(net.spec, nat=(static,), ingress=(fw_static,))
    net.apply(ch, spec)
    a = net.guest(net.mac_a, net.ip_a)
    b = net.guest(net.mac_b, net.ip_b)
    b.serve_echo(net.ip_b, 2222)
    b.serve_echo(net.ip_b, 2223)
    out = net.outside()
    out.serve_echo(net.outside_ip, 9000)
    out.serve_echo(net.outside_ip, 9001)

    # Outbound: from the source-NAT IP exactly; a VM with static NAT from its own public IP.
    assert a.tcp(net.outside_ip, 9000) == net.snat_ip
    assert b.tcp(net.outside_ip, 9000) == net.static_ip
    # Inbound to the static NAT IP: any port the firewall allows, straight to the VM.
    assert out.tcp(net.static_ip, 2222) == net.outside_ip
    assert out.tcp(net.static_ip, 2223, timeout=1).startswith("FAIL")  # no firewall rule
    # The router itself is closed from outside.
    assert out.tcp(net.snat_ip, 53, timeout=1).startswith("FAIL")
    assert out.tcp(net.snat_ip, 80, timeout=1).startswith("FAIL")

    # Egress, CloudStack's semantics: default allow -> the rules deny ...
    deny_9000 = FirewallSpec("tcp", (f"{net.p}.0/24",), 9000, 9000)
    net.apply(ch, replace(spec, egress=(deny_9000,)))
    assert a.tcp(net.outside_ip, 9000, timeout=1).startswith("FAIL")
    assert a.tcp(net.outside_ip, 9001) == net.snat_ip
    # ... default deny -> the rules allow.
    net.apply(ch, replace(spec, egress=(deny_9000,), egress_default_allow=False))
    assert a.tcp(net.outside_ip, 9000) == net.snat_ip
    assert a.tcp(net.outside_ip, 9001, timeout=1).startswith("FAIL")
    # Replies to inbound connections are never egress-filtered.
    assert out.tcp(net.static_ip, 2222) == net.outside_ip

    # Static NAT released and its public IP removed: gone from the veth, B leaves by source NAT.
    n = router.names(net.key)
    has = lambda ip: f" {ip}/" in sh(["ip", "-n", n.ns, "-4", "-o", "addr", "show", "dev", n.public_dev]).stdout
    assert has(net.static_ip)
    net.apply(ch, replace(net.spec, public_ips=(f"{net.snat_ip}/24",)))
    assert not has(net.static_ip) and has(net.snat_ip)
    assert b.tcp(net.outside_ip, 9000) == net.snat_ip
    assert out.tcp(net.static_ip, 2222, timeout=1).startswith("FAIL")


def test_apply_twice_status_restart_and_destroy(ch, lab):
    net = Net(lab)
    t0 = time.monotonic()
    f1 = net.apply(ch)
    first = time.monotonic() - t0
    d = _dir(net)
    pids = (_pid(f"{d}/dnsmasq.pid"), _pid(f"{d}/metadata.pid"))
    t0 = time.monotonic()
    f2 = net.apply(ch)
    again = time.monotonic() - t0
    print(f"apply: new router {first:.3f} s, unchanged {again:.3f} s")
    assert f1 == f2 and f2.healthy and f2.config_hash == router.config_hash(net.spec)
    assert (_pid(f"{d}/dnsmasq.pid"), _pid(f"{d}/metadata.pid")) == pids
    assert sorted(pids_matching(d)) == sorted(pids)  # one dnsmasq, one metadata server

    # A killed dnsmasq shows in status; apply brings it back.
    os.kill(pids[0], 9)
    facts = wait_until("status to see dnsmasq gone", lambda: (f := router.status(ch, net.key)) and not f.dnsmasq and f)
    assert facts.exists and facts.metadata and not facts.healthy and "dnsmasq" in facts.detail
    assert net.apply(ch).healthy

    # Rules flushed behind the router's back: status gives no hash (so the monitor re-applies).
    sh(["ip", "netns", "exec", router.names(net.key).ns, "nft", "flush", "ruleset"])
    facts = router.status(ch, net.key)
    assert facts.config_hash is None and "nftables" in facts.detail
    assert net.apply(ch).config_hash == router.status(ch, net.key).config_hash == router.config_hash(net.spec)

    # rebootRouter: new processes, same configuration.
    before = (_pid(f"{d}/dnsmasq.pid"), _pid(f"{d}/metadata.pid"))
    facts = router.restart(ch, net.key)
    assert facts.healthy and facts.config_hash == router.config_hash(net.spec)
    after = (_pid(f"{d}/dnsmasq.pid"), _pid(f"{d}/metadata.pid"))
    assert after[0] != before[0] and after[1] != before[1]
    assert sorted(pids_matching(d)) == sorted(after)
    a = net.guest(net.mac_a)
    assert a.dhcp()["ip"] == net.ip_a

    n = router.names(net.key)
    router.destroy(ch, net.key)
    assert not netns_exists(n.ns)
    assert not any(link_exists(x) for x in (n.guest_peer, n.public_peer))
    assert not os.path.exists(d)
    assert pids_matching(d) == []
    facts = router.status(ch, net.key)
    assert not facts.exists and not facts.dnsmasq and not facts.metadata and facts.config_hash is None
    router.destroy(ch, net.key)  # again: nothing to do
    with pytest.raises(ChannelError):
        router.restart(ch, net.key)


def test_a_failed_or_refused_apply_leaves_nothing(ch, lab):
    net = Net(lab)
    n = router.names(net.key)
    with pytest.raises(ValueError):
        net.apply(ch, replace(net.spec, leases=(DhcpEntry("not-a-mac", net.ip_a, "vm-a"),)))
    with pytest.raises(ValueError):
        net.apply(ch, replace(net.spec, domain="x\nserver=/evil/1.2.3.4"))
    assert not netns_exists(n.ns) and not os.path.exists(n.dir)

    # A bridge that does not exist: the host refuses half way; what was made is removed.
    with pytest.raises(ChannelError):
        router.apply(ch, net.spec, lambda seg: f"tbrno{secrets.token_hex(3)}")
    assert not netns_exists(n.ns) and not os.path.exists(n.dir)
    assert not link_exists(n.guest_peer) and not link_exists(n.public_peer)


def test_router_over_ssh(lab, sshd):
    """The same executor through SSHChannel (as for a remote KVM host), to this host's sshd."""
    ssh = _channel(sshd)
    try:
        net = Net(lab)
        t0 = time.monotonic()
        facts = net.apply(ssh)
        took = time.monotonic() - t0
        assert facts.healthy and facts.config_hash == router.config_hash(net.spec), facts
        t0 = time.monotonic()
        assert net.apply(ssh) == facts
        again = time.monotonic() - t0
        print(f"apply over SSH: new router {took:.3f} s, unchanged {again:.3f} s")
        a = net.guest(net.mac_a)
        assert a.dhcp()["ip"] == net.ip_a
        assert a.http_get(net.router_ip, 80, "/latest/meta-data/instance-id") == (200, "11111111-aaaa")
        assert router.restart(ssh, net.key).healthy
        router.destroy(ssh, net.key)
        assert not netns_exists(router.names(net.key).ns) and not os.path.exists(_dir(net))
        assert not router.status(ssh, net.key).exists
    finally:
        ssh.close()


def test_an_unfinished_apply_is_finished_by_the_next(ch, lab):
    """An apply that stopped after writing new files (hash file 'pending') leaves processes
    running with the old configuration: the next apply restarts them, and status shows no
    hash meanwhile."""
    net = Net(lab, public=False)
    net.apply(ch)
    d = _dir(net)
    pids = (_pid(f"{d}/dnsmasq.pid"), _pid(f"{d}/metadata.pid"))
    spec2 = replace(net.spec, dns_upstream=(f"{net.g}.53",))  # changes dnsmasq.conf
    for name, text in router.render(spec2).items():
        ch.write_file(f"{d}/{name}", text)
    ch.write_file(f"{d}/{router.HASH_FILE}", router.PENDING)
    assert router.status(ch, net.key).config_hash is None
    facts = net.apply(ch, spec2)
    assert facts.healthy and facts.config_hash == router.config_hash(spec2)
    after = (_pid(f"{d}/dnsmasq.pid"), _pid(f"{d}/metadata.pid"))
    assert after[0] != pids[0] and after[1] != pids[1]
    assert router.status(ch, net.key) == facts
