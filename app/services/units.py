"""Sizes and durations as people read them, for pages and job messages alike."""
from __future__ import annotations


def filesize(n: int | float | None) -> str:
    if n is None:
        return "—"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def duration(seconds: int | float | None) -> str:
    """86400 -> "24 h", 90 -> "1 min 30 s", 0.5 -> "0.5 s", 259200 -> "3 d": the largest unit
    and the next one when it is not zero (up to 48 h in hours, as settings are usually
    thought of: "24 h", "36 h"; beyond in days and hours)."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:g} s"
    s = round(seconds)
    if s < 3600:
        parts = ((s // 60, "min"), (s % 60, "s"))
    elif s <= 48 * 3600:
        parts = ((s // 3600, "h"), (s % 3600 // 60, "min"))
    else:
        parts = ((s // 86400, "d"), (s % 86400 // 3600, "h"))
    return " ".join(f"{n} {unit}" for i, (n, unit) in enumerate(parts) if n or i == 0)
