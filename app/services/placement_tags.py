"""Host tags and storage tags (CloudStack's hosttags / storage tags): what an offering asks
for and what hosts and primary storage pools have, kept as one comma-separated string.

An offering with tags runs only where every one of its tags is present (CloudStack's rule
for several tags); an offering without tags runs anywhere, tagged or not.
"""
from __future__ import annotations

from sqlalchemy import ColumnElement, String, and_, literal, true

from app.services.errors import InvalidParameter


def normalize(value, field: str) -> str | None:
    """A tag list as given (a comma-separated string or a list) → "a,b" (stripped, duplicates
    dropped, order kept), or None for no tags. Refused: control characters, over-long tags."""
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out: list[str] = []
    for item in items:
        tag = str(item).strip()
        if not tag:
            continue
        if len(tag) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in tag):
            raise InvalidParameter(f"Invalid tag {tag[:40]!r} in {field}", field=field)
        if tag not in out:
            out.append(tag)
    joined = ",".join(out)
    if len(joined) > 4096:
        raise InvalidParameter(f"{field} is longer than 4096 characters", field=field)
    return joined or None


def split(value: str | None) -> list[str]:
    return [t for t in (value or "").split(",") if t]


def has_all(column, tags: str | None) -> ColumnElement[bool]:
    """SQL: the row's tag column holds every one of `tags` (true when none are asked for)."""
    wanted = split(tags)
    if not wanted:
        return true()
    padded = literal(",", String) + column + literal(",", String)  # ",a,b," (concat() on MariaDB)
    return and_(column.is_not(None), *[padded.contains(f",{t},", autoescape=True) for t in wanted])


def missing(have: str | None, wanted: str | None) -> list[str]:
    """The wanted tags that `have` lacks (Python side, for messages)."""
    got = set(split(have))
    return [t for t in split(wanted) if t not in got]
