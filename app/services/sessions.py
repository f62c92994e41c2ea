"""Login sessions (the web cookie and the API's sessionkey) end at logout, at a
password change and after a lifetime.

Flask's session is a signed cookie, so "ending" one needs state on the server.
Each login gives its session a random id (`sid`, 128 bits) and binds it to the
user's `session_version` (app/models/accounts.py):

- a logout records the sid's hash in `revoked_sessions` (RevokedSession): that
  session ends, copies of its cookie too, and every other session of the user
  (another browser, a script's API sessionkey) goes on, as in CloudStack;
- a password change and disabling the user or account raise the version: every
  session of the user ends.

Every request checks both, in the statement that loads its user (load(): the
version is a column of the user row, the sid an EXISTS on the primary key). A session also ends `session.timeout`
minutes after its last request (idle) and `session.max.lifetime` minutes after
the login (absolute; the lifetime in force at the login, or a shorter one set
since). A revoked row is kept until its session would have ended anyway and is
then pruned (at each logout, and by the monitor's reconcile pass).
"""
from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping, MutableMapping
from datetime import datetime, timezone

from sqlalchemy import bindparam, delete, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import RevokedSession, User
from app.services import callers
from app.services.callers import Caller
from app.services.settings import Definition, define, get

VERSION, STARTED, SEEN, SID, UNTIL = "_nubo_sv", "_nubo_started", "_nubo_seen", "_nubo_sid", "_nubo_until"
# The last-request time is rewritten at most this often (a cookie per response is waste).
SEEN_GRANULARITY = 30

define(Definition("session.timeout", "30", "Minutes without a request after which a login session "
                  "(web or API sessionkey) ends.", category="Security", type="integer", min=1, max=10080,
                  unit="minutes"))
define(Definition("session.max.lifetime", "720", "Minutes after the login at which a login session "
                  "ends, however busy.", category="Security", type="integer", min=1, max=525600, unit="minutes"))


def _now() -> float:
    return time.time()


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def begin(session: MutableMapping, user) -> None:
    """A new session for the user: a fresh id bound to the user's current version,
    its clocks started. A session it replaces (an API login in a logged-in browser)
    is revoked, so a copy of the cookie from before does not outlive it."""
    if session.get(SID):
        revoke(session, user)
    now = int(_now())
    session[SID] = secrets.token_urlsafe(16)  # 128 bits
    session[VERSION] = user.session_version
    session[STARTED] = now
    session[SEEN] = now
    session[UNTIL] = now + get("session.max.lifetime") * 60


def _alive(session: Mapping, user, now: float, revoked: bool | None = None) -> bool:
    version, started, seen = session.get(VERSION), session.get(STARTED), session.get(SEEN)
    sid, until = session.get(SID), session.get(UNTIL)
    if version is None or version != user.session_version or not isinstance(sid, str) or not sid:
        return False  # a session from before sids (or forged keys) is no session
    if not all(isinstance(v, (int, float)) for v in (started, seen, until)):
        return False
    if now > min(until, started + get("session.max.lifetime") * 60) or now - seen > get("session.timeout") * 60:
        return False
    if revoked is None:
        revoked = db.session.get(RevokedSession, _hash(sid)) is not None
    return not revoked


def valid(session: MutableMapping, user, revoked: bool | None = None) -> bool:
    """Is this session still the user's? (Refreshes its last-request time.) `revoked`:
    already looked up with the user (load()), else one primary-key look-up."""
    now = _now()
    if not _alive(session, user, now, revoked):
        return False
    if now - session[SEEN] >= SEEN_GRANULARITY:
        session[SEEN] = int(now)
    return True


# Built once: every logged-in request runs it (building it cost about as much as running it).
_REVOKED = select(RevokedSession.sid_hash).where(RevokedSession.sid_hash == bindparam("sid_hash")).exists()
_LOAD = select(User, _REVOKED).where(User.uuid == bindparam("uuid"), User.removed.is_(None))


def load(session: MutableMapping, user_uuid: str) -> User | None:
    """The session's user if the session is still valid, else None: the user row and
    the revocation check in one statement (every request runs this)."""
    sid = session.get(SID)
    if not isinstance(sid, str) or not sid:
        return None
    row = db.session.execute(_LOAD, {"uuid": user_uuid, "sid_hash": _hash(sid)}).first()
    if row is None or not valid(session, row[0], revoked=bool(row[1])):
        return None
    return row[0]


_LOAD_CALLER = callers.statement(_REVOKED).where(User.uuid == bindparam("uuid"), User.removed.is_(None))


def load_caller(session: MutableMapping, user_uuid: str) -> Caller | None:
    """load() for the API's sessionkey: the caller as a row (app/services/callers.py), the
    revocation check in the same statement."""
    sid = session.get(SID)
    if not isinstance(sid, str) or not sid:
        return None
    row = db.session.connection().execute(_LOAD_CALLER, {"uuid": user_uuid, "sid_hash": _hash(sid)}).first()
    if row is None:
        return None
    caller = Caller(row)
    return caller if valid(session, caller, revoked=bool(row[-1])) else None


def web_session_alive(data: Mapping) -> bool:
    """For the console proxy, which reads the web session cookie itself: is it a live
    login session of an active user (not logged out, not stale)? Touches nothing."""
    uid = data.get("_user_id")  # Flask-Login's key
    if not isinstance(uid, str):
        return False
    user = db.session.scalar(select(User).where(User.uuid == uid, User.removed.is_(None)))
    return user is not None and user.is_active and _alive(data, user, _now())


def revoke(session: Mapping, user) -> None:
    """End this session only (logout): its id is refused from now on, wherever the
    cookie or sessionkey was copied. Commits."""
    sid, until = session.get(SID), session.get(UNTIL)
    if not isinstance(sid, str) or not sid:
        return
    expires = datetime.fromtimestamp(until if isinstance(until, (int, float)) else _now(), timezone.utc)
    try:
        with db.session.begin_nested():  # two logouts of one cookie at once: the second finds the row
            db.session.add(RevokedSession(sid_hash=_hash(sid), user_id=user.id,
                                          expires=expires.replace(tzinfo=None)))
    except IntegrityError:
        pass
    prune()


def prune() -> int:
    """Forget revoked sessions past their end (they are refused by their age). Commits."""
    now = datetime.fromtimestamp(_now(), timezone.utc).replace(tzinfo=None)
    done = db.session.execute(delete(RevokedSession).where(RevokedSession.expires < now))
    db.session.commit()
    return done.rowcount


def timeout_seconds() -> int:
    return get("session.timeout") * 60


def forget(session: MutableMapping) -> None:
    for key in (VERSION, STARTED, SEEN, SID, UNTIL):
        session.pop(key, None)
