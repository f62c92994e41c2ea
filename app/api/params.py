"""Parameter validation from the command declaration (431 naming the parameter)."""
from __future__ import annotations

import re
import uuid as uuidlib
from datetime import datetime

from app.api.registry import Command
from app.services.errors import InvalidParameter

# The entry's key may hold dots, dashes and colons (details[0].endpoint.url, as CloudStack takes).
MAP_KEY = re.compile(r"^([A-Za-z0-9_]+)\[(\d+)\]\.([A-Za-z0-9_.:-]+)$")
INT_RANGE = {"integer": (-2**31, 2**31 - 1), "long": (-2**63, 2**63 - 1)}


def _bad(name: str, why: str) -> InvalidParameter:
    return InvalidParameter(f"Unable to execute API command due to invalid value. "
                            f"Invalid parameter {name} value={why}", field=name)


def _convert(name: str, type_: str, raw: str, length: int):
    if type_ in ("integer", "long"):
        try:
            v = int(raw)
        except ValueError:
            raise _bad(name, f"{raw} must be a number") from None
        lo, hi = INT_RANGE[type_]
        if not lo <= v <= hi:
            raise _bad(name, f"{raw} is out of range")
        return v
    if type_ == "boolean":
        low = raw.strip().lower()
        if low not in ("true", "false"):
            raise _bad(name, f"{raw} must be true or false")
        return low == "true"
    if type_ == "uuid":
        if name == "projectid" and raw.strip() == "-1":  # CloudStack: every project of the caller
            return "-1"
        try:
            return str(uuidlib.UUID(raw.strip()))
        except ValueError:
            raise _bad(name, f"{raw} is not a valid uuid") from None
    if type_ == "date":
        for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
            try:
                return datetime.strptime(raw.strip(), fmt)
            except ValueError:
                pass
        raise _bad(name, f"{raw} is not a date (yyyy-MM-dd or yyyy-MM-dd'T'HH:mm:ssZ)")
    if len(raw) > length:
        raise _bad(name, f"is longer than {length} characters")
    return raw


def validate(cmd: Command, raw: dict[str, str]) -> dict:
    """Typed parameters for `cmd` from the request's (merged) raw parameters.
    Names are matched case-insensitively, as CloudStack does."""
    lower = {k.lower(): v for k, v in raw.items()}
    out: dict = {}
    for p in cmd.params:
        if p.type == "map":
            entries: dict[int, dict[str, str]] = {}
            for key, value in raw.items():
                m = MAP_KEY.match(key)
                if m and m.group(1).lower() == p.name.lower():
                    entries.setdefault(int(m.group(2)), {})[m.group(3)] = value
            if entries:
                out[p.name] = [entries[i] for i in sorted(entries)]
            elif p.required:
                raise InvalidParameter(f"Unable to execute API command {cmd.lower} due to missing "
                                       f"parameter {p.name}", field=p.name)
            continue
        value = lower.get(p.name.lower())
        if p.type == "list" and p.empty_means_none and value is not None and not value.strip(","):
            out[p.name] = []
            continue
        if value is None or value == "":
            if p.required:
                raise InvalidParameter(f"Unable to execute API command {cmd.lower} due to missing "
                                       f"parameter {p.name}", field=p.name)
            continue
        if p.type == "list":
            out[p.name] = [_convert(p.name, p.item_type, v.strip(), p.length)
                           for v in value.split(",") if v.strip()]
        else:
            out[p.name] = _convert(p.name, p.type, value, p.length)
    return out
