"""Login sessions (the web cookie and the API's sessionkey) end at logout, at a
password change and after a lifetime.

Flask's session is a signed cookie, so "ending" one needs state on the server:
each user has a `session_version` (app/models/accounts.py), raised at logout and
at a password change; a session carries the version it began with and is
refused, on every request, once they differ. Logging out therefore ends every
session of that user (all browsers and API sessionkeys), as a password change
does. A session also ends `session.timeout` minutes after its last request
(idle) and `session.max.lifetime` minutes after the login (absolute).
"""
from __future__ import annotations

import time
from collections.abc import MutableMapping

from app.services.settings import Definition, define, get

VERSION, STARTED, SEEN = "_nubo_sv", "_nubo_started", "_nubo_seen"
# The last-request time is rewritten at most this often (a cookie per response is waste).
SEEN_GRANULARITY = 30

define(Definition("session.timeout", "30", "Minutes without a request after which a login session "
                  "(web or API sessionkey) ends.", category="Security", type="integer", min=1, max=10080))
define(Definition("session.max.lifetime", "720", "Minutes after the login at which a login session "
                  "ends, however busy.", category="Security", type="integer", min=1, max=525600))


def _now() -> float:
    return time.time()


def begin(session: MutableMapping, user) -> None:
    """Bind the session to the user's current version, starting its clocks."""
    now = int(_now())
    session[VERSION] = user.session_version
    session[STARTED] = now
    session[SEEN] = now


def valid(session: MutableMapping, user) -> bool:
    """Is this session still the user's? (Refreshes its last-request time.)"""
    version, started, seen = session.get(VERSION), session.get(STARTED), session.get(SEEN)
    if version is None or version != user.session_version:
        return False
    if not isinstance(started, (int, float)) or not isinstance(seen, (int, float)):
        return False
    now = _now()
    if now - started > get("session.max.lifetime") * 60 or now - seen > get("session.timeout") * 60:
        return False
    if now - seen >= SEEN_GRANULARITY:
        session[SEEN] = int(now)
    return True


def timeout_seconds() -> int:
    return get("session.timeout") * 60


def forget(session: MutableMapping) -> None:
    for key in (VERSION, STARTED, SEEN):
        session.pop(key, None)
