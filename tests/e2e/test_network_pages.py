"""Guest networking in Chromium against the real processes (gunicorn, huey worker) on a
Simulator zone: a user creates an Isolated network, deploys a VM on it, acquires a public
IP for it, adds a port forwarding rule to the VM and a firewall rule, sees both listed, and
releasing the IP removes them. Waits are on what the page shows; CSP violations fail it.
Screenshots go to test-artifacts/ (network-*)."""
from __future__ import annotations

import subprocess
import sys

import pytest
from cs import CloudStack

from tests.api.test_templates_cs import files  # noqa: F401  (fixture: a RAW image over HTTP)
from tests.api.test_vms_cs import simulator_zone
from tests.e2e.conftest import ROOT, htmx_settled, nav_link, screenshot
from tests.e2e.test_self_service import E2E_PASSWORDS, login

pytestmark = pytest.mark.browser

# The zone's networking (a VXLAN physical network with VNIs, the default offerings and a
# public range in 198.18.0.0/15), written by the stack's own app as the zone wizard would.
NETWORK_ZONE = """
import sys
from app import create_app
from app.extensions import db
from app.models import Zone
from tests.helpers.net_zone import network_zone
app = create_app()
with app.app_context():
    network_zone(db.session.scalar(db.select(Zone).where(Zone.uuid == sys.argv[1])), public="198.18.0.10-198.18.0.14")
"""


def test_network_ip_rules_and_release(stack, page, files, tmp_path):  # noqa: F811
    stack.start()
    api = stack.api()
    z, _hosts, t, so = simulator_zone(api, files, tmp_path, hosts=1)
    subprocess.run([sys.executable, "-c", NETWORK_ZONE, z["id"]], cwd=ROOT, env=stack.env, check=True)
    api.createAccount(username="alice", password=E2E_PASSWORDS["alice"], email="alice@example.org",
                      firstname="alice", lastname="Tester")
    login(page, stack.url, "alice", E2E_PASSWORDS["alice"])

    # Create an isolated network.
    nav_link(page, "Networks").click()
    page.wait_for_url("**/networks/")
    page.click("text=Create an isolated network")
    page.fill("input[name=name]", "e2e-net")
    page.fill("input[name=cidr]", "10.77.0.0/24")
    page.click("#network-form button[type=submit]")
    page.wait_for_selector("#network h1:has-text('e2e-net')")
    net_url = page.url
    # The VM on it, deployed through the API as alice.
    keys = api.registerUserKeys(id=api.listUsers(username="alice")["user"][0]["id"])["userkeys"]
    alice = CloudStack(endpoint=stack.url + "/client/api", key=keys["apikey"], secret=keys["secretkey"],
                       poll_interval=0.2)
    net_id = net_url.rstrip("/").rsplit("/", 1)[1]
    vm = alice.deployVirtualMachine(zoneid=z["id"], templateid=t["id"], serviceofferingid=so["id"], name="e2e-vm",
                                    networkids=net_id, fetch_result=True)["virtualmachine"]
    page.goto(net_url)
    page.wait_for_selector("#network-vms >> text=e2e-vm")
    page.wait_for_selector("#router .state")  # the router's state as the host reported it
    screenshot(page, "network-detail")

    # Acquire a public IP for it.
    page.goto(stack.url + "/publicips/")
    page.select_option("#acquire select[name=network]", net_id)
    page.click("#acquire button[type=submit]")
    page.wait_for_selector("#ip h1 .state")
    ip_url = page.url
    address = page.locator("#ip h1").inner_text().split()[0]
    assert address.startswith("198.18.0.")

    # Port forwarding 2222 -> 22 to the VM, and a firewall rule opening 2222.
    pf = page.locator("#portforwarding form").last
    pf.locator("select[name=protocol]").select_option("tcp")
    pf.locator("input[name=public_port]").fill("2222")
    pf.locator("input[name=private_port]").fill("22")
    pf.locator("select[name=vm]").select_option(vm["id"])
    pf.locator("button[type=submit]").click()
    page.wait_for_selector("#portforwarding tr:has-text('e2e-vm')")
    htmx_settled(page)
    fw = page.locator("#firewall form").last
    fw.locator("select[name=protocol]").select_option("tcp")
    fw.locator("input[name=start_port]").fill("2222")
    fw.locator("input[name=cidr]").fill("198.18.7.0/24")
    fw.locator("button[type=submit]").click()
    page.wait_for_selector("#firewall tr:has-text('198.18.7.0/24')")
    htmx_settled(page)
    assert "Active" in page.locator("#portforwarding tbody").inner_text()
    assert "Active" in page.locator("#firewall tbody").inner_text()
    screenshot(page, "network-public-ip")
    # A refusal is a form message: the same public port again.
    pf = page.locator("#portforwarding form").last
    pf.locator("input[name=public_port]").fill("2222")
    pf.locator("input[name=private_port]").fill("22")
    pf.locator("select[name=vm]").select_option(vm["id"])
    pf.locator("button[type=submit]").click()
    page.wait_for_selector("#ip .flash-error")
    htmx_settled(page)
    assert page.locator("#portforwarding tbody tr").count() == 1

    # Both are listed in the API too; releasing the address removes them.
    assert len(alice.listPortForwardingRules(ipaddressid=ip_url.rsplit("/", 1)[1]).get("portforwardingrule", [])) == 1
    page.once("dialog", lambda d: d.accept())
    page.click("#ip button:has-text('Release')")
    page.wait_for_url("**/publicips/")
    page.wait_for_selector(f".flash:has-text('Public IP {address} released')")
    assert address not in page.locator("#publicips-list").inner_text()
    assert alice.listPortForwardingRules().get("portforwardingrule", []) == []
    assert alice.listFirewallRules().get("firewallrule", []) == []
