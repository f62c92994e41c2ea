"""The admin-only Simulator control page: hosts down/up, delays, faults; HTMX
fragments from the same partials as the page; CSRF on every action."""
from __future__ import annotations

import pytest

from app.hypervisors.base import DriverContext, HostUnreachable, OperationFailed, VMSpec
from app.hypervisors.simulator import SIMULATOR, dispose_engines
from app.services import simulator as sim

# On SQLite only, but for the tests marked `db` below (their queries list, filter, sort or count):
# the rest is forms, pages and access rules, the same on every database.


@pytest.fixture(autouse=True)
def _engines():
    yield
    dispose_engines()


@pytest.fixture
def sim_hosts(app):
    drivers = {}
    for name in ("ctl-1", "ctl-2"):
        d = SIMULATOR.make_driver(SIMULATOR.connection(f"simulator://{name}?cpus=8&memory=16384", {}),
                                  DriverContext(database_url=app.config["SQLALCHEMY_DATABASE_URI"]))
        d.check_host()
        drivers[name] = d
    drivers["ctl-1"].start_vm(VMSpec(name="i-1", uuid="u-1", cpus=1, cpu_mhz=500, memory_mib=512))
    return drivers


def host_id(app, name):
    with app.app_context():
        return sim.get_host(name).id


def test_page_lists_hosts(client, auth, sim_hosts):
    auth.login("admin")
    resp = client.get("/admin/simulator/")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "ctl-1" in html and "ctl-2" in html
    assert "8 × 2400 MHz" in html and "1 / 1" in html and "Armed faults" in html
    assert 'href="/admin/simulator/"' in html  # in the admin navigation
    assert "HX-Request" in resp.headers["Vary"]


@pytest.mark.db
def test_search_answers_with_the_hosts_partial(client, auth, hx, sim_hosts):
    auth.login("admin")
    resp = hx.get("/admin/simulator/?q=ctl-2", headers={"HX-Target": "sim-hosts"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and 'id="sim-hosts"' in html and "<html" not in html
    assert "ctl-2" in html and "ctl-1" not in html
    assert "HX-Request" in resp.headers["Vary"]


@pytest.mark.parametrize("who, status", [("alice", 403), (None, 302)])
def test_admin_only(client, auth, sim_hosts, who, status):
    if who:
        auth.login(who)
    assert client.get("/admin/simulator/").status_code == status
    token = auth.csrf("/portal/" if who else "/login")
    assert client.post("/admin/simulator/hosts/ctl-1/power", data={"csrf_token": token}).status_code == status
    assert client.post("/admin/simulator/faults", data={"csrf_token": token, "host": "ctl-1",
                                                        "count": 1}).status_code == status
    with client.application.app_context():
        assert sim.get_host("ctl-1").up and sim.list_faults() == []


def test_actions_need_csrf(client, auth, sim_hosts, app):
    auth.login("admin")
    # Refused by the CSRF check itself (400 with its message), before any form is read.
    for url, data in [("/admin/simulator/hosts/ctl-1/power", {}), ("/admin/simulator/hosts/ctl-1/delay",
                                                                   {"seconds": "3"}),
                      ("/admin/simulator/faults", {"host": "ctl-1", "count": "1"})]:
        resp = client.post(url, data=data)
        assert resp.status_code == 400 and "missing or invalid CSRF token" in resp.get_data(as_text=True), url
    with app.app_context():
        assert sim.get_host("ctl-1").up and sim.get_host("ctl-1").delay_seconds == 0
        assert sim.list_faults() == []


def test_power_toggle_htmx_and_plain(client, auth, hx, sim_hosts, app):
    auth.login("admin")
    resp = hx.post("/admin/simulator/hosts/ctl-1/power")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and f'id="sim-host-{host_id(app, "ctl-1")}"' in html
    assert "Down" in html and "Bring up" in html and "<html" not in html
    with pytest.raises(HostUnreachable):
        sim_hosts["ctl-1"].list_vms()
    # Without JavaScript: a normal POST, then back to the page.
    resp = client.post("/admin/simulator/hosts/ctl-1/power", data={"csrf_token": auth.csrf("/admin/simulator/")})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/simulator/")
    assert [v.name for v in sim_hosts["ctl-1"].list_vms()] == ["i-1"]
    assert client.post("/admin/simulator/hosts/nope/power",
                       data={"csrf_token": auth.csrf("/admin/simulator/")}).status_code == 404


def test_cut_off_keeps_the_heartbeat(client, auth, hx, sim_hosts, app):
    """Cut off: unreachable from Nubo, still running and writing its storage heartbeat (HA)."""
    auth.login("admin")
    assert "Cut off" in hx.get("/admin/simulator/").get_data(as_text=True)
    resp = hx.post("/admin/simulator/hosts/ctl-1/isolate")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Cut off" in html and "Bring up" in html and "<html" not in html
    with pytest.raises(HostUnreachable):
        sim_hosts["ctl-1"].list_vms()
    with app.app_context():
        h = sim.get_host("ctl-1")
        assert not h.up and h.heartbeat_stopped_at is None
    assert sim_hosts["ctl-2"].heartbeat_age(None, "ctl-1") == 0.0  # a neighbour sees it beat
    client.post("/admin/simulator/hosts/ctl-1/power", data={"csrf_token": auth.csrf("/admin/simulator/")})
    assert [v.name for v in sim_hosts["ctl-1"].list_vms()] == ["i-1"]


def test_delay_and_its_validation(hx, auth, sim_hosts, app):
    auth.login("admin")
    resp = hx.post("/admin/simulator/hosts/ctl-2/delay", data={"seconds": "2.5"})
    assert resp.status_code == 200 and 'value="2.5"' in resp.get_data(as_text=True)
    bad = hx.post("/admin/simulator/hosts/ctl-2/delay", data={"seconds": "9999"})
    assert bad.status_code == 422 and "between 0" in bad.get_data(as_text=True)
    with app.app_context():
        assert sim.get_host("ctl-2").delay_seconds == 2.5


def test_arm_and_clear_faults(hx, auth, sim_hosts, app):
    auth.login("admin")
    resp = hx.post("/admin/simulator/faults", data={"vm": "i-1", "count": "2", "message": "boom",
                                                     "operations": ["reboot_vm"]})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and 'id="sim-faults"' in html and "boom" in html and "reboot_vm" in html
    with pytest.raises(OperationFailed, match="boom"):
        sim_hosts["ctl-1"].reboot_vm("i-1")
    bad = hx.post("/admin/simulator/faults", data={"host": "ctl-1", "vm": "i-1", "count": "1"})
    assert bad.status_code == 422 and "either a host or a VM" in bad.get_data(as_text=True)
    bad = hx.post("/admin/simulator/faults", data={"host": "ghost", "count": "1"})
    assert bad.status_code == 422 and "No Simulator host named ghost" in bad.get_data(as_text=True)
    with app.app_context():
        (fault, _), = sim.list_faults()
        assert fault.remaining == 1
        fault_id = fault.id
    resp = hx.post(f"/admin/simulator/faults/{fault_id}/clear")
    assert resp.status_code == 200 and "No armed faults" in resp.get_data(as_text=True)
    sim_hosts["ctl-1"].reboot_vm("i-1")


def test_fail_next_button_triggers_the_faults_panel(hx, auth, sim_hosts, app):
    auth.login("admin")
    resp = hx.post("/admin/simulator/hosts/ctl-2/fail-next")
    assert resp.status_code == 200 and resp.headers.get("HX-Trigger") == "simFaultsChanged"
    assert "next 1 action" in resp.get_data(as_text=True)
    panel = hx.get("/admin/simulator/faults").get_data(as_text=True)
    assert "ctl-2" in panel and "Simulated failure" in panel
    with pytest.raises(OperationFailed, match="Simulated failure"):
        sim_hosts["ctl-2"].start_vm(VMSpec(name="i-9", uuid="u-9", cpus=1, cpu_mhz=500, memory_mib=256))
    resp = hx.post("/admin/simulator/hosts/ctl-2/reset")
    assert resp.status_code == 200 and "none" in resp.get_data(as_text=True)
