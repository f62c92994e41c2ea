"""A Hyper-V host in the running product, end to end: the WS-Management double over
HTTPS with a self-signed certificate (made here), added through the add-host wizard
with its SHA-256 fingerprint (a wrong one first: refused beside the field, no host),
a VM deployed on it from a VHDX template that went through the zone's SMB secondary
storage, and its VMConnect `.rdp` file downloaded from the VM page in Chromium.

The SMB image store is a tmpfs of this test, mounted where the management server
mounts the store (instance/secondary/<id>) and the double's share for the same UNC
path, as Nubo and a Hyper-V host would each see one real share. What is not real: the
Hyper-V host itself (no Windows here; tests/hyperv/wsman_double.py). Screenshot:
test-artifacts/hyperv-vm.png."""
from __future__ import annotations

import http.server
import subprocess
import threading

import pytest
from playwright.sync_api import expect

from app import create_app
from app.services import accounts, zones
from tests.e2e.conftest import screenshot
from tests.e2e.test_admin_pages import login
from tests.hyperv.certs import self_signed
from tests.hyperv.wsman_double import WsmanDouble

pytestmark = [pytest.mark.browser]
SHARE = "\\\\127.0.0.1\\secondary"


@pytest.fixture
def www(tmp_path):
    """A small real VHDX (qemu-img) over HTTP on 127.0.0.1, for registerTemplate."""
    root = tmp_path / "www"
    root.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "vhdx", str(root / "win.vhdx"), "64M"], check=True)
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def mounts():
    made: list[str] = []
    yield made
    for path in reversed(made):
        subprocess.run(["umount", path], check=False)


def test_hyperv_host_over_https_deploy_and_rdp(stack, page, tmp_path, www, mounts):
    with WsmanDouble("127.0.0.1", tls=self_signed("127.0.0.1")) as double:
        stack.start()
        api = stack.api()
        z = api.createZone(name="hyperv-lab", networktype="Basic", dns1="8.8.8.8", internaldns1="10.0.0.2",
                           guestcidraddress="10.79.0.0/24")["zone"]
        app = create_app({"INSTANCE_PATH": stack.env["NUBO_INSTANCE_PATH"]})  # the stack's database
        with app.app_context():
            zones.create_physical_network(accounts.get_user("admin"), zones.get_zone(z["id"]), vlan_range=None,
                                          traffic_labels={"Hyperv": "nubo-switch"})
        p = api.createPod(zoneid=z["id"], name="p", gateway="10.0.0.1", netmask="255.255.255.0",
                          startip="10.0.0.10", endip="10.0.0.99")["pod"]
        c = api.addCluster(zoneid=z["id"], podid=p["id"], clustername="hv", hypervisor="Hyperv",
                           clustertype="CloudManaged")["cluster"][0]

        # The add-host wizard: zone → pod → cluster, then Hyper-V's own fields.
        login(page, stack.url)
        page.goto(f"{stack.url}/admin/hosts/add?zone={z['id']}&pod={p['id']}&cluster={c['id']}")
        page.fill("input[name=url]", "127.0.0.1")
        page.fill("input[name=username]", double.username)
        page.fill("input[name=password]", double.password)
        page.select_option("select[name=transport]", "ssl")
        page.fill("input[name=port]", str(double.port))
        wrong = "00:" * 31 + "00"
        page.fill("input[name=fingerprint]", wrong)
        page.get_by_role("button", name="Add host").click()
        expect(page.get_by_text("does not match the pinned SHA-256 fingerprint")).to_be_visible()
        expect(page.get_by_text(double.tls.fingerprint)).to_be_visible()  # what the host presents
        assert api.listHosts(zoneid=z["id"]).get("host") is None
        page.fill("input[name=password]", double.password)  # secrets are never sent back to the page
        page.fill("input[name=fingerprint]", double.tls.fingerprint)
        page.get_by_role("button", name="Add host").click()
        expect(page.locator("h1")).to_contain_text("Host HV-DOUBLE")

        api.createStoragePool(zoneid=z["id"], podid=p["id"], clusterid=c["id"], name="primary",
                              url="smb://127.0.0.1/primary", **{"details[0].user": "hvadmin",
                                                               "details[0].password": "smb-pass"})
        store = api.addImageStore(provider="SMB", url="smb://127.0.0.1/secondary", zoneid=z["id"], name="sec",
                                  **{"details[0].user": "hvadmin", "details[0].password": "smb-pass"})["imagestore"]
        # The share, as the management server mounts it (a tmpfs: a bind mount on the same file
        # system is not a mount point to os.path.ismount) and as the host sees it.
        mount_point = tmp_path / "instance" / "secondary" / store["id"]
        mount_point.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "nubo-smb", str(mount_point)], check=True)
        mounts.append(str(mount_point))
        double.hyperv.shares[SHARE.lower()] = mount_point
        t = api.registerTemplate(name="win", url=f"{www}/win.vhdx", zoneid=z["id"], hypervisor="Hyperv",
                                 format="VHDX", ispublic="true", ostypeid=_ostype(api))["template"][0]
        so = api.createServiceOffering(name="small", displaytext="1 vCPU 512 MiB", cpunumber=1, cpuspeed=500,
                                       memory=512)["serviceoffering"]
        _wait_ready(api, t["id"])
        vm = api.deployVirtualMachine(zoneid=z["id"], templateid=t["id"], serviceofferingid=so["id"], name="win1",
                                      fetch_result=True)["virtualmachine"]
        assert vm["state"] == "Running" and vm["hypervisor"] == "Hyperv"
        guid = double.hyperv.vms[vm["instancename"]]["id"]

        page.goto(f"{stack.url}/vms/{vm['id']}")
        expect(page.get_by_text(f"/vmconnect:{guid}")).to_be_visible()
        screenshot(page, "hyperv-vm")
        with page.expect_download() as got:
            page.get_by_role("button", name="Console", exact=True).click()
        download = got.value
        assert download.suggested_filename == "win1.rdp"
        text = open(download.path(), encoding="utf-8", newline="").read()
        assert text.split("\r\n") == ["full address:s:127.0.0.1", "server port:i:2179",
                                      f"pcb:s:{guid};EnhancedMode=0", "negotiate security layer:i:0",
                                      "username:s:admin", ""]
        assert "password" not in text.lower()


def _ostype(api) -> str:
    return next(o["id"] for o in api.listOsTypes()["ostype"] if "Windows" in o["description"])


def _wait_ready(api, template_id: str) -> None:
    """Until the download job has put the template on the SMB store (its state, not a time)."""
    import time
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = api.listTemplates(templatefilter="all", id=template_id).get("template", [])
        if rows and rows[0].get("isready"):
            return
        assert not (rows and rows[0].get("status", "").startswith("Failed")), rows
        time.sleep(0.3)
    raise TimeoutError(f"template {template_id} not ready: {rows}")
