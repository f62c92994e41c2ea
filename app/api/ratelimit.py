"""Per-user API throttling (api.throttling.*): a fixed window counted in the
database-independent process memory of each web process, as CloudStack does per
management server."""
from __future__ import annotations

import threading
import time

from app.services import settings
from app.services.settings import Definition, define

define(Definition("api.throttling.enabled", "false", "Limit API calls per user.", category="API",
                  type="boolean"))
define(Definition("api.throttling.interval", "1", "Throttling window in seconds.", category="API",
                  type="integer", min=1, max=3600, unit="seconds"))
define(Definition("api.throttling.max", "25", "API calls a user may make per window.", category="API",
                  type="integer", min=1, max=100000))

_lock = threading.Lock()
_windows: dict[int, tuple[float, int]] = {}


def allow(user_id: int) -> bool:
    if not settings.get("api.throttling.enabled"):
        return True
    interval, limit = settings.get("api.throttling.interval"), settings.get("api.throttling.max")
    now = time.monotonic()
    with _lock:
        start, count = _windows.get(user_id, (now, 0))
        if now - start >= interval:
            start, count = now, 0
        count += 1
        _windows[user_id] = (start, count)
        return count <= limit


def reset() -> None:
    with _lock:
        _windows.clear()
