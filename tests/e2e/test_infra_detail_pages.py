"""Issue 18's infrastructure pages in Chromium against the real processes, on the demo zone:
the pod page and its Disable/Enable (confirmed first), the host page drawing the CPU and
memory the running monitor sampled (monitor → metrics history → JSON → uPlot), the
secondary storage list with its state as the monitor's check found it, and the template
edit page. Screenshots at 1280×800 and 390×844 go to test-artifacts/ (infra-pod,
infra-host-metrics, infra-secondary, template-edit, each -phone)."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot
from tests.e2e.test_admin_pages import login
from tests.e2e.test_infra_pages import demo_stack  # noqa: F401 - fixture: the demo zone

pytestmark = pytest.mark.browser


def both_sizes(page, name: str) -> None:
    screenshot(page, name)
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, f"{name}-phone")
    page.set_viewport_size({"width": 1280, "height": 800})


def test_pod_host_store_and_template_pages(demo_stack, page):  # noqa: F811
    stack = demo_stack
    stack.start()
    login(page, stack.url)

    page.goto(stack.url + "/admin/pods")
    page.click("a:has-text('Demo Pod')")
    expect(page.locator("h1")).to_contain_text("Pod Demo Pod")
    expect(page.locator("h1 .state")).to_have_text("Enabled")
    assert page.locator("section:has(h2:has-text('Hosts')) tbody tr").count() == 3
    page.once("dialog", lambda d: d.accept())  # "Disable pod Demo Pod? …"
    page.click(".toolbar-actions button:has-text('Disable')")
    expect(page.locator(".flash-success")).to_contain_text("no new VMs are placed in it")
    expect(page.locator("h1 .state")).to_have_text("Disabled")
    both_sizes(page, "infra-pod")
    page.click(".toolbar-actions button:has-text('Enable')")
    expect(page.locator("h1 .state")).to_have_text("Enabled")

    page.click("section:has(h2:has-text('Hosts')) tbody tr >> nth=0 >> a >> nth=0")
    expect(page.locator("h1")).to_contain_text("Host ")
    # The monitor's first sweep kept each host's CPU and memory: two charts, no network or disk.
    expect(page.locator("#metrics [data-chart] canvas")).to_have_count(2, timeout=60000)
    expect(page.locator("#host-vms")).to_be_visible()
    both_sizes(page, "infra-host-metrics")

    page.goto(stack.url + "/admin/storage/secondary")
    row = page.locator("tbody tr", has_text="Demo Secondary")
    expect(row.locator(".state")).to_have_text("Ready", timeout=60000)  # read and written by the monitor
    row.locator("a").first.click()
    expect(page.locator("#store-templates")).to_be_visible()
    both_sizes(page, "infra-secondary")

    page.goto(stack.url + "/templates/")
    page.locator("#templates-list tbody a, .templates a").first.click()
    page.click("a:has-text('Edit')")
    expect(page.locator("#template-settings input[name=name]")).to_be_visible()
    both_sizes(page, "template-edit")
