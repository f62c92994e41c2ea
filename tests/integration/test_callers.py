"""A signed call's caller is one row (app/services/callers.py): it must answer as the User
would, for every kind of account, and stand in for it where a service needs more."""
from __future__ import annotations

import pytest
from sqlalchemy import update

from app.extensions import db
from app.models import Account, User
from app.models.accounts import AccountState
from app.services import access, accounts, callers, domains, roles
from tests.helpers.users import existing_user
from tests.integration.test_quotas import api

# What the access layer, the role check, the rate limit, events and serialisers read.
FIELDS = ("id", "uuid", "username", "account_id", "is_admin", "role_type", "is_active", "removed")


@pytest.fixture
def people(app):
    with app.app_context():
        existing_user("admin", "adminpass", role="admin", account="admin")
        existing_user("alice", "alicepass", email="alice@example.org")
        sales = domains.create_domain(accounts.get_user("admin"), "sales")
        accounts.create_user("sam", "Sam-pass-12345!", role="domainadmin", account="sam", domain=sales)
        return {name: accounts.ensure_keys(accounts.get_user(name)) for name in ("admin", "alice", "sam")}


@pytest.mark.db
def test_a_caller_answers_as_its_user(app, people):
    with app.app_context():
        for name, (key, _) in people.items():
            caller, user = callers.by_api_key(key), accounts.get_user(name)
            assert {f: getattr(caller, f) for f in FIELDS} == {f: getattr(user, f) for f in FIELDS}, name
            assert roles.allowed(caller, roles.command("listHosts")) == roles.allowed(user, roles.command("listHosts"))
            assert roles.allowed(caller, roles.command("listZones")) and caller == user and user == caller
            assert access.is_root(caller) == (name == "admin") and access.is_domain_admin(caller) == (name == "sam")
            # More than the row: the account (its role and domain), then the User's own fields.
            assert caller.account is user.account and caller.account.domain.name == user.account.domain.name
            assert caller.email == user.email and caller.password_hash == user.password_hash
        assert callers.by_api_key("no-such-key") is None


def test_a_caller_without_a_role_or_enabled_account(app, people):
    """An account made before roles (no role row) takes its type's default role; a disabled
    account's or user's caller is not active, and the API refuses it (401)."""
    with app.app_context():
        alice = accounts.get_user("alice")
        db.session.execute(update(Account).where(Account.id == alice.account_id).values(role_id=None))
        db.session.commit()
        caller = callers.by_api_key(people["alice"][0])
        assert caller.role_ref is None and caller.role_type == "User"
        assert roles.allowed(caller, roles.command("listVirtualMachines"))
        assert not roles.allowed(caller, roles.command("listHosts"))
    assert api(app, app.test_client(), "alice", command="listZones")[0] == 200
    assert api(app, app.test_client(), "alice", command="listHosts")[0] == 432
    with app.app_context():
        db.session.execute(update(Account).where(Account.name == "alice").values(state=AccountState.DISABLED))
        db.session.commit()
        assert not callers.by_api_key(people["alice"][0]).is_active
    assert api(app, app.test_client(), "alice", command="listZones")[0] == 401
    with app.app_context():
        db.session.execute(update(Account).where(Account.name == "alice").values(state=AccountState.ENABLED))
        db.session.execute(update(User).where(User.username == "alice").values(state=AccountState.DISABLED))
        db.session.commit()
        assert not callers.by_api_key(people["alice"][0]).is_active
    assert api(app, app.test_client(), "alice", command="listZones")[0] == 401
