"""Behind a reverse proxy (NUBO_TRUSTED_PROXIES): the client's address is the one
the trusted proxy forwarded, for /metrics, the audit log, login throttling and the
console proxy's token binding; nobody else's X-Forwarded-For is believed.
(Addresses in headers only: every connection is to 127.0.0.1.)"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import select

from app import create_app
from app.extensions import db
from app.models import ConsoleSession, Event
from tests.conftest import csrf_token

pytestmark = pytest.mark.db

TRUSTED = "127.0.0.1, ::1 10.8.0.0/16"


@pytest.mark.parametrize("peer,header,client", [
    ("127.0.0.1", None, "127.0.0.1"),                              # no header
    ("127.0.0.1", "198.51.100.7", "198.51.100.7"),                  # one proxy
    ("127.0.0.1", "203.0.113.9, 198.51.100.7", "198.51.100.7"),     # the client's own header ignored
    ("127.0.0.1", "203.0.113.9, 198.51.100.7, 10.8.1.1", "198.51.100.7"),  # two trusted proxies
    ("10.8.1.1", "10.8.1.2", "10.8.1.2"),                           # all trusted: the left-most stops it
    ("192.0.2.50", "127.0.0.1", "192.0.2.50"),                      # not a trusted peer: header ignored
    ("127.0.0.1", "not-an-address", "127.0.0.1"),                   # garbage: the peer
    ("::ffff:127.0.0.1", "2001:db8::7", "2001:db8::7"),             # mapped IPv4 peer, IPv6 client
])
def test_client_address(peer, header, client):
    from app.proxies import client_address, parse_trusted
    assert client_address(peer, header, parse_trusted(TRUSTED)) == client


def test_off_by_default():
    from app.proxies import client_address, parse_trusted
    assert client_address("127.0.0.1", "198.51.100.7", parse_trusted("")) == "127.0.0.1"


@pytest.mark.parametrize("value", ["127.0.0.1 nginx.local", 2, "1"])
def test_a_bad_setting_stops_the_start(tmp_path, value):
    with pytest.raises(ValueError, match="NUBO_TRUSTED_PROXIES"):
        create_app({"INSTANCE_PATH": str(tmp_path / "i"), "TRUSTED_PROXIES": value})


@pytest.fixture
def behind_nginx(app):
    """The same instance and database as `app`, started with NUBO_TRUSTED_PROXIES."""
    proxied = create_app({"INSTANCE_PATH": app.config["INSTANCE_PATH"], "DATABASE_URL": app.config["DATABASE_URL"],
                          "TESTING": True, "SEED_DEMO": False, "TRUSTED_PROXIES": "127.0.0.1 ::1"})
    yield proxied
    with proxied.app_context():
        db.engine.dispose()


def via_nginx(client_ip: str) -> dict:
    # https at nginx: Flask-WTF then wants a same-origin Referer on POSTs, as browsers send
    return {"environ_base": {"REMOTE_ADDR": "127.0.0.1"}, "headers": {
        "X-Forwarded-For": client_ip, "X-Forwarded-Proto": "https", "Referer": "https://localhost/login"}}


def test_metrics_are_not_open_to_everyone_behind_nginx(app, behind_nginx):
    plain, proxied = app.test_client(), behind_nginx.test_client()
    assert proxied.get("/metrics", **via_nginx("198.51.100.7")).status_code == 403
    assert proxied.get("/metrics", **via_nginx("127.0.0.1")).status_code == 200  # a local scraper via nginx
    assert proxied.get("/metrics").status_code == 200  # straight to the app on loopback
    # A client that talks to the app directly cannot claim to be local.
    assert proxied.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.50"},
                       headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 403
    # Without the setting nothing forwarded is believed (the old, default behaviour).
    assert plain.get("/metrics", **via_nginx("198.51.100.7")).status_code == 200


def test_audit_and_throttling_see_the_real_client(app, users, behind_nginx):
    client = behind_nginx.test_client()

    def login(ip, password):
        token = csrf_token(client)
        return client.post("/login", data={"username": "alice", "password": password, "csrf_token": token},
                           **via_nginx(ip))

    for _ in range(3):
        assert login("198.51.100.7", "wrong-password-1").status_code == 401
    with behind_nginx.app_context():
        sources = set(db.session.scalars(select(Event.source_address).where(Event.type == "USER.LOGIN")))
    assert sources == {"198.51.100.7"}
    assert login("198.51.100.7", "alicepass").status_code == 429  # that client waits ...
    assert login("198.51.100.8", "alicepass").status_code == 302  # ... another one behind nginx does not


def test_forwarded_proto_is_believed_from_the_proxy_only(app, behind_nginx):
    from flask import request
    seen = []
    behind_nginx.before_request(lambda: seen.append((request.remote_addr, request.scheme)) and None)
    behind_nginx.test_client().get("/healthz", **via_nginx("198.51.100.7"))
    behind_nginx.test_client().get("/healthz", environ_base={"REMOTE_ADDR": "192.0.2.50"},
                                   headers={"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"})
    assert seen == [("198.51.100.7", "https"), ("192.0.2.50", "http")]


# --- The console proxy ----------------------------------------------------------------

@pytest.fixture
def vnc():
    from tests.console_support import FakeVNC
    with FakeVNC() as server:
        yield server


def _console(app, tmp_path, **env):
    from tests.console_support import console_proxy
    return console_proxy(app.config, tmp_path / "proxy.log", PUBLIC_ORIGINS="https://nubo.example",
                         CONSOLE_CHECK_SECONDS=0.3, **env)


@pytest.mark.parametrize("trusted,expected", [("127.0.0.1", "198.51.100.7"), ("", "127.0.0.1")])
def test_the_console_proxy_binds_tokens_to_the_forwarded_client(app, users, vnc, tmp_path, trusted, expected):
    from app.services import accounts, consoles
    from tests.console_support import WS, Refused, make_vm, rfb_handshake
    with app.app_context():
        vm = make_vm("alice", port=vnc.port).uuid
        tok = consoles.create_console(accounts.get_user("alice"), vm)[0]
    forwarded = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
    with _console(app, tmp_path, TRUSTED_PROXIES=trusted) as port:
        ws = WS(f"ws://127.0.0.1:{port}/?token={tok}", origin="https://nubo.example", headers=forwarded)
        rfb_handshake(ws)
        ws.close()
        with pytest.raises(Refused):
            WS(f"ws://127.0.0.1:{port}/?token=not-a-token", origin="https://nubo.example", headers=forwarded)
    with app.app_context():
        assert db.session.scalar(select(ConsoleSession.client_address)) == expected
        opened = db.session.scalar(select(Event).where(Event.type == "CONSOLE.OPEN"))
        refused = db.session.scalar(select(Event).where(Event.type == "CONSOLE.REFUSED"))
    assert opened.source_address == expected and refused.source_address == expected
