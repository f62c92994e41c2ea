"""External details: key/value pairs an object hands to its extension (CloudStack's
extension_details, extension_resource_map_details, extension_custom_action_details and the
"External:" host, template, offering and VM details). Taken from CloudStack's map
parameters (`externaldetails[0].<name>=<value>`, `details[0].<name>=<value>`, or the
`details[0].key=..&details[0].value=..` pair form).

A detail whose name says it is a secret (password, secret, token, API key, private key,
credential) is stored encrypted, sent to the extension in the payload file only, and never
logged nor shown back: API answers and pages leave its value out."""
from __future__ import annotations

import re

from sqlalchemy import delete, select

from app.extensions import db
from app.models import ExternalDetail
from app.services import crypto
from app.services.errors import InvalidParameter

SECRET = re.compile(r"pass(word|wd)?|secret|token|api[_.-]?key|private[_.-]?key|credential", re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_NAME, MAX_VALUE = 255, 65535


def is_secret(name: str) -> bool:
    return bool(SECRET.search(name or ""))


def parse(entries, field: str = "details") -> dict[str, str]:
    """{name: value} from a map parameter's entries (a list of dicts, in index order)."""
    out: dict[str, str] = {}
    for entry in entries or []:
        pairs = [(entry["key"], entry["value"])] if set(entry) == {"key", "value"} else list(entry.items())
        for name, value in pairs:
            name = str(name).strip()
            if not name or len(name) > MAX_NAME or _CONTROL.search(name):
                raise InvalidParameter(f"Invalid name in {field}: {name[:64]!r}", field=field)
            value = "" if value is None else str(value)
            if len(value) > MAX_VALUE or _CONTROL.search(value):
                raise InvalidParameter(f"The value of {name} in {field} is too long or has control characters",
                                       field=field)
            out[name] = value
    return out


def replace(owner_type: str, owner_id: int, values: dict[str, str] | None) -> None:
    """The owner's details become exactly `values` (in the caller's transaction)."""
    db.session.execute(delete(ExternalDetail).where(ExternalDetail.owner_type == owner_type,
                                                    ExternalDetail.owner_id == owner_id))
    for name, value in (values or {}).items():
        secret = is_secret(name)
        db.session.add(ExternalDetail(owner_type=owner_type, owner_id=owner_id, name=name, secret=secret,
                                      value=crypto.encrypt(value) if secret else value))


def merge(owner_type: str, owner_id: int, values: dict[str, str]) -> None:
    current = values_of(owner_type, owner_id)
    current.update(values)
    replace(owner_type, owner_id, current)


def forget(owner_type: str, owner_ids) -> None:
    ids = list(owner_ids)
    if ids:
        db.session.execute(delete(ExternalDetail).where(ExternalDetail.owner_type == owner_type,
                                                        ExternalDetail.owner_id.in_(ids)))


def values_of(owner_type: str, owner_id: int | None) -> dict[str, str]:
    """Every detail with its real value (secrets decrypted): for the payload only."""
    if owner_id is None:
        return {}
    rows = db.session.scalars(select(ExternalDetail).where(ExternalDetail.owner_type == owner_type,
                                                           ExternalDetail.owner_id == owner_id))
    return {r.name: crypto.decrypt(r.value) if r.secret else r.value for r in rows}


def shown(owner_type: str, owner_id: int | None) -> dict[str, str]:
    """What answers and pages show: secrets left out."""
    if owner_id is None:
        return {}
    rows = db.session.scalars(select(ExternalDetail).where(
        ExternalDetail.owner_type == owner_type, ExternalDetail.owner_id == owner_id,
        ExternalDetail.secret.is_(False)).order_by(ExternalDetail.name))
    return {r.name: r.value for r in rows}


def secret_names(owner_type: str, owner_id: int | None) -> list[str]:
    if owner_id is None:
        return []
    return list(db.session.scalars(select(ExternalDetail.name).where(
        ExternalDetail.owner_type == owner_type, ExternalDetail.owner_id == owner_id,
        ExternalDetail.secret.is_(True)).order_by(ExternalDetail.name)))


def redact(text: str, owners: list[tuple[str, int | None]]) -> str:
    """`text` (an extension's output, an error) with the owners' secret values masked."""
    for owner_type, owner_id in owners:
        for name in secret_names(owner_type, owner_id):
            value = values_of(owner_type, owner_id).get(name)
            if value and len(value) >= 3:
                text = text.replace(value, "******")
    return text
