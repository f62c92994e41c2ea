"""The ORM hook: a change row for every shown change of the watched models, in its transaction.

- after_flush: objects created, deleted, or with a watched column changed (attribute history);
- do_orm_execute: ORM `update(Model)...values(...)` / `delete(Model)` statements that set a
  watched column: the rows they aim at are read (same WHERE, same transaction) just before;
  a guard that then matches nothing published a change that did not happen, which costs a
  page one needless refresh and never loses one.
Bulk UPDATEs by primary key with a list of parameters (the monitor's quiet hosts) and Core
statements on an engine connection (job progress) are not seen here: their writers call
publish()/publish_on() where a shown state changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session

from app.models import Alert, AsyncJob, ConsoleSession, Host, ImageStore, Router, StoragePool, VirtualMachine


@dataclass(frozen=True)
class Watch:
    kind: str
    columns: frozenset[str]
    owned: bool  # has an account_id column (else: infrastructure, root admins only)


WATCHED: dict[type, Watch] = {
    VirtualMachine: Watch("vm", frozenset({"state", "host_id", "name", "display_name", "active_job_id",
                                           "removed", "account_id"}), True),
    Host: Watch("host", frozenset({"state", "resource_state", "name", "removed", "state_reason"}), False),
    StoragePool: Watch("pool", frozenset({"state", "name", "removed", "capacity_bytes"}), False),
    ImageStore: Watch("imagestore", frozenset({"state", "name", "removed", "state_reason"}), False),
    Router: Watch("router", frozenset({"state", "host_id", "removed", "state_reason", "applied_hash"}), False),
    Alert: Watch("alert", frozenset({"resolved", "archived"}), False),  # raised (insert), cleared, archived
    AsyncJob: Watch("job", frozenset({"status", "progress", "progress_message"}), True),
    ConsoleSession: Watch("console", frozenset({"used", "closed"}), False),
}


def _console_owner(session: Session, vm_id: int) -> int | None:
    vm = session.identity_map.get(inspect(VirtualMachine).identity_key_from_primary_key((vm_id,)))
    if vm is not None:
        return vm.account_id
    return session.connection().execute(select(VirtualMachine.__table__.c.account_id)
                                        .where(VirtualMachine.__table__.c.id == vm_id)).scalar()


def in_hand(session: Session, model, pk: int, *, owned: bool = True) -> tuple[str, int | None] | None:
    """(uuid, account_id or None) of that row when the session holds it loaded (not expired)."""
    obj = session.identity_map.get(inspect(model).identity_key_from_primary_key((pk,)))
    if obj is None:
        return None
    loaded = inspect(obj).dict
    if "uuid" not in loaded or (owned and "account_id" not in loaded):
        return None
    return loaded["uuid"], loaded["account_id"] if owned else None


def _row(session: Session, obj, w: Watch) -> dict:
    if isinstance(obj, ConsoleSession):
        account = _console_owner(session, obj.vm_id)
    else:
        account = obj.account_id if w.owned else None
    return {"kind": w.kind, "uuid": obj.uuid, "account_id": account}


def _changed(obj, columns: frozenset[str]) -> bool:
    state = inspect(obj)
    return any(state.attrs[c].history.has_changes() for c in columns)


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, flush_context) -> None:
    rows, seen = [], set()
    for group, check in ((session.new, False), (session.deleted, False), (session.dirty, True)):
        for obj in group:
            w = WATCHED.get(type(obj))
            if w is None or id(obj) in seen or (check and not _changed(obj, w.columns)):
                continue
            seen.add(id(obj))
            rows.append(_row(session, obj, w))
    if rows:
        from app.services.changes import gather
        gather(session, rows)


def _set_columns(stmt) -> set[str]:
    values = getattr(stmt, "_values", None) or {}
    names = set()
    for k in values:
        names.add(k if isinstance(k, str) else getattr(k, "key", None) or getattr(k, "name", ""))
    return names


@event.listens_for(Session, "do_orm_execute")
def _orm_statement(state) -> None:
    if not (state.is_update or state.is_delete):
        return
    mapper = state.bind_mapper
    w = WATCHED.get(mapper.class_) if mapper is not None else None
    if w is None:
        return
    stmt = state.statement
    if state.is_update and not (_set_columns(stmt) & w.columns):
        return  # e.g. a heartbeat, capacity counters, or a bulk UPDATE by primary key (no values)
    where = stmt.whereclause
    if where is None:
        return  # executemany by primary key: its writer publishes
    model = mapper.class_
    t = model.__table__
    cols = [t.c.uuid, t.c.account_id if w.owned else t.c.vm_id if model is ConsoleSession else t.c.id]
    session = state.session
    found = session.connection().execute(select(*cols).where(where)).all()
    if not found:
        return
    rows = []
    for uuid, owner in found:
        if model is ConsoleSession:
            owner = _console_owner(session, owner)
        rows.append({"kind": w.kind, "uuid": uuid, "account_id": owner if (w.owned or model is ConsoleSession)
                     else None})
    from app.services.changes import gather
    gather(session, rows)


# --- The outbox: a transaction's changes written just before it commits ----------------------

@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    from app.services.changes import OUTBOX, publish_many
    session.flush()  # what the commit would flush, so its changes are gathered too (after_flush)
    rows = session.info.pop(OUTBOX, None)
    if rows:
        publish_many(session.connection(), rows)
        session.info["nubo_changes"] = True


@event.listens_for(Session, "after_transaction_create")
def _savepoint_begins(session: Session, transaction) -> None:
    if transaction.nested:  # where a rollback to it cuts the outbox back to
        from app.services.changes import OUTBOX
        session.info.setdefault("nubo_outbox_marks", {})[id(transaction)] = len(session.info.get(OUTBOX, ()))


@event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, previous_transaction) -> None:
    if previous_transaction.nested:  # back to the savepoint: what was gathered since is dropped
        from app.services.changes import OUTBOX
        mark = session.info.get("nubo_outbox_marks", {}).pop(id(previous_transaction), None)
        if mark is not None:
            del session.info.get(OUTBOX, [])[mark:]


@event.listens_for(Session, "after_transaction_end")  # (before after_soft_rollback)
def _transaction_ends(session: Session, transaction) -> None:
    if transaction.parent is None:  # committed (written), rolled back or closed: nothing carries over
        from app.services.changes import OUTBOX
        session.info.pop(OUTBOX, None)
        session.info.pop("nubo_outbox_marks", None)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop("nubo_changes", None):
        from app.services.changes import committed
        committed()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop("nubo_changes", None)

