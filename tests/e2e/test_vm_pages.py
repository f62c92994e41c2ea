"""The VM pages in Chromium against the real processes (gunicorn, huey worker): a
Simulator zone built through the API (as tests/api/test_vms_cs.py does), a VM
deployed through the API, then the list, the VM page, Stop through the page (its
job panel polls while the worker runs it, and stops polling after) and Start
again. Screenshots go to test-artifacts/ (vm-list, vm-job-running, vm-detail)."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.api.test_templates_cs import files  # noqa: F401  (fixture: a RAW image over HTTP)
from tests.api.test_vms_cs import deploy, simulator_zone
from tests.e2e.conftest import nav_link, screenshot
from tests.e2e.test_admin_pages import login

pytestmark = pytest.mark.browser
POLLING = "#vm[hx-trigger*=every]"  # the VM page's body while it polls (it always listens to the stream)


def test_list_detail_stop_and_start(stack, page, files, tmp_path):  # noqa: F811
    stack.start()
    api = stack.api()
    z, hosts, t, so = simulator_zone(api, files, tmp_path)
    vm = deploy(api, z, t, so, name="web1")
    deploy(api, z, t, so, name="db1")
    login(page, stack.url)

    nav_link(page, "VMs").click()
    page.wait_for_url("**/vms/")
    row = page.locator(f"#vm-{vm['id']}")
    assert "Running" in row.locator(".state").inner_text()
    assert vm["nic"][0]["ipaddress"] in row.inner_text() and "1 vCPU · 1000 MHz · 1024 MiB" in row.inner_text()
    assert set(row.locator("button").all_inner_texts()) == {"Stop", "Reboot", "Destroy"}
    page.fill("input[name=q]", "web")  # the debounced search: the list alone, and the URL follows
    page.wait_for_url("**/vms/?q=web")
    expect(page.locator("#vms-list tbody tr")).to_have_count(1)
    page.fill("input[name=q]", "")
    expect(page.locator("#vms-list tbody tr")).to_have_count(2)
    screenshot(page, "vm-list")

    page.click(f"#vm-{vm['id']} a")
    page.wait_for_url(f"**/vms/{vm['id']}")
    assert page.locator("#vm h1 .state").inner_text() == "Running"
    assert page.locator(POLLING).count() == 0  # nothing to follow: no poller
    assert page.get_by_role("button", name="Console").is_disabled()

    # Stop: the worker takes a moment (a Simulator delay), the job's panel follows it.
    host = next(h["name"] for h in hosts if h["id"] == vm["hostid"])
    page.goto(stack.url + "/admin/simulator/")
    delay = page.get_by_label(f"Delay in seconds for {host}")
    delay.fill("2")
    with page.expect_response(lambda r: r.url.endswith("/delay")):
        page.locator("tr", has=delay).get_by_role("button", name="Set", exact=True).click()
    page.goto(stack.url + f"/vms/{vm['id']}")
    page.click("#vm .toolbar button:has-text('Stop')")
    page.wait_for_selector("#vm-job")
    page.wait_for_selector(POLLING)  # the job runs: the page polls
    screenshot(page, "vm-job-running")
    page.wait_for_selector("#vm h1 .state:has-text('Stopped')", timeout=30000)
    page.wait_for_selector("#vm-job.vm-job-succeeded")
    assert page.locator(POLLING).count() == 0  # done: polling stopped
    assert "/vms/" + vm["id"] + "?job=" in page.url
    assert set(page.locator("#vm .toolbar button").all_inner_texts()) == {"Start", "Destroy"}
    screenshot(page, "vm-detail")

    page.click("#vm .toolbar button:has-text('Start')")
    page.wait_for_selector("#vm-job h2:has-text('Start')")
    page.wait_for_selector("#vm h1 .state:has-text('Running')", timeout=30000)
    page.wait_for_selector("#vm-job.vm-job-succeeded")
    assert api.listVirtualMachines(id=vm["id"])["virtualmachine"][0]["state"] == "Running"


def test_sort_tick_all_and_bulk_stop(stack, page, files, tmp_path):  # noqa: F811
    """The VM list in Chromium: a sort header swaps the list and pushes its URL; "tick all"
    (nubo.js) ticks every row; the bulk Stop gives one job a VM and the progress view
    follows them until both are done, then stops polling."""
    stack.start()
    api = stack.api()
    z, hosts, t, so = simulator_zone(api, files, tmp_path)
    a = deploy(api, z, t, so, name="alpha")
    b = deploy(api, z, t, so, name="bravo")
    login(page, stack.url)
    page.goto(stack.url + "/vms/")
    page.locator("#vms-list th a.sort", has_text="Name").click()
    page.wait_for_url("**/vms/?sort=name")
    expect(page.locator("#vms-list tbody tr").first).to_have_id(f"vm-{a['id']}")
    page.locator("#vms-list th a.sort", has_text="Name").click()
    page.wait_for_url("**/vms/?sort=-name")
    expect(page.locator("#vms-list tbody tr").first).to_have_id(f"vm-{b['id']}")
    page.check("#tick-all")
    expect(page.locator("input[name=vm]:checked")).to_have_count(2)
    page.click("#vms-bulk button[value=stop]")
    page.wait_for_url("**/vms/jobs?job=*")
    expect(page.locator("#bulk-jobs tbody tr")).to_have_count(2)
    expect(page.locator("#bulk-jobs")).to_contain_text("2 jobs: 2 done, 0 failed.")
    expect(page.locator("#bulk-jobs[hx-trigger]")).to_have_count(0)  # all done: no more polling
    screenshot(page, "vm-bulk-progress")
    assert {v["state"] for v in api.listVirtualMachines()["virtualmachine"]} == {"Stopped"}
