"""The change stream: what changed, for the pages' live updates and the monitor.

One stream, one truth: a transactional outbox, the `changes` table (app/models/changes.py).
A change is written in the transaction that makes it, so a reader never hears of a change
that rolled back, and its id orders the stream (the Server-Sent Events id pages resume from).
On the ORM session, a transaction's changes are gathered as it goes and written just before
it commits, all in one INSERT (the same change twice, once); a rollback drops them (a
savepoint's, those gathered since it began).

Writers:
- the ORM hook (hooks.py) records a change when a shown column of a VM, host, storage pool,
  image store, router, async job, console session or alert changes, or one is created or deleted, through the
  unit of work or an ORM UPDATE/DELETE statement;
- `publish(kind, uuid, account_id=None, domain_id=None)` for anything else (alerts,
  templates, image stores, Core updates on an engine connection: `publish_on(conn, ...)`).

Readers (tail.py): one tailer thread per process reads `id > last` and hands each change to
the subscribers allowed to see it (the SSE streams of app/web/stream.py, the monitor). What
wakes it is per backend: PostgreSQL's NOTIFY (sent by the table's own trigger in the writing
transaction, delivered at commit), Redis pub/sub when NUBO_JOBS_URL is Redis (published after
the commit), else polling the table every 100 ms. The wake-up only says "read now": the table
is the truth.

Rows older than `live.changes.retention` are pruned by the monitor after each sweep.
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta

from sqlalchemy import delete, insert

from app.extensions import db
from app.models import Change, utcnow
from app.models.changes import CHANNEL  # PostgreSQL's NOTIFY channel (its trigger) and Redis pub/sub's
from app.services.settings import Definition, define

log = logging.getLogger("nubo.changes")

# The SSE event names. Infrastructure (host, pool, router, imagestore) has no owner: only
# root admins hear of it.
KINDS = ("vm", "host", "pool", "router", "job", "console", "alert", "template", "imagestore")

define(Definition("live.streams.max", "24", "Live-update streams (Server-Sent Events) one web process serves at "
                  "once; each holds one of its threads (NUBO_WEB_THREADS). Pages beyond it refresh by polling.",
                  category="Live updates", type="integer", min=0, max=10000))
define(Definition("live.stream.seconds", "300", "Seconds one live-update stream lasts before the browser "
                  "reconnects (resuming where it was).", category="Live updates", type="integer", min=5, max=3600))
define(Definition("live.heartbeat.seconds", "15", "Seconds between two keep-alive comments on an idle "
                  "live-update stream (they find clients that went away).", category="Live updates",
                  type="float", min=0.1, max=300))
define(Definition("live.changes.retention", "3600", "Seconds the change stream keeps its rows (a page that "
                  "reconnects within it gets what it missed).", category="Live updates", type="integer",
                  min=60, max=7 * 86400))


def publish(kind: str, uuid: str | None, account_id: int | None = None, domain_id: int | None = None) -> None:
    """Record a change in the session's transaction: it is heard of when (and only if) that
    transaction commits. account_id/domain_id: whose it is (both None: root admins only)."""
    gather(db.session(), [{"kind": kind, "uuid": uuid, "account_id": account_id, "domain_id": domain_id}])


def gather(session, rows: list[dict]) -> None:
    """Changes of the session's transaction, written when it commits (hooks.py: one INSERT)."""
    for r in rows:
        if r["kind"] not in KINDS:
            raise ValueError(f"unknown change kind {r['kind']!r}")
    if not session.in_transaction():
        session.begin()  # they belong to a transaction: its rollback or close drops them
    session.info.setdefault(OUTBOX, []).extend(rows)


OUTBOX = "nubo_outbox"  # session.info: the changes gathered in its open transaction


def publish_on(conn, kind: str, uuid: str | None, account_id: int | None = None,
               domain_id: int | None = None) -> None:
    """publish() on a Core connection's transaction (e.g. `with db.engine.begin() as conn`);
    call `committed()` after that transaction commits."""
    publish_many(conn, [{"kind": kind, "uuid": uuid, "account_id": account_id, "domain_id": domain_id}])


def update_row(model, pk: int, *where, known: tuple[str, int | None] | None = None, **values) -> int:
    """`UPDATE model SET values WHERE id = pk AND where` in the session's transaction, its change
    published only if it matched (rows changed returned). The object loaded in the session (not
    expired), or `known` ((uuid, owner)), gives its uuid and owner: a Core statement, no read of
    the row first; otherwise the ORM statement, whose hook reads them (hooks.py)."""
    from sqlalchemy import update
    from app.services.changes.hooks import WATCHED, in_hand
    w = WATCHED[model]
    known = known or in_hand(db.session(), model, pk, owned=w.owned)
    if known is None:
        return db.session.execute(update(model).where(model.id == pk, *where).values(**values)
                                  .execution_options(synchronize_session=False)).rowcount
    db.session.flush()  # as the ORM statement's autoflush: pending changes first
    t = model.__table__
    done = db.session.connection().execute(update(t).where(t.c.id == pk, *where).values(**values)).rowcount
    if done:
        publish(w.kind, known[0], known[1])
    return done


def publish_many(conn, rows: list[dict]) -> None:
    """The rows written now on conn's transaction; one multi-row INSERT, each change once."""
    if not rows:
        return
    now = utcnow()
    out, seen = [], set()
    for r in rows:
        if r["kind"] not in KINDS:
            raise ValueError(f"unknown change kind {r['kind']!r}")
        key = (r["kind"], r["uuid"], r["account_id"], r.get("domain_id"))
        if key not in seen:
            seen.add(key)
            out.append({"kind": key[0], "uuid": key[1], "account_id": key[2], "domain_id": key[3], "created": now})
    # One round trip whatever the count: an executemany, which psycopg sends as one pipeline and
    # PyMySQL as one multi-row INSERT (SQLite: a local loop). A multi-VALUES statement built at
    # each call took twice the CPU (two rows: ~450 µs against ~200, its cache key and compile).
    # PostgreSQL: the table's trigger NOTIFYs (models/changes.py; the same NOTIFY twice in one
    # transaction is delivered once).
    conn.execute(insert(Change.__table__), out if len(out) > 1 else out[0])


# --- Wake-ups after commit (Redis) ------------------------------------------------------------

_redis_lock = threading.Lock()
_redis_clients: dict[tuple[int, str], object] = {}


def redis_url(config) -> str | None:
    """The Redis that carries wake-ups: NUBO_JOBS_URL when it is Redis and the database is not
    PostgreSQL (whose NOTIFY does it)."""
    url = str(config.get("JOBS_URL") or "")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    if str(config.get("SQLALCHEMY_DATABASE_URI") or "").startswith("postgresql"):
        return None
    return url


def _redis(url: str):
    key = (os.getpid(), url)  # a client is not shared across fork
    with _redis_lock:
        client = _redis_clients.get(key)
        if client is None:
            import redis
            client = _redis_clients[key] = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        return client


def committed() -> None:
    """Changes were committed: wake the tailers of every process (Redis), if that is how they
    wake. Failing is harmless: they also read the table on their own, only later."""
    from flask import current_app, has_app_context
    if not has_app_context():
        return
    url = redis_url(current_app.config)
    if url is None:
        return
    try:
        _redis(url).publish(CHANNEL, "1")
    except Exception as e:  # noqa: BLE001 - the tailers' own reads deliver it a little later
        log.warning("could not wake the change stream's readers through Redis: %s", e)


# --- Housekeeping -----------------------------------------------------------------------------

def prune(now=None) -> int:
    """Delete the rows older than live.changes.retention (the monitor, after each sweep)."""
    from app.services import settings
    cutoff = (now or utcnow()) - timedelta(seconds=settings.get("live.changes.retention"))
    done = db.session.execute(delete(Change).where(Change.created < cutoff)
                              .execution_options(synchronize_session=False))
    db.session.commit()
    return done.rowcount or 0


from app.services.changes import hooks as _hooks  # noqa: E402,F401  (registers the ORM hooks)
