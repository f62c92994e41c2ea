"""Offerings per domain in Chromium: the compute offerings page's Domains multi-select (two
domains chosen) makes an offering listed with both in its Domains column; its Edit page comes
preset; saved with none chosen it is Public. Screenshots at 1280×800 and 390×844."""
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import htmx_settled, screenshot
from tests.e2e.test_admin_pages import login

pytestmark = pytest.mark.browser


def test_compute_offering_for_two_domains(shared_stack, page):
    stack = shared_stack
    api = stack.api()
    sales = api.createDomain(name="sales")["domain"]
    api.createDomain(name="emea", parentdomainid=sales["id"])
    api.createDomain(name="operations-and-support")
    login(page, stack.url)
    page.goto(stack.url + "/admin/offerings/")
    page.fill("#compute-offering-form input[name=name]", "sales-and-ops")
    page.fill("#compute-offering-form input[name=cpunumber]", "1")
    page.fill("#compute-offering-form input[name=cpuspeed]", "1000")
    page.fill("#compute-offering-form input[name=memory]", "512")
    page.select_option("#compute-offering-form select[name=domainid]",
                       label=["ROOT/sales", "ROOT/operations-and-support"])
    page.click("#compute-offering-form button[type=submit]")
    row = page.locator("tr", has_text="sales-and-ops")
    expect(row.locator(".offering-domains")).to_contain_text("ROOT/operations-and-support")
    expect(row.locator(".offering-domains")).to_contain_text("ROOT/sales")
    screenshot(page, "offerings-domains-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "offerings-domains-390")
    page.set_viewport_size({"width": 1280, "height": 800})
    htmx_settled(page)
    row.locator("a", has_text="Edit").click()
    select = page.locator("#compute-offering-edit-form select[name=domainid]")
    expect(select.locator("option:checked")).to_have_count(2)
    select.select_option([])
    page.click("#compute-offering-edit-form button[type=submit]")
    expect(page.locator("tr", has_text="sales-and-ops").locator(".offering-domains")).to_have_text("Public")
    listed = api.listServiceOfferings(name="sales-and-ops")["serviceoffering"][0]
    assert "domainid" not in listed
