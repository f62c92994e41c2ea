"""websockify token plugin: a console token → the VM's console (host, port).

Every answer comes from Nubo's database through app/services/consoles.py (so
any number of proxy copies can serve the same tokens): the token is consumed
atomically and the target is the VM's console as recorded now. Nothing the
client sends besides the token (and its Nubo session cookie, for reconnects,
which must still be a live login session) is used; a refused token returns None and is logged as an event.

websockify forks a process per connection: the parent warms up and closes its
database connections before it serves, so that each connection process opens
its own (and drops any it would still inherit).
"""
from __future__ import annotations

import logging
import os
from http.cookies import CookieError, SimpleCookie

from flask import Flask

from app.extensions import db
from app.services import consoles, sessions, settings

log = logging.getLogger("nubo.console")


class NuboTokens:
    def __init__(self, src=None, app: Flask | None = None):
        self.src = src  # websockify's --token-source: unused
        self.app = app
        self._pid: int | None = None

    def _context(self):
        if self.app is None:  # loaded by websockify's own command line
            from app import create_app
            self.app = create_app()
        if self._pid != os.getpid():
            with self.app.app_context():
                if db.engine.pool.checkedin():  # a parent's pooled connections are not ours
                    db.engine.dispose(close=False)
            self._pid = os.getpid()
        return self.app.app_context()

    def warm_up(self) -> None:
        """In the proxy's parent, before it forks: the database look-ups once, then
        every pooled connection closed (a forked process must open its own)."""
        with self._context():
            consoles.warm_up()
            db.engine.dispose()

    def lookup(self, token: str):
        """websockify's interface: (host, port) or None."""
        grant = self.consume(token, client_address=None)
        return (grant.host, grant.port) if grant else None

    def consume(self, token: str | None, *, client_address: str | None, cookie: str | None = None):
        # A broken database refuses: the proxy never relays on an unchecked token.
        return self._run("token check", None, lambda: consoles.consume(
            token, client_address=client_address, browser_session=self._browser_session(cookie)))

    def check(self, grant: consoles.Grant) -> str | None:
        # A broken database keeps the session: the next check tries again.
        return self._run("session check", None, lambda: consoles.check(grant))

    def close(self, grant: consoles.Grant, reason: str, client_address: str | None) -> None:
        self._run("session close", None, lambda: consoles.close(grant, reason, client_address))

    def refused(self, why: str, client_address: str | None) -> None:
        """A connection refused before its token was looked at (its Origin)."""
        self._run("refusal record", None, lambda: consoles.refuse(client_address, why))

    def idle_timeout(self) -> int:
        return self._run("settings read", 0, lambda: settings.get("console.idle.timeout"))

    def _run(self, what: str, fallback, call):
        with self._context():
            try:
                return call()
            except Exception:  # noqa: BLE001
                log.exception("console %s failed", what)
                db.session.rollback()
                return fallback

    def _browser_session(self, cookie: str | None) -> str | None:
        """The console id in the request's Nubo session cookie (sent when the proxy
        is on the web UI's host name), or None."""
        if not cookie:
            return None
        try:
            jar = SimpleCookie(cookie)
        except CookieError:
            return None
        morsel = jar.get(self.app.config["SESSION_COOKIE_NAME"])
        serializer = self.app.session_interface.get_signing_serializer(self.app)
        if morsel is None or serializer is None:
            return None
        try:
            data = serializer.loads(morsel.value,
                                    max_age=int(self.app.permanent_session_lifetime.total_seconds()))
        except Exception:  # noqa: BLE001 - a bad or old cookie is no session
            return None
        value = data.get(consoles.SESSION_KEY) if isinstance(data, dict) else None
        if not isinstance(value, str):
            return None
        # A cookie whose login was logged out, or ended by a password change, binds nothing.
        return value if sessions.web_session_alive(data) else None
