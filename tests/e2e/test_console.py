"""The browser console end to end: the real processes (web, worker, console
proxy), a real KVM guest on the local libvirtd (a RAW disk from `qemu-img
create` with nothing to boot: its screen is SeaBIOS saying so), deployed
through the API, and
Debian's Chromium opening its console from the VM page: noVNC connects through
the console proxy ("Connected") and the canvas shows the guest's screen
(non-uniform pixels). Screenshot: test-artifacts/console-kvm.png.

The host uses acceleration=emulated (these nested machines start KVM guests but
cannot run much in them; see tests/integration/test_vm_kvm.py). The API has no
physical-network command yet, so the zone's traffic label (the test bridge) is
set through the service, on the stack's own database."""
from __future__ import annotations

import contextlib
import time
import uuid

import libvirt
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from app import create_app
from app.services import accounts, zones
from tests.api.test_templates_cs import files, wait_status  # noqa: F401  (fixture: a RAW disk over HTTP)
from tests.e2e.conftest import ARTIFACTS, screenshot
from tests.e2e.test_admin_pages import login
from tests.integration.test_vm_kvm import BRIDGE, URI, bridge  # noqa: F401  (fixture: the test bridge)

pytestmark = [pytest.mark.browser, pytest.mark.libvirt, pytest.mark.xdist_group("libvirt-guests")]
SUFFIX = "C" + uuid.uuid4().hex[:8]
# Sampled canvas colours: more than one means the guest's screen, not a blank canvas.
CANVAS_COLOURS = """() => {
  const c = document.querySelector('#console-screen canvas');
  if (!c || !c.width) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const seen = new Set();
  for (let i = 0; i < d.length; i += 4 * 7) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
  return seen.size;
}"""


def guest_screen(page, vm_page: str):
    """The VM page's Console button clicked: its new tab once noVNC is connected and the
    canvas shows the guest's screen (the firmware's text: more than one colour)."""
    for attempt in (1, 2):
        page.goto(vm_page)
        with page.context.expect_page() as opened:
            page.get_by_role("button", name="Console", exact=True).click()
        console = opened.value
        pending: dict = {}
        seen: list[str] = []  # what the tab said: errors, failed requests (the artifact below)
        console.on("request", lambda r, p=pending: p.__setitem__(r.url, r))
        console.on("requestfinished", lambda r, p=pending: p.pop(r.url, None))
        console.on("requestfailed", lambda r, p=pending, s=seen: (p.pop(r.url, None), s.append(f"failed {r.url}")))
        console.on("pageerror", lambda e, s=seen: s.append(f"pageerror {e}"))
        console.on("console", lambda m, s=seen: s.append(f"console.{m.type} {m.text}"))
        console.set_viewport_size({"width": 1024, "height": 700})
        # The context's generous limit (tests/e2e/conftest.py) the second time, not 30 s: opening
        # asks the hypervisor (an extension's getconsole) and a loaded machine takes longer.
        try:
            console.wait_for_selector("#console-status[data-state=connected]",
                                      timeout=45_000 if attempt == 1 else None)
            break
        except PlaywrightTimeout:
            # Seen in about one run in ten on two loaded cores, in a browser's first console tab:
            # noVNC's module graph (~50 files) never finishes loading, so console.js never runs
            # (no canvas) and nothing reaches the proxy; the web process's log shows some of
            # the files never served. Not understood yet (README, Tests). Only that stall is
            # retried: recorded, then the console opened again as a user would (a new tab and
            # token). A console whose script ran and did not connect fails at once.
            if attempt == 2 or console.locator("#console-screen canvas").count():
                raise
            ARTIFACTS.mkdir(exist_ok=True)
            with open(ARTIFACTS / "console-stalled.txt", "a") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {vm_page}: no canvas after 45 s; requests never "
                        f"answered: {list(pending)}; the tab said: {seen}\n")
            console.close()
    deadline = time.monotonic() + 60
    while console.evaluate(CANVAS_COLOURS) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)  # the BIOS draws its text
    assert console.evaluate(CANVAS_COLOURS) >= 2, "the canvas stayed uniform: no guest screen"
    return console


@pytest.fixture
def cleanup(stack):
    """Through Nubo first (expunge, delete the pool), then whatever is left of ours
    on the real libvirtd: every domain this test made is destroyed and undefined."""
    made = {}
    yield made
    with contextlib.suppress(Exception):
        api = stack.api()
        api.destroyVirtualMachine(id=made["vm"], expunge="true", fetch_result=True)
        api.deleteStoragePool(id=made["pool"])
    conn = libvirt.open(URI)
    for dom in (d for d in conn.listAllDomains(0) if d.name().endswith("-" + SUFFIX)):
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()
        dom.undefine()
    for step in ("destroy", "undefine"):
        with contextlib.suppress(libvirt.libvirtError, KeyError):
            getattr(conn.storagePoolLookupByName(made["pool"]), step)()
    conn.close()


def kvm_vm(stack, api, disk_url, tmp_path, made) -> dict:
    api.updateConfiguration(name="instance.name", value=SUFFIX)  # our domains' names, unique to this run
    z = api.createZone(name="console-kvm", networktype="Basic", dns1="127.0.0.1", internaldns1="127.0.0.1",
                       guestcidraddress="10.78.0.0/24")["zone"]
    app = create_app({"INSTANCE_PATH": stack.env["NUBO_INSTANCE_PATH"]})  # the stack's database
    with app.app_context():
        zones.create_physical_network(accounts.get_user("admin"), zones.get_zone(z["id"]), vlan_range=None,
                                      traffic_labels={"KVM": BRIDGE})
    p = api.createPod(zoneid=z["id"], name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                      startip="10.0.0.10", endip="10.0.0.99")["pod"]
    c = api.addCluster(zoneid=z["id"], podid=p["id"], clustername="c", hypervisor="KVM",
                       clustertype="CloudManaged")["cluster"][0]
    api.addHost(zoneid=z["id"], podid=p["id"], clusterid=c["id"], url=URI, **{"details[0].acceleration": "emulated"})
    made["pool"] = api.createStoragePool(zoneid=z["id"], clusterid=c["id"], name="primary",
                                         url=f"file://{tmp_path}/primary")["storagepool"]["id"]
    api.addImageStore(provider="Local", url=f"file://{tmp_path}/secondary", zoneid=z["id"], name="sec")
    t = api.registerTemplate(name="empty", url=disk_url, zoneid=z["id"], hypervisor="KVM", format="RAW",
                             ispublic="true")["template"][0]
    assert wait_status(api, t["id"], timeout=60)["isready"]
    so = api.createServiceOffering(name="tiny", displaytext="1 vCPU 128 MiB", cpunumber=1, cpuspeed=500,
                                   memory=128)["serviceoffering"]
    vm = api.deployVirtualMachine(zoneid=z["id"], templateid=t["id"], serviceofferingid=so["id"], name="screen1",
                                  fetch_result=True)["virtualmachine"]
    made["vm"] = vm["id"]
    return vm


def test_console_of_a_real_kvm_guest(stack, page, files, tmp_path, cleanup):  # noqa: F811
    stack.start()
    vm = kvm_vm(stack, stack.api(), f"{files.url}/disk.raw", tmp_path, cleanup)
    assert vm["state"] == "Running" and vm["instancename"].endswith("-" + SUFFIX)

    login(page, stack.url)
    console = guest_screen(page, f"{stack.url}/vms/{vm['id']}")
    assert console.locator("#console-status").inner_text() == "Connected"
    assert console.locator("#console-reconnect").is_hidden()
    time.sleep(2)  # let the firmware finish its messages for the screenshot
    screenshot(console, "console-kvm")
    assert "token=" not in console.url  # the token never was in an address

    # The admin sees the session and ends it: the proxy closes it.
    page.goto(f"{stack.url}/admin/consoles")
    row = page.locator("#console-sessions tbody tr")
    assert row.count() == 1 and "screen1" in row.inner_text()
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="End").click()
    page.wait_for_selector("#console-sessions .flash-success")
    console.wait_for_selector("#console-status[data-state=disconnected]", timeout=15000)
    assert console.locator("#console-reconnect").is_visible()
    events = stack.api().listEvents(resourceid=vm["id"])["event"]
    assert {"CONSOLE.OPEN", "CONSOLE.END", "CONSOLE.CLOSE"} <= {e["type"] for e in events}
