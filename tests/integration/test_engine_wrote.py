"""app/engine.py's `wrote`: whether a session's transaction holds a write or a row lock, which
quotas.take commits before its counts' locks (a transaction that only read goes on instead).
A wrong False would keep an earlier write's locks under the counts' (the lock order); a wrong
True only costs a COMMIT. PostgreSQL's statements are watched (for its prepared statements):
there it is known; elsewhere every open transaction counts as written."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.engine import wrote
from app.extensions import db
from app.models import Setting

pytestmark = pytest.mark.db


def test_reads_leave_nothing_to_commit_and_writes_or_locks_do(app):
    with app.app_context():
        s = db.session()
        assert not wrote(s)  # no transaction yet
        watched = db.engine.dialect.name == "postgresql"
        s.execute(sa.select(Setting.name).limit(1)).all()
        assert s.in_transaction() and wrote(s) is not watched  # a snapshot only

        s.execute(sa.select(Setting.name).limit(1).with_for_update()).all()
        assert wrote(s)  # row locks
        s.commit()
        assert not wrote(s)

        s.execute(sa.select(Setting.name).limit(1)).all()
        s.execute(sa.update(Setting).where(Setting.name == "no such setting").values(value="x"))
        assert wrote(s)  # a Core UPDATE, even one that matched nothing, took its locks
        s.rollback()
        assert not wrote(s)

        s.add(Setting(name="test.wrote", value="1", default="1"))
        assert wrote(s)  # pending: a COMMIT would flush it
        s.flush()
        assert wrote(s)  # flushed: the INSERT is in the transaction
        s.commit()
        assert not wrote(s)


def test_a_session_closed_mid_transaction_leaves_no_mark_on_its_connection(app):
    """Closing rolls back what the session held: the next session, on the same pooled
    connection, does not inherit the mark."""
    with app.app_context():
        watched = db.engine.dialect.name == "postgresql"
        s = db.session()
        s.execute(sa.update(Setting).where(Setting.name == "no such setting").values(value="x"))
        assert wrote(s)
        db.session.remove()  # closes: the connection goes back to the pool, rolled back
        s = db.session()
        s.execute(sa.select(Setting.name).limit(1)).all()
        assert wrote(s) is not watched
