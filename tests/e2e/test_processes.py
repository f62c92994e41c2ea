"""The processes `make run` starts: first start, login, restart keeps data."""
import re

import pytest
import requests

from tests.e2e.conftest import screenshot

pytestmark = pytest.mark.browser


def _login(session: requests.Session, url: str, username: str, password: str) -> requests.Response:
    html = session.get(url + "/login").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
    return session.post(url + "/login", data={"username": username, "password": password,
                                              "csrf_token": token})


# On SQLite, the embedded default `make run` uses. The first start on PostgreSQL and MariaDB
# (`flask db upgrade` and `flask bootstrap` on an empty server database, then every process)
# is test_scale_out's, whose stacks start on a fresh server database; the migrations
# themselves are test_migrations' on all three.
def test_first_start_login_and_restart_keeps_data(stack):
    stack.template = None  # a real first start: `flask db upgrade` and `flask bootstrap` on an empty instance
    first = stack.start()
    assert "Running upgrade" in stack.upgrade_output  # the empty instance was migrated
    assert "password:" not in stack.bootstrap_output  # NUBO_ADMIN_PASSWORD was used
    s = requests.Session()
    resp = _login(s, stack.url, "admin", "e2e-operator-pass")
    assert resp.url.endswith("/admin/") and "Dashboard" in resp.text
    log = stack.log.read_text()
    for proc in ("web.1", "upload.1", "worker.1", "transfers.1", "monitor.1", "console.1"):
        assert f"{proc} started" in log
    stack.flask("user", "create", "kept", "--password", "grey-harbor-secret-1")
    stack.stop()

    second = stack.start()
    print(f"\nsecond start: {second:.1f} s (figures: bench/RESULTS.md)")
    assert "Running upgrade" not in stack.upgrade_output  # a restart migrates nothing again
    s = requests.Session()
    assert _login(s, stack.url, "kept", "grey-harbor-secret-1").url.endswith("/portal/")
    assert _login(requests.Session(), stack.url, "admin", "wrong").status_code == 401
    print(f"first start {first:.1f}s, second start {second:.1f}s")


def test_login_in_chromium(shared_stack, page):
    stack = shared_stack
    page.goto(stack.url + "/")
    assert page.title().startswith("Log in")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "e2e-operator-pass")
    page.click("button[type=submit]")
    page.wait_for_url("**/admin/")
    assert page.locator("h1").inner_text() == "Dashboard"
    screenshot(page, "admin-dashboard")
    page.click("text=Log out")
    page.wait_for_url("**/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "nope-nope")
    page.click("button[type=submit]")
    assert "Wrong username or password" in page.locator(".form-errors").inner_text()
    screenshot(page, "login-error")
