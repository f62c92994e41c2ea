"""Pages and totals (services/pagination.py) on every database: the deferred join,
a partial page's own total, the one-scan count, and the reuse of large totals."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Account
from app.services import accounts, pagination, settings
from app.services.pagination import page_ids, page_of
from tests.helpers.users import existing_user

pytestmark = pytest.mark.db


def names(rows):
    return [a.name for a in rows]


def test_pages_and_totals(app, monkeypatch):
    with app.app_context():
        for i in range(7):
            existing_user(f"p{i}", "password1")
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
            existing_user(f"p{i}", "password1")
        q = select(Account).where(Account.removed.is_(None), Account.name.like("p%")).order_by(Account.id)
        monkeypatch.setattr(pagination, "LARGE_COUNT", 5)
        monkeypatch.setattr(pagination, "_counts", {})
        settings.update("list.count.cache.seconds", "60")
        assert page_of(q, (1, 3))[1] == 7
        existing_user("p7", "password1")
        assert page_of(q, (1, 3))[1] == 7  # reused
        assert page_of(q, (3, 3)) == (page_of(q, None)[0][6:], 8)  # a partial page is always exact
        assert page_of(q.where(Account.name != "x"), (1, 3))[1] == 8  # another query: counted
        settings.update("list.count.cache.seconds", "0")
        settings.clear_cache()
        assert page_of(q, (1, 3))[1] == 8


def test_a_reused_total_is_never_another_accounts(app, users, monkeypatch):
    """The same list asked by two users is two statements (the account is a bound
    value of each): each gets its own account's total, cached or not."""
    from app.services import events, keypairs
    monkeypatch.setattr(pagination, "LARGE_COUNT", 5)
    monkeypatch.setattr(pagination, "_counts", {})
    with app.app_context():
        settings.update("list.count.cache.seconds", "60")
        alice, bob, admin = (accounts.get_user(n) for n in ("alice", "bob", "admin"))
        for user, n in ((alice, 7), (bob, 9)):
            for i in range(n):
                events.record("VM.CREATE", f"VM {user.username}-{i} created", user=user)
                keypairs.create(user, f"{user.username}-key-{i}", key_type="ed25519")
        db.session.commit()
        from sqlalchemy import func

        from app.models import Event
        exact = {u.username: db.session.scalar(select(func.count()).select_from(Event).where(
            Event.account_id == u.account_id)) for u in (alice, bob)}
        assert exact["alice"] != exact["bob"]
        before = {u.username: events.list_events(u, page=(1, 3))[1] for u in (alice, bob, admin)}
        keys = {u.username: keypairs.list_keypairs(u, page=(1, 3))[1] for u in (alice, bob)}
        again = {u.username: events.list_events(u, page=(1, 3))[1] for u in (bob, alice)}
        by_name = {name: keypairs.list_keypairs(admin, account=name, page=(1, 3))[1] for name in ("alice", "bob")}
    assert before["alice"] == exact["alice"] and before["bob"] == exact["bob"]
    assert before["admin"] >= exact["alice"] + exact["bob"]
    assert keys == {"alice": 7, "bob": 9} and by_name == {"alice": 7, "bob": 9}
    assert again == {"bob": exact["bob"], "alice": exact["alice"]}
    assert len(pagination._counts) >= 4  # the totals were cached, each under its own key
