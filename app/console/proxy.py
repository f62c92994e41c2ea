"""websockify's WebSocketProxy with Nubo's rules.

- The Origin is checked *before* the token (websockify checks the token first,
  so a refused Origin would spend it); a refused Origin is logged as an event.
- The target comes only from the token plugin (Nubo's records); the token is
  never logged (websockify's messages that would carry it are redacted).
- A console that asks for a VNC password (a grant with one) is authenticated by the proxy,
  and the viewer is offered no authentication: the password never reaches the browser.
- Each connection has a watcher thread that ends it when an admin ended the
  session, the VM stopped or moved, console.session.max passed, or no keyboard
  or pointer input came for console.idle.timeout seconds. Input is told from
  noVNC's steady FramebufferUpdateRequests (10-byte messages of type 3): a
  client frame made only of those is not activity. The close, with its reason
  and duration, is an event.
"""
from __future__ import annotations

import logging
import re
import socket
import threading
import time
from urllib.parse import parse_qs, urlsplit

from flask import Flask
from sqlalchemy.orm import configure_mappers
from websockify.auth_plugins import ExpectOrigin
from websockify.websocketproxy import ProxyRequestHandler, WebSocketProxy
from websockify.websocketserver import WebSocketRequestHandlerMixIn

from app.console import vncauth
from app.console.tokens import NuboTokens
from app.proxies import client_address

log = logging.getLogger("nubo.console")
TOKEN_RE = re.compile(r"(token=)[^&\s'\"]+")
FBUR = 3  # RFB FramebufferUpdateRequest: client message type, 10 bytes


class RedactTokens(logging.Filter):
    """websockify logs request paths: never let a token reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "token=" in text:
            record.msg, record.args = TOKEN_RE.sub(r"\1<redacted>", text), ()
        return True


def is_input(frame: bytes) -> bool:
    """A client frame that is more than noVNC's steady FramebufferUpdateRequests."""
    return not (frame and len(frame) % 10 == 0 and all(frame[i] == FBUR for i in range(0, len(frame), 10)))


class ConsoleHandler(ProxyRequestHandler):
    """One connection (in its own process)."""

    grant = None
    ending: str | None = None
    buffer_size = 1 << 18  # bytes read from the VNC server at a time (websockify: 64 KiB): fewer, larger frames

    @property
    def client_ip(self) -> str:
        """The viewer's address: behind a trusted proxy (NUBO_TRUSTED_PROXIES) the one
        it forwarded, else the peer's (the same rule as the web app's)."""
        return client_address(self.client_address[0], self.headers.get("X-Forwarded-For"),
                              self.server.trusted_proxies)

    def handle_upgrade(self):
        self.auth_connection()
        self.validate_connection()
        WebSocketRequestHandlerMixIn.handle_upgrade(self)  # websockify's own order is token first

    def send_auth_error(self, ex):
        """A refused Origin: logged, then answered (websockify's 403)."""
        origin = self.headers.get("Origin")
        self.server.token_plugin.refused(
            "no Origin" if origin is None else f"Origin {origin[:100]!r} is not allowed", self.client_ip)
        super().send_auth_error(ex)

    def get_target(self, target_plugin):
        token = parse_qs(urlsplit(self.path).query).get("token", [None])[0]
        self.grant = target_plugin.consume(token, client_address=self.client_ip,
                                           cookie=self.headers.get("Cookie"))
        if self.grant is None:
            self.send_error(403, "Console token refused")
            raise self.server.EClose("console token refused")  # never the token itself
        self.last_input = time.monotonic()
        return self.grant.host, self.grant.port

    def new_websocket_client(self):
        self.reason = "the connection failed"
        try:
            super().new_websocket_client()
        finally:
            self.server.token_plugin.close(self.grant, self.ending or self.reason, self.client_ip)

    def do_proxy(self, target):
        password = getattr(self.grant, "password", None)
        if password:  # the console asks for a password: the proxy answers it (app/console/vncauth.py)
            try:
                vncauth.authenticate(target, password)
                early = vncauth.greet_viewer(self)
            except (vncauth.HandshakeFailed, OSError) as e:
                self.reason = f"VNC authentication failed: {e}"
                raise self.CClose(1011, "the console refused the proxy") from None
            if early:
                target.sendall(early)
        self.target, self.watching = target, threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()
        try:
            super().do_proxy(target)
        except self.CClose as e:
            self.reason = f"closed by the viewer ({e.args[0]})" if e.args[1] != "Target closed" else \
                "the VM's console closed the connection"
            raise self.CClose(1000, self.ending) if self.ending else e
        except OSError as e:
            self.reason = f"connection lost ({e})"
            raise
        finally:
            self.watching.set()

    def recv_frames(self):
        bufs, closed = super().recv_frames()
        if any(is_input(b) for b in bufs):
            self.last_input = time.monotonic()
        return bufs, closed

    def _watch(self):
        interval = self.server.check_seconds
        while not self.watching.wait(interval):
            idle = self.server.token_plugin.idle_timeout()
            if idle and time.monotonic() - self.last_input > idle:
                reason = f"idle for more than {idle} s"
            else:
                reason = self.server.token_plugin.check(self.grant)
            if reason:
                self.ending = f"session ended: {reason}"[:120]  # a close frame's reason is short
                try:  # the proxy loop sees its target close and closes the websocket
                    self.target.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
                return


class ConsoleProxy(WebSocketProxy):
    def __init__(self, *args, check_seconds: float = 5, trusted_proxies=(), **kwargs):
        super().__init__(ConsoleHandler, *args, **kwargs)
        self.check_seconds = check_seconds
        self.trusted_proxies = tuple(trusted_proxies)


def make_proxy(app: Flask, **kwargs) -> ConsoleProxy:
    """The proxy for `app`'s configuration (listen address, origins, TLS)."""
    cfg = app.config
    tls = ({"cert": cfg["CONSOLE_CERT"], "key": cfg["CONSOLE_KEY"] or None, "ssl_only": True}
           if cfg.get("CONSOLE_CERT") else {})
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactTokens())
    configure_mappers()  # once, here: not in every connection's process
    tokens = NuboTokens(app=app)
    tokens.warm_up()
    return ConsoleProxy(listen_host=cfg["BIND"], listen_port=cfg["CONSOLE_PORT"], token_plugin=tokens,
                        auth_plugin=ExpectOrigin(cfg["PUBLIC_ORIGINS"]), heartbeat=30,
                        check_seconds=cfg["CONSOLE_CHECK_SECONDS"],
                        trusted_proxies=cfg["TRUSTED_PROXY_NETWORKS"], **tls, **kwargs)
