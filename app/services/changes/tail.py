"""Reading the change stream: one tailer thread per process fans changes out to subscribers.

The tailer reads `id > low` (one indexed query) when woken (PostgreSQL LISTEN, Redis pub/sub)
or every POLL_SECONDS without a wake-up, and at least every SAFETY_SECONDS with one. Ids are
handed out at insert but become visible at commit, so on PostgreSQL and MariaDB a smaller id
may appear after a larger one: ids above `low` already delivered are remembered, and a hole
below them is waited for up to GAP_SECONDS (a rolled-back insert leaves one for good).

Each subscriber (an SSE stream, the monitor) has a Viewer (what it may see) and a bounded
queue; a subscriber that falls behind is told so (None) and ends, and its client resumes
from its Last-Event-ID.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import bindparam, func, select

from app.models import Account, Change

log = logging.getLogger("nubo.changes")

POLL_SECONDS = 0.1  # without a wake-up (SQLite, MariaDB without Redis): one indexed query; with: the least between two
SAFETY_SECONDS = 2.0  # with one: a lost notification costs at most this
GAP_SECONDS = 5.0
BATCH = 1000
GAP_READ = 500  # gap ids asked at once by id, nearest first
GAP_SCAN = 10_000  # how far below the highest delivered id gaps are looked for
QUEUE_SIZE = 2000


@dataclass(frozen=True)
class Item:
    id: int
    kind: str
    uuid: str | None
    account_id: int | None
    domain_id: int | None  # the change's, else its account's


@dataclass(frozen=True)
class Viewer:
    """What one subscriber may see: everything (root admins), a domain subtree's accounts
    (domain admins), or some accounts (a user: theirs and their projects'). Infrastructure
    changes (no owner) reach root admins only. kinds: only these (None: all)."""
    root: bool = False
    domains: frozenset[int] | None = None
    accounts: frozenset[int] = frozenset()
    kinds: frozenset[str] | None = None

    def sees(self, item: Item) -> bool:
        if self.kinds is not None and item.kind not in self.kinds:
            return False
        if self.root:
            return True
        if item.account_id is None and item.domain_id is None:
            return False
        if self.domains is not None:
            return item.domain_id in self.domains
        return item.account_id is not None and item.account_id in self.accounts


def viewer_for(user) -> Viewer:
    """The access layer's rule (app/services/access.py) for one user, as sets read now (a
    domain created or a project joined later is seen from the next stream on)."""
    from app.extensions import db
    from app.services import access
    if access.is_root(user):
        return Viewer(root=True)
    if access.is_domain_admin(user):
        ids = db.session.scalars(access.domain_ids_under(access.caller_domain(user).path))
        return Viewer(domains=frozenset(ids))
    projects = db.session.scalars(access.member_project_accounts(user))
    return Viewer(accounts=frozenset({user.account_id, *projects}))


@dataclass(eq=False)
class Subscriber:
    viewer: Viewer
    queue: queue.Queue = field(default_factory=lambda: queue.Queue(QUEUE_SIZE))
    behind: bool = False

    def offer(self, item: Item) -> None:
        if self.behind or not self.viewer.sees(item):
            return
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.behind = True
            self.queue = queue.Queue(1)
            self.queue.put_nowait(None)  # the reader ends; its client resumes by Last-Event-ID


def _query(where):
    c, a = Change.__table__.c, Account.__table__.c
    return (select(c.id, c.kind, c.uuid, c.account_id, func.coalesce(c.domain_id, a.domain_id))
            .select_from(Change.__table__.outerjoin(Account.__table__, a.id == c.account_id))
            .where(where).order_by(c.id).limit(bindparam("limit")))


# Built once: a tailer polls up to ten times a second.
_AFTER = _query(Change.__table__.c.id > bindparam("after"))
_IDS = _query(Change.__table__.c.id.in_(bindparam("ids", expanding=True)))


def read(conn, after: int, limit: int = BATCH) -> list[Item]:
    return [Item(*r) for r in conn.execute(_AFTER, {"after": after, "limit": limit})]


def read_ids(conn, ids: list[int]) -> list[Item]:
    return [Item(*r) for r in conn.execute(_IDS, {"ids": ids, "limit": len(ids)})]


def last_id(conn) -> int:
    return conn.execute(select(func.max(Change.__table__.c.id))).scalar() or 0


class Tailer:
    def __init__(self, app):
        self.app = app
        self.subscribers: set[Subscriber] = set()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.started = threading.Event()
        self.low = 0
        self.delivered: set[int] = set()
        self.gap_since: float | None = None
        self.stopped = False
        with app.app_context():
            from app.extensions import db
            from app.services.changes import redis_url
            self.engine = db.engine
            self.mode = "notify" if self.engine.dialect.name == "postgresql" else \
                "redis" if redis_url(app.config) else "poll"
        threading.Thread(target=self._run, daemon=True, name="nubo-changes").start()
        if self.mode == "notify":
            threading.Thread(target=self._listen_postgres, daemon=True, name="nubo-changes-listen").start()
        elif self.mode == "redis":
            threading.Thread(target=self._listen_redis, daemon=True, name="nubo-changes-listen").start()
        self.started.wait(10)

    # --- subscribers -------------------------------------------------------------------------

    def subscribe(self, viewer: Viewer) -> Subscriber:
        sub = Subscriber(viewer)
        with self.lock:
            self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self.lock:
            self.subscribers.discard(sub)

    def replay(self, after: int, viewer: Viewer, limit: int = BATCH) -> list[Item]:
        """What `viewer` may see after id `after` (a reconnecting client's Last-Event-ID)."""
        with self.engine.connect() as conn:
            return [i for i in read(conn, after, limit) if viewer.sees(i)]

    def stop(self) -> None:
        self.stopped = True
        self.wake.set()
        with self.lock:
            for sub in self.subscribers:
                sub.queue.put(None)

    def position(self) -> int:
        return max(self.low, max(self.delivered, default=0))

    # --- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self.stopped:
            try:
                with self.engine.connect() as conn:
                    self.low = last_id(conn)
                break
            except Exception:  # noqa: BLE001 - the database is not there yet
                log.exception("change stream: reading the last id failed")
                time.sleep(1)
        self.started.set()
        interval = POLL_SECONDS if self.mode == "poll" else SAFETY_SECONDS
        last = 0.0
        while not self.stopped:
            self.wake.wait(interval)
            # Wake-ups closer together than POLL_SECONDS are served by one poll: a deploy storm
            # commits ~100 times a second, and a poll each was most of the monitor's CPU.
            time.sleep(max(0.0, last + POLL_SECONDS - time.monotonic()))
            self.wake.clear()
            last = time.monotonic()
            if self.stopped:
                return
            try:
                while self.poll() >= BATCH:
                    pass
            except Exception:  # noqa: BLE001 - the tailer outlives a database restart
                log.exception("change stream: reading failed")
                time.sleep(1)

    def poll(self) -> int:
        """Deliver what is new since the highest id delivered, and what has come in the gaps
        below it (ids of transactions still open, or rolled back). Returns the new rows read.
        (Reading from `low` again at every wake-up re-read up to BATCH delivered rows while a gap
        stayed open, each of the ~100 wake-ups a second of a deploy storm: most of the monitor's
        CPU in bench/stack_bench.py deploy.)"""
        high = max(self.delivered, default=self.low)
        gaps = self._gaps(high)
        with self.engine.connect() as conn:
            items = read(conn, high)
            new = len(items)
            if gaps:
                items = read_ids(conn, gaps) + items
        fresh = [i for i in items if i.id not in self.delivered]
        if fresh:
            with self.lock:
                subs = list(self.subscribers)
            for item in fresh:
                self.delivered.add(item.id)
                for sub in subs:
                    sub.offer(item)
        self._advance()
        return new

    def _gaps(self, high: int) -> list[int]:
        """The ids below `high` not delivered yet, nearest first (a transaction still open took
        one shortly before the rows delivered after it), at most GAP_READ of them, looked for no
        further than GAP_SCAN ids down. Far below lie the ids of rows pruned or emptied before
        this tailer started (its `low` is the highest row then, the ids went on): enumerating
        those from `low` up took the first 500 of thousands, never the open transaction's id."""
        out: list[int] = []
        i, stop = high - 1, max(self.low, high - 1 - GAP_SCAN)
        while i > stop and len(out) < GAP_READ:
            if i not in self.delivered:
                out.append(i)
            i -= 1
        return out

    def _advance(self) -> None:
        while self.low + 1 in self.delivered:
            self.low += 1
            self.delivered.discard(self.low)
        if not self.delivered:
            self.gap_since = None
            return
        now = time.monotonic()
        if self.gap_since is None:
            self.gap_since = now
        elif now - self.gap_since > GAP_SECONDS:  # an id that will never come (rolled back)
            self.low = min(self.delivered) - 1
            self.gap_since = None
            self._advance()

    # --- wake-ups ----------------------------------------------------------------------------

    def _listen_postgres(self) -> None:
        import psycopg
        from app.services.changes import CHANNEL
        dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self.stopped:
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.wake.set()  # anything committed while not listening
                    while not self.stopped:
                        for _ in conn.notifies(timeout=30):
                            self.wake.set()
            except Exception as e:  # noqa: BLE001 - polling covers until it listens again
                log.warning("change stream: LISTEN failed (%s); again in 2 s", e)
                time.sleep(2)

    def _listen_redis(self) -> None:
        import redis
        from app.services.changes import CHANNEL, redis_url
        url = redis_url(self.app.config)
        while not self.stopped:
            try:
                client = redis.Redis.from_url(url, socket_connect_timeout=2)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                self.wake.set()
                while not self.stopped:
                    if pubsub.get_message(timeout=30) is not None:
                        self.wake.set()
            except Exception as e:  # noqa: BLE001
                log.warning("change stream: Redis subscribe failed (%s); again in 2 s", e)
                time.sleep(2)


_tailers: dict[tuple[int, int], Tailer] = {}
_tailers_lock = threading.Lock()


def tailer(app) -> Tailer:
    """This process's tailer for `app` (started on first use, again after a fork)."""
    key = (os.getpid(), id(app))
    with _tailers_lock:
        t = _tailers.get(key)
        if t is None:
            t = _tailers[key] = Tailer(app)
        return t


def stop_all() -> None:
    """Stop every tailer of this process: their subscribers end (a web worker going away)."""
    with _tailers_lock:
        mine = [k for k in _tailers if k[0] == os.getpid()]
        stopping = [_tailers.pop(k) for k in mine]
    for t in stopping:
        t.stop()


def stop(app) -> None:
    """Stop this process's tailer for `app` (tests, whose apps come and go)."""
    with _tailers_lock:
        t = _tailers.pop((os.getpid(), id(app)), None)
    if t is not None:
        t.stop()
