"""The nftables script of one virtual router, rendered whole from a RouterSpec (a pure function).

Loaded inside the router's namespace with `nft -f`: the script first declares and deletes both
tables, then recreates them, all in one transaction, so a rule change never leaves a window
without rules and applying the same spec twice yields the same ruleset.

Two tables:

- `table inet nubo` (filter)
  - chain `ingress` (hook prerouting, priority mangle = -150, i.e. BEFORE destination NAT):
    CloudStack's VR filters ingress in the mangle table's `FIREWALL_<public ip>` chains, before
    the nat table's DNAT, and so do we: rules speak in public addresses and public ports
    (the FirewallSpec's public_ip and ports), with no need for `ct original` matches. Traffic
    arriving on the public veth is accepted when it belongs to a known connection
    (established/related), or when an ingress FirewallSpec allows it; everything else from the
    public side is dropped. So a port-forwarded port is reachable only while BOTH a port
    forwarding rule (DNAT, below) and a firewall rule allow it: without the firewall rule the
    packet dies here; without the PF rule it is not DNATed and reaches the router's own input
    chain, which drops it.
  - chain `input` (policy drop): loopback, established/related, and from the guest side only
    DHCP (udp 67), DNS (53 tcp/udp), the metadata server (tcp 80 to the router's guest address,
    and 8080: CloudStack's password server) and ICMP (CloudStack's VR accepts ICMP to itself). From the public side: ICMP only, which
    got here only if an ingress rule allowed it (CloudStack: ping a public IP with an ICMP
    firewall rule); nothing else but established traffic.
  - chain `forward` (policy drop): established/related; public -> guest only for connections
    DNATed by port forwarding or static NAT (`ct status dnat`, already filtered by `ingress`);
    guest -> public through chain `egress`. Nothing else is routed (a Shared network's router
    routes nothing at all).
  - chain `egress`: CloudStack's FW_EGRESS_RULES (configure.py, CsAcl.AclIP): with the
    offering's egress default policy "allow" (egress_default_allow=True) each egress rule is a
    DROP and the chain ends with ACCEPT; with "deny" each rule is an ACCEPT and the chain ends
    with DROP. A rule matches protocol, ports / ICMP type+code and destination CIDRs
    (0.0.0.0/0: any destination, as CloudStack skips it in its dest ipset).
- `table ip nubo_nat`
  - prerouting (dstnat), only for traffic arriving on the public veth: port forwarding
    (public_ip + tcp/udp port range -> guest_ip; ranges of equal length map port to port) and
    static NAT (the whole public IP -> guest_ip).
  - postrouting (srcnat), only out of the public veth: a VM with static NAT leaves from its own
    public IP; everything else of the guest CIDR from the source-NAT IP (SNAT to that exact
    address, not masquerade).

Hairpin NAT (a guest reaching another guest through a public IP) is not done.
"""
from __future__ import annotations

from . import checks
from .specs import FirewallSpec, NatRule, RouterSpec

FILTER_TABLE = "nubo"  # inet
NAT_TABLE = "nubo_nat"  # ip
_ANY = "0.0.0.0/0"


def _q(dev: str) -> str:
    return '"' + checks.device(dev) + '"'


def _ports(rng: tuple[int, int]) -> str:
    return str(rng[0]) if rng[0] == rng[1] else f"{rng[0]}-{rng[1]}"


def _cidrs(cidrs: tuple[str, ...], what: str) -> list[str]:
    out = []
    for c in cidrs:
        n = checks.network(c, what)
        out.append(str(n))
    return out


def _addr_match(field: str, cidrs: tuple[str, ...], what: str) -> str:
    """`ip saddr { ... } ` or nothing when any address matches (0.0.0.0/0 or no CIDR)."""
    nets = _cidrs(cidrs, what)
    if not nets or _ANY in nets:
        return ""
    if len(nets) == 1:
        return f"ip {field} {nets[0]} "
    return f"ip {field} {{ {', '.join(sorted(set(nets)))} }} "


def _proto_match(fw: FirewallSpec) -> str:
    """The protocol, ports and ICMP part of a firewall rule."""
    proto = checks.protocol(fw.protocol)
    if proto == "all":
        return ""
    if proto == "icmp":
        t = checks.icmp_value(fw.icmp_type, "ICMP type")
        c = checks.icmp_value(fw.icmp_code, "ICMP code")
        if c is not None and t is None:
            raise ValueError("invalid ICMP rule: a code without a type")
        s = "meta l4proto icmp "
        if t is not None:
            s = f"icmp type {t} "
            if c is not None:
                s += f"icmp code {c} "
        return s
    rng = checks.port_range(fw.start_port, fw.end_port)
    if rng is None:
        return f"meta l4proto {proto} "
    return f"{proto} dport {_ports(rng)} "


def _ingress_rule(fw: FirewallSpec) -> str:
    if fw.public_ip is None:
        raise ValueError("an ingress firewall rule needs its public IP")
    ip = checks.ipv4(fw.public_ip, "firewall public IP")
    return f"ip daddr {ip} {_addr_match('saddr', fw.cidrs, 'firewall source CIDR')}{_proto_match(fw)}accept"


def _egress_rule(fw: FirewallSpec, verdict: str) -> str:
    return f"{_addr_match('daddr', fw.cidrs, 'egress destination CIDR')}{_proto_match(fw)}{verdict}"


def _dnat(rule: NatRule, pub_dev: str) -> str:
    pub = checks.ipv4(rule.public_ip, "NAT public IP")
    guest = checks.ipv4(rule.guest_ip, "NAT guest IP")
    proto = checks.protocol(rule.protocol)
    head = f"iifname {_q(pub_dev)} ip daddr {pub} "
    if proto == "all":
        if any(p is not None for p in (rule.public_start, rule.public_end, rule.private_start, rule.private_end)):
            raise ValueError("invalid static NAT rule: protocol 'all' takes no ports")
        return head + f"dnat to {guest}"
    if proto not in ("tcp", "udp"):
        raise ValueError(f"invalid port forwarding protocol {rule.protocol!r}: tcp or udp")
    pub_r = checks.port_range(rule.public_start, rule.public_end, "public port range")
    priv_r = checks.port_range(rule.private_start, rule.private_end, "private port range")
    if pub_r is None or priv_r is None:
        raise ValueError("invalid port forwarding rule: public and private ports are required")
    n = pub_r[1] - pub_r[0]
    if priv_r[1] - priv_r[0] != n:
        raise ValueError(f"invalid port forwarding rule: public {_ports(pub_r)} and private "
                         f"{_ports(priv_r)} ranges differ in length")
    head += f"{proto} dport {_ports(pub_r)} "
    if pub_r == priv_r:
        return head + f"dnat to {guest}"  # the ports stay as they are
    if n == 0:
        return head + f"dnat to {guest}:{priv_r[0]}"
    # Port to port: a map from each public port to guest address . private port.
    pairs = ", ".join(f"{pub_r[0] + i} : {guest} . {priv_r[0] + i}" for i in range(n + 1))
    return head + f"dnat ip to {proto} dport map {{ {pairs} }}"


def render(spec: RouterSpec, guest_dev: str, public_dev: str | None) -> str:
    """The whole script; public_dev None (or spec.public None): a router without a public side."""
    checks.key(spec.key)
    checks.label(spec.name, "router name")
    g = _q(guest_dev)
    guest_ip = checks.ipv4(spec.guest_ip, "guest IP")
    guest_net = str(checks.network(spec.guest_cidr, "guest CIDR"))
    has_public = spec.public is not None and public_dev is not None
    p = _q(public_dev) if has_public else None

    lines = [
        "#!/usr/sbin/nft -f",
        f"# Virtual router {spec.key} ({spec.name}): rendered by Nubo, replaced whole on every apply.",
        # Declaring then deleting makes the delete succeed whether or not the table exists.
        f"table inet {FILTER_TABLE}",
        f"delete table inet {FILTER_TABLE}",
        f"table ip {NAT_TABLE}",
        f"delete table ip {NAT_TABLE}",
        "",
        f"table inet {FILTER_TABLE} {{",
    ]
    if has_public:
        lines += [
            "  chain ingress {",
            "    type filter hook prerouting priority mangle; policy accept;",
            f"    iifname != {p} accept",
            "    ct state established,related accept",
            "    ct state invalid drop",
        ]
        lines += [f"    {_ingress_rule(fw)}" for fw in spec.ingress]
        lines += ["    drop", "  }", ""]
    lines += [
        "  chain input {",
        "    type filter hook input priority filter; policy drop;",
        '    iifname "lo" accept',
        "    ct state established,related accept",
        "    ct state invalid drop",
        f"    iifname {g} udp dport 67 accept",
        f"    iifname {g} meta l4proto {{ tcp, udp }} th dport 53 accept",
        f"    iifname {g} ip daddr {guest_ip} tcp dport {{ 80, 8080 }} accept",
        f"    iifname {g} meta l4proto icmp accept",
    ]
    if has_public:
        lines.append(f"    iifname {p} meta l4proto icmp accept")
    lines += ["  }", ""]
    lines += [
        "  chain forward {",
        "    type filter hook forward priority filter; policy drop;",
        "    ct state established,related accept",
        "    ct state invalid drop",
    ]
    if has_public:
        lines += [
            f"    iifname {p} oifname {g} ip daddr {guest_net} ct status dnat accept",
            f"    iifname {g} oifname {p} ip saddr {guest_net} jump egress",
        ]
    lines += ["  }"]
    if has_public:
        # CloudStack: default allow -> rules deny; default deny -> rules allow.
        rule_verdict = "drop" if spec.egress_default_allow else "accept"
        lines += ["", "  chain egress {"]
        lines += [f"    {_egress_rule(fw, rule_verdict)}" for fw in spec.egress]
        lines += ["    accept" if spec.egress_default_allow else "    drop", "  }"]
    lines += ["}", ""]

    lines += [
        f"table ip {NAT_TABLE} {{",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
    ]
    static_nat: list[tuple[str, str]] = []
    if has_public:
        # Port forwarding first, then static NAT (they never share a public IP in CloudStack).
        for r in sorted(spec.nat, key=lambda r: r.protocol == "all"):
            lines.append(f"    {_dnat(r, public_dev)}")
            if checks.protocol(r.protocol) == "all":
                static_nat.append((checks.ipv4(r.guest_ip), checks.ipv4(r.public_ip)))
    elif spec.nat:
        raise ValueError("NAT rules need a public side")
    lines += [
        "  }",
        "",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    for guest, pub in static_nat:
        lines.append(f"    oifname {p} ip saddr {guest} snat to {pub}")
    if has_public and spec.source_nat_ip:
        snat = checks.ipv4(spec.source_nat_ip, "source NAT IP")
        lines.append(f"    oifname {p} ip saddr {guest_net} snat to {snat}")
    lines += ["  }", "}", ""]
    return "\n".join(lines)
