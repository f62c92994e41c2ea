"""Admin pages in Chromium: the Hypervisors page (toggle, inline rename of Custom),
the support matrix, the API reference. Screenshots go to test-artifacts/."""
import pytest

from tests.e2e.conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("e2e")]


def login(page, url):
    page.goto(url + "/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "e2e-admin-pass")
    page.click("button[type=submit]")
    page.wait_for_url("**/admin/")


def test_hypervisors_page_toggle_and_rename(stack, page):
    stack.start()
    login(page, stack.url)
    page.goto(stack.url + "/admin/hypervisors/")
    row = page.locator("#hv-Custom")
    assert "Not in list" in row.inner_text()
    row.locator("button", has_text="Not in list").click()
    page.wait_for_selector("#hv-Custom button:has-text('In list')")
    row.locator("a", has_text="Rename").click()
    page.fill("#hv-Custom input[name=display_name]", "KVM")  # taken: refused in place
    page.click("#hv-Custom button:has-text('Save')")
    page.wait_for_selector("#hv-Custom .error")
    assert "already the name" in page.locator("#hv-Custom .error").inner_text()
    page.fill("#hv-Custom input[name=display_name]", "Firecracker")
    page.click("#hv-Custom button:has-text('Save')")
    page.wait_for_selector("#hv-Custom .hv-name:has-text('Firecracker')")
    screenshot(page, "admin-hypervisors")
    page.goto(stack.url + "/admin/hypervisors/matrix")
    assert "Firecracker" in page.locator("table.matrix thead").text_content()
    screenshot(page, "admin-hypervisor-matrix")
    page.goto(stack.url + "/api-docs/")
    page.fill("input[name=q]", "hypervisor")
    page.wait_for_function("document.querySelectorAll('.api-command').length < 6")
    assert page.locator("#listHypervisors").is_visible()
    screenshot(page, "api-reference")
