"""Security headers on every answer and the Content-Security-Policy: no inline
script, handler or style in any template or rendered page; HSTS and Secure cookies
when the public origins are https."""
from __future__ import annotations

from urllib.parse import urlencode

from app.extensions import db
from app.services import accounts, settings
from tests.conftest import csrf_token
from tests.integration.test_api import keys, signed  # noqa: F401  (fixture)
from tests.helpers.users import existing_user


def test_security_headers_on_pages_fragments_api_and_static(client, auth, keys):  # noqa: F811
    auth.login("admin")
    answers = {"page": client.get("/admin/"), "login": client.get("/login"),
               "fragment": client.get("/admin/zones/wizard/", headers={"HX-Request": "true"}),
               "static": client.get("/static/css/nubo.css"),
               "api": client.get("/client/api?" + urlencode(signed(keys, "admin", command="listZones"))),
               "404": client.get("/no/such/page")}
    for what, r in answers.items():
        csp = r.headers.get("Content-Security-Policy", "")
        directives = dict((d.split(" ", 1) + [""])[:2] for d in csp.split("; "))
        assert directives.get("script-src") == "'self'", (what, csp)
        assert directives.get("style-src") == "'self'", (what, csp)
        assert directives.get("frame-ancestors") == "'none'" and directives.get("object-src") == "'none'", what
        assert "unsafe" not in csp, (what, csp)
        assert r.headers["X-Content-Type-Options"] == "nosniff", what
        assert r.headers["Referrer-Policy"] in ("same-origin", "no-referrer"), what
        assert "Strict-Transport-Security" not in r.headers, what  # plain http: no HSTS
    # The console proxy's websocket is the one other place the pages connect to.
    console = client.application.config["CONSOLE_PUBLIC_URL"].split("//")[1].rstrip("/")
    assert f"ws://{console}" in answers["page"].headers["Content-Security-Policy"]


def test_https_origins_turn_on_hsts_and_secure_cookies(tmp_path):
    from app import create_app
    app = create_app({"INSTANCE_PATH": str(tmp_path / "i"), "TESTING": True, "SEED_DEMO": False,
                      "JOBS_IMMEDIATE": True, "PUBLIC_ORIGINS": "https://cloud.example",
                      "CONSOLE_PUBLIC_URL": "wss://cloud.example:8443/"})
    with app.app_context():
        db.create_all()
        settings.sync_definitions()
        existing_user("alice", "alicepass")  # a password from before the policy
    client = app.test_client()
    r = client.get("/login")
    assert r.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "wss://cloud.example:8443" in r.headers["Content-Security-Policy"]
    r = client.post("/login", data={"username": "alice", "password": "alicepass", "csrf_token": csrf_token(client)})
    cookie = next(c for c in r.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_plain_http_session_cookie_is_not_secure(client, auth):
    r = auth.login("alice")
    cookie = next(c for c in r.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "Secure" not in cookie  # http://127.0.0.1 in tests: a Secure cookie would never come back


def test_templates_hold_no_inline_script_handler_or_style():
    """The CSP refuses them; every behaviour lives in static/js, every style in static/css."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[2] / "templates"
    found = []
    for path in root.rglob("*.html"):
        text = re.sub(r"{#.*?#}", "", path.read_text(), flags=re.S)
        for pattern in (r"<script(?![^>]*\bsrc=)[^>]*>", r"\son[a-z]+\s*=", r"\sstyle\s*=", r"<style",
                        r"\shx-on", r"javascript:", r"hx-(vals|vars)\s*=\s*['\"]\s*js:"):
            found += [f"{path.relative_to(root)}: {m.group(0)}" for m in re.finditer(pattern, text, flags=re.I)]
    assert not found, found


def test_bars_use_width_classes():
    from app.web.filters import pct_class
    assert [pct_class(v) for v in (-5, 0, 41.6, 100, 250, None, float("nan"))] == [
        "pct-0", "pct-0", "pct-42", "pct-100", "pct-100", "pct-0", "pct-0"]


MAIN_PAGES = ["/admin/", "/admin/zones", "/admin/pods", "/admin/clusters", "/admin/hosts", "/admin/hosts/add",
              "/admin/storage/primary", "/admin/storage/secondary", "/admin/hypervisors/",
              "/admin/hypervisors/matrix", "/admin/simulator/", "/vms/", "/admin/consoles",
              "/admin/accounts/", "/admin/accounts/new", "/portal/", "/portal/deploy", "/volumes/", "/volumes/new",
              "/volumes/offerings", "/portal/keys/", "/portal/keys/new", "/templates/", "/templates/register",
              "/templates/upload", "/events/", "/api-docs/", "/portal/account", "/admin/zones/wizard/", "/console/"]


def test_rendered_main_pages_have_no_inline_script_or_style(client, auth):
    import re
    auth.login("admin")
    for path in MAIN_PAGES:
        r = client.get(path)
        assert r.status_code == 200, path
        html = r.get_data(as_text=True)
        bad = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+\s*=|\sstyle\s*=|<style", html, flags=re.I)
        assert not bad, (path, bad)
