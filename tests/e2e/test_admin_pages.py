"""Admin pages in Chromium: the Hypervisors page (toggle, inline rename of Custom),
the support matrix, the API reference. Screenshots go to test-artifacts/."""
import pytest

from tests.e2e.conftest import htmx_settled, screenshot

pytestmark = pytest.mark.browser


def login(page, url):
    page.goto(url + "/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "e2e-operator-pass")
    page.click("button[type=submit]")
    page.wait_for_url("**/admin/")


def test_hypervisors_page_toggle_and_rename(shared_stack, page):
    stack = shared_stack
    login(page, stack.url)
    page.goto(stack.url + "/admin/hypervisors/")
    row = page.locator("#hv-Custom")
    assert "Not in list" in row.inner_text()
    row.locator("button", has_text="Not in list").click()
    page.wait_for_selector("#hv-Custom button:has-text('In list')")
    htmx_settled(page)  # the swapped-in row's Rename link is live only once settled
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
    page.locator(".api-command").nth(5).wait_for(state="detached")  # fewer than 6 listed
    assert page.locator("#listHypervisors").is_visible()
    screenshot(page, "api-reference")


MAIN_PAGES = ["/admin/", "/admin/zones", "/admin/pods", "/admin/clusters", "/admin/hosts", "/admin/hosts/add",
              "/admin/storage/primary", "/admin/storage/secondary", "/admin/hypervisors/",
              "/admin/hypervisors/matrix", "/admin/simulator/", "/vms/", "/admin/consoles",
              "/admin/accounts/", "/admin/accounts/new", "/portal/", "/portal/deploy", "/volumes/", "/volumes/new",
              "/volumes/offerings", "/portal/keys/", "/portal/keys/new", "/templates/", "/templates/register",
              "/templates/upload", "/events/", "/api-docs/", "/portal/account", "/admin/zones/wizard/"]


def test_main_pages_under_the_csp(shared_stack, page, csp_violations):
    """Every main page loads with no CSP violation (the fixture fails the test on any),
    htmx still works under it (a search swaps the list in), a plain form's confirm
    (data-confirm, static/js/nubo.js) still asks, and the policy is really enforced:
    an injected inline script does not run and is reported."""
    stack = shared_stack
    login(page, stack.url)
    for path in MAIN_PAGES:
        response = page.goto(stack.url + path)
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"], path
        page.wait_for_load_state("load")
        assert page.evaluate("typeof htmx === 'object' && htmx.config.allowEval === false"), path
    assert csp_violations == []
    # htmx under the CSP: a search swaps the API list in place.
    page.goto(stack.url + "/api-docs/")
    page.fill("input[name=q]", "zone")
    page.locator(".api-command").nth(19).wait_for(state="detached")
    # The policy is enforced: an inline script injected into the page is refused and reported.
    with page.expect_console_message(lambda m: "CSP violation" in m.text) as message:
        ran = page.evaluate("""() => { const s = document.createElement('script');
            s.textContent = 'window.__inline_ran = true'; document.head.append(s); return !!window.__inline_ran; }""")
    assert ran is False and "script-src" in message.value.text
    assert csp_violations
    csp_violations.clear()  # the violations this test made on purpose
