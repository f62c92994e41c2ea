"""Login, logout, throttling, CSRF and role checks on the pages."""
import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Event, User
from app.services import accounts

# On SQLite only, but for the tests marked `db` below (their queries list, filter, sort or count):
# the rest is forms, pages and access rules, the same on every database.


def test_login_page_and_admin_login(client, auth):
    page = client.get("/login")
    assert page.status_code == 200
    assert b'name="username"' in page.data and b'name="password"' in page.data
    resp = auth.login("admin")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/")
    dash = client.get("/admin/")
    assert dash.status_code == 200 and b"Log out" in dash.data


def test_user_lands_on_my_vms(client, auth):
    resp = auth.login("alice")
    assert resp.headers["Location"].endswith("/portal/")
    page = client.get("/portal/")
    assert b"My VMs" in page.data and b"Log out" in page.data
    assert b'href="/admin/"' not in page.data  # admin navigation hidden from users


def test_wrong_password_is_refused_with_message(client, auth, app):
    resp = auth.login("alice", "nope-nope")
    assert resp.status_code == 401
    assert b"Wrong username or password" in resp.data
    assert client.get("/portal/").status_code == 302  # still logged out
    with app.app_context():
        assert db.session.scalar(select(Event).where(Event.type == "USER.LOGIN", Event.level == "WARN"))


def test_malformed_form_gets_field_messages(client, users):
    from tests.conftest import csrf_token
    resp = client.post("/login", data={"username": "", "password": "", "csrf_token": csrf_token(client)})
    assert resp.status_code == 400
    assert b"This field is required" in resp.data


def test_logout(client, auth):
    auth.login("alice")
    resp = auth.logout()
    assert resp.status_code == 302
    assert client.get("/portal/").status_code == 302


def test_logout_without_csrf_is_refused(client, auth):
    auth.login("alice")
    resp = client.post("/logout")
    assert resp.status_code == 400
    assert b"CSRF" in resp.data
    assert client.get("/portal/").status_code == 200  # still logged in


def test_login_without_csrf_is_refused(client, users):
    resp = client.post("/login", data={"username": "admin", "password": "adminpass"})
    assert resp.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_htmx_post_needs_csrf_header(client, auth):
    auth.login("alice")
    resp = client.post("/logout", headers={"HX-Request": "true"})
    assert resp.status_code == 400
    resp = client.post("/logout", headers={"HX-Request": "true", "X-CSRFToken": auth.csrf()})
    assert resp.status_code == 302


@pytest.mark.db
def test_throttling_slows_repeated_failures(client, auth, app):
    from app.models import LoginThrottle, utcnow
    for _ in range(3):
        assert auth.login("alice", "wrong-pass").status_code == 401
    with app.app_context():
        row = db.session.scalar(select(LoginThrottle).where(LoginThrottle.username == "alice"))
        assert row.attempts == 3 and row.locked_until is not None  # the 3rd failure starts a 1 s wait
        row.locked_until = utcnow().replace(year=2100)  # long, so a slow machine stays inside it
        db.session.commit()
    # The 4th attempt within the wait is refused even with the right password.
    resp = auth.login("alice", "alicepass")
    assert resp.status_code == 429
    assert b"Too many failed attempts" in resp.data
    with app.app_context():
        assert accounts.get_user("alice").failed_logins == 3
        # Once the wait is over the right password works and resets the counters.
        db.session.execute(db.update(LoginThrottle).values(locked_until=utcnow().replace(year=2000)))
        db.session.commit()
    assert auth.login("alice", "alicepass").status_code == 302
    with app.app_context():
        assert accounts.get_user("alice").failed_logins == 0
        assert db.session.scalar(select(LoginThrottle).where(LoginThrottle.username == "alice")) is None


def test_disabled_user_cannot_log_in(client, auth, app):
    with app.app_context():
        accounts.set_user_state(accounts.get_user("alice"), enabled=False)
    assert auth.login("alice").status_code == 401


@pytest.mark.parametrize("path", ["/admin/"])
def test_admin_pages_refused_to_users(client, auth, path):
    auth.login("alice")
    resp = client.get(path)
    assert resp.status_code == 403
    assert b"permission" in resp.data


@pytest.mark.parametrize("path", ["/admin/", "/portal/"])
def test_pages_need_login(client, path):
    resp = client.get(path)
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_no_open_redirect_after_login(client, users):
    from tests.conftest import csrf_token
    resp = client.post("/login?next=https://evil.example/", data={
        "username": "alice", "password": "alicepass", "csrf_token": csrf_token(client)})
    assert resp.headers["Location"].endswith("/portal/")


def test_session_cookie_flags(client, auth):
    resp = auth.login("alice")
    cookie = next(c for c in resp.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_password_is_hashed_with_scrypt(app, users):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        assert user.password_hash.startswith("scrypt:")
    # Production's cost is werkzeug's default; the suite's cheaper one comes from its conftest.
    from app.services.accounts import _password_method
    assert _password_method({}) == "scrypt"
    assert _password_method({"NUBO_PASSWORD_HASH": "scrypt:1024:8:1"}) == "scrypt:1024:8:1"
    with pytest.raises(RuntimeError, match="only scrypt"):
        _password_method({"NUBO_PASSWORD_HASH": "plain"})
