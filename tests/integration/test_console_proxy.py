"""The console proxy as it runs (`python -m app.console`, websockify forking per
connection) against a small VNC server (tests/console_support.py), with
OpenStack nova's list: unknown, expired and reused tokens; a token of another
user's VM; bad, missing and allowed Origin; ws and wss; a VM that migrated or
stopped after its token was made; no way to reach anything but the VM's
recorded console. Every refusal is answered 403 and logged as an event; the
token never appears in the proxy's log."""
from __future__ import annotations

import ssl
import time
from types import SimpleNamespace

import pytest
from sqlalchemy import select, update

from app.extensions import db
from app.models import ConsoleSession, Event, VirtualMachine
from app.services import accounts, consoles, settings
from app.services.errors import NotFound
from tests.console_support import (WS, Closed, FakeVNC, Refused, console_proxy, key_event, make_vm, pattern,
                                   read_update, request_update, rfb_handshake, self_signed)

ORIGIN = "https://nubo.example"
CHECK = 0.3  # NUBO_CONSOLE_CHECK_SECONDS: how soon the proxy notices an ended session


@pytest.fixture
def vnc():
    with FakeVNC() as server:
        yield server


@pytest.fixture
def vm(app, users, vnc):
    with app.app_context():
        return make_vm("alice", port=vnc.port).uuid


@pytest.fixture
def proxy(app, tmp_path):
    log = tmp_path / "proxy.log"
    with console_proxy(app.config, log, PUBLIC_ORIGINS=ORIGIN, CONSOLE_CHECK_SECONDS=CHECK) as port:
        yield SimpleNamespace(url=f"ws://127.0.0.1:{port}/", log=log)
    assert "token=" not in log.read_text().replace("token=<redacted>", "")  # never a token in the log


def token(app, vm_uuid, user="alice", **kw) -> str:
    with app.app_context():
        return consoles.create_console(accounts.get_user(user), vm_uuid, **kw)[0]


def connect(proxy, tok, origin=ORIGIN, query="", **kw) -> WS:
    return WS(f"{proxy.url}?token={tok}{query}", origin=origin, **kw)


def refused(proxy, tok, origin=ORIGIN, **kw) -> int:
    with pytest.raises(Refused) as e:
        connect(proxy, tok, origin, **kw)
    return e.value.status


def events(app, type_="CONSOLE.REFUSED") -> list[Event]:
    with app.app_context():
        return list(db.session.scalars(select(Event).where(Event.type == type_).order_by(Event.id)))


def wait_events(app, type_, count, timeout=5.0) -> list[Event]:
    deadline = time.monotonic() + timeout
    while (found := events(app, type_)) and len(found) < count or not found:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return events(app, type_)


def screen_through(ws: WS) -> bytes:
    w, h, name = rfb_handshake(ws)
    assert name == "fake-vnc"
    request_update(ws, w, h)
    return read_update(ws)


def closed_by_proxy(ws: WS, timeout=5.0) -> Closed:
    """Keep asking for updates until the proxy closes the websocket."""
    deadline = time.monotonic() + timeout
    with pytest.raises(Closed) as e:
        while time.monotonic() < deadline:
            request_update(ws, 8, 8)
            read_update(ws)
            time.sleep(0.05)
    return e.value


def test_a_valid_token_shows_the_screen_and_is_logged(app, vm, proxy, vnc):
    ws = connect(proxy, token(app, vm, client_address="192.0.2.1"))
    assert screen_through(ws) == pattern(vnc.width, vnc.height)
    key_event(ws)
    ws.close()
    opened, closed = events(app, "CONSOLE.OPEN"), wait_events(app, "CONSOLE.CLOSE", 1)
    assert len(opened) == 1 and opened[0].source_address == "127.0.0.1" and opened[0].resource_id == vm
    with app.app_context():
        assert opened[0].user_id == accounts.get_user("alice").id
    assert len(closed) == 1 and "closed after 0:00:0" in closed[0].description and "viewer" in closed[0].description
    assert "token=<redacted>" in proxy.log.read_text()  # websockify logged the path: redacted


def test_unknown_missing_expired_and_reused_tokens(app, vm, proxy, vnc):
    assert refused(proxy, "not-a-token") == 403
    assert refused(proxy, "") == 403
    expired = token(app, vm)
    with app.app_context():
        db.session.execute(update(ConsoleSession).values(expires=consoles._now()))
        db.session.commit()
    assert refused(proxy, expired) == 403
    used = token(app, vm, browser_session="sid")  # as the VM page makes it
    first = connect(proxy, used)
    screen_through(first)
    assert refused(proxy, used) == 403  # while the first is connected
    first.close()
    wait_events(app, "CONSOLE.CLOSE", 1)
    assert refused(proxy, used) == 403  # afterwards, from a client without the browser session
    reasons = [e.description for e in events(app)]
    assert [r.rsplit(": ", 1)[-1] for r in reasons] == [
        "unknown token", "no token", "expired token", "token already used", "token already used"]
    assert vnc.connections == 1  # only the valid connect reached the VM


def test_another_users_vm_gets_no_token(app, vm, proxy, client, auth):
    with app.app_context(), pytest.raises(NotFound):
        consoles.create_console(accounts.get_user("bob"), vm)
    auth.login("bob")
    assert client.post(f"/vms/{vm}/console", data={"csrf_token": auth.csrf()}).status_code == 404
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(ConsoleSession)) == 0


def test_origin_is_checked_before_the_token(app, vm, proxy, vnc):
    tok = token(app, vm)
    assert refused(proxy, tok, origin="https://evil.example") == 403
    assert refused(proxy, tok, origin=None) == 403
    assert [e.description.split("refused: ")[1] for e in events(app)] == [
        "Origin 'https://evil.example' is not allowed", "no Origin"]
    assert vnc.connections == 0
    screen_through(connect(proxy, tok))  # the refused attempts did not spend it


def test_wss_and_plain_ws_refused_when_tls_is_on(app, vm, vnc, tmp_path):
    cert, key = self_signed(tmp_path)
    with console_proxy(app.config, tmp_path / "tls.log", PUBLIC_ORIGINS=ORIGIN, CONSOLE_CERT=cert,
                       CONSOLE_KEY=key) as port:
        trusted = ssl.create_default_context(cafile=str(cert))
        ws = WS(f"wss://127.0.0.1:{port}/?token={token(app, vm)}", origin=ORIGIN, ssl_context=trusted)
        assert screen_through(ws) == pattern(vnc.width, vnc.height)
        ws.close()
        with pytest.raises(Refused):
            WS(f"ws://127.0.0.1:{port}/?token={token(app, vm)}", origin=ORIGIN)  # TLS only
        with pytest.raises(ssl.SSLError):  # an untrusted certificate is not talked to
            WS(f"wss://127.0.0.1:{port}/?token={token(app, vm)}", origin=ORIGIN)
    assert vnc.connections == 1


def test_reconnect_from_the_same_browser_session(app, vm, proxy, client, auth):
    auth.login("alice")
    page = client.post(f"/vms/{vm}/console", data={"csrf_token": auth.csrf()}).get_data(as_text=True)
    tok = page.split("?token=", 1)[1].split('"', 1)[0]
    cookie = f"session={client.get_cookie('session').value}"
    ws = connect(proxy, tok, cookie=cookie)
    screen_through(ws)
    ws.close()
    wait_events(app, "CONSOLE.CLOSE", 1)
    assert refused(proxy, tok) == 403  # the token without the browser session
    screen_through(connect(proxy, tok, cookie=cookie))  # a reconnect within the window
    assert [e.description.rsplit(": ", 1)[-1] for e in events(app, "CONSOLE.OPEN")][-1].startswith("reconnected")


@pytest.mark.parametrize("end", ["logout", "password change"])
def test_no_reconnect_with_a_cookie_whose_session_ended(app, vm, proxy, client, auth, end):
    auth.login("alice")
    page = client.post(f"/vms/{vm}/console", data={"csrf_token": auth.csrf()}).get_data(as_text=True)
    tok = page.split("?token=", 1)[1].split('"', 1)[0]
    cookie = f"session={client.get_cookie('session').value}"
    ws = connect(proxy, tok, cookie=cookie)
    screen_through(ws)
    ws.close()
    wait_events(app, "CONSOLE.CLOSE", 1)
    if end == "logout":
        auth.logout()
    else:
        with app.app_context():
            accounts.set_password(accounts.get_user("alice"), "another-fine-secret-4")
    opened = len(events(app, "CONSOLE.OPEN"))
    assert refused(proxy, tok, cookie=cookie) == 403  # the cookie copied before
    assert len(events(app, "CONSOLE.OPEN")) == opened


def test_a_vm_that_migrated(app, vm, proxy, vnc):
    """What vms.migrate_now records: the console on the new host, then forget_vm."""
    unused, used = token(app, vm), token(app, vm)
    ws = connect(proxy, used)
    screen_through(ws)
    with FakeVNC(name="moved") as dest, app.app_context():
        row = db.session.scalar(select(VirtualMachine).where(VirtualMachine.uuid == vm))
        row.console_port = dest.port
        consoles.forget_vm(row)
        db.session.commit()
        assert closed_by_proxy(ws).reason == "session ended: the VM's console has moved"
        assert refused(proxy, unused) == 403  # deleted at migration
        assert refused(proxy, used) == 403
        ws2 = connect(proxy, token(app, vm))
        assert rfb_handshake(ws2)[2] == "moved" and dest.connections == 1
    assert "unknown token" in events(app)[0].description


def test_a_vm_that_stopped(app, vm, proxy):
    unused, used = token(app, vm), token(app, vm)
    ws = connect(proxy, used)
    screen_through(ws)
    with app.app_context():
        db.session.execute(update(VirtualMachine).values(state="Stopped", console_port=None))
        db.session.commit()
    assert "Running" in closed_by_proxy(ws).reason
    assert refused(proxy, unused) == 403
    assert "only while it is Running" in events(app)[-1].description
    assert "only while it is Running" in wait_events(app, "CONSOLE.CLOSE", 1)[0].description


def test_only_the_vms_recorded_console_is_ever_reached(app, users, proxy, vnc):
    with FakeVNC(name="wished-for") as wished, app.app_context():
        vm = make_vm("alice", port=vnc.port).uuid
        low = make_vm("alice", port=22).uuid
        tok = consoles.create_console(accounts.get_user("alice"), vm)[0]
        # Everything a client could add to name another target is ignored.
        ws = WS(f"{proxy.url[:-1]}/127.0.0.1:{wished.port}?token={tok}&host=127.0.0.1&port={wished.port}"
                f"&target=127.0.0.1:{wished.port}", origin=ORIGIN)
        assert rfb_handshake(ws)[2] == "fake-vnc"
        assert (vnc.connections, wished.connections) == (1, 0)
        assert refused(proxy, consoles.create_console(accounts.get_user("alice"), low)[0]) == 403
    assert "port 22 is below console.vnc.port.min" in events(app)[-1].description


def test_an_admin_ends_a_session(app, vm, proxy):
    ws = connect(proxy, token(app, vm))
    screen_through(ws)
    with app.app_context():
        admin = accounts.get_user("admin")
        consoles.end_session(admin, consoles.list_sessions(admin)[0][0].session.uuid)
    assert closed_by_proxy(ws).reason == "session ended: ended by an administrator"
    assert "ended by an administrator" in wait_events(app, "CONSOLE.CLOSE", 1)[0].description


def test_idle_sessions_are_closed(app, vm, proxy):
    with app.app_context():
        settings.update("console.idle.timeout", "3")  # the busy one types every 0.1 s: 30x margin
    idle, busy = connect(proxy, token(app, vm)), connect(proxy, token(app, vm))
    screen_through(idle)
    screen_through(busy)
    deadline = time.monotonic() + 60  # the loop ends when the idle one is closed (~3 s)
    closed = None
    while closed is None and time.monotonic() < deadline:
        try:
            request_update(idle, 8, 8)  # what noVNC sends on its own: not activity
            read_update(idle)
        except Closed as e:
            closed = e
            break
        key_event(busy)  # a person typing (closed here: the test fails, as it should)
        request_update(busy, 8, 8)
        read_update(busy)
        time.sleep(0.1)
    assert closed is not None and closed.reason == "session ended: idle for more than 3 s"
    request_update(busy, 8, 8)
    assert read_update(busy)  # still open
