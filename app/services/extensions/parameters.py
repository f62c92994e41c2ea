"""A custom action's declared parameters and the checks of the values a caller gives
(CloudStack's ExtensionCustomAction.Parameter: types STRING, NUMBER, BOOLEAN, DATE; validation
formats UUID, EMAIL, PASSWORD, URL for strings and DECIMAL for numbers; value options)."""
from __future__ import annotations

import json
import re
import uuid as uuidlib
from datetime import datetime
from urllib.parse import urlsplit

from app.services.errors import InvalidParameter

TYPES = ("STRING", "NUMBER", "BOOLEAN", "DATE")
FORMATS = {"NONE": None, "UUID": "STRING", "EMAIL": "STRING", "PASSWORD": "STRING", "URL": "STRING",
           "DECIMAL": "NUMBER"}
_EMAIL = re.compile(r"^[A-Za-z0-9+_.-]+@[A-Za-z0-9.-]+$")


def _bad(message: str) -> InvalidParameter:
    return InvalidParameter(message, field="parameters")


def _number(value: str, fmt: str):
    return float(value) if fmt == "DECIMAL" else int(value)


def _valid_string(value: str, fmt: str) -> bool:
    if fmt == "UUID":
        try:
            uuidlib.UUID(value)
            return True
        except ValueError:
            return False
    if fmt == "EMAIL":
        return bool(_EMAIL.match(value))
    if fmt == "PASSWORD":
        return bool(value.strip())
    if fmt == "URL":
        parts = urlsplit(value)
        return bool(parts.scheme and (parts.netloc or parts.scheme == "file"))
    return True


def declare(entries) -> list[dict]:
    """The declarations from addCustomAction's parameters map (parameters[0].name=..&.type=..)."""
    out: list[dict] = []
    for entry in entries or []:
        entry = {k.lower(): v for k, v in entry.items()}
        name = (entry.get("name") or "").strip()
        type_ = (entry.get("type") or "").strip().upper()
        if not name:
            raise _bad("Invalid parameter specified with empty name")
        if not type_:
            raise _bad(f"No type specified for parameter: {name}")
        if type_ not in TYPES:
            raise _bad(f"Invalid type: {entry.get('type')} specified for parameter: {name}")
        fmt = (entry.get("validationformat") or "NONE").strip().upper()
        if fmt not in FORMATS or (fmt != "NONE" and FORMATS[fmt] != type_):
            raise _bad(f"Invalid validation format: {entry.get('validationformat')} specified for type: {type_}")
        options = None
        raw = (entry.get("valueoptions") or "").strip()
        if raw:
            values = [v.strip() for v in raw.split(",") if v.strip()]
            if type_ == "STRING":
                if any(not _valid_string(v, fmt) for v in values):
                    raise _bad(f"Invalid value options with validation format: {fmt} for parameter: {name}")
                options = values
            elif type_ == "NUMBER":
                try:
                    options = [_number(v, fmt) for v in values]
                except ValueError:
                    raise _bad(f"Invalid value options with validation format: {fmt} for parameter: {name}") from None
            else:
                raise _bad(f"Options not supported for type: {type_} for parameter: {name}")
        if any(p["name"] == name for p in out):
            raise _bad(f"Parameter {name} is declared twice")
        out.append({"name": name, "type": type_, "validationformat": fmt, "valueoptions": options,
                    "required": str(entry.get("required", "false")).strip().lower() == "true"})
    return out


def loads(text: str | None) -> list[dict]:
    return json.loads(text or "[]")


def _value(p: dict, value: str):
    name = p["name"]
    if value is None or not str(value).strip():
        raise _bad(f"Empty value for parameter '{name}': {value}")
    options = p.get("valueoptions")
    try:
        if p["type"] == "BOOLEAN":
            if value not in ("true", "false"):
                raise ValueError
            return value == "true"
        if p["type"] == "DATE":
            for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
                try:
                    datetime.strptime(value, fmt)
                    return value
                except ValueError:
                    pass
            raise ValueError
        if p["type"] == "NUMBER":
            number = _number(value, p.get("validationformat") or "NONE")
        else:
            if not _valid_string(value, p.get("validationformat") or "NONE"):
                raise ValueError
            number = None
    except ValueError:
        raise _bad(f"Invalid value for parameter '{name}': {value}") from None
    result = number if p["type"] == "NUMBER" else value
    if options and result not in options:
        raise _bad(f"Invalid value for parameter '{name}': {value}. Valid options are: "
                   + ", ".join(str(o) for o in options))
    return result


def validate(declared: list[dict], supplied: dict[str, str]) -> dict:
    """The values to send: declared ones typed and checked, undeclared ones passed as given."""
    supplied = supplied or {}
    for p in declared:
        if p.get("required") and not str(supplied.get(p["name"]) or "").strip():
            raise _bad(f"Missing or empty required parameter: {p['name']}")
    by_name = {p["name"]: p for p in declared}
    return {name: _value(by_name[name], value) if name in by_name else value for name, value in supplied.items()}


def is_secret(p: dict) -> bool:
    return p.get("validationformat") == "PASSWORD"
