"""The hypervisor type registry: a plain dict keyed by the type's internal name,
filled at start from the `nubo.hypervisors` entry-point group. Built-in types
register exactly like a third-party plugin would (see pyproject.toml).

Display names (Custom's comes from a setting) and `hypervisor.list` are
business rules and live in app/services/hypervisors.py.
"""
from __future__ import annotations

import logging
from importlib.metadata import entry_points

from app.hypervisors.base import HypervisorType

log = logging.getLogger("nubo.hypervisors")

GROUP = "nubo.hypervisors"
# The order types are shown in when nothing else decides it.
BUILTIN_ORDER = ("KVM", "Xen", "LXC", "OpenVZ", "Hyperv", "Simulator", "Custom", "External")
_types: dict[str, HypervisorType] = {}
_loaded = False


def register(hv_type: HypervisorType) -> None:
    if not getattr(hv_type, "name", ""):
        raise ValueError(f"hypervisor type {hv_type!r} has no name")
    _types[hv_type.name] = hv_type


def load_plugins(force: bool = False) -> None:
    global _loaded
    if _loaded and not force:
        return
    for ep in entry_points(group=GROUP):
        try:
            obj = ep.load()
            register(obj() if isinstance(obj, type) else obj)
        except Exception:  # a broken plugin must not take the server down
            log.exception("hypervisor plugin %s failed to load", ep.name)
    _loaded = True


def get(name: str) -> HypervisorType | None:
    """By internal name, case-insensitively (CloudStack accepts 'kvm')."""
    t = _types.get(name)
    if t is None:
        for key, value in _types.items():
            if key.lower() == (name or "").lower():
                return value
    return t


def all_types() -> list[HypervisorType]:
    order = {n: i for i, n in enumerate(BUILTIN_ORDER)}
    return sorted(_types.values(), key=lambda t: (order.get(t.name, len(order)), t.name))
