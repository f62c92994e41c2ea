"""Every page in Chromium with axe-core: the admin's pages and a user's, each at 1280x800
and at a phone's 390x844. The pages are the app's GET routes without arguments (`flask
routes`) and, for the detail pages, one link of each kind found on them (a Simulator zone
with a VM, a volume, a network... built through the API). On each: no serious or critical
axe violation, the body does not overflow sideways, the sidebar's entries stay on one line
at 1280 and the phone's top bar is one row. Screenshots: test-artifacts/a11y-*.png.

One stack, one browser context per role, axe injected by the test (not in the pages)."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.api.test_templates_cs import files  # noqa: F401  (fixture: a RAW image over HTTP)
from tests.api.test_vms_cs import deploy, simulator_zone
from tests.e2e.conftest import ROOT, assert_no_csp_violations, screenshot, watch_csp

pytestmark = pytest.mark.browser
WIDE, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}
USER, PASSWORD = "ada", "pebble-harbor-a11y-77"
# Not pages: a logout, a health probe, downloads, fragments of other pages, a form's
# second step reached by POST, the console's own window (it needs a session token), the
# column chooser (it sets a cookie), the Server-Sent Events stream.
SKIP = re.compile(r"^/(api|client|static|healthz|readyz|metrics|logout|login$|console/$)|/upload-url$|/Custom/name$"
                  r"|^/vms/columns$|(^|/)stream(/|$)")  # /stream: the live pages' event stream, never "loaded"
UUIDISH = re.compile(r"/[0-9a-f]{8}-[0-9a-f-]{27,}|/\d+(?=/|$)")


def get_routes(stack) -> list[str]:
    """GET rules without arguments, from the app itself."""
    out = stack.flask("routes", "--sort", "rule").stdout.splitlines()
    rules = []
    for line in out[2:]:
        parts = line.split()
        if len(parts) >= 3 and "GET" in parts[1] and "<" not in parts[-1] and not SKIP.search(parts[-1]):
            rules.append(parts[-1])
    return rules


def detail_links(page) -> list[str]:
    """Links to pages with an id in their path, from the page's main content."""
    hrefs = page.eval_on_selector_all("main a[href^='/']", "els => els.map(e => e.getAttribute('href'))")
    return [h.split("#")[0] for h in hrefs if UUIDISH.search(h.split("?")[0])]


TIMES: dict[str, float] = {}


def timed(key, t0):
    TIMES[key] = TIMES.get(key, 0) + time.monotonic() - t0


def axe_problems(page) -> list[str]:
    t0 = time.monotonic()
    try:
        return _axe_problems(page)
    finally:
        timed("axe", t0)


def _axe_problems(page) -> list[str]:
    if not page.evaluate("typeof axe === 'object'"):
        # By URL: the pages' CSP refuses an inline script (add_script_tag(path=...)); the
        # vendored file is served from static/, and no production page includes it.
        page.add_script_tag(url="/static/vendor/axe-core/axe.min.js")
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
          .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '));
    }""")
    return result


LAYOUT = """() => {
  const doc = document.documentElement, bar = document.querySelector('.topbar');
  const links = [...document.querySelectorAll('.nav-panel a, .nav-group > summary')]
    .filter(a => a.offsetParent !== null);
  const tall = links.filter(a => a.getClientRects().length > 1 || a.scrollWidth > a.clientWidth + 1)
    .map(a => a.textContent.trim());
  return {overflow: doc.scrollWidth - window.innerWidth, bar: bar ? bar.getBoundingClientRect().height : 0,
          cut: tall};
}"""


def slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", UUIDISH.sub("/x", path).lower()).strip("-") or "home"


def check(page, url: str, path: str, name: str, problems: list[str]) -> bool:
    page.set_viewport_size(WIDE)
    try:
        response = page.goto(url + path)
    except Exception as e:  # a download link: not a page
        if "Download is starting" in str(e):
            return False
        raise
    if response is None or response.status != 200:
        return False  # 403 for a user, a redirect to a form's start...
    page.wait_for_load_state("load")
    for v in axe_problems(page):
        problems.append(f"{name} {path} wide: {v}")
    lay = page.evaluate(LAYOUT)
    if lay["overflow"] > 0 or lay["cut"]:
        problems.append(f"{name} {path} wide: overflow {lay['overflow']} px, cut nav entries {lay['cut']}")
    t0 = time.monotonic()
    screenshot(page, f"a11y-{name}-{slug(path)}-1280")
    timed("shot", t0)
    page.set_viewport_size(PHONE)
    expect(page.locator("details.navmenu[open]")).to_have_count(0)  # nubo.js closes the menu
    lay = page.evaluate(LAYOUT)
    if lay["overflow"] > 0 or lay["bar"] > 64:
        problems.append(f"{name} {path} phone: overflow {lay['overflow']} px, top bar {lay['bar']:.0f} px")
    for v in axe_problems(page):
        problems.append(f"{name} {path} phone: {v}")
    screenshot(page, f"a11y-{name}-{slug(path)}-390")
    return True


def visit_all(ctx, url: str, paths: list[str], name: str, problems: list[str]) -> list[str]:
    page = ctx.new_page()
    seen_kinds: set[str] = set()
    visited = []
    queue = list(paths)
    while queue:
        path = queue.pop(0)
        if check(page, url, path, name, problems):
            visited.append(path)
            if "<" in path:
                continue
            page.set_viewport_size(WIDE)
            for link in detail_links(page):
                kind = UUIDISH.sub("/x", link.split("?")[0])
                if kind not in seen_kinds and not SKIP.search(link):
                    seen_kinds.add(kind)
                    queue.append(link)
    page.close()
    return visited


def test_every_page_passes_axe_at_both_sizes(stack, browser, files, tmp_path):  # noqa: F811
    stack.start()
    api = stack.api()
    z, hosts, t, so = simulator_zone(api, files, tmp_path)
    api.createAccount(username=USER, password=PASSWORD, email="ada@example.org", firstname="Ada", lastname="L")
    vm = deploy(api, z, t, so, name="web1")
    deploy(api, z, t, so, name="db1")
    do = api.createDiskOffering(name="d1", displaytext="1 GiB", disksize=1)["diskoffering"]
    api.createVolume(name="data1", zoneid=z["id"], diskofferingid=do["id"])
    api.createSSHKeyPair(name="key1")
    api.createSecurityGroup(name="sg1")
    routes = get_routes(stack)
    assert "/vms/" in routes and "/admin/hosts" in routes

    problems: list[str] = []
    csp: list[str] = []
    t0 = time.monotonic()
    for name, user, password in (("admin", "admin", "e2e-operator-pass"), ("user", USER, PASSWORD)):
        ctx = browser.new_context(viewport=WIDE)
        ctx.set_default_timeout(60_000)
        watch_csp(ctx, csp)
        page = ctx.new_page()
        page.goto(stack.url + "/login")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/(admin|portal)/$"))
        # The keyboard: the first Tab reaches the skip link, which leads to the main content.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.classList.contains('skip-link')")
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        # On a phone the sidebar is behind the Menu button, operable by keyboard: Enter opens
        # it (its links visible), Escape closes it and gives the focus back to the button.
        page.set_viewport_size(PHONE)
        menu = page.locator("summary.navmenu-button")
        expect(menu).to_be_visible()
        expect(page.locator(".nav-panel")).to_be_hidden()
        menu.focus()
        page.keyboard.press("Enter")
        expect(page.locator(".nav-panel")).to_be_visible()
        expect(page.locator(".nav-panel a[aria-current]")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.locator(".nav-panel")).to_be_hidden()
        assert page.evaluate("document.activeElement.classList.contains('navmenu-button')")
        page.close()
        extra = [f"/vms/{vm['id']}", "/vms/?view=destroyed", "/search/?find=web"] if name == "admin" else \
            ["/search/?find=web"]
        visited = visit_all(ctx, stack.url, routes + extra, name, problems)
        assert len(visited) > (40 if name == "admin" else 15), visited
        Path(ROOT / "test-artifacts" / f"a11y-{name}-pages.json").write_text(json.dumps(visited, indent=1))
        ctx.close()
    # Dark mode (prefers-color-scheme): the main pages' contrast in the other palette.
    ctx = browser.new_context(viewport=WIDE, color_scheme="dark")
    watch_csp(ctx, csp)
    page = ctx.new_page()
    page.goto(stack.url + "/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "e2e-operator-pass")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))
    for path in ("/admin/", "/vms/", f"/vms/{vm['id']}", "/admin/hosts", "/templates/", "/portal/", "/events/"):
        page.goto(stack.url + path)
        problems += [f"dark {path}: {v}" for v in axe_problems(page)]
        screenshot(page, f"a11y-dark-{slug(path)}-1280")
    ctx.close()
    took = time.monotonic() - t0
    print(f"axe: {took:.0f} s", TIMES)
    assert not problems, "\n".join(problems)
    assert_no_csp_violations(csp)
