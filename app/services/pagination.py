"""(rows, total) for a list query, with CloudStack's page/pagesize."""
from __future__ import annotations

from sqlalchemy import Select, func, select

from app.extensions import db


def page_of(query: Select, page: tuple[int, int] | None, *, scalars: bool = True):
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    if page:
        number, size = page
        query = query.limit(size).offset((number - 1) * size)
    result = db.session.scalars(query) if scalars else db.session.execute(query)
    return list(result), total
