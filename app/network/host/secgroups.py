"""Security groups on a host: one nftables table per VM NIC, `bridge nubo_sg_<tap>`, replaced
whole in one `nft -f` transaction (no window without rules, and NICs never share state).

Why nftables and not libvirt's nwfilter (the issue's other option): nwfilter drives ebtables and
iptables, which on current distributions (and on these machines) exist only as their nftables
front-ends, and it renders group membership changes as per-VM filter redefinitions that libvirt
re-applies one by one; rendering the rules ourselves gives one atomic transaction per NIC, a
table we can read back and compare, and the same code path on every Linux host.

Per NIC (frames *from* the tap are the VM's egress, frames *to* it its ingress):
- from the VM: anti-spoofing first (source MAC = the NIC's MAC; IPv4 source one of its
  addresses, except the DHCP client's 0.0.0.0 -> 255.255.255.255 udp 68->67; ARP sender MAC and
  IP must be its own; IPv6 and other ether types are dropped: Nubo's guest networks are IPv4),
  then replies of connections that came in, then the egress rules. CloudStack's default
  (scripts/vm/network/security_group.py, add_network_rules): egress is allowed while the groups
  have no egress rule, and dropped unless allowed once they have one.
- to the VM: replies of its own connections (established/related), ARP, DHCP replies
  (udp 67->68), the ingress rules (protocol, port range, ICMP type/code, CIDRs), default drop.

Connection state: the bridge family cannot use conntrack on this kernel (nft refuses `ct` in a
bridge table with "Protocol error": no nf_conntrack_bridge, and modules cannot be loaded).
So, as CloudStack's own security_group.py does with iptables, bridged IPv4 goes through the
ip-family hooks (br_netfilter, `net.bridge.bridge-nf-call-iptables=1`, which apply() turns on):
one shared table `inet nubo_sg_ct` marks packets of established/related connections with bit
0x00200000 of the packet mark at prerouting, and the per-NIC bridge tables accept on that bit.
(nftables has no physdev match, so the per-port decisions must stay in the bridge family.)
The shared table goes when the last NIC table goes."""
from __future__ import annotations

import ipaddress
import re

from app.network.host.channel import Channel, ChannelError
from app.network.host.specs import SgRule, VmRuleset

ESTABLISHED_MARK = 0x00200000
CT_TABLE = "nubo_sg_ct"
PREFIX = "nubo_sg_"
_TAP = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_BR_NF = "/proc/sys/net/bridge/bridge-nf-call-iptables"


class RulesetError(ChannelError):
    """A ruleset that cannot be rendered (a bad value); nothing was changed on the host."""


def table_name(tap: str) -> str:
    if not isinstance(tap, str) or not _TAP.match(tap):
        raise RulesetError(f"{tap!r} is not a NIC device name")
    return PREFIX + tap


def _nets(cidrs: tuple[str, ...]) -> tuple[list[str] | None, list[str] | None]:
    """The IPv4 and IPv6 networks of a rule's CIDRs: [] for "any" (a /0), None for none."""
    v4: list[str] | None = None
    v6: list[str] | None = None
    for c in cidrs:
        try:
            n = ipaddress.ip_network(c, strict=False)
        except ValueError:
            raise RulesetError(f"{c!r} is not a CIDR") from None
        if n.version == 4:
            v4 = [] if n.prefixlen == 0 or v4 == [] else (v4 or []) + [str(n)]
        else:
            v6 = [] if n.prefixlen == 0 or v6 == [] else (v6 or []) + [str(n)]
    return v4, v6


def _port(v: int | None, what: str) -> int | None:
    if v is None:
        return None
    if not isinstance(v, int) or not 0 <= v <= 65535:
        raise RulesetError(f"{what} {v!r} is not a port number")
    return v


def _rule(r: SgRule) -> list[str]:
    """nft statements (one per address family that applies) accepting what `r` allows."""
    if r.direction not in ("ingress", "egress"):
        raise RulesetError(f"Unknown direction {r.direction!r}")
    proto = (r.protocol or "").lower()
    if proto not in ("tcp", "udp", "icmp", "all"):
        raise RulesetError(f"Unknown protocol {r.protocol!r}")
    v4, v6 = _nets(r.cidrs)
    where = "saddr" if r.direction == "ingress" else "daddr"
    match = ""
    if proto in ("tcp", "udp"):
        start, end = _port(r.start_port, "Start port"), _port(r.end_port, "End port")
        if start is not None or end is not None:
            start, end = (start if start is not None else end), (end if end is not None else start)
            if start > end:
                raise RulesetError(f"Port range {start}-{end} is reversed")
            match = f"{proto} dport {start}" if start == end else f"{proto} dport {start}-{end}"
        else:
            match = f"meta l4proto {proto}"
    elif proto == "icmp":
        t, c = r.icmp_type, r.icmp_code
        for v, what in ((t, "ICMP type"), (c, "ICMP code")):
            if v is not None and (not isinstance(v, int) or not -1 <= v <= 255):
                raise RulesetError(f"{what} {v!r} is not in -1..255")
        if t is None or t == -1:
            match = "meta l4proto icmp"
        else:
            match = f"icmp type {t}" + (f" icmp code {c}" if c is not None and c != -1 else "")
    out = []
    if v4 is not None:
        addr = f"ip {where} {{ {', '.join(v4)} }}" if v4 else ""
        out.append(f"ether type ip {addr} {match} accept")
    if v6 is not None and proto != "icmp":  # (IPv6 frames are dropped by anti-spoofing anyway)
        addr = f"ip6 {where} {{ {', '.join(v6)} }}" if v6 else ""
        out.append(f"ether type ip6 {addr} {match.replace('meta l4proto icmp', '')} accept")
    return [" ".join(s.split()) for s in out]


def render(rs: VmRuleset) -> str:
    """The nft script that replaces the NIC's table whole (create-if-missing, delete, create)."""
    table = table_name(rs.tap)
    mac = (rs.mac or "").lower()
    if not _MAC.match(mac):
        raise RulesetError(f"{rs.mac!r} is not a MAC address")
    v4: list[str] = []
    for ip in rs.ips:
        try:
            a = ipaddress.ip_address(ip)
        except ValueError:
            raise RulesetError(f"{ip!r} is not an IP address") from None
        if a.version == 4:
            v4.append(str(a))
    ingress = [s for r in rs.rules if r.direction == "ingress" for s in _rule(r)]
    egress = [s for r in rs.rules if r.direction == "egress" for s in _rule(r)]
    tap = rs.tap
    mark = f"meta mark & 0x{ESTABLISHED_MARK:08x} == 0x{ESTABLISHED_MARK:08x} accept"
    ips = f"{{ {', '.join(v4)} }}" if v4 else None
    from_vm = [
        f"ether saddr != {mac} drop",
        f"ether type arp arp saddr ether != {mac} drop",
        (f"ether type arp arp saddr ip != {{ 0.0.0.0, {', '.join(v4)} }} drop" if v4
         else "ether type arp arp saddr ip != 0.0.0.0 drop"),
        "ether type arp accept",
        "ether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept",
        f"ether type ip ip saddr != {ips} drop" if ips else "ether type ip drop",
        "ether type != ip drop",
        mark,
        *egress,
        "drop" if egress else "accept",
    ]
    to_vm = [
        mark,
        "ether type arp accept",
        "ether type ip udp sport 67 udp dport 68 accept",
        *ingress,
        "drop",
    ]

    def chain(name: str, rules: list[str]) -> str:
        return f"  chain {name} {{\n" + "".join(f"    {r}\n" for r in rules) + "  }\n"

    return (f"table bridge {table}\ndelete table bridge {table}\n"
            f"table bridge {table} {{\n"
            "  chain forward {\n    type filter hook forward priority 0; policy accept;\n"
            f"    iifname \"{tap}\" jump from_vm\n    oifname \"{tap}\" jump to_vm\n  }}\n"
            "  chain input {\n    type filter hook input priority 0; policy accept;\n"
            f"    iifname \"{tap}\" jump from_vm\n  }}\n"
            + chain("from_vm", from_vm) + chain("to_vm", to_vm) + "}\n")


def render_ct() -> str:
    return (f"table inet {CT_TABLE}\ndelete table inet {CT_TABLE}\n"
            f"table inet {CT_TABLE} {{\n  chain prerouting {{\n"
            "    type filter hook prerouting priority -150; policy accept;\n"
            f"    ct state established,related meta mark set meta mark or 0x{ESTABLISHED_MARK:08x}\n"
            "  }\n}\n")


def _bridge_netfilter(ch: Channel) -> None:
    """Bridged IPv4 must pass the ip-family hooks for connection tracking."""
    value = ch.read_file(_BR_NF)
    if value is None:
        raise ChannelError("The host has no bridge netfilter (br_netfilter): security groups need it "
                           "(modprobe br_netfilter)")
    if value.strip() != "1":
        ch.run(["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"])


def tables(ch: Channel) -> list[str]:
    """Names of the per-NIC tables on the host."""
    r = ch.run(["nft", "list", "tables", "bridge"])
    return [line.split()[-1] for line in r.stdout.splitlines()
            if line.startswith("table bridge ") and line.split()[-1].startswith(PREFIX)]


def apply(ch: Channel, rulesets: list[VmRuleset]) -> None:
    """Replace these NICs' tables (one nft transaction for all of them). Every ruleset is
    rendered before anything is sent, so a bad value changes nothing."""
    if not rulesets:
        return
    script = render_ct() + "".join(render(rs) for rs in rulesets)
    _bridge_netfilter(ch)
    ch.run(["nft", "-f", "-"], input=script)


def remove(ch: Channel, taps: list[str]) -> None:
    """Remove these NICs' tables (missing ones are fine); the shared conntrack table goes with
    the last one."""
    names = [table_name(t) for t in taps]
    if names:
        ch.run(["nft", "-f", "-"], input="".join(f"table bridge {n}\ndelete table bridge {n}\n" for n in names))
    if not tables(ch):
        ch.run(["nft", "-f", "-"], input=f"table inet {CT_TABLE}\ndelete table inet {CT_TABLE}\n")
