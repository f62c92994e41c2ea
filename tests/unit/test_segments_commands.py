"""VLAN (and VXLAN) segments at the level of the commands they issue. The kernel of these
machines has no 802.1Q, so VLAN is verified ONLY here: a recording fake Channel answers
`ip -d -j link show` / `ip -j link show master` / `bridge -j fdb show` from a small model of
the host's links and applies the `ip link add/set/del` commands to it."""
from __future__ import annotations

import json

import pytest

from app.network.host import segments
from app.network.host.channel import ChannelError, Result
from app.network.host.specs import SegmentSpec


class FakeHost:
    def __init__(self, links: dict[str, dict]):
        # name -> {"kind": str|None, "master": str|None, "up": bool, "mtu": int, "id": int|None}
        self.links = {n: {"kind": None, "master": None, "up": True, "mtu": 1500, "id": None, **v}
                      for n, v in links.items()}
        self.fdb: dict[str, set[str]] = {}
        self.ran: list[list[str]] = []

    def _json(self, name):
        l = self.links[name]
        d = {"ifname": name, "mtu": l["mtu"], "flags": ["UP"] if l["up"] else []}
        if l["master"]:
            d["master"] = l["master"]
        if l["kind"]:
            d["linkinfo"] = {"info_kind": l["kind"], "info_data": {"id": l["id"]} if l["id"] else {}}
        return d

    def run(self, argv, *, input=None, check=True, timeout=30):
        self.ran.append(list(argv))
        ok, fail = Result(0, "", ""), Result(1, "", "Device does not exist")
        a = list(argv)
        if a == ["ip", "-d", "-j", "link", "show"]:
            return Result(0, json.dumps([self._json(n) for n in self.links]), "")
        if a[:6] == ["ip", "-d", "-j", "link", "show", "dev"]:
            return Result(0, json.dumps([self._json(a[6])]), "") if a[6] in self.links else fail
        if a[:5] == ["ip", "-j", "link", "show", "master"]:
            return Result(0, json.dumps([self._json(n) for n, l in self.links.items() if l["master"] == a[5]]), "")
        if a[:3] == ["ip", "link", "add"]:
            if "vlan" in a:
                name, kind, vid = a[a.index("name") + 1], "vlan", int(a[a.index("id") + 1])
                assert a[4] in self.links  # ip link add link <pif>
            elif "vxlan" in a:
                name, kind, vid = a[3], "vxlan", int(a[a.index("id") + 1])
            else:
                name, kind, vid = a[a.index("name") + 1], "bridge", None
            assert name not in self.links, f"made twice: {name}"
            mtu = int(a[a.index("mtu") + 1]) if "mtu" in a else 1500
            self.links[name] = {"kind": kind, "master": None, "up": False, "mtu": mtu, "id": vid}
            return ok
        if a[:4] == ["ip", "link", "set", "dev"]:
            l = self.links[a[4]]
            if a[5] == "master":
                l["master"] = a[6]
            elif a[5] == "up":
                l["up"] = True
            elif a[5] == "mtu":
                l["mtu"] = int(a[6])
            return ok
        if a[:4] == ["ip", "link", "del", "dev"]:
            if a[4] not in self.links:
                return fail
            del self.links[a[4]]
            for l in self.links.values():
                if l["master"] == a[4]:
                    l["master"] = None
            return ok
        if a[:5] == ["bridge", "-j", "fdb", "show", "dev"]:
            if a[5] not in self.links:
                return fail
            return Result(0, json.dumps([{"mac": "00:00:00:00:00:00", "dst": d} for d in self.fdb.get(a[5], ())]), "")
        if a[:3] == ["bridge", "fdb", "append"]:
            self.fdb.setdefault(a[5], set()).add(a[7])
            return ok
        if a[:3] == ["bridge", "fdb", "del"]:
            self.fdb.get(a[5], set()).discard(a[7])
            return ok
        if a[:6] == ["ip", "-j", "-4", "addr", "show", "dev"]:
            if a[6] not in self.links:
                return fail
            addrs = [{"family": "inet", "local": ip, "prefixlen": 24, "scope": scope}
                     for ip, scope in self.links[a[6]].get("addrs", ())]
            return Result(0, json.dumps([{"ifname": a[6], "addr_info": addrs}]), "")
        raise AssertionError(f"unexpected command {a}")

    def mutations(self):
        return [a for a in self.ran if a[:3] in (["ip", "link", "add"], ["ip", "link", "set"], ["ip", "link", "del"])
                or a[:3] in (["bridge", "fdb", "append"], ["bridge", "fdb", "del"])]


def test_vlan_on_a_nic_label():
    h = FakeHost({"eth1": {}})
    seg = SegmentSpec("VLAN", "eth1", 42, mtu=1500)
    assert segments.ensure(h, seg) == "breth1-42"
    assert h.mutations() == [
        ["ip", "link", "add", "link", "eth1", "name", "eth1.42", "mtu", "1500", "type", "vlan", "id", "42"],
        ["ip", "link", "add", "name", "breth1-42", "type", "bridge", "forward_delay", "0"],
        ["ip", "link", "set", "dev", "eth1.42", "master", "breth1-42"],
        ["ip", "link", "set", "dev", "eth1.42", "up"],
        ["ip", "link", "set", "dev", "breth1-42", "up"],
    ]
    h.ran.clear()
    assert segments.ensure(h, seg) == "breth1-42"
    assert h.mutations() == []  # idempotent: only looks


def test_vlan_on_a_bridge_label_uses_its_physical_port():
    """modifyvlan.sh: a label bridge's VLANs go on its physical port, not on the bridge."""
    h = FakeHost({"cloudbr0": {"kind": "bridge"}, "vnet3": {"kind": "tun", "master": "cloudbr0"},
                  "eno1": {"master": "cloudbr0"}})
    seg = SegmentSpec("VLAN", "cloudbr0", 100)
    assert segments.ensure(h, seg) == "breno1-100"
    assert ["ip", "link", "add", "link", "eno1", "name", "eno1.100", "type", "vlan", "id", "100"] in h.mutations()
    # a VM port keeps it; once only the VLAN device is left, both go; the label stays
    h.links["vn0123456789"] = {"kind": "tun", "master": "breno1-100", "up": True, "mtu": 1500, "id": None}
    assert segments.release(h, seg) is False
    del h.links["vn0123456789"]
    h.ran.clear()
    assert segments.release(h, seg) is True
    assert [a for a in h.mutations()] == [["ip", "link", "del", "dev", "breno1-100"],
                                          ["ip", "link", "del", "dev", "eno1.100"]]
    assert set(h.links) == {"cloudbr0", "vnet3", "eno1"}
    h.ran.clear()
    assert segments.release(h, seg) is True and h.mutations() == []


def test_vlan_errors():
    h = FakeHost({"cloudbr0": {"kind": "bridge"}})
    with pytest.raises(segments.SegmentError, match="no physical port"):
        segments.ensure(h, SegmentSpec("VLAN", "cloudbr0", 5))
    for bad in (0, 4095, "5"):
        with pytest.raises(segments.SegmentError, match="VLAN id"):
            segments.ensure(h, SegmentSpec("VLAN", "cloudbr0", bad))
    with pytest.raises(segments.SegmentError, match="interface name"):
        segments.ensure(h, SegmentSpec("VLAN", "eth0; reboot", 5))
    with pytest.raises(segments.SegmentError, match="does not exist"):
        segments.ensure(h, SegmentSpec("VLAN", "eth9", 5))
    h2 = FakeHost({"averylongnic12": {}})
    with pytest.raises(segments.SegmentError, match="interface name"):
        segments.ensure(h2, SegmentSpec("VLAN", "averylongnic12", 4000))  # averylongnic12.4000: 19 chars
    assert h.mutations() == [] and h2.mutations() == []


def test_vxlan_commands_and_peers():
    h = FakeHost({"cloudbr1": {"kind": "bridge"}})
    seg = SegmentSpec("VXLAN", "cloudbr1", 5001, peers=("198.18.0.2", "198.18.0.3"))
    assert segments.ensure(h, seg) == "brvx-5001"
    assert h.mutations()[0] == ["ip", "link", "add", "vxlan5001", "type", "vxlan", "id", "5001", "dev", "cloudbr1",
                                "dstport", "4789", "learning"]
    assert h.fdb["vxlan5001"] == {"198.18.0.2", "198.18.0.3"}
    h.ran.clear()
    segments.ensure(h, SegmentSpec("VXLAN", "cloudbr1", 5001, peers=("198.18.0.3", "198.18.0.4")))
    assert h.mutations() == [["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vxlan5001", "dst", "198.18.0.4"],
                             ["bridge", "fdb", "del", "00:00:00:00:00:00", "dev", "vxlan5001", "dst", "198.18.0.2"]]
    with pytest.raises(segments.SegmentError, match="peer"):
        segments.ensure(h, SegmentSpec("VXLAN", "cloudbr1", 5001, peers=("-f",)))
    h.links["vxlan77"] = {"kind": "vxlan", "master": None, "up": True, "mtu": 1500, "id": 78}
    with pytest.raises(segments.SegmentError, match="not the vxlan 77"):
        segments.ensure(h, SegmentSpec("VXLAN", "cloudbr1", 77))


def test_vxlan_peers_of_a_segment_already_there():
    """set_peers (the other hosts joined or left): the FDB list only, on a device that exists;
    a host without the segment is left alone (nothing made)."""
    h = FakeHost({"eth0": {}})
    seg = SegmentSpec("VXLAN", "eth0", 5002, peers=("198.18.200.12",))
    assert segments.set_peers(h, seg) is False and h.mutations() == []
    segments.ensure(h, seg)
    h.ran.clear()
    assert segments.set_peers(h, SegmentSpec("VXLAN", "eth0", 5002, peers=("198.18.200.12", "198.18.200.13"))) is True
    assert h.mutations() == [["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vxlan5002",
                              "dst", "198.18.200.13"]]
    h.ran.clear()
    assert segments.set_peers(h, SegmentSpec("VXLAN", "eth0", 5002, peers=("198.18.200.13",))) is True
    assert h.mutations() == [["bridge", "fdb", "del", "00:00:00:00:00:00", "dev", "vxlan5002", "dst", "198.18.200.12"]]
    h.ran.clear()
    assert segments.set_peers(h, SegmentSpec("VXLAN", "eth0", 5002, peers=("198.18.200.13",))) is True
    assert h.mutations() == [] and len(h.ran) == 1  # idempotent, one read
    # a device of that name Nubo did not make is never written to
    h.links["vxlan6"] = {"kind": "vxlan", "master": None, "up": True, "mtu": 1500, "id": 7}
    h.ran.clear()
    with pytest.raises(segments.SegmentError, match="not the vxlan 6"):
        segments.set_peers(h, SegmentSpec("VXLAN", "eth0", 6, peers=("198.18.200.13",)))
    assert h.mutations() == []
    with pytest.raises(segments.SegmentError, match="peer"):
        segments.set_peers(h, SegmentSpec("VXLAN", "eth0", 5002, peers=("198.18.200.1; reboot",)))


def test_underlay_address_of_a_label():
    h = FakeHost({"eth0": {"addrs": [("127.0.0.5", "host"), ("198.18.200.11", "global")]}, "cloudbr9": {}})
    assert segments.underlay_address(h, "eth0") == "198.18.200.11"
    assert segments.underlay_address(h, "cloudbr9") is None  # no address
    assert segments.underlay_address(h, "eth7") is None  # no device
    with pytest.raises(segments.SegmentError, match="interface name"):
        segments.underlay_address(h, "eth0 up")


def test_untagged_is_the_label_bridge():
    h = FakeHost({"cloudbr0": {"kind": "bridge"}, "eth0": {}})
    assert segments.ensure(h, SegmentSpec("untagged", "cloudbr0")) == "cloudbr0"
    assert segments.release(h, SegmentSpec("untagged", "cloudbr0")) is True
    with pytest.raises(segments.SegmentError, match="not a bridge"):
        segments.ensure(h, SegmentSpec("untagged", "eth0"))
    assert h.mutations() == []
    assert segments.missing_labels(h, ["cloudbr0", "cloudbr9", "x y"]) == ["cloudbr9", "x y"]
    assert issubclass(segments.SegmentError, ChannelError)
