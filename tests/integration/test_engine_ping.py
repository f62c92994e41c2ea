"""app/engine.py's ping of idle pooled connections, on the real servers: a connection the server
cut while it sat in the pool is replaced at checkout (the caller sees nothing); one given back a
moment ago is handed out without a round trip."""
from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from app import engine as nubo_engine
from app.config import engine_options
from tests.conftest import SERVER_URLS, fresh_server_database

pytestmark = pytest.mark.skipif(not SERVER_URLS, reason="NUBO_TEST_DATABASE_URLS not set")


def _server_id(conn) -> int:
    if conn.dialect.name == "postgresql":
        return conn.scalar(sa.text("SELECT pg_backend_pid()"))
    return conn.scalar(sa.text("SELECT CONNECTION_ID()"))


def _cut(admin, server_id: int) -> None:
    """Cut the connection and wait for the state: its server process gone. Each look is a
    transaction of its own (the admin engine autocommits): PostgreSQL keeps one snapshot of
    pg_stat_activity per transaction, so a wait inside one transaction would never see it go."""
    if admin.dialect.name == "postgresql":
        cut = "SELECT pg_terminate_backend(:p)"
        alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = :p"
    else:
        cut = f"KILL CONNECTION {int(server_id)}"
        alive = "SELECT count(*) FROM information_schema.processlist WHERE id = :p"
    with admin.connect() as c:
        c.execute(sa.text(cut), {"p": server_id})
        deadline = time.monotonic() + 60  # a backstop only: the process goes in milliseconds
        while c.scalar(sa.text(alive), {"p": server_id}):
            assert time.monotonic() < deadline, "the cut connection's server process did not go"
            time.sleep(0.01)


@pytest.fixture(params=SERVER_URLS, ids=lambda u: u.split("+")[0].split(":")[0])
def engines(request, monkeypatch):
    url = fresh_server_database(request.param, "ping")
    eng = sa.create_engine(url, pool_size=1, max_overflow=0, **engine_options(url))
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    pings = []
    real = eng.dialect.do_ping
    monkeypatch.setattr(eng.dialect, "do_ping", lambda c: pings.append(1) or real(c))
    yield eng, admin, pings
    eng.dispose()
    admin.dispose()


def test_a_connection_cut_while_idle_is_replaced_at_checkout(engines, monkeypatch):
    eng, admin, pings = engines
    assert "pool_pre_ping" not in engine_options(str(eng.url))
    with eng.connect() as c:
        first = _server_id(c)
    _cut(admin, first)
    monkeypatch.setattr(nubo_engine, "IDLE_PING_SECONDS", 0.0)  # as if it had sat idle for long
    with eng.connect() as c:  # no error: the dead connection was pinged and replaced
        assert c.scalar(sa.text("SELECT 1")) == 1
        assert _server_id(c) != first
    assert pings == [1]


def test_a_connection_given_back_a_moment_ago_is_not_pinged(engines, monkeypatch):
    eng, _admin, pings = engines
    monkeypatch.setattr(nubo_engine, "IDLE_PING_SECONDS", 3600.0)
    with eng.connect() as c:
        first = _server_id(c)
    for _ in range(3):
        with eng.connect() as c:
            assert _server_id(c) == first
    assert pings == []
