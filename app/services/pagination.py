"""(rows, total) for a list query, with CloudStack's page/pagesize, and the
whitelisted ORDER BY the admin lists sort by."""
from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import ColumnElement, Select, func, select

from app.extensions import db


def page_of(query: Select, page: tuple[int, int] | None, *, scalars: bool = True):
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    if page:
        number, size = page
        query = query.limit(size).offset((number - 1) * size)
    result = db.session.scalars(query) if scalars else db.session.execute(query)
    return list(result), total


def sorted_by(query: Select, sort: str | None, columns: Mapping[str, ColumnElement],
              tiebreak: ColumnElement) -> Select:
    """ORDER BY the column named by `sort` ("name", or "-name" for descending), then
    by `tiebreak` so pages never overlap. Only keys of `columns` are accepted (a
    whitelist: the key comes from the query string); anything else, or no key,
    keeps the plain `tiebreak` order."""
    key = (sort or "").strip()
    descending = key.startswith("-")
    column = columns.get(key.lstrip("-"))
    if column is None:
        return query.order_by(tiebreak)
    return query.order_by(column.desc() if descending else column.asc(), tiebreak)


def name_of(model, key: ColumnElement) -> ColumnElement:
    """The name of the row `key` points at, as a sort expression (no join needed)."""
    return select(model.name).where(model.id == key).scalar_subquery()


def ratio(part: ColumnElement, whole: ColumnElement) -> ColumnElement:
    """part / whole as a sort expression, 0 where whole is 0 (same NULL-free order on every database)."""
    return func.coalesce(part * 1.0 / func.nullif(whole, 0), 0)
