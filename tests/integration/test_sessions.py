"""Sessions end at logout, at a password change and after their lifetime: a cookie
copied before is refused after (the web pages and the API's sessionkey)."""
from __future__ import annotations

import json

import pytest

from sqlalchemy import func, select

from app.extensions import db
from app.models import RevokedSession
from app.services import accounts, settings
from tests.conftest import AuthActions, csrf_token

pytestmark = pytest.mark.db


def copy_of(app, client):
    """Another browser holding the same session cookie."""
    other = app.test_client()
    other.set_cookie("session", client.get_cookie("session").value)
    return other


def test_a_cookie_copied_before_logout_is_refused_after(app, client, auth):
    auth.login("alice")
    stolen = copy_of(app, client)
    assert stolen.get("/portal/").status_code == 200
    auth.logout()
    resp = stolen.get("/portal/")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    assert client.get("/portal/").status_code == 302
    assert auth.login("alice").status_code == 302 and client.get("/portal/").status_code == 200  # logs in again


def test_a_password_change_ends_the_other_sessions(app, client, auth):
    auth.login("alice")
    stolen = copy_of(app, client)
    elsewhere = app.test_client()
    from tests.conftest import AuthActions
    AuthActions(elsewhere).login("alice")
    assert stolen.get("/portal/").status_code == 200 and elsewhere.get("/portal/").status_code == 200
    resp = client.post("/portal/account/password", data={
        "current": "alicepass", "new": "a-brand-new-secret-9", "confirm": "a-brand-new-secret-9",
        "csrf_token": auth.csrf()})
    assert resp.status_code == 302
    assert stolen.get("/portal/").status_code == 302
    assert elsewhere.get("/portal/").status_code == 302
    assert client.get("/portal/").status_code == 200  # the page that changed it goes on


def test_an_admin_password_reset_ends_the_users_sessions(app, client, auth):
    alice = app.test_client()
    from tests.conftest import AuthActions
    AuthActions(alice).login("alice")
    with app.app_context():
        admin, user = accounts.get_user("admin"), accounts.get_user("alice")
        accounts.update_user(admin, user, password="reset-by-the-admin-3")
    assert alice.get("/portal/").status_code == 302


def api_login(client, user="alice", password="alicepass") -> str:
    resp = client.post("/client/api", data={"command": "login", "username": user, "password": password,
                                            "response": "json"})
    assert resp.status_code == 200, resp.data
    return json.loads(resp.data)["loginresponse"]["sessionkey"]


def api_call(client, key, command="listUsers"):
    return client.get("/client/api", query_string={"command": command, "sessionkey": key, "response": "json"})


def test_an_api_sessionkey_ends_at_logout(app, client, users):
    key = api_login(client)
    stolen = copy_of(app, client)
    assert api_call(stolen, key).status_code == 200
    assert api_call(client, key, "logout").status_code == 200
    assert api_call(stolen, key).status_code == 401
    assert api_call(client, key).status_code == 401


def test_an_api_sessionkey_ends_at_a_password_change(app, client, users):
    key = api_login(client)
    with app.app_context():
        accounts.set_password(accounts.get_user("alice"), "another-fine-secret-4")
    assert api_call(client, key).status_code == 401


def revoked_rows(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(RevokedSession))


def test_logout_of_one_browser_leaves_the_other_working(app, client, auth):
    auth.login("alice")
    other = app.test_client()
    AuthActions(other).login("alice")
    copied = copy_of(app, client)
    assert other.get("/portal/").status_code == 200 and copied.get("/portal/").status_code == 200
    before = revoked_rows(app)
    auth.logout()
    assert revoked_rows(app) == before + 1  # one row: this session's
    assert client.get("/portal/").status_code == 302
    assert copied.get("/portal/").status_code == 302  # a copy of the logged-out cookie
    assert other.get("/portal/").status_code == 200  # the other browser goes on
    AuthActions(other).logout()
    assert other.get("/portal/").status_code == 302


def test_an_api_sessionkey_survives_a_browser_logout_and_vice_versa(app, client, auth):
    api = app.test_client()
    key = api_login(api)
    auth.login("alice")
    auth.logout()
    assert api_call(api, key).status_code == 200  # the script's session goes on
    auth.login("alice")
    assert api_call(api, key, "logout").status_code == 200
    assert api_call(api, key).status_code == 401
    assert client.get("/portal/").status_code == 200  # the browser goes on


def test_a_logout_signed_with_keys_ends_nothing(app, client, auth):
    from app.api.signing import sign
    with app.app_context():
        api_key, secret = accounts.ensure_keys(accounts.get_user("alice"))
    script = app.test_client()
    key = api_login(script)
    auth.login("alice")
    params = {"apiKey": api_key, "command": "logout", "response": "json"}
    params["signature"] = sign(params, secret)
    before = revoked_rows(app)
    resp = app.test_client().get("/client/api", query_string=params)
    assert resp.status_code == 200 and json.loads(resp.data)["logoutresponse"]["description"] == "success"
    assert revoked_rows(app) == before
    assert client.get("/portal/").status_code == 200 and api_call(script, key).status_code == 200


def test_a_copy_from_before_an_api_login_in_the_same_browser_ends_at_its_logout(app, client, auth):
    auth.login("alice")
    copied = copy_of(app, client)
    key = api_login(client)  # the browser's session is replaced by the API login's
    assert client.get("/portal/").status_code == 200 and api_call(client, key).status_code == 200
    assert copied.get("/portal/").status_code == 302  # the replaced session is revoked
    auth.logout()
    assert api_call(client, key).status_code == 401


@pytest.mark.parametrize("what", ["user", "account"])
def test_disabling_ends_the_sessions_for_good(app, client, auth, what):
    auth.login("alice")
    key = api_login(api := app.test_client())
    with app.app_context():
        admin, alice = accounts.get_user("admin"), accounts.get_user("alice")
        if what == "user":
            accounts.set_user_state(alice, False)
            accounts.set_user_state(alice, True)
        else:
            accounts.set_account_state(admin, alice.account, False)
            accounts.set_account_state(admin, alice.account, True)
    assert client.get("/portal/").status_code == 302 and api_call(api, key).status_code == 401
    assert auth.login("alice").status_code == 302 and client.get("/portal/").status_code == 200


def test_revoked_sessions_are_pruned_after_their_lifetime(app, client, auth, monkeypatch):
    from app.services import sessions
    clock = [2_000_000_000.0]
    monkeypatch.setattr(sessions, "_now", lambda: clock[0])
    auth.login("alice")
    auth.logout()
    assert revoked_rows(app) == 1
    clock[0] += 720 * 60 - 1
    with app.app_context():
        assert sessions.prune() == 0
    clock[0] += 2
    with app.app_context():
        assert sessions.prune() == 1  # the monitor's reconcile pass runs it too
    assert revoked_rows(app) == 0


def test_a_session_without_an_id_is_refused(app, client, auth):
    auth.login("alice")
    with client.session_transaction() as s:  # a cookie from before sessions had ids
        s.pop("_nubo_sid")
    assert client.get("/portal/").status_code == 302


@pytest.mark.parametrize("setting,minutes", [("session.timeout", 30), ("session.max.lifetime", 720)])
def test_sessions_have_a_lifetime(app, client, auth, monkeypatch, setting, minutes):
    from app.services import sessions
    clock = [1_000_000.0]
    monkeypatch.setattr(sessions, "_now", lambda: clock[0])
    auth.login("alice")
    key = api_login(api := app.test_client())
    assert client.get("/portal/").status_code == 200
    if setting == "session.max.lifetime":  # busy all along: every 20 minutes a request
        for _ in range(minutes // 20 - 1):
            clock[0] += 20 * 60
            assert client.get("/portal/").status_code == 200 and api_call(api, key).status_code == 200
        clock[0] += 20 * 60 + 1
    else:  # idle: just within, then just past
        clock[0] += minutes * 60 - 5
        assert client.get("/portal/").status_code == 200 and api_call(api, key).status_code == 200
        clock[0] += minutes * 60 + 1
    assert client.get("/portal/").status_code == 302
    assert api_call(api, key).status_code == 401


def test_the_timeout_is_a_setting_and_login_reports_it(app, client, users):
    with app.app_context():
        settings.update("session.timeout", "5")
    resp = client.post("/client/api", data={"command": "login", "username": "alice", "password": "alicepass",
                                            "response": "json"})
    assert json.loads(resp.data)["loginresponse"]["timeout"] == "300"


def test_logout_form_needs_no_valid_session(client, users):
    """Logging out with an already ended session is harmless (no error page)."""
    resp = client.post("/logout", data={"csrf_token": csrf_token(client)})
    assert resp.status_code == 302
