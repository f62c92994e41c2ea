"""Guest network segments on a host: a Linux bridge per segment, joined to the traffic label's
device by a VXLAN or an 802.1Q VLAN interface, named as CloudStack's KVM agent names them
(scripts/vm/network/vnet/modifyvxlan.sh and modifyvlan.sh):

- VXLAN: device `vxlan<VNI>` on the label (`dev <label> dstport 4789`, learning on) and bridge
  `brvx-<VNI>`. CloudStack joins a multicast group per VNI; Nubo knows every host carrying the
  VNI, so it programs head-end replication instead: one all-zero FDB entry per peer
  (`bridge fdb append 00:00:00:00:00:00 dev vxlan<VNI> dst <peer>`), and removes the entries of
  peers no longer listed. No multicast is needed in the datacenter network.
- VLAN: device `<pif>.<vlan>` and bridge `br<pif>-<vlan>`, where pif is the label itself when it
  is a NIC, or the label bridge's physical port when the label is a bridge (as modifyvlan.sh).
- untagged: the label's own bridge (it must exist; nothing is made or removed).

Every step looks before it makes anything, so ensure() twice changes nothing; release() removes
a segment's bridge and device only when nothing else is plugged into the bridge, and never the
label's own bridge or device. Commands are argv lists; every value is validated first."""
from __future__ import annotations

import ipaddress
import json
import re

from app.network.host.channel import Channel, ChannelError
from app.network.host.specs import SegmentSpec

_IFNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$")  # IFNAMSIZ: 15 characters
VXLAN_PORT = 4789
_ZERO_MAC = "00:00:00:00:00:00"
# Port kinds that are not a physical uplink of a bridge (for the VLAN pif lookup).
_VIRTUAL_KINDS = {"veth", "tun", "tap", "vxlan", "bridge", "vlan", "macvlan", "macvtap", "ipvlan", "geneve"}


class SegmentError(ChannelError):
    """A segment cannot be made as asked (bad value, missing label); the message says which."""


def check_ifname(name: str, what: str = "device") -> str:
    if not isinstance(name, str) or not _IFNAME.match(name):
        raise SegmentError(f"{what} name {name!r} is not a valid interface name (letters, digits, '_', '.', '-'; "
                           "at most 15)")
    return name


def _validate(seg: SegmentSpec) -> None:
    if seg.isolation not in ("VXLAN", "VLAN", "untagged"):
        raise SegmentError(f"Unknown isolation {seg.isolation!r} (VXLAN, VLAN or untagged)")
    check_ifname(seg.label, "traffic label")
    if seg.isolation == "VXLAN":
        if not isinstance(seg.vnet, int) or not 1 <= seg.vnet <= 16_777_215:
            raise SegmentError(f"VNI {seg.vnet!r} is not in 1-16777215")
        for p in seg.peers:
            try:
                ipaddress.ip_address(p)
            except ValueError:
                raise SegmentError(f"VXLAN peer {p!r} is not an IP address") from None
    elif seg.isolation == "VLAN":
        if not isinstance(seg.vnet, int) or not 1 <= seg.vnet <= 4094:
            raise SegmentError(f"VLAN id {seg.vnet!r} is not in 1-4094")
    if seg.mtu is not None and (not isinstance(seg.mtu, int) or not 68 <= seg.mtu <= 65535):
        raise SegmentError(f"MTU {seg.mtu!r} is not in 68-65535")


# --- reading the host ------------------------------------------------------------

def link(ch: Channel, name: str) -> dict | None:
    """`ip -d -j link show` of one device, None when it does not exist."""
    r = ch.run(["ip", "-d", "-j", "link", "show", "dev", name], check=False)
    if r.returncode != 0:
        return None
    try:
        data = json.loads(r.stdout or "[]")
    except ValueError:
        raise ChannelError(f"ip link show {name}: unreadable answer") from None
    return data[0] if data else None


def links(ch: Channel) -> dict[str, dict]:
    """`ip -d -j link show` of every device, by name: one command where ensure() would ask for
    the label, the device and the bridge one by one (each a round trip over SSH)."""
    r = ch.run(["ip", "-d", "-j", "link", "show"])
    try:
        return {d["ifname"]: d for d in json.loads(r.stdout or "[]") if d.get("ifname")}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ChannelError("ip link show: unreadable answer") from None


def kind(info: dict | None) -> str | None:
    return ((info or {}).get("linkinfo") or {}).get("info_kind")


def ports(ch: Channel, bridge: str) -> list[str]:
    """The devices plugged into a bridge."""
    r = ch.run(["ip", "-j", "link", "show", "master", bridge], check=False)
    if r.returncode != 0:
        return []
    try:
        return [d["ifname"] for d in json.loads(r.stdout or "[]")]
    except (ValueError, KeyError):
        raise ChannelError(f"ip link show master {bridge}: unreadable answer") from None


def _pif(ch: Channel, label: str) -> str:
    """The physical device VLANs go on: the label when it is a NIC, else the label bridge's
    physical port (modifyvlan.sh's lookup)."""
    info = link(ch, label)
    if info is None:
        raise SegmentError(f"Traffic label {label} does not exist on the host")
    if kind(info) != "bridge":
        return label
    for p in sorted(ports(ch, label)):
        if kind(link(ch, p)) not in _VIRTUAL_KINDS:
            return p
    raise SegmentError(f"Bridge {label} has no physical port to carry VLANs")


def names(ch: Channel, seg: SegmentSpec) -> tuple[str, str | None]:
    """(bridge, device) of a segment; device None when untagged."""
    _validate(seg)
    if seg.isolation == "VXLAN":
        return f"brvx-{seg.vnet}", f"vxlan{seg.vnet}"
    if seg.isolation == "VLAN":
        pif = _pif(ch, seg.label)
        dev, br = f"{pif}.{seg.vnet}", f"br{pif}-{seg.vnet}"
        check_ifname(dev, "VLAN device")
        check_ifname(br, "VLAN bridge")
        return br, dev
    return seg.label, None


def missing_labels(ch: Channel, labels: list[str]) -> list[str]:
    """The traffic labels (devices or bridges) that do not exist on the host, in order."""
    out = []
    for label in labels:
        if not isinstance(label, str) or not _IFNAME.match(label) or link(ch, label) is None:
            out.append(label)
    return out


# --- making and removing ------------------------------------------------------------

def _up(ch: Channel, name: str, info: dict) -> None:
    if "UP" not in (info.get("flags") or []):
        ch.run(["ip", "link", "set", "dev", name, "up"])


def _mtu(ch: Channel, name: str, info: dict, mtu: int | None) -> None:
    if mtu is not None and info.get("mtu") != mtu:
        ch.run(["ip", "link", "set", "dev", name, "mtu", str(mtu)])


def _fdb_peers(ch: Channel, dev: str) -> set[str]:
    r = ch.run(["bridge", "-j", "fdb", "show", "dev", dev])
    try:
        entries = json.loads(r.stdout or "[]")
    except ValueError:
        raise ChannelError(f"bridge fdb show dev {dev}: unreadable answer") from None
    return {e["dst"] for e in entries if e.get("mac") == _ZERO_MAC and e.get("dst")}


def ensure(ch: Channel, seg: SegmentSpec) -> str:
    """Make the segment's bridge and device where missing; return the bridge's name."""
    bridge, dev = names(ch, seg)
    have = links(ch)  # what the host holds now: one read for the label, the device and the bridge
    label = have.get(seg.label)
    if label is None:
        raise SegmentError(f"Traffic label {seg.label} does not exist on the host")
    if dev is None:  # untagged: the label's bridge itself
        if kind(label) != "bridge":
            raise SegmentError(f"Traffic label {seg.label} is not a bridge: an untagged network needs one")
        return bridge

    info = have.get(dev)
    if info is None:
        mtu = ["mtu", str(seg.mtu)] if seg.mtu is not None else []
        if seg.isolation == "VXLAN":
            argv = ["ip", "link", "add", dev, *mtu, "type", "vxlan", "id", str(seg.vnet), "dev", seg.label,
                    "dstport", str(VXLAN_PORT), "learning"]
        else:
            pif = dev.rsplit(".", 1)[0]
            argv = ["ip", "link", "add", "link", pif, "name", dev, *mtu, "type", "vlan", "id", str(seg.vnet)]
        ch.run(argv)
        info = link(ch, dev) or {}
    else:
        want = "vxlan" if seg.isolation == "VXLAN" else "vlan"
        got = (info.get("linkinfo") or {}).get("info_data") or {}
        if kind(info) != want or got.get("id") not in (None, seg.vnet):
            raise SegmentError(f"{dev} exists on the host but is not the {want} {seg.vnet} Nubo expects")
    _mtu(ch, dev, info, seg.mtu)

    br = have.get(bridge)
    if br is None:
        argv = ["ip", "link", "add", "name", bridge, "type", "bridge", "forward_delay", "0"]
        ch.run(argv)
        br = link(ch, bridge) or {}
    elif kind(br) != "bridge":
        raise SegmentError(f"{bridge} exists on the host but is not a bridge")
    _mtu(ch, bridge, br, seg.mtu)

    if info.get("master") != bridge:
        ch.run(["ip", "link", "set", "dev", dev, "master", bridge])
    _up(ch, dev, info)
    _up(ch, bridge, br)

    if seg.isolation == "VXLAN":
        _set_peers(ch, dev, seg.peers)
    return bridge


def _set_peers(ch: Channel, dev: str, peers: tuple[str, ...], have: set[str] | None = None) -> None:
    """The device's all-zero FDB entries (head-end replication) become exactly `peers`."""
    want = {str(ipaddress.ip_address(p)) for p in peers}
    have = _fdb_peers(ch, dev) if have is None else have
    for p in sorted(want - have):
        ch.run(["bridge", "fdb", "append", _ZERO_MAC, "dev", dev, "dst", p])
    for p in sorted(have - want):
        ch.run(["bridge", "fdb", "del", _ZERO_MAC, "dev", dev, "dst", p], check=False)


def set_peers(ch: Channel, seg: SegmentSpec) -> bool:
    """A VXLAN segment's peers become exactly seg.peers, when its device is on the host; False
    (nothing made) when it is not: a host that does not carry the segment is left alone. Other
    segments have no peers (True when their device exists). One command when nothing changes
    (it runs on every carrier at every VM start and stop, over SSH for remote hosts)."""
    _validate(seg)
    if seg.isolation != "VXLAN":
        bridge, dev = names(ch, seg)
        return dev is None or link(ch, dev) is not None
    dev = f"vxlan{seg.vnet}"
    r = ch.run(["bridge", "-j", "fdb", "show", "dev", dev], check=False)
    if r.returncode != 0:
        if link(ch, dev) is None:
            return False
        raise ChannelError(f"bridge fdb show dev {dev}: {(r.stderr or r.stdout).strip()[:300]}")
    try:
        entries = json.loads(r.stdout or "[]")
    except ValueError:
        raise ChannelError(f"bridge fdb show dev {dev}: unreadable answer") from None
    have = {e["dst"] for e in entries if e.get("mac") == _ZERO_MAC and e.get("dst")}
    if have == {str(ipaddress.ip_address(p)) for p in seg.peers}:
        return True
    # Something to change: only on the device Nubo made (checked before any write).
    info = link(ch, dev) or {}
    got = (info.get("linkinfo") or {}).get("info_data") or {}
    if kind(info) != "vxlan" or got.get("id") not in (None, seg.vnet):
        raise SegmentError(f"{dev} exists on the host but is not the vxlan {seg.vnet} Nubo expects")
    _set_peers(ch, dev, seg.peers, have)
    return True


def underlay_address(ch: Channel, label: str) -> str | None:
    """The first global IPv4 address of the traffic label's device (where VXLAN peers send
    this host's traffic); None when it has none."""
    check_ifname(label, "traffic label")
    r = ch.run(["ip", "-j", "-4", "addr", "show", "dev", label], check=False)
    if r.returncode != 0:
        return None
    try:
        data = json.loads(r.stdout or "[]")
    except ValueError:
        raise ChannelError(f"ip addr show {label}: unreadable answer") from None
    for d in data:
        for a in d.get("addr_info") or []:
            if a.get("family") == "inet" and a.get("scope") == "global" and a.get("local"):
                return a["local"]
    return None


def release(ch: Channel, seg: SegmentSpec) -> bool:
    """Remove the segment's bridge and device when nothing but the device is plugged into the
    bridge; True when the segment is gone (or never was). Never touches the label's own bridge
    or device; safe to call any number of times."""
    try:
        bridge, dev = names(ch, seg)
    except SegmentError:
        if seg.isolation == "VLAN" and link(ch, seg.label) is None:
            return True  # no label, so no VLAN on it either
        raise
    if dev is None or bridge == seg.label or dev == seg.label:
        return True
    if link(ch, bridge) is not None:
        if [p for p in ports(ch, bridge) if p != dev]:
            return False  # a VM port or a router veth still uses it
        ch.run(["ip", "link", "del", "dev", bridge], check=False)
    if link(ch, dev) is not None:
        ch.run(["ip", "link", "del", "dev", dev], check=False)
    return link(ch, bridge) is None and link(ch, dev) is None
