"""Virtual routers. (Interface fixed for the other modules; body being built.)"""
from __future__ import annotations


def apply(network) -> None:
    """Push the network's desired state (leases, metadata, NAT, firewall) to its router now,
    when it has one that runs; raise ResourceUnavailable when the host refuses. Called after
    every change that the router must reflect (rules, public IPs, NICs)."""
    return None
