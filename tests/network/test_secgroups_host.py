"""Security groups for real: a namespace stands for the hypervisor host, with a bridge and three
"VMs" (namespaces whose veth peers on the bridge stand for the VM taps). secgroups.apply()
writes one nftables table per tap; what gets through is checked with real TCP connections and
pings. Names are random per run; the namespaces (and their tables) are removed afterwards."""
from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest

from tests.helpers import requires

from app.network.host import secgroups
from app.network.host.specs import SgRule, VmRuleset
from tests.network.hostns import Lab, NetnsChannel, never_pings, ping, sh, suffix


@pytest.fixture(autouse=True, scope="module")
def _tools():
    requires.need("nft", "ping", why="scripts/sysdeps.sh test installs nftables and iputils-ping")


SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16); print("ready", flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"hi"); c.close()
"""


def connects(ns: str, address: str, port: int, source: str | None = None) -> bool:
    code = ("import socket,sys\n"
            "try:\n"
            f"    c=socket.create_connection(({address!r},{port}),timeout=1.5{', source_address=(%r,0)' % source if source else ''})\n"
            "    sys.exit(0 if c.recv(2)==b'hi' else 1)\n"
            "except OSError: sys.exit(1)\n")
    return sh("ip", "netns", "exec", ns, sys.executable, "-c", code, check=False).returncode == 0


@pytest.fixture
def lab():
    lab = Lab()
    servers: list[subprocess.Popen] = []
    lab.serve = lambda ns, port: servers.append(_serve(ns, port))
    try:
        yield lab
    finally:
        for p in servers:
            p.kill()
            p.wait()
        lab.close()


def _serve(ns: str, port: int) -> subprocess.Popen:
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, str(port)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def test_security_group_tables(lab):
    host = lab.ns("h")
    ch = NetnsChannel(host)
    br = "sg" + suffix()
    sh("ip", "-n", host, "link", "add", br, "type", "bridge")
    sh("ip", "-n", host, "link", "set", br, "up")
    n = random.randint(0, 255)
    ip = {k: f"10.{n}.7.{i}" for i, k in enumerate("abc", start=1)}
    mac = {k: f"02:00:5e:{n:02x}:07:0{i}" for i, k in enumerate("abc", start=1)}
    vm, tap = {}, {}
    for k in "abc":
        vm[k], tap[k] = lab.guest(host, br, f"{ip[k]}/24", mac=mac[k])
    port, other = random.randint(20000, 29999), random.randint(30000, 39999)
    lab.serve(vm["a"], port)
    lab.serve(vm["b"], port)
    lab.serve(vm["b"], other)
    assert connects(vm["b"], ip["a"], port)  # no rules yet: the bridge passes everything

    icmp_any = SgRule("ingress", "icmp", ("0.0.0.0/0",), icmp_type=-1, icmp_code=-1)
    from_b = SgRule("ingress", "tcp", (f"{ip['b']}/32",), start_port=port, end_port=port)

    def a_rules(*rules):
        return VmRuleset(tap=tap["a"], mac=mac["a"], ips=(ip["a"],), rules=tuple(rules))

    c_rules = VmRuleset(tap=tap["c"], mac=mac["c"], ips=(ip["c"],), rules=(icmp_any,))

    t0 = time.perf_counter()
    secgroups.apply(ch, [a_rules(icmp_any, from_b), c_rules])
    print(f"\napply 2 SG tables: {(time.perf_counter() - t0) * 1000:.0f} ms")
    assert set(secgroups.tables(ch)) == {f"nubo_sg_{tap['a']}", f"nubo_sg_{tap['c']}"}

    # ingress: B reaches A's port only while a rule allows it; C (not in the CIDR) never does
    assert connects(vm["b"], ip["a"], port)
    assert not connects(vm["c"], ip["a"], port)
    secgroups.apply(ch, [a_rules(icmp_any)])
    assert not connects(vm["b"], ip["a"], port)
    assert ping(vm["b"], ip["a"])  # the ICMP rule (any type) still lets pings in

    # anti-spoofing: C with B's address (or a made-up one) gets nothing through; with its own it does
    assert ping(vm["c"], ip["a"])
    sh("ip", "-n", vm["c"], "addr", "add", f"10.{n}.7.99/24", "dev", "eth0")
    r = sh("ip", "netns", "exec", vm["c"], "ping", "-c", "2", "-W", "1", "-I", f"10.{n}.7.99", ip["a"], check=False)
    assert r.returncode != 0, "a spoofed source address must be dropped"
    # a forged MAC: C's frames from another MAC are dropped too
    sh("ip", "-n", vm["c"], "addr", "del", f"10.{n}.7.99/24", "dev", "eth0")
    sh("ip", "-n", vm["c"], "link", "set", "eth0", "address", "02:00:5e:ff:ff:fe")
    assert never_pings(vm["c"], ip["a"])
    sh("ip", "-n", vm["c"], "link", "set", "eth0", "address", mac["c"])

    # egress: open while the groups have no egress rule; once one exists only what it allows
    assert connects(vm["a"], ip["b"], other)
    secgroups.apply(ch, [a_rules(icmp_any, SgRule("egress", "tcp", (f"{ip['b']}/32",), start_port=port,
                                                  end_port=port))])
    assert connects(vm["a"], ip["b"], port)
    assert not connects(vm["a"], ip["b"], other)
    assert never_pings(vm["a"], ip["b"])  # egress ICMP is not allowed now
    # replies of connections that came in still leave (conntrack), whatever the egress rules
    secgroups.apply(ch, [a_rules(from_b, SgRule("egress", "udp", ("198.18.0.0/15",), start_port=53,
                                                          end_port=53))])
    assert connects(vm["b"], ip["a"], port)

    # removing leaves no table (and the shared conntrack table goes with the last one)
    secgroups.remove(ch, [tap["a"]])
    assert secgroups.tables(ch) == [f"nubo_sg_{tap['c']}"]
    assert connects(vm["b"], ip["a"], other) is False  # (nothing listens on A:other) ...
    assert connects(vm["b"], ip["a"], port)  # ... but A's port is open again
    secgroups.remove(ch, [tap["a"], tap["c"]])
    secgroups.remove(ch, [tap["c"]])  # idempotent
    out = sh("ip", "netns", "exec", host, "nft", "list", "tables").stdout
    assert "nubo_sg" not in out


def test_bad_values_change_nothing(lab):
    host = lab.ns("h")
    ch = NetnsChannel(host)
    good = VmRuleset(tap="vn" + suffix(), mac="02:00:00:00:00:01", ips=("10.0.0.5",))
    for bad in (VmRuleset(tap="x; flush ruleset", mac="02:00:00:00:00:01", ips=()),
                VmRuleset(tap="vn1", mac="zz", ips=()),
                VmRuleset(tap="vn1", mac="02:00:00:00:00:01", ips=("10.0.0.999",)),
                VmRuleset(tap="vn1", mac="02:00:00:00:00:01", ips=(),
                          rules=(SgRule("ingress", "tcp", ("10.0.0.0/33",), 1, 2),)),
                VmRuleset(tap="vn1", mac="02:00:00:00:00:01", ips=(),
                          rules=(SgRule("ingress", "tcp", ("0.0.0.0/0",), 90, 80),)),
                VmRuleset(tap="vn1", mac="02:00:00:00:00:01", ips=(),
                          rules=(SgRule("ingress", "gre", ("0.0.0.0/0",)),))):
        with pytest.raises(secgroups.RulesetError):
            secgroups.apply(ch, [good, bad])
    assert secgroups.tables(ch) == []
