"""Right after `make run` with the demo (the real processes, the demo seeded by `flask
bootstrap`): a template registered by URL in the Demo zone becomes Ready on its secondary
storage and a VM deploys from it (issue 18: the demo's store was an NFS export never
mounted, so every download failed). The Templates page shows it Ready with no failure."""
from __future__ import annotations

import subprocess
import time

import pytest

from tests.e2e.conftest import Stack, screenshot
from tests.e2e.test_admin_pages import login
from tests.helpers.www import serve

pytestmark = pytest.mark.browser


@pytest.fixture
def demo_stack(tmp_path):
    s = Stack(tmp_path / "instance", {"NUBO_SEED_DEMO": "1"})
    yield s
    s.discard()


def test_template_by_url_in_the_demo_zone_is_ready_and_deploys(demo_stack, page, tmp_path):
    stack = demo_stack
    stack.start()
    api = stack.api()
    zone = api.listZones(name="Demo")["zone"][0]
    assert [s["providername"] for s in api.listImageStores(zoneid=zone["id"])["imagestore"]] == ["Local"]
    www = tmp_path / "www"
    www.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(www / "tiny.qcow2"), "32M"], check=True)
    with serve(www) as url:
        t = api.registerTemplate(name="tiny-demo", displaytext="tiny", url=f"{url}/tiny.qcow2", zoneid=zone["id"],
                                 hypervisor="Simulator", format="QCOW2")["template"][0]
        deadline, row = time.monotonic() + 60, None
        while time.monotonic() < deadline:  # the worker process downloads it
            row = api.listTemplates(templatefilter="self", id=t["id"])["template"][0]
            if row.get("isready") or row["status"].startswith("Failed"):
                break
            time.sleep(0.3)
    assert row["isready"] and row["status"] == "Download Complete", row
    offering = api.listServiceOfferings(name="Small Instance")["serviceoffering"][0]
    vm = api.deployVirtualMachine(zoneid=zone["id"], templateid=t["id"], serviceofferingid=offering["id"],
                                  name="from-url", fetch_result=True)["virtualmachine"]
    assert vm["state"] == "Running"
    login(page, stack.url)
    page.goto(stack.url + "/templates/")
    row = page.locator("tr", has_text="tiny-demo")
    assert "Ready" in row.inner_text() and page.locator(".download-failed").count() == 0
    screenshot(page, "demo-template-ready")
