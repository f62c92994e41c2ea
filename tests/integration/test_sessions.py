"""Sessions end at logout, at a password change and after their lifetime: a cookie
copied before is refused after (the web pages and the API's sessionkey)."""
from __future__ import annotations

import json

import pytest

from app.services import accounts, settings
from tests.conftest import csrf_token

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


def test_web_logout_ends_the_api_session_too(app, client, auth):
    api = app.test_client()
    key = api_login(api)
    auth.login("alice")
    auth.logout()
    assert api_call(api, key).status_code == 401


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
