"""Infrastructure pages in Chromium against the real processes, on the demo zone:
add a pod, a cluster and a host (Test connection first) through the pages, then
the host list (search, a lifecycle action in the row), the zone page and the
dashboard chart, at desktop and phone widths. Screenshots go to test-artifacts/."""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Stack, screenshot
from tests.e2e.test_admin_pages import login

pytestmark = pytest.mark.browser


@pytest.fixture
def demo_stack(tmp_path):
    s = Stack(tmp_path / "instance", {"NUBO_SEED_DEMO": "1"})  # a Simulator zone with three hosts
    yield s
    s.discard()


def test_add_pod_cluster_host_then_hosts_list(demo_stack, page):
    stack = demo_stack
    stack.start()
    login(page, stack.url)

    busy = page.locator(".htmx-request, .htmx-settling, .htmx-swapping")
    page.goto(stack.url + "/admin/pods/add")
    page.select_option("select[name=zone]", label="Demo")  # re-renders the form (hx-get on change)
    expect(busy).to_have_count(0)  # fill the re-rendered form, not the old one the swap replaces
    page.fill("input[name=name]", "pod-2")
    page.fill("input[name=gateway]", "192.168.20.1")
    page.fill("input[name=start_ip]", "192.168.30.10")  # outside the subnet: refused beside the field
    page.click("button:has-text('Add pod')")
    page.wait_for_selector(".field.has-error:has(input[name=start_ip]) .error")
    assert "not in the subnet" in page.locator(".field.has-error .error").inner_text()
    screenshot(page, "admin-add-pod-error")
    page.fill("input[name=start_ip]", "192.168.20.10")
    page.fill("input[name=end_ip]", "192.168.20.50")
    page.click("button:has-text('Add pod')")
    page.wait_for_selector(".flash-success:has-text('Pod pod-2 added')")
    screenshot(page, "admin-zone")

    page.goto(stack.url + "/admin/clusters/add")
    page.select_option("select[name=zone]", label="Demo")  # re-renders the form with the zone's pods
    page.wait_for_selector("select[name=pod] option:has-text('pod-2')", state="attached")
    expect(busy).to_have_count(0)  # Demo was already chosen, so pod-2 was there before the swap
    page.select_option("select[name=pod]", label="pod-2")
    expect(busy).to_have_count(0)
    page.fill("input[name=name]", "sim-2")
    page.select_option("select[name=hypervisor]", label="Simulator")
    page.click("button:has-text('Add cluster')")
    page.wait_for_selector(".flash-success:has-text('Cluster sim-2 (Simulator) added')")

    page.goto(stack.url + "/admin/hosts/add")
    page.select_option("#add-host select[name=zone]", label="Demo")
    page.wait_for_selector("#add-host select[name=pod] option:has-text('pod-2')", state="attached")
    expect(busy).to_have_count(0)  # choose the pod on the re-rendered form, not on the old one
    page.select_option("#add-host select[name=pod]", label="pod-2")
    expect(busy).to_have_count(0)
    page.wait_for_selector("#add-host input[name=url]")  # the only cluster is chosen; its fields appear
    page.fill("#add-host input[name=url]",
              "simulator://sim-2-host-1?cpus=8&cpuspeed=2000&memory=16384&localstorage=100")
    page.click("button:has-text('Test connection')")
    page.wait_for_selector(".host-test-ok")
    assert "8 cores × 2000 MHz" in page.locator(".host-test-ok").inner_text()
    screenshot(page, "admin-add-host-test-connection")
    page.click("button:has-text('Add host')")
    page.wait_for_selector("h1:has-text('Host sim-2-host-1')")
    screenshot(page, "admin-host")

    page.goto(stack.url + "/admin/hosts")
    assert page.locator("#hosts-list tbody tr").count() == 4
    page.fill("input[name=q]", "demo-host")
    expect(page.locator("#hosts-list tbody tr")).to_have_count(3)
    expect(page).to_have_url(re.compile(r"/admin/hosts\?q=demo-host$"))  # the search is in the address bar (pushed after the swap)
    page.once("dialog", lambda d: d.accept())  # "Disable host …?"
    row = page.locator("#hosts-list tbody tr", has_text="demo-host-2")
    row.locator("button:has-text('Disable')").click()
    page.wait_for_selector("#hosts-list tr:has-text('demo-host-2') button:has-text('Enable')")
    assert page.locator("#hosts-list th[aria-sort=ascending]").text_content().strip().startswith("Host")  # by name
    page.click("#hosts-list th a:has-text('Host')")  # the same header again: the other way
    page.wait_for_selector("#hosts-list th[aria-sort=descending]")
    expect(page).to_have_url(re.compile(r"sort=-name"))  # htmx pushes the address after the swap: wait for it
    assert page.locator("#hosts-list tbody tr").first.inner_text().startswith("demo-host-3")
    screenshot(page, "admin-hosts")

    page.goto(stack.url + "/admin/zones")
    screenshot(page, "admin-zones")
    page.goto(stack.url + "/admin/storage/primary")
    screenshot(page, "admin-primary-storage")
    page.goto(stack.url + "/admin/storage/primary/add")
    page.select_option("select[name=protocol]", "smb")  # the form asks for itself again: SMB's fields
    page.wait_for_selector("input[name=password]")
    page.select_option("select[name=scope]", "zone")
    page.wait_for_selector("select[name=hypervisor]")
    assert page.locator("select[name=cluster]").count() == 0
    screenshot(page, "admin-add-primary-storage")
    page.goto(stack.url + "/admin/")
    assert page.locator(".cap-zone").count() == 1
    screenshot(page, "admin-dashboard")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(stack.url + "/admin/hosts")
    screenshot(page, "admin-hosts-phone")


def test_a_live_refresh_in_flight_never_undoes_the_users_sort(demo_stack, page):
    """The hosts list's live refresh (static/js/live.js) leaves before the user sorts and is
    answered after: its answer is the old order under the old address, so it is dropped and
    the list fetched again with the user's sort (the refresh is held back here to make the
    race certain; unheld, it lost the sort now and then in CI)."""
    demo_stack.start()
    login(page, demo_stack.url)
    page.goto(demo_stack.url + "/admin/hosts?q=demo-host")
    expect(page.locator("body.live-on")).to_have_count(1)  # the change stream is open
    held = []

    def hold(route):  # the stream-driven refresh of the unsorted list, not the user's requests
        if route.request.headers.get("hx-request") and "sort=" not in route.request.url:
            held.append(route)
        else:
            route.continue_()
    page.route(re.compile(r"/admin/hosts\?q=demo-host$"), hold)
    page.once("dialog", lambda d: d.accept())  # "Disable host …?"
    page.locator("#hosts-list tbody tr", has_text="demo-host-2").locator("button:has-text('Disable')").click()
    expect(page.locator("#hosts-list tr", has_text="demo-host-2").locator("button:has-text('Enable')")).to_have_count(1)
    deadline = time.monotonic() + 30
    while not held and time.monotonic() < deadline:  # Playwright runs the route only while called
        page.wait_for_timeout(50)
    assert held, "the host's change never refreshed the open list"

    page.click("#hosts-list th a:has-text('Host')")  # by name, the other way
    expect(page.locator("#hosts-list th[aria-sort=descending]")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"sort=-name"))
    with page.expect_response(lambda r: "sort=-name" in r.url and r.request.headers.get("hx-request"), timeout=20_000):
        held[0].continue_()  # the stale answer arrives now, and the list is fetched again, sorted
    expect(page.locator("#hosts-list tbody tr").first).to_contain_text("demo-host-3")
    expect(page.locator("#hosts-list th[aria-sort=descending]")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"sort=-name"))
    expect(page.locator("#hosts-list tr", has_text="demo-host-2").locator("button:has-text('Enable')")).to_have_count(1)
