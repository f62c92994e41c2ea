"""A VM that the shipped example extension (extensions/virsh) runs on the local libvirtd,
in Debian's Chromium, on the real processes (web, worker, console proxy): its console opens
from the VM page through Nubo's proxy, which answers the VNC password the extension set
(noVNC connects and draws the guest's screen; the browser is never asked for a password);
a custom action's form, built from its declared parameters, runs it and the job's panel
shows the answer; libvirt has the snapshot; the Extensions page shows the extension with its
state and checksum; axe finds nothing serious on the VM page. Screenshots: test-artifacts/external-console.png, external-vm.png."""
from __future__ import annotations

import contextlib

import libvirt
import pytest

from tests.e2e.conftest import screenshot
from tests.e2e.test_admin_pages import login
from tests.e2e.test_accessibility import _axe_problems
from tests.e2e.test_console import guest_screen
from tests.helpers import virsh_cloud

pytestmark = [pytest.mark.browser, pytest.mark.libvirt, pytest.mark.xdist_group("libvirt-guests")]


def test_console_and_custom_action_of_an_external_vm(stack, page, tmp_path):
    prefix = virsh_cloud.ready()
    stack.start()
    api = stack.api()
    conn = libvirt.open(virsh_cloud.URI)
    vm = None
    try:
        cloud = virsh_cloud.build(api, stack.env["NUBO_INSTANCE_PATH"], tmp_path, prefix)
        vm = api.deployVirtualMachine(zoneid=cloud["zone"], templateid=cloud["template"],
                                      serviceofferingid=cloud["offering"], name="screen2",
                                      fetch_result=True)["virtualmachine"]
        name = prefix + vm["instancename"]
        assert conn.lookupByName(name).isActive()

        login(page, stack.url)
        console = guest_screen(page, f"{stack.url}/vms/{vm['id']}")
        assert "password" not in console.locator("#console-status").inner_text().lower()
        screenshot(console, "external-console")
        console.close()

        # The custom action's form: its parameters as fields; run, then the job's answer.
        card = page.locator("#vm-custom-actions")
        card.locator("summary", has_text="createsnapshot").click()  # opens its <details>
        form = card.locator("form", has=page.get_by_role("button", name="Run createsnapshot"))
        form.get_by_label("name", exact=True).fill("from-the-page")
        form.get_by_label("description").fill("taken in the browser")
        form.get_by_role("button", name="Run createsnapshot").click()
        page.wait_for_selector("#vm-job .custom-action-result")
        assert "Successfully completed createsnapshot" in page.locator("#vm-job").inner_text()
        snap = conn.lookupByName(name).snapshotLookupByName("from-the-page")
        assert "<description>taken in the browser</description>" in snap.getXMLDesc()
        screenshot(page, "external-vm")
        card.locator("summary", has_text="setdescription").click()
        assert not _axe_problems(page)  # the card, its open forms and the job's answer

        page.goto(f"{stack.url}/admin/extensions/")
        row = page.locator(f"#extension-{cloud['extension']['id']}")
        assert "virsh" in row.inner_text() and "Enabled" in row.inner_text() and "Not Ready" not in row.inner_text()
    finally:
        if vm is not None:
            with contextlib.suppress(Exception):
                api.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)
        conn.close()
        virsh_cloud.clean_up(prefix)
