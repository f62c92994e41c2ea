"""CSRF on HTMX requests (the token travels in the X-CSRFToken header that
<body hx-headers> adds): a missing, a wrong, or another session's token is
refused with the CSRF message and changes nothing; the same request with the
session's own token goes through (so the refusal is what kept the state)."""
from __future__ import annotations

import pytest

from app.services import accounts
from app.services import simulator as sim
from tests.conftest import csrf_token
from tests.integration.test_simulator_control import sim_hosts  # noqa: F401  (fixture)

REFUSED = "missing or invalid CSRF token"


def other_session_token(app, users, username: str, other=None) -> str:
    """A valid token, but of another browser's session (logged in as `username`)."""
    other = other or app.test_client()
    token = csrf_token(other, "/login")
    assert other.post("/login", data={"username": username, "password": users[username],
                                      "csrf_token": token}).status_code == 302
    return csrf_token(other, "/portal/")


def sim_host_up(app):
    with app.app_context():
        return sim.get_host("ctl-1").up


def alice_account_state(app):
    with app.app_context():
        return accounts.get_account("alice").state


def logged_in(client):
    return client.get("/portal/").status_code == 200


def account_uuid(app):
    with app.app_context():
        return accounts.get_account("alice").uuid


# (what to POST, how to read the state it changes)
ACTIONS = {
    "sim host power": (lambda app: "/admin/simulator/hosts/ctl-1/power", lambda app, client: sim_host_up(app)),
    "account disable": (lambda app: f"/admin/accounts/{account_uuid(app)}/disable",
                        lambda app, client: alice_account_state(app)),
    "logout": (lambda app: "/logout", lambda app, client: logged_in(client)),
}


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("token", ["missing", "garbage", "another admin session", "alice's session",
                                   "right token, other session's cookie"])
def test_htmx_post_with_a_wrong_csrf_token_is_refused_and_changes_nothing(app, client, users, auth,
                                                                          sim_hosts, action, token):  # noqa: F811
    url_of, state_of = ACTIONS[action]
    auth.login("admin")
    own = auth.csrf("/admin/")
    url = url_of(app)
    before = state_of(app, client)
    sent = {"missing": None, "garbage": "not-a-token",
            "another admin session": other_session_token(app, users, "admin"),
            "alice's session": other_session_token(app, users, "alice"),
            "right token, other session's cookie": own}[token]
    sender = client
    if token == "right token, other session's cookie":
        sender = app.test_client()  # our token replayed from a browser logged in elsewhere as admin
        other_session_token(app, users, "admin", sender)
    headers = {"HX-Request": "true", **({"X-CSRFToken": sent} if sent else {})}
    resp = sender.post(url, headers=headers)
    assert resp.status_code == 400 and REFUSED in resp.get_data(as_text=True)
    assert state_of(app, client) == before
    # The same request with the session's own token changes the state.
    resp = client.post(url, headers={"HX-Request": "true", "X-CSRFToken": own})
    assert resp.status_code < 400 and state_of(app, client) != before
