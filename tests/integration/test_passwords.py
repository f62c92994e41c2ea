"""New passwords: 12 characters at least, not a common one, not the user name;
everywhere a password is set (service, pages, CLI, API); old ones keep working."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import User
from app.services import accounts
from app.services.errors import InvalidParameter


REFUSED = ["short-pw-9", "", "passwordpassword", "Password1234", "qwertyuiop123", "aaaaaaaaaaaaaaaa",
           "1234567890123", "iloveyou2024!"]


def users_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


@pytest.mark.parametrize("password", REFUSED)
def test_weak_passwords_are_refused_when_creating(app, password):
    with app.app_context(), pytest.raises(InvalidParameter) as e:
        accounts.create_user("carol", password)
    assert e.value.field == "password"
    assert users_count(app) == 0


def test_the_user_name_is_no_password(app):
    with app.app_context(), pytest.raises(InvalidParameter, match="user name"):
        accounts.create_user("margaret.anne", "Margaret.Anne")  # 13 characters, not in the list


def test_a_good_password_is_accepted(app):
    with app.app_context():
        accounts.create_user("carol", "lantern-otter-quietly-7")
        assert accounts.authenticate("carol", "lantern-otter-quietly-7") is not None


def test_the_list_is_shipped_and_sizeable():
    common = accounts._common_passwords()
    assert 2000 <= len(common) <= 50000
    assert all(len(p) >= accounts.MIN_PASSWORD_LENGTH for p in common)


def test_existing_short_passwords_keep_working_until_changed(app, users, client, auth):
    assert auth.login("alice", "alicepass").status_code == 302  # 9 characters, set before the policy
    with app.app_context():
        alice = accounts.get_user("alice")
        with pytest.raises(InvalidParameter):
            accounts.update_user(alice, alice, password="alicepass2", current_password="alicepass")
        with pytest.raises(InvalidParameter):
            accounts.set_password(alice, "short")
    from tests.conftest import AuthActions
    assert AuthActions(app.test_client()).login("alice", "alicepass").status_code == 302  # unchanged


def test_the_pages_refuse_weak_passwords(app, users, client, auth):
    auth.login("alice")
    resp = client.post("/portal/account/password", data={
        "current": "alicepass", "new": "qwertyuiop123", "confirm": "qwertyuiop123", "csrf_token": auth.csrf()})
    assert resp.status_code == 422 and "too common" in resp.get_data(as_text=True)
    auth.logout()
    auth.login("admin")
    before = users_count(app)
    resp = client.post("/admin/accounts/new", data={"account": "", "role": "user", "username": "carol",
                                                    "password": "carolpass", "csrf_token": auth.csrf("/admin/")})
    assert resp.status_code == 422 and "at least 12" in resp.get_data(as_text=True), resp.get_data(as_text=True)
    assert users_count(app) == before


def test_the_cli_refuses_weak_passwords(app, runner):
    result = runner.invoke(args=["user", "create", "carol", "--password", "carol-pass"])
    assert result.exit_code != 0 and "at least 12" in result.output
    result = runner.invoke(args=["user", "create", "carol", "--password", "passwordpassword"])
    assert result.exit_code != 0 and "too common" in result.output
    assert users_count(app) == 0


def test_the_api_refuses_weak_passwords(app, users, client):
    with app.app_context():
        api_key, secret = accounts.ensure_keys(accounts.get_user("admin"))
    from app.api import signing

    def call(**params):
        params = {"apiKey": api_key, "response": "json", **params}
        params["signature"] = signing.sign(params, secret)
        return client.post("/client/api", data=params)

    before = users_count(app)
    resp = call(command="createUser", username="carol", password="carolpass", account="alice",
                email="c@example.org", firstname="C", lastname="D")
    assert resp.status_code == 431 and "at least 12" in json.loads(resp.data)["createuserresponse"]["errortext"]
    resp = call(command="createAccount", username="dave", password="changemechangeme", accounttype="0",
                email="d@example.org", firstname="D", lastname="E")
    assert resp.status_code == 431 and "too common" in resp.get_data(as_text=True)
    assert users_count(app) == before
    with app.app_context():
        alice_id, old_hash = accounts.get_user("alice").uuid, accounts.get_user("alice").password_hash
    resp = call(command="updateUser", id=alice_id, password="short-one")
    assert resp.status_code == 431
    with app.app_context():
        assert accounts.get_user("alice").password_hash == old_hash
