"""Console tokens and sessions (app/services/consoles.py):
who may get a token, what is stored, the atomic first connect, reconnects, the
target taken from Nubo's records, ends (admin, migration, stop, maximum length),
the events; the web action, the admin page and the API; Hyper-V's .rdp file."""
from __future__ import annotations

import hashlib
import json
import re
import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from app.extensions import db
from app.hypervisors.hyperv.powershell import parse_op
from app.models import ConsoleSession, Event, Host, VirtualMachine
from app.services import accounts, consoles, crypto, settings, zones
from app.services.errors import InvalidParameter, NotFound, PermissionDenied, Unsupported
from tests.console_support import make_vm
from tests.hyperv.wsman_double import WsmanDouble
from tests.integration.test_api import keys, signed  # noqa: F401  (fixture)

# On every database (@pytest.mark.db): what is stored, the atomic first connect, expiry and
# reconnect windows, ends and deletion; who may get a token, the pages, the API and Hyper-V on SQLite.
ADDR = "192.0.2.10"
GUID = "0C5F3A2B-1111-2222-3333-444455556666"


@pytest.fixture
def ctx(app, users):
    with app.app_context():
        yield


def user(name):
    return accounts.get_user(name)


def vm_row(app, owner="alice", **kw) -> SimpleNamespace:
    """A VM made outside the test's app context: what the pages need of it."""
    with app.app_context():
        vm = make_vm(owner, **{"port": 5901, **kw})
        return SimpleNamespace(uuid=vm.uuid, name=vm.name)


def token_for(name="alice", vm=None, **kw):
    vm = vm or make_vm(name, port=5901)
    token, row = consoles.create_console(user(name), vm.uuid, **kw)
    return vm, token, row


def console_events(type_=None) -> list[Event]:
    q = select(Event).where(Event.type.startswith("CONSOLE.")).order_by(Event.id)
    return list(db.session.scalars(q.where(Event.type == type_) if type_ else q))


def last_refusal() -> str:
    return console_events("CONSOLE.REFUSED")[-1].description


@pytest.mark.db
def test_token_is_random_hashed_and_short_lived(ctx):
    vm, token, row = token_for(client_address=ADDR)
    assert len(token) >= 43  # 32 random bytes, base64url
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    stored = json.dumps([str(v) for v in db.session.execute(select(ConsoleSession.__table__)).one()])
    assert token not in stored  # only the hash
    assert row.user_id == user("alice").id and row.vm_id == vm.id and row.kind == "vnc"
    assert timedelta(0) < row.expires - row.created <= timedelta(seconds=60)
    with pytest.raises(InvalidParameter, match=r"integer in the range: \[5-60\]"):
        settings.update("console.token.ttl", "600")
    assert token_for(vm=vm)[1] != token


def test_only_users_of_the_vm_get_a_token(ctx):
    vm = make_vm("alice", port=5901)
    with pytest.raises(NotFound):
        consoles.create_console(user("bob"), vm.uuid)  # another account's VM does not exist for bob
    assert consoles.create_console(user("admin"), vm.uuid)[0]  # admins may use every VM
    assert db.session.scalar(select(db.func.count()).select_from(ConsoleSession)) == 1


@pytest.mark.parametrize("values, error, message", [
    (dict(state="Stopped", console_port=None), InvalidParameter, "only while it is Running"),
    (dict(hypervisor="Simulator"), Unsupported, "Simulator VMs have no screen"),
    (dict(hypervisor="LXC"), Unsupported, "text console"),
    (dict(hypervisor="OpenVZ"), Unsupported, "have no console"),
    (dict(hypervisor="Hyperv", hypervisor_vm_id=GUID), Unsupported, ".rdp file"),
])
def test_vms_without_a_proxied_console(ctx, values, error, message):
    vm = make_vm("alice", port=values.pop("console_port", 5901), **values)
    with pytest.raises(error, match=message):
        consoles.create_console(user("alice"), vm.uuid)


@pytest.mark.db
def test_first_connect_wins_then_the_token_is_spent(ctx):
    vm, token, row = token_for()
    grant = consoles.consume(token, client_address=ADDR)
    assert (grant.host, grant.port) == ("127.0.0.1", 5901)
    db.session.refresh(row)
    assert row.used and row.client_address == ADDR and (row.target_host, row.target_port) == ("127.0.0.1", 5901)
    assert row.expires - row.used == timedelta(seconds=settings.get("console.session.max"))
    assert consoles.consume(token, client_address="198.51.100.7") is None
    assert consoles.consume(("y" if token[0] == "x" else "x") + token[1:], client_address=ADDR) is None  # 1 char off
    assert consoles.consume(None, client_address=ADDR) is None
    assert [e.type for e in console_events()] == ["CONSOLE.OPEN"] + ["CONSOLE.REFUSED"] * 3
    refused = console_events("CONSOLE.REFUSED")
    assert [e.source_address for e in refused] == ["198.51.100.7", ADDR, ADDR]
    assert "token already used" in refused[0].description and refused[0].user_id == user("alice").id
    assert "unknown token" in refused[1].description and "no token" in refused[2].description
    assert all(token not in e.description for e in db.session.scalars(select(Event)))


@pytest.mark.db
def test_parallel_connects_one_wins(app, ctx):
    vm, token, _ = token_for()
    results = []

    def connect():
        with app.app_context():
            results.append(consoles.consume(token, client_address=ADDR))

    threads = [threading.Thread(target=connect) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1


@pytest.mark.db
def test_expired_token(ctx, monkeypatch):
    vm, token, row = token_for()
    later = consoles._now() + timedelta(seconds=61)
    monkeypatch.setattr(consoles, "_now", lambda: later)
    assert consoles.consume(token, client_address=ADDR) is None
    assert "expired token" in last_refusal()


@pytest.mark.db
def test_reconnect_same_browser_session_within_the_window(ctx, monkeypatch):
    vm, token, row = token_for(browser_session="sid-1")
    grant = consoles.consume(token, client_address=ADDR, browser_session="sid-1")
    consoles.close(grant, "closed by the viewer", ADDR)
    assert consoles.consume(token, client_address=ADDR, browser_session="sid-2") is None  # someone else
    assert consoles.consume(token, client_address=ADDR) is None  # no session cookie
    again = consoles.consume(token, client_address=ADDR, browser_session="sid-1")
    assert again is not None and again.ends == grant.ends
    consoles.close(again, "closed by the viewer", ADDR)
    later = consoles._now() + timedelta(seconds=settings.get("console.reconnect.window") + 1)
    monkeypatch.setattr(consoles, "_now", lambda: later)
    assert consoles.consume(token, client_address=ADDR, browser_session="sid-1") is None
    assert "reconnect window has passed" in last_refusal()


@pytest.mark.db
def test_api_tokens_reconnect_from_the_same_address_only(ctx):
    vm, token, _ = token_for()
    consoles.close(consoles.consume(token, client_address=ADDR), "closed", ADDR)
    assert consoles.consume(token, client_address="198.51.100.7") is None
    assert consoles.consume(token, client_address=ADDR) is not None


@pytest.mark.db
def test_target_is_the_vms_console_now(ctx):
    """A VM that moved (what vms.migrate_now records: the new console, then forget_vm)."""
    vm, unused, _ = token_for(browser_session="sid")
    _, used, _ = token_for(vm=vm, browser_session="sid")
    grant = consoles.consume(used, client_address=ADDR, browser_session="sid")
    vm.console_host, vm.console_port = "10.1.1.2", 5902
    consoles.forget_vm(vm)
    db.session.commit()
    assert consoles.check(grant) == "the VM's console has moved"
    assert consoles.consume(unused, client_address=ADDR) is None  # deleted: unknown
    consoles.close(grant, "moved", ADDR)
    assert consoles.consume(used, client_address=ADDR, browser_session="sid") is None  # ended: no reconnect
    _, fresh, _ = token_for(vm=vm)
    assert (consoles.consume(fresh, client_address=ADDR).host, vm.console_port) == ("10.1.1.2", 5902)


def test_stopped_vm(ctx):
    vm, token, _ = token_for()
    _, open_token, _ = token_for(vm=vm)
    grant = consoles.consume(open_token, client_address=ADDR)
    vm.state, vm.console_port = "Stopped", None  # as vms._stopped_on_host records it
    db.session.commit()
    assert consoles.consume(token, client_address=ADDR) is None
    assert "only while it is Running" in last_refusal()
    assert "Running" in consoles.check(grant)


def test_low_ports_are_never_targets(ctx):
    vm, token, _ = token_for(vm=make_vm("alice", port=22))
    assert consoles.consume(token, client_address=ADDR) is None
    assert "below console.vnc.port.min" in last_refusal()


def test_maximum_length_and_idle_settings(ctx, monkeypatch):
    vm, token, _ = token_for()
    grant = consoles.consume(token, client_address=ADDR)
    assert consoles.check(grant) is None
    later = grant.ends + timedelta(seconds=1)
    monkeypatch.setattr(consoles, "_now", lambda: later)
    assert consoles.check(grant) == "the maximum session length was reached"
    settings.update("console.idle.timeout", "0")  # 0: never
    with pytest.raises(InvalidParameter):
        settings.update("console.session.max", "10")


@pytest.mark.db
def test_admin_ends_a_session(ctx):
    vm, token, _ = token_for(browser_session="sid")
    grant = consoles.consume(token, client_address=ADDR, browser_session="sid")
    views, total = consoles.list_sessions(user("admin"))
    assert total == 1 and views[0].user.username == "alice" and views[0].vm.uuid == vm.uuid and views[0].active
    assert consoles.list_sessions(user("bob"))[1] == 0 and consoles.list_sessions(user("alice"))[1] == 1
    with pytest.raises(PermissionDenied):
        consoles.end_session(user("alice"), views[0].session.uuid)
    consoles.end_session(user("admin"), views[0].session.uuid)
    assert consoles.check(grant) == "ended by an administrator"
    assert consoles.list_sessions(user("admin"))[1] == 0
    with pytest.raises(InvalidParameter, match="not active"):
        consoles.end_session(user("admin"), views[0].session.uuid)
    consoles.close(grant, "session ended: ended by an administrator", ADDR)
    assert consoles.consume(token, client_address=ADDR, browser_session="sid") is None
    end = console_events("CONSOLE.END")[0]
    assert end.user_id == user("admin").id and end.resource_id == vm.uuid and "ended by admin" in end.description
    close = console_events("CONSOLE.CLOSE")[-1]
    assert close.source_address == ADDR and "closed after 0:00:0" in close.description


# --- Web and API -------------------------------------------------------------------------------

def test_console_page_and_its_rules(app, client, auth):
    vm = vm_row(app)
    stopped, sim = vm_row(app, port=None, state="Stopped"), vm_row(app, hypervisor="Simulator")
    auth.login("alice")
    page = client.get(f"/vms/{vm.uuid}").get_data(as_text=True)
    assert f'action="/vms/{vm.uuid}/console"' in page and 'target="_blank"' in page
    assert client.post(f"/vms/{vm.uuid}/console").status_code == 400  # no CSRF token
    resp = client.post(f"/vms/{vm.uuid}/console", data={"csrf_token": auth.csrf()})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    url = re.search(r'data-url="([^"]+)"', html).group(1)
    assert url.startswith(f"ws://127.0.0.1:{app.config['CONSOLE_PORT']}/?token=")
    assert 'src="/static/js/console.js"' in html and "password" not in html.lower()
    with app.app_context():
        row = db.session.scalar(select(ConsoleSession))
        assert row.browser_session and row.client_address == "127.0.0.1"
    # Console on a stopped VM: a disabled button with the reason beside it, and no address.
    page = client.get(f"/vms/{stopped.uuid}").get_data(as_text=True)
    note = re.search(r'disabled aria-describedby="vm-console-note">Console</button>\s*'
                     r'<small class="muted" id="vm-console-note">([^<]*)</small>', page)
    assert note and "is Stopped; its console is available only while it is Running" in note.group(1)
    assert "console on" not in page and "console available" not in page
    for other in (stopped, sim):
        assert "disabled" in client.get(f"/vms/{other.uuid}").get_data(as_text=True)
        resp = client.post(f"/vms/{other.uuid}/console", data={"csrf_token": auth.csrf()}, follow_redirects=True)
        assert "its console is available only while" in resp.get_data(as_text=True) or \
            "Simulator VMs have no screen" in resp.get_data(as_text=True)
    auth.logout()
    auth.login("bob")
    assert client.post(f"/vms/{vm.uuid}/console", data={"csrf_token": auth.csrf()}).status_code == 404
    assert client.get("/admin/consoles").status_code == 403


def test_admin_page_ends_a_session(app, client, auth, hx):
    vm = vm_row(app)
    with app.app_context():
        _, token, _ = token_for(vm=db.session.scalar(select(VirtualMachine)))
        consoles.consume(token, client_address=ADDR)
        uuid = db.session.scalar(select(ConsoleSession.uuid))
    auth.login("admin")
    page = client.get("/admin/consoles").get_data(as_text=True)
    assert vm.name in page and ADDR in page and f"/admin/consoles/{uuid}/end" in page
    assert client.post(f"/admin/consoles/{uuid}/end").status_code == 400  # CSRF
    resp = hx.post(f"/admin/consoles/{uuid}/end")
    assert resp.status_code == 200 and "No console session is open" in resp.get_data(as_text=True)
    again = hx.post(f"/admin/consoles/{uuid}/end")
    assert again.status_code == 422 and "not active" in again.get_data(as_text=True)


def test_api_create_endpoint_and_list_sessions(app, client, keys):  # noqa: F811
    vm, bobs = vm_row(app), vm_row(app, "bob")
    resp = client.post("/client/api", data=signed(keys, "alice", command="createConsoleEndpoint",
                                                  virtualmachineid=vm.uuid))
    out = json.loads(resp.data)["createconsoleendpointresponse"]["consoleendpoint"]
    ws = out["websocket"]
    assert out["success"] is True and "result" not in out and set(ws) == {"token", "host", "port", "path"}
    assert (ws["host"], ws["port"], ws["path"]) == ("127.0.0.1", str(app.config["CONSOLE_PORT"]), "/")
    assert out["url"] == f"http://localhost/console/#token={ws['token']}"  # the token never reaches a server log
    page = client.get("/console/").get_data(as_text=True)
    assert f'data-base="ws://127.0.0.1:{app.config["CONSOLE_PORT"]}/"' in page
    err = client.post("/client/api", data=signed(keys, "alice", command="createConsoleEndpoint",
                                                 virtualmachineid=bobs.uuid))
    assert err.status_code == 431
    with app.app_context():
        consoles.consume(ws["token"], client_address=ADDR)
    listed = json.loads(client.get("/client/api", query_string=signed(
        keys, "admin", command="listConsoleSessions"), ).data)["listconsolesessionsresponse"]
    s = listed["consolesession"][0]
    assert listed["count"] == 1 and s["virtualmachineid"] == vm.uuid and s["user"] == "alice"
    assert s["clientaddress"] == ADDR and "acquired" in s and "removed" not in s
    mine = json.loads(client.get("/client/api", query_string=signed(
        keys, "alice", command="listConsoleSessions")).data)["listconsolesessionsresponse"]
    assert mine["count"] == 1


# --- Hyper-V: the .rdp file ----------------------------------------------------------------------

def test_hyperv_rdp_file(app, client, auth):
    vm = vm_row(app, host="hv1.example", port=2179, hypervisor="Hyperv", hypervisor_vm_id=GUID)
    auth.login("alice")
    page = client.get(f"/vms/{vm.uuid}").get_data(as_text=True)
    assert f"/vmconnect:{GUID}" in page and "mstsc" in page
    resp = client.post(f"/vms/{vm.uuid}/console", data={"csrf_token": auth.csrf()})
    assert resp.status_code == 200 and resp.headers["Content-Disposition"] == f'attachment; filename="{vm.name}.rdp"'
    assert resp.headers["Content-Type"].startswith("application/x-rdp")
    text = resp.get_data(as_text=True)
    assert text.splitlines() == ["full address:s:hv1.example", "server port:i:2179", f"pcb:s:{GUID};EnhancedMode=0",
                                 "negotiate security layer:i:0", "username:s:alice"]
    assert "password" not in text.lower()
    with app.app_context():
        ev = console_events("CONSOLE.OPEN")[0]
        assert ev.resource_id == vm.uuid and ev.source_address == "127.0.0.1" and ".rdp" in ev.description
    auth.logout()
    auth.login("bob")
    assert client.post(f"/vms/{vm.uuid}/console", data={"csrf_token": auth.csrf()}).status_code == 404


def test_hyperv_grant_vmconnect_access(ctx):
    """With console.hyperv.grant.access the host (the WS-Management double) is asked
    to Grant-VMConnectAccess for DOMAIN\\user before the file is given."""
    settings.update("console.hyperv.grant.access", "true")
    settings.update("console.hyperv.user.domain", "CORP")
    with WsmanDouble("127.0.0.1") as double:
        fields = double.fields()  # the plaintext transport: the double's, allowed in tests only
        vm = make_vm("alice", host="127.0.0.1", port=2179, hypervisor="Hyperv", hypervisor_vm_id=GUID)
        pod = zones.create_pod(None, zone_uuid=vm.zone.uuid, name="p", gateway="192.168.20.1",
                               netmask="255.255.255.0", start_ip="192.168.20.10", end_ip="192.168.20.99")
        cluster = zones.add_cluster(None, pod_uuid=pod.uuid, name="c", hypervisor="Hyperv")
        host = Host(name="hv1", url="127.0.0.1", address="127.0.0.1", hypervisor_type="Hyperv", zone_id=vm.zone_id,
                    pod_id=pod.id, cluster_id=cluster.id, details=json.dumps({k: fields[k] for k in ("transport", "port")}),
                    credentials_enc=crypto.encrypt_json({k: fields[k] for k in ("username", "password")}))
        db.session.add(host)
        db.session.flush()
        vm.host_id = host.id
        db.session.commit()
        double.hyperv.vms[vm.instance_name] = {"name": vm.instance_name}
        name, text = consoles.rdp(user("alice"), vm.uuid, client_address=ADDR)
        assert "username:s:CORP\\alice" in text.splitlines()
        assert double.ops()[-1] == "grant_console_access"
        assert "Grant-VMConnectAccess -VMName $a.name -UserName $a.user" in double.scripts[-1]
        assert parse_op(double.scripts[-1])[1] == {"name": vm.instance_name, "user": "CORP\\alice"}
        del double.hyperv.vms[vm.instance_name]  # Hyper-V no longer knows the VM: a clear refusal
        with pytest.raises(Exception, match="could not be granted"):
            consoles.rdp(user("alice"), vm.uuid)


@pytest.mark.db
def test_forget_vm_at_expunge(ctx):
    vm, token, _ = token_for()
    consoles.forget_vm(vm)
    db.session.commit()
    assert db.session.scalar(select(db.func.count()).select_from(ConsoleSession)) == 0
    assert db.session.get(VirtualMachine, vm.id) is not None
