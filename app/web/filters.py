"""Jinja filters for sizes and dates."""
from __future__ import annotations

from datetime import datetime

from flask import Flask

from app.services.units import duration, filesize


def dt(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def hvname(type_name: str | None) -> str:
    """A hypervisor type as users see it (Custom's display name is a setting)."""
    from app.services.hypervisors import display_name
    return display_name(type_name) if type_name else "—"


def pct_class(pct) -> str:
    """A width class (static/css/nubo.css: .pct-0 ... .pct-100) for a bar: the CSP
    allows no inline style attributes."""
    try:
        value = float(pct)
    except (TypeError, ValueError):
        value = 0.0
    if value != value:  # NaN
        value = 0.0
    return f"pct-{int(round(min(max(value, 0.0), 100.0)))}"


def register_filters(app: Flask) -> None:
    app.jinja_env.filters["pct_class"] = pct_class
    app.jinja_env.filters["filesize"] = filesize
    app.jinja_env.filters["duration"] = duration
    app.jinja_env.filters["hvname"] = hvname
    app.jinja_env.filters["dt"] = dt
