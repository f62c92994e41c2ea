"""The hypervisor type registry: a plain dict keyed by the type's internal name,
filled at start from the `nubo.hypervisors` entry-point group. Built-in types
register exactly like a third-party plugin would (see pyproject.toml)."""
from __future__ import annotations

import logging
from importlib.metadata import entry_points

log = logging.getLogger("nubo.hypervisors")

GROUP = "nubo.hypervisors"
_types: dict[str, object] = {}
_loaded = False


def register(hv_type) -> None:
    _types[hv_type.name] = hv_type


def load_plugins(force: bool = False) -> None:
    global _loaded
    if _loaded and not force:
        return
    for ep in entry_points(group=GROUP):
        try:
            register(ep.load())
        except Exception:  # a broken plugin must not take the server down
            log.exception("hypervisor plugin %s failed to load", ep.name)
    _loaded = True


def all_types() -> dict[str, object]:
    return dict(_types)
