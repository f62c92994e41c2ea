"""The nftables script of a security-group table (the packets are in tests/network/test_secgroups_host.py)."""
from app.network.host.secgroups import render
from app.network.host.specs import SgRule, VmRuleset


def _chain(script: str, name: str) -> list[str]:
    body = script.split(f"chain {name} {{\n", 1)[1].split("  }\n", 1)[0]
    return [l.strip() for l in body.splitlines()]


def test_replaced_whole_and_cloudstack_defaults():
    s = render(VmRuleset("vn0011223344", "02:00:00:00:00:01", ("10.1.1.5",)))
    assert s.startswith("table bridge nubo_sg_vn0011223344\ndelete table bridge nubo_sg_vn0011223344\n")
    assert _chain(s, "from_vm")[-1] == "accept"  # no egress rule: egress open
    assert _chain(s, "to_vm")[-1] == "drop"  # ingress: default drop
    s = render(VmRuleset("vn1", "02:00:00:00:00:01", ("10.1.1.5",), (SgRule("egress", "tcp", ("10.0.0.0/8",), 80, 90),)))
    assert _chain(s, "from_vm")[-2:] == ["ether type ip ip daddr { 10.0.0.0/8 } tcp dport 80-90 accept", "drop"]


def test_rules_by_family():
    s = render(VmRuleset("vn1", "02:00:00:00:00:01", ("10.1.1.5",), (
        SgRule("ingress", "icmp", ("10.2.0.0/16",), icmp_type=8, icmp_code=0),
        SgRule("ingress", "icmp", ("0.0.0.0/0",), icmp_type=-1, icmp_code=-1),
        SgRule("ingress", "udp", ("::/0",), 53, 53),
        SgRule("ingress", "all", ("0.0.0.0/0", "10.0.0.0/8")))))
    assert _chain(s, "to_vm")[3:] == [
        "ether type ip ip saddr { 10.2.0.0/16 } icmp type 8 icmp code 0 accept",
        "ether type ip meta l4proto icmp accept",
        "ether type ip6 udp dport 53 accept",
        "ether type ip accept",
        "drop"]
