"""Security groups. (Interface fixed for the other modules; body being built.)"""
from __future__ import annotations


def apply_for_vm(vm, host) -> None:
    """Enforce the VM's groups on its NICs on `host` (called when it starts there)."""
    return None


def remove_for_vm(vm, host) -> None:
    """Remove the VM's NIC rules from `host` (called when it stops or leaves)."""
    return None
