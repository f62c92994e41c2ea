"""Pages and totals (services/pagination.py) on every database: the deferred join,
a partial page's own total, the one-scan count, and the reuse of large totals."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models import Account
from app.services import accounts, pagination, settings
from app.services.pagination import page_ids, page_of

pytestmark = pytest.mark.db


def names(rows):
    return [a.name for a in rows]


def test_pages_and_totals(app, monkeypatch):
    with app.app_context():
        for i in range(7):
            accounts.create_user(f"p{i}", "password1")
        q = select(Account).where(Account.removed.is_(None), Account.name.like("p%")).order_by(Account.id)
        assert page_of(q, (2, 3)) == (page_of(q, None)[0][3:6], 7)
        assert names(page_of(q, (2, 3))[0]) == ["p3", "p4", "p5"]
        assert names(page_of(q, (3, 3))[0]) == ["p6"] and page_of(q, (3, 3))[1] == 7  # partial: no COUNT
        assert page_of(q, (4, 3)) == ([], 7)
        newest = q.order_by(None).order_by(Account.id.desc())
        ids, total = page_ids(newest, (1, 3), scan_once=True)
        assert total == 7 and ids == [a.id for a in page_of(newest, (1, 3))[0]]
        assert page_ids(newest.where(Account.name == "nobody"), (1, 3), scan_once=True) == ([], 0)


def test_large_totals_are_reused_for_a_few_seconds(app, monkeypatch):
    with app.app_context():
        for i in range(7):
            accounts.create_user(f"p{i}", "password1")
        q = select(Account).where(Account.removed.is_(None), Account.name.like("p%")).order_by(Account.id)
        monkeypatch.setattr(pagination, "LARGE_COUNT", 5)
        monkeypatch.setattr(pagination, "_counts", {})
        settings.update("list.count.cache.seconds", "60")
        assert page_of(q, (1, 3))[1] == 7
        accounts.create_user("p7", "password1")
        assert page_of(q, (1, 3))[1] == 7  # reused
        assert page_of(q, (3, 3)) == (page_of(q, None)[0][6:], 8)  # a partial page is always exact
        assert page_of(q.where(Account.name != "x"), (1, 3))[1] == 8  # another query: counted
        settings.update("list.count.cache.seconds", "0")
        settings.clear_cache()
        assert page_of(q, (1, 3))[1] == 8
