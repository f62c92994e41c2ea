"""Per-database tuning of SQLAlchemy's engines: SQLite's pragmas, a ping only for connections that
sat idle, PostgreSQL's prepared statements, connections for reads only."""
from __future__ import annotations

import contextlib
import logging
import re
import time
import weakref
from collections.abc import Iterator

from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import Pool

log = logging.getLogger("nubo.engine")

# A pooled connection idle for longer than this is pinged before it is handed out again.
IDLE_PING_SECONDS = 1.0


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """WAL (readers never block the writer) and enforced foreign keys on SQLite."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


@event.listens_for(Pool, "checkin")
def _idle_since(dbapi_connection, connection_record):
    if connection_record is not None:
        connection_record.info["nubo_idle_since"] = time.monotonic()


@event.listens_for(Pool, "checkout")
def _ping_if_idle(dbapi_connection, connection_record, connection_proxy):
    """pool_pre_ping, but only for a connection that sat in the pool for a while. pre_ping pinged
    at every checkout, and a session checks a connection out again after each commit: a deploy
    job paid 19 round trips for it (a quarter of its statements). A connection given back a
    moment ago was alive then; one that sat idle may have been cut (a database restart, a
    server's idle timeout): it is pinged, and a dead one is replaced (the pool retries the
    checkout with a fresh connection, and drops the older ones too). A connection cut while in use
    fails its statement, and SQLAlchemy then discards every connection older than the failure."""
    since = connection_record.info.get("nubo_idle_since")
    if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
        return  # just connected, or given back a moment ago
    dialect = connection_proxy._pool._dialect
    if dialect.name == "sqlite":
        return  # a file: nothing to lose the connection to
    try:
        alive = dialect.do_ping(dbapi_connection)
    except Exception as e:  # noqa: BLE001 - any failure means: not usable
        raise exc.InvalidatePoolError(f"connection lost while idle: {e}") from e
    if alive is False:
        raise exc.InvalidatePoolError("connection lost while idle")


_READ = re.compile(r"\s*SELECT\b", re.IGNORECASE)
# psycopg connections whose open transaction ran a statement other than a SELECT, or a SELECT
# that locks rows: kept by keep_prepared_statements' hook (PostgreSQL), read by wrote().
_WROTE: weakref.WeakSet = weakref.WeakSet()
_LOCKED: weakref.WeakSet = weakref.WeakSet()


def wrote(session) -> bool:
    """Whether the session's transaction holds anything a COMMIT would make stay, or a lock it
    would free: objects to flush, or a statement other than a plain SELECT run in it (ORM or
    Core, on its connection). False: its COMMIT would only end a snapshot, and the transaction
    may go on instead (e.g. quotas.take's, after a request's reads). Known on PostgreSQL (whose
    statements are watched anyway, for its prepared statements); elsewhere a transaction counts
    as written (its caller commits, as it always did)."""
    if session.new or session.dirty or session.deleted:
        return True
    if not session.in_transaction():
        return False
    conn = session.connection()
    if not getattr(conn.dialect, "nubo_watches_writes", False):
        return True
    raw = conn.connection.dbapi_connection
    return raw in _WROTE or raw in _LOCKED


def keep_prepared_statements(engine: Engine) -> None:
    """psycopg prepares a statement on a connection after its 5th run there, and PostgreSQL then
    plans it once instead of at every run (planning the VM list's 12-table join takes ~4 ms, running
    it for a page ~0.05 ms). But psycopg forgets every prepared statement of a connection at each
    ROLLBACK (and sends DEALLOCATE ALL), and every request and job ends its last transaction with
    one when its session closes, so nothing stayed prepared. A transaction that only ran SELECTs
    ends with COMMIT instead: for the data the two are the same (nothing was written; locks go
    either way), and the statements stay prepared. Any other statement (INSERT, UPDATE, NOTIFY,
    SAVEPOINT...) or a failed transaction keeps the real ROLLBACK. What the hook sees also
    answers wrote(): row locks too, by the locking clause SQLAlchemy puts at the end of a SELECT
    (only its tail is looked at: a regular expression over a whole long statement cost ~100,000
    instructions, over its tail ~20,000, a plain find a few hundred)."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return
    from psycopg.pq import TransactionStatus

    @event.listens_for(engine, "before_cursor_execute")
    def _track(conn, cursor, statement, parameters, context, executemany):
        if not _READ.match(statement):
            _WROTE.add(cursor.connection)
        elif statement.find(" FOR ", max(0, len(statement) - 80)) >= 0:  # FOR [NO KEY] UPDATE, [KEY] SHARE
            _LOCKED.add(cursor.connection)

    dialect = engine.dialect
    real_rollback, real_commit = dialect.do_rollback, dialect.do_commit

    def do_rollback(dbapi_connection):
        raw = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)  # the pool's reset passes a fairy
        _LOCKED.discard(raw)
        if raw in _WROTE or raw.info.transaction_status != TransactionStatus.INTRANS:
            _WROTE.discard(raw)
            return real_rollback(dbapi_connection)
        return raw.commit()

    def do_commit(dbapi_connection):
        raw = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)
        _WROTE.discard(raw)
        _LOCKED.discard(raw)
        return real_commit(dbapi_connection)

    dialect.do_rollback, dialect.do_commit = do_rollback, do_commit
    dialect.nubo_watches_writes = True


@contextlib.contextmanager
def reads(engine: Engine) -> Iterator[Connection]:
    """A pooled connection for a few reads that need no snapshot of their own (each statement sees
    what is committed when it runs). On PostgreSQL it runs in autocommit: psycopg then sends no
    BEGIN before the first statement and no COMMIT or ROLLBACK after the last, two of a lone
    SELECT's three round trips; its READ COMMITTED gives each statement its own snapshot inside a
    transaction too. Elsewhere a plain connection: pymysql would pay a SET autocommit each way,
    and SQLite is a local file."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


READ_ONLY = "nubo_read_only"  # an execution option: the connection of a request that only reads


def read_only(session) -> None:
    """This request only reads (a list or query API command): on PostgreSQL its session runs on
    a connection in autocommit, as `reads` does, from its first statement on: no BEGIN and no
    COMMIT, two of a list call's six round trips. Called before the session's first statement
    (once it is in a transaction this changes nothing); elsewhere nothing changes. A statement
    other than a SELECT on it fails under tests (app.testing) and is logged otherwise, where it
    commits on its own."""
    if session.in_transaction() or session.get_bind().dialect.name != "postgresql":
        return
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT", READ_ONLY: True})


class ReadOnlyViolation(RuntimeError):
    pass


@event.listens_for(Engine, "before_cursor_execute")
def _reads_only(conn, cursor, statement, parameters, context, executemany):
    if not conn.get_execution_options().get(READ_ONLY) or _READ.match(statement):
        return
    from flask import current_app, has_app_context
    text = " ".join(statement.split())[:120]
    if has_app_context() and current_app.testing:
        raise ReadOnlyViolation(f"a request that only reads wrote: {text}")
    log.warning("a request that only reads wrote (committed on its own): %s", text)
