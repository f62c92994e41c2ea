"""Configuration pages in Chromium: the global settings page (debounced search with the URL
pushed, inline edit refused in place and then saved). Screenshots at 1280×800 and 390×844 go
to test-artifacts/."""
import pytest

from tests.e2e.conftest import htmx_settled, screenshot
from tests.e2e.test_admin_pages import login

pytestmark = pytest.mark.browser

ROW = "#setting-cpu-overprovisioning-factor"


def test_settings_page_search_and_inline_edit(shared_stack, page):
    stack = shared_stack
    login(page, stack.url)
    page.goto(stack.url + "/admin/settings/")
    screenshot(page, "admin-settings")
    page.fill("#settings-filters input[name=q]", "overprovisioning")
    page.wait_for_url("**/admin/settings/?q=overprovisioning")
    page.locator("#setting-expunge-delay").wait_for(state="detached")
    htmx_settled(page)
    page.fill(f"{ROW} input[name=value]", "0.5")
    page.click(f"{ROW} button:has-text('Save')")
    page.wait_for_selector(f"{ROW} .error")
    assert "range" in page.locator(f"{ROW} .error").inner_text()
    htmx_settled(page)
    page.fill(f"{ROW} input[name=value]", "2")
    page.click(f"{ROW} button:has-text('Save')")
    page.wait_for_selector(f"{ROW} button:has-text('Reset')")
    assert page.locator(f"{ROW} .error").count() == 0
    page.reload()
    assert page.locator(f"{ROW} input[name=value]").input_value() == "2"
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "admin-settings-phone")
