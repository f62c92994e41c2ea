"""The change stream: a transactional outbox of what changed (app/services/changes/).

One row per change of a shown thing (a VM's state, a host's, a job's progress, ...), written in
the transaction that makes the change, so a reader never hears of a change that rolled back.
Its id orders the stream and is the Server-Sent Events id pages resume from (Last-Event-ID).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DDL, BigInteger, DateTime, Index, Integer, String, event
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import utcnow


class Change(db.Model):
    __tablename__ = "changes"
    __table_args__ = (Index("ix_changes_created", "created"),)

    # BigInteger on the servers, INTEGER PRIMARY KEY (the rowid) on SQLite.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # the SSE event name: vm, host, pool, router, job, ...
    uuid: Mapped[str | None] = mapped_column(String(36))  # what changed
    # Whose it is: null (both) for infrastructure only root admins see. domain_id is set
    # when a change belongs to a domain rather than an account; an account's domain is
    # read by the stream's readers (a join), not by the writer.
    account_id: Mapped[int | None] = mapped_column(Integer)
    domain_id: Mapped[int | None] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


# PostgreSQL: the table wakes its readers itself. A statement trigger NOTIFYs the channel the
# tailers LISTEN on (app/services/changes/tail.py), delivered when the writing transaction
# commits and never if it rolls back; a transaction's identical notifications go out once.
# The writers send no NOTIFY of their own: one round trip less per change written.
# (Migration 0037 adds the same to an existing database.)
CHANNEL = "nubo_changes"  # also the Redis pub/sub channel of the other databases
NOTIFY_FUNCTION = f"""CREATE OR REPLACE FUNCTION nubo_changes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('{CHANNEL}', '');
  RETURN NULL;
END $$"""
NOTIFY_TRIGGER = ("CREATE TRIGGER changes_notify AFTER INSERT ON changes "
                  "FOR EACH STATEMENT EXECUTE FUNCTION nubo_changes_notify()")
event.listen(Change.__table__, "after_create", DDL(NOTIFY_FUNCTION).execute_if(dialect="postgresql"))
event.listen(Change.__table__, "after_create", DDL(NOTIFY_TRIGGER).execute_if(dialect="postgresql"))
