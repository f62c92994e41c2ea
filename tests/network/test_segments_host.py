"""VXLAN segments for real: two namespaces stand for two hypervisor hosts joined by a veth
"underlay"; each gets the same VNI through segments.ensure() with head-end replication to the
other, and two "guests" (namespaces on the two bridges) ping each other. A third VNI on the
same underlay stays isolated. Every name and VNI is random per run; the namespaces (and all
devices in them) are removed afterwards."""
from __future__ import annotations

import random
import time

import pytest

from tests.helpers import requires

from app.network.host import segments
from app.network.host.specs import SegmentSpec
from tests.network.hostns import Lab, NetnsChannel, never_pings, ping, sh, suffix


@pytest.fixture(autouse=True, scope="module")
def _tools():
    requires.need("ip", "ping", why="scripts/sysdeps.sh test installs iproute2 and iputils-ping")


MUTATING = ({"add", "del", "set", "append"})


def _mutations(ch: NetnsChannel) -> list[list[str]]:
    return [a for a in ch.ran if a[0] in ("ip", "bridge") and len(a) > 2 and a[2] in MUTATING]


@pytest.fixture
def lab():
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def hosts(lab):
    """Two "hosts" joined by an underlay veth; the label on each is its end of the veth."""
    h1, h2 = lab.ns("h"), lab.ns("h")
    n = random.randint(0, 255)
    label = "ul" + suffix()
    lab.veth(h1, label, h2, label)
    a1, a2 = f"198.18.{n}.1", f"198.18.{n}.2"
    sh("ip", "-n", h1, "addr", "add", f"{a1}/24", "dev", label)
    sh("ip", "-n", h2, "addr", "add", f"{a2}/24", "dev", label)
    return (NetnsChannel(h1), a1), (NetnsChannel(h2), a2), label


def test_vxlan_segment_carries_its_vni_only(lab, hosts):
    (c1, a1), (c2, a2), label = hosts
    vni = random.randint(100_000, 16_000_000 - 2)
    s1 = SegmentSpec("VXLAN", label, vni, peers=(a2,), mtu=1450)
    s2 = SegmentSpec("VXLAN", label, vni, peers=(a1,), mtu=1450)

    t0 = time.perf_counter()
    br1 = segments.ensure(c1, s1)
    elapsed = time.perf_counter() - t0
    br2 = segments.ensure(c2, s2)
    assert br1 == br2 == f"brvx-{vni}"
    print(f"\nensure VXLAN segment: {elapsed * 1000:.0f} ms")

    # CloudStack's names and settings on the host
    dev = segments.link(c1, f"vxlan{vni}")
    data = dev["linkinfo"]["info_data"]
    assert data["id"] == vni and data["port"] == 4789 and data.get("learning", True)
    assert dev["master"] == br1 and dev["mtu"] == 1450
    fdb = sh("ip", "netns", "exec", c1.ns, "bridge", "fdb", "show", "dev", f"vxlan{vni}").stdout
    assert f"00:00:00:00:00:00 dst {a2}" in fdb

    # twice: nothing changes, nothing is made
    c1.ran.clear()
    assert segments.ensure(c1, s1) == br1
    assert _mutations(c1) == []

    g1, _ = lab.guest(c1.ns, br1, "10.91.0.1/24")
    g2, tap2 = lab.guest(c2.ns, br2, "10.91.0.2/24")
    assert ping(g1, "10.91.0.2"), "guests on the same VNI on two hosts must reach each other"

    # a third VNI on the same underlay is isolated from the first
    other = SegmentSpec("VXLAN", label, vni + 1, peers=(a1,))
    br3 = segments.ensure(c2, other)
    segments.ensure(c1, SegmentSpec("VXLAN", label, vni + 1, peers=(a2,)))
    g3, _ = lab.guest(c2.ns, br3, "10.91.0.3/24")
    assert never_pings(g1, "10.91.0.3")
    assert never_pings(g3, "10.91.0.2")

    # peers no longer listed lose their FDB entry
    segments.ensure(c1, SegmentSpec("VXLAN", label, vni, peers=(), mtu=1450))
    fdb = sh("ip", "netns", "exec", c1.ns, "bridge", "fdb", "show", "dev", f"vxlan{vni}").stdout
    assert f"00:00:00:00:00:00 dst {a2}" not in fdb  # (learned MACs may still point there)

    # release: kept while a guest port is plugged in, removed once it is gone, idempotent
    assert segments.release(c2, s2) is False
    assert segments.link(c2, br2) is not None
    sh("ip", "-n", c2.ns, "link", "del", tap2)
    assert segments.release(c2, s2) is True
    assert segments.link(c2, br2) is None and segments.link(c2, f"vxlan{vni}") is None
    assert segments.release(c2, s2) is True
    assert segments.link(c2, label) is not None  # the label is never touched


def test_missing_labels_and_untagged(lab):
    h = lab.ns("h")
    ch = NetnsChannel(h)
    br = "cb" + suffix()
    sh("ip", "-n", h, "link", "add", br, "type", "bridge")
    missing = segments.missing_labels(ch, [br, "zz" + suffix(), "bad name"])
    assert missing[0].startswith("zz") and missing[1] == "bad name" and len(missing) == 2
    untagged = SegmentSpec("untagged", br)
    assert segments.ensure(ch, untagged) == br
    assert segments.release(ch, untagged) is True
    assert segments.link(ch, br) is not None  # the label's own bridge stays
    with pytest.raises(segments.SegmentError, match="does not exist"):
        segments.ensure(ch, SegmentSpec("VXLAN", "zz" + suffix(), 200_000))
    with pytest.raises(segments.SegmentError, match="VNI"):
        segments.ensure(ch, SegmentSpec("VXLAN", br, 0))


def test_a_host_joining_and_leaving_the_vni(lab):
    """Three "hosts" on one underlay bridge (the datacenter network). h1 and h2 carry a VNI;
    h3 starts carrying it. Until h1 lists h3 (set_peers, what Nubo does when a VM starts on
    h3), a guest on h1 cannot find h3's guest: its ARP broadcast goes only to the hosts it
    lists. Once listed, it reaches it; set_peers on a host without the segment makes nothing;
    a host that left is taken off the list."""
    dc = lab.ns("dc")
    sh("ip", "-n", dc, "link", "add", "dcbr", "type", "bridge")
    sh("ip", "-n", dc, "link", "set", "dcbr", "up")
    n = random.randint(0, 255)
    label = "ul" + suffix()
    hosts = []
    for i in (1, 2, 3):
        h = lab.ns("h")
        lab.veth(h, label, dc, f"p{i}")
        sh("ip", "-n", dc, "link", "set", f"p{i}", "master", "dcbr")
        sh("ip", "-n", h, "addr", "add", f"198.18.{n}.{i}/24", "dev", label)
        hosts.append((NetnsChannel(h), f"198.18.{n}.{i}"))
    (c1, a1), (c2, a2), (c3, a3) = hosts
    vni = random.randint(100_000, 16_000_000)

    def seg(*peers):
        return SegmentSpec("VXLAN", label, vni, peers=tuple(peers))

    assert segments.set_peers(c3, seg(a1, a2)) is False  # h3 does not carry it yet: nothing made
    assert segments.link(c3, f"vxlan{vni}") is None and segments.link(c3, f"brvx-{vni}") is None
    br = segments.ensure(c1, seg(a2))
    segments.ensure(c2, seg(a1))
    g1, _ = lab.guest(c1.ns, br, "10.92.0.1/24")
    g2, _ = lab.guest(c2.ns, br, "10.92.0.2/24")
    assert ping(g1, "10.92.0.2")

    # h3 joins: its segment lists h1 and h2; h2 is told, h1 not yet.
    segments.ensure(c3, seg(a1, a2))
    assert segments.set_peers(c2, seg(a1, a3)) is True
    g3, _ = lab.guest(c3.ns, br, "10.92.0.3/24")
    assert ping(g2, "10.92.0.3")
    assert never_pings(g1, "10.92.0.3"), "h1 must not reach h3's guest before it lists h3"
    c1.ran.clear()
    assert segments.set_peers(c1, seg(a2, a3)) is True
    assert _mutations(c1) == [["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", f"vxlan{vni}", "dst", a3]]
    assert ping(g1, "10.92.0.3", timeout=10)

    # h2 leaves: the others drop it from their lists.
    assert segments.set_peers(c1, seg(a3)) and segments.set_peers(c3, seg(a1))
    for c in (c1, c3):
        fdb = sh("ip", "netns", "exec", c.ns, "bridge", "fdb", "show", "dev", f"vxlan{vni}").stdout
        assert f"00:00:00:00:00:00 dst {a2}" not in fdb
    assert ping(g1, "10.92.0.3")
