"""Per-database tuning of SQLAlchemy's engines: SQLite's pragmas, PostgreSQL's prepared statements."""
from __future__ import annotations

import re
import weakref

from sqlalchemy import event
from sqlalchemy.engine import Engine


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """WAL (readers never block the writer) and enforced foreign keys on SQLite."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


_READ = re.compile(r"\s*SELECT\b", re.IGNORECASE)


def keep_prepared_statements(engine: Engine) -> None:
    """psycopg prepares a statement on a connection after its 5th run there, and PostgreSQL then
    plans it once instead of at every run (planning the VM list's 12-table join takes ~4 ms, running
    it for a page ~0.05 ms). But psycopg forgets every prepared statement of a connection at each
    ROLLBACK (and sends DEALLOCATE ALL), and every request and job ends its last transaction with
    one when its session closes, so nothing stayed prepared. A transaction that only ran SELECTs
    ends with COMMIT instead: for the data the two are the same (nothing was written; locks go
    either way), and the statements stay prepared. Any other statement (INSERT, UPDATE, NOTIFY,
    SAVEPOINT...) or a failed transaction keeps the real ROLLBACK."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return
    from psycopg.pq import TransactionStatus

    wrote: weakref.WeakSet = weakref.WeakSet()  # DBAPI connections whose transaction ran a non-SELECT

    @event.listens_for(engine, "before_cursor_execute")
    def _track(conn, cursor, statement, parameters, context, executemany):
        if not _READ.match(statement):
            wrote.add(cursor.connection)

    dialect = engine.dialect
    real_rollback, real_commit = dialect.do_rollback, dialect.do_commit

    def do_rollback(dbapi_connection):
        raw = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)  # the pool's reset passes a fairy
        if raw in wrote or raw.info.transaction_status != TransactionStatus.INTRANS:
            wrote.discard(raw)
            return real_rollback(dbapi_connection)
        return raw.commit()

    def do_commit(dbapi_connection):
        wrote.discard(getattr(dbapi_connection, "dbapi_connection", dbapi_connection))
        return real_commit(dbapi_connection)

    dialect.do_rollback, dialect.do_commit = do_rollback, do_commit
