"""Alerts in Chromium against the real processes: a Simulator host taken down on the Simulator
page shows as an open alert on the dashboard (after a reload: the monitor raises it at its next
sweep) and in the navigation's badge; the Alerts page archives it. Screenshots of the dashboard at
1280×800 and 390×844 go to test-artifacts/ (dashboard-alert, dashboard-alert-phone, alerts-page); axe-core
finds no serious or critical violation on them."""
from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import htmx_settled, screenshot
from tests.e2e.test_accessibility import axe_problems
from tests.e2e.test_admin_pages import login

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("e2e")]
PING = 2  # ping.interval for this stack: a sweep every 2 s


def test_a_host_taken_down_shows_an_alert_on_the_dashboard(stack, page):
    stack.flask("db", "upgrade")
    stack.flask("bootstrap")
    stack.flask("setting", "set", "ping.interval", str(PING))
    stack.start()
    api = stack.api()
    z = api.createZone(name="AZ", networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.2")["zone"]
    p = api.createPod(zoneid=z["id"], name="P", gateway="192.168.6.1", netmask="255.255.255.0",
                      startip="192.168.6.10", endip="192.168.6.99")["pod"]
    c = api.addCluster(zoneid=z["id"], podid=p["id"], clustername="C", hypervisor="Simulator",
                       clustertype="CloudManaged")["cluster"][0]
    api.addHost(zoneid=z["id"], podid=p["id"], clusterid=c["id"], url="simulator://al-h0?cpus=4&memory=4096")
    login(page, stack.url)
    expect(page.locator("#dash-alerts")).to_contain_text("No open alerts")

    page.goto(stack.url + "/admin/simulator/")
    page.once("dialog", lambda d: d.accept())  # hx-confirm: "Take al-h0 down?"
    row = page.locator("tr", has_text="al-h0")
    row.get_by_role("button", name="Take down").click()
    expect(row.get_by_role("button", name="Bring up")).to_be_visible()
    taken_down = time.monotonic()

    page.goto(stack.url + "/admin/")
    deadline = taken_down + 60  # the monitor's next sweeps (every PING s), on a loaded machine
    while "Host is Alert, name: al-h0" not in page.locator("#dash-alerts").inner_text():
        assert time.monotonic() < deadline, "no alert on the dashboard 60 s after the host went down"
        page.wait_for_timeout(500)  # between reloads of the page, not a wait for its state
        page.reload()
    seen_after = time.monotonic() - taken_down
    print(f"alert on the dashboard {seen_after:.1f} s after the host was taken down (ping.interval {PING} s)")
    expect(page.locator(".tile-alert .num")).to_have_text("1")
    expect(page.locator("a.alert-badge-on")).to_contain_text("1")
    expect(page.locator('a[href="/admin/hosts?state=Alert"], a[href="/admin/hosts?state=Down"]')).to_have_count(1)
    screenshot(page, "dashboard-alert")
    assert not axe_problems(page)
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.locator("#dash-alerts")).to_contain_text("al-h0")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1, "the dashboard scrolls sideways"
    screenshot(page, "dashboard-alert-phone")
    assert not axe_problems(page)
    page.set_viewport_size({"width": 1280, "height": 800})

    page.goto(stack.url + "/admin/alerts/")
    alert_row = page.locator("#alerts-list tbody tr", has_text="al-h0")
    expect(alert_row).to_contain_text("Open")
    screenshot(page, "alerts-page")
    assert not axe_problems(page)
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(alert_row).to_contain_text("al-h0")
    wide = page.evaluate("""() => [...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > 391)
        .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))""")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1, f"the alerts page scrolls sideways: {wide}"
    assert not axe_problems(page)
    screenshot(page, "alerts-page-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    alert_row.get_by_role("button", name="Archive").click()
    htmx_settled(page)
    expect(page.locator("#alerts-message")).to_contain_text("1 alert archived.")
    expect(page.locator("a.alert-badge")).to_contain_text("0")
