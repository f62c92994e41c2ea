"""Self-service in Chromium against the real processes (gunicorn, huey worker): a user
logs in, deploys a VM on the Simulator through the wizard (a zone built through the API
with a small RAW template served by a local HTTP server, as tests/api/test_vms_cs.py
does), follows the deploy job until the VM runs, stops it and destroys it from My VMs; a
second user sees none of it. Screenshots of the user pages at 1280x800 and at a phone's
390x844 go to test-artifacts/ (portal-*)."""
from __future__ import annotations

import pytest

from tests.api.test_templates_cs import files  # noqa: F401  (fixture: a RAW image over HTTP)
from tests.api.test_vms_cs import simulator_zone
from tests.e2e.conftest import assert_no_csp_violations, nav_link, screenshot, watch_csp

E2E_PASSWORDS = {"alice": "orchard-lamp-e2e-41", "bob": "copper-fern-e2e-52"}  # the password policy: 12+, no user name

pytestmark = pytest.mark.browser
PHONE = {"width": 390, "height": 844}


def login(page, url, user, password):
    page.goto(url + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/portal/")


def next_step(page, label):
    page.click("#deploy-form button[value=next]")
    page.wait_for_selector(f".wizard-steps li[aria-current=step]:has-text('{label}')")


def test_a_user_deploys_runs_and_destroys_a_vm(stack, browser, page, files, tmp_path):  # noqa: F811
    stack.start()
    api = stack.api()
    z, hosts, t, so = simulator_zone(api, files, tmp_path)
    api.createServiceOffering(name="huge", displaytext="too big", cpunumber=64, cpuspeed=1000, memory=1024)
    for user in ("alice", "bob"):
        api.createAccount(username=user, password=E2E_PASSWORDS[user], email=f"{user}@example.org", firstname=user,
                          lastname="Tester")
    api.updateResourceLimit(account="alice", resourcetype=8, max=8)  # "huge" does not fit

    login(page, stack.url, "alice", E2E_PASSWORDS["alice"])
    assert "No VMs yet" in page.locator("#vms-list").inner_text()
    screenshot(page, "portal-my-vms-empty")
    page.click("text=Deploy a VM")
    page.wait_for_url("**/portal/deploy")
    assert page.locator(f"input[name=zoneid][value='{z['id']}']").is_checked()  # the only zone
    next_step(page, "Image")
    page.click("label.choice:has-text('tiny')")
    next_step(page, "Size")
    huge = page.locator("label.choice:has-text('huge')")
    assert huge.locator("input").is_disabled() and "limit of 8 vCPUs" in huge.inner_text()
    page.click("label.choice:has-text('s1')")
    screenshot(page, "portal-deploy")
    next_step(page, "Network")
    next_step(page, "Access")
    page.fill("textarea[name=userdata]", "#cloud-config\nhostname: web1\n")
    next_step(page, "Name")
    page.fill("input[name=name]", "web1")
    page.keyboard.press("Enter")  # Enter means Next
    page.wait_for_selector(".wizard-steps li[aria-current=step]:has-text('Review')")
    review = page.locator("dl.review").inner_text()
    assert "tiny" in review and "s1" in review and "web1" in review
    screenshot(page, "portal-deploy-review")
    page.click("#deploy-form button[value=deploy]")
    page.wait_for_url("**/vms/*?job=*")
    page.wait_for_selector("#vm h1 .state:has-text('Running')", timeout=30000)
    page.wait_for_selector("#vm-job.vm-job-succeeded")
    vm_url = page.url.split("?")[0]
    vm_id = vm_url.rsplit("/", 1)[1]

    nav_link(page, "My VMs").click()
    row = page.locator(f"#vm-{vm_id}")
    assert "Running" in row.locator(".state").inner_text()
    assert "1 of 20" in page.locator("section.usage").inner_text()  # instances against the limit
    screenshot(page, "portal-my-vms")
    row.locator("button:has-text('Stop')").click()
    page.wait_for_selector(f"#vm-{vm_id} .state:has-text('Stopped')", timeout=30000)
    page.once("dialog", lambda d: d.accept())  # "Destroy web1? ..."
    page.locator(f"#vm-{vm_id} button:has-text('Destroy')").click()
    page.wait_for_selector(f"#vm-{vm_id}", state="detached", timeout=30000)  # off the list: destroyed VMs are apart
    assert api.listVirtualMachines(id=vm_id, listall="true")["virtualmachine"][0]["state"] == "Destroyed"
    page.goto(stack.url + "/vms/?view=destroyed")
    assert "Destroyed" in page.locator(f"#vm-{vm_id} .state").inner_text()

    # The other user pages, as the user sees them.
    page.goto(stack.url + "/portal/keys/new")
    page.fill("input[name=name]", "laptop")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#secret textarea")
    assert "PRIVATE KEY" in page.locator("#secret textarea").input_value()
    screenshot(page, "portal-key-created")
    api.createDiskOffering(name="10 GiB", disksize=10)
    page.goto(stack.url + "/volumes/new")
    page.fill("input[name=name]", "data1")
    page.select_option("select[name=diskoffering]", label="10 GiB (10 GiB)")
    page.click("#volume-form button[type=submit]")
    page.wait_for_selector("#volume h1:has-text('data1')")
    screenshot(page, "portal-volume")
    for path, name in (("/portal/keys/", "portal-keys"), ("/portal/account", "portal-account"),
                       ("/volumes/", "portal-volumes"), ("/events/", "portal-events")):
        page.goto(stack.url + path)
        screenshot(page, name)
    events = page.locator("#events-list").inner_text()
    assert "VM web1 created" in events and "VM.DESTROY" in events

    # On a phone.
    phone = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    phone_csp = watch_csp(phone)
    small = phone.new_page()
    login(small, stack.url, "alice", E2E_PASSWORDS["alice"])
    screenshot(small, "portal-my-vms-phone")
    small.goto(stack.url + "/portal/deploy")
    next_step(small, "Image")
    small.click("label.choice:has-text('tiny')")
    next_step(small, "Size")
    screenshot(small, "portal-deploy-phone")
    wide = {}
    for path, name in (("/portal/", None), ("/portal/deploy", None), ("/portal/keys/", "portal-keys-phone"),
                       ("/portal/keys/new", None), ("/portal/account", "portal-account-phone"),
                       ("/volumes/", "portal-volumes-phone"), ("/events/", "portal-events-phone")):
        small.goto(stack.url + path)
        if name:
            screenshot(small, name)
        width = small.evaluate("document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            wide[path] = width
    assert not wide, f"wider than a {PHONE['width']}px phone: {wide}"
    small.goto(vm_url)  # the VM page (app/web/vms.py), where the deploy lands
    screenshot(small, "portal-vm-phone")
    phone.close()
    assert_no_csp_violations(phone_csp)

    # The admin's account pages.
    admin = browser.new_context(viewport={"width": 1280, "height": 800})
    admin_csp = watch_csp(admin)
    adm = admin.new_page()
    adm.goto(stack.url + "/login")
    adm.fill("input[name=username]", "admin")
    adm.fill("input[name=password]", "e2e-operator-pass")
    adm.click("button[type=submit]")
    adm.wait_for_url("**/admin/")
    nav_link(adm, "Accounts").click()
    adm.wait_for_url("**/admin/accounts/")
    screenshot(adm, "accounts-admin")
    adm.click("#accounts-list a:has-text('alice')")
    adm.wait_for_selector("#limits-form")
    assert adm.locator("#limits-form input[name=cpu]").input_value() == "8"
    screenshot(adm, "accounts-admin-account")
    admin.close()
    assert_no_csp_violations(admin_csp)

    # Bob sees none of it.
    other = browser.new_context(viewport={"width": 1280, "height": 800})
    other_csp = watch_csp(other)
    bob = other.new_page()
    login(bob, stack.url, "bob", E2E_PASSWORDS["bob"])
    assert "No VMs yet" in bob.locator("#vms-list").inner_text() and "web1" not in bob.content()
    assert bob.goto(vm_url).status == 404
    bob.goto(stack.url + "/events/")
    assert "web1" not in bob.locator("main").inner_text()
    bob.goto(stack.url + "/portal/keys/")
    assert "laptop" not in bob.locator("main").inner_text()
    other.close()
    assert_no_csp_violations(other_csp)
