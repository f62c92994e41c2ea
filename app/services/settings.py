"""Global settings: definitions (name, type, default, validation) and values.

Definitions are code; the `settings` table holds one row per definition with the
current value (synced at bootstrap). Reads go through a short-lived per-process
cache so a dynamic setting changed by one process is seen by every other within
CACHE_SECONDS, with no restart.
"""
from __future__ import annotations

import math
import re
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import select

from app.extensions import db
from app.models import Setting
from app.services.errors import InvalidParameter

CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class Definition:
    name: str
    default: str
    description: str
    category: str = "Advanced"
    type: str = "string"  # string | integer | float | boolean | list
    dynamic: bool = True
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    # Extra check on the parsed value; raises InvalidParameter.
    validate: Callable[[Any], None] | None = field(default=None, compare=False)
    # Called after the value changed: on_change(old, new).
    on_change: Callable[[Any, Any], None] | None = field(default=None, compare=False)


DEFINITIONS: dict[str, Definition] = {}


def define(d: Definition) -> Definition:
    DEFINITIONS[d.name] = d
    return d


def _parse(d: Definition, raw: str | None) -> Any:
    raw = d.default if raw is None else raw
    if d.type == "integer":
        return int(raw)
    if d.type == "float":
        return float(raw)
    if d.type == "boolean":
        return str(raw).strip().lower() == "true"
    if d.type == "list":
        return [p.strip() for p in str(raw).split(",") if p.strip()]
    return raw


_cache: dict[str, Any] = {}
_cache_at = 0.0


def clear_cache() -> None:
    global _cache_at
    _cache.clear()
    _cache_at = 0.0


def _load() -> None:
    global _cache_at
    rows = db.session.execute(select(Setting.name, Setting.value)).all()
    values = {name: value for name, value in rows}
    _cache.clear()
    for name, d in DEFINITIONS.items():
        raw = values.get(name)
        try:
            if raw is not None and has_control_chars(raw):
                raise ValueError(name)
            _cache[name] = _parse(d, raw)
        except ValueError:  # a hand-edited bad row: fall back to the default
            _cache[name] = _parse(d, None)
    _cache_at = time.monotonic()


def get(name: str) -> Any:
    """The parsed value of a setting (raises KeyError for an undefined name)."""
    d = DEFINITIONS[name]
    if time.monotonic() - _cache_at > CACHE_SECONDS or name not in _cache:
        _load()
    return _cache.get(name, _parse(d, None))


# Strict literals: Python's int()/float() also take "1_000", "nan", "inf" and non-ASCII
# digits, none of which CloudStack (Java's parseInt/parseFloat) or an admin means.
_INTEGER = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")


def has_control_chars(value: str) -> bool:
    """CR, LF, NUL, tabs and other control or line-separator characters (never in a setting:
    values end up in files such as .rdp, in headers and in logs, one per line)."""
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value)


def validate(name: str, value: str, *, extra: bool = True) -> Any:
    """The parsed value, or InvalidParameter (431) with CloudStack's words for a bad one.
    extra=False skips the definition's own check (hooks storing a dependent value)."""
    d = DEFINITIONS.get(name)
    if d is None:
        raise InvalidParameter(f"Unknown configuration setting: {name}", field="name")
    value = "" if value is None else str(value)
    if has_control_chars(value):
        raise InvalidParameter(f"The value of {name} may not contain control characters or line breaks",
                               field="value")
    value = value.strip()
    if d.type == "integer" and not _INTEGER.match(value):
        raise InvalidParameter(f"There was an error trying to parse the integer value for: {name}", field="value")
    if d.type == "float" and not _FLOAT.match(value):
        raise InvalidParameter(f"There was an error trying to parse the float value for: {name}", field="value")
    if d.type == "boolean" and value.lower() not in ("true", "false"):
        raise InvalidParameter(f"Please enter either 'true' or 'false' for {name}", field="value")
    try:
        parsed = _parse(d, value)
    except ValueError:
        raise InvalidParameter(f"{name} must be of type {d.type}", field="value") from None
    if d.type == "float" and not math.isfinite(parsed):
        raise InvalidParameter(f"There was an error trying to parse the float value for: {name}", field="value")
    if (d.min is not None and parsed < d.min) or (d.max is not None and parsed > d.max):
        kind = "an integer" if d.type == "integer" else "a number"
        raise InvalidParameter(f"The provided value is not valid for {name}. Please enter {kind} in the range: "
                               f"[{_bound(d.min)}-{_bound(d.max)}]", field="value")
    if d.choices and parsed not in d.choices:
        raise InvalidParameter(f"{name} must be one of: {', '.join(d.choices)}", field="value")
    if extra and d.validate:
        d.validate(parsed)
    return parsed


def _bound(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


def _normal(d: Definition, value: str) -> str:
    """The text stored for a valid value (booleans as CloudStack writes them)."""
    value = value.strip()
    return value.lower() if d.type == "boolean" else value


def update(name: str, value: str) -> Setting:
    """Validate and store a new value; runs the definition's on_change hook in the
    same transaction so dependent settings never disagree."""
    value = "" if value is None else str(value)
    parsed = validate(name, value)
    d = DEFINITIONS[name]
    value = _normal(d, value)
    old = get(name)
    row = db.session.get(Setting, name) or _row_for(d)
    row.value = value
    db.session.add(row)
    if d.on_change and old != parsed:
        d.on_change(old, parsed)
    db.session.commit()
    clear_cache()
    return row


def reset(name: str) -> Setting:
    """CloudStack's resetConfiguration: the setting back to its default, through update() so the
    default is checked and dependent settings follow as for any change."""
    d = DEFINITIONS.get(name)
    if d is None:
        validate(name, "")  # the unknown-name error, worded as for updateConfiguration
    return update(name, d.default)


def set_raw(name: str, value: str) -> None:
    """Store a value without hooks (used by on_change hooks for dependent settings).
    The value is still checked: no write path skips the definition's type and range."""
    validate(name, value, extra=False)
    value = _normal(DEFINITIONS[name], str(value))
    row = db.session.get(Setting, name) or _row_for(DEFINITIONS[name])
    row.value = value
    db.session.add(row)
    _cache.pop(name, None)


def _row_for(d: Definition) -> Setting:
    return Setting(name=d.name, value=d.default, default=d.default, category=d.category,
                   description=d.description, is_dynamic=d.dynamic)


def sync_definitions() -> None:
    """Create rows for new definitions and refresh their metadata (bootstrap)."""
    existing = {s.name: s for s in db.session.scalars(select(Setting))}
    for d in DEFINITIONS.values():
        row = existing.get(d.name)
        if row is None:
            db.session.add(_row_for(d))
        else:
            row.default, row.category = d.default, d.category
            row.description, row.is_dynamic = d.description, d.dynamic
    db.session.commit()
    clear_cache()


def list_settings(name: str | None = None, category: str | None = None,
                  keyword: str | None = None) -> list[Setting]:
    q = select(Setting).order_by(Setting.name)
    if name:
        q = q.where(Setting.name == name)
    if category:
        q = q.where(Setting.category == category)
    if keyword:
        q = q.where(Setting.name.contains(keyword, autoescape=True))
    return [s for s in db.session.scalars(q) if s.name in DEFINITIONS]


# --- Definitions used across the product -------------------------------------
# Later areas add theirs next to the code that reads them, through define().

define(Definition("login.throttle.attempts", "3", "Failed logins allowed before each further "
                  "attempt must wait (the wait doubles per failure, up to login.throttle.max.wait).",
                  category="Security", type="integer", min=1, max=100))
define(Definition("login.throttle.max.wait", "300", "Longest wait in seconds between login "
                  "attempts for a user with repeated failures.", category="Security",
                  type="integer", min=1, max=86400))
