"""Firewall, port forwarding, ip forwarding and egress rules. (Interface fixed for the other
modules; body being built.)"""
from __future__ import annotations

from dataclasses import dataclass

from app.network.host.specs import FirewallSpec, NatRule


@dataclass(frozen=True)
class RouterRules:
    """A network's public side as the router must make it."""
    public_ips: tuple[str, ...] = ()  # every public address associated with the network
    nat: tuple[NatRule, ...] = ()  # port forwarding and static NAT
    ingress: tuple[FirewallSpec, ...] = ()
    egress: tuple[FirewallSpec, ...] = ()


def for_router(network) -> RouterRules:
    """The network's active rules (and those being added), not those being revoked."""
    return RouterRules()
