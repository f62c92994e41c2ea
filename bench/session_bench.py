"""The cost of the per-request session check on the code checked out: N requests of
one logged-in API sessionkey (listCapabilities) and one browser (/portal/account),
time per request (median of 5 rounds) and SQL statements per request.

    PYTHONPATH=$PWD .venv/bin/python bench/session_bench.py [postgresql+psycopg://...]

Measured 2026-12-05 (2 cores shared with 7 other engineers: times are noisy), PostgreSQL,
3 runs each, main (9eba5bb) -> sid check folded into the user's SELECT (sessions.load()):
  SQL statements per request: 1 -> 1 (a separate primary-key look-up made it 2, ~+2 ms)
  API listCapabilities: 2.2-3.7 ms -> 1.6-3.4 ms; web /portal/account: 5.9-7.6 ms -> 2.9-5.8 ms
  (no measurable cost). SQLite: 2.4-3.5 -> 1.6-2.7 ms and 8.8 -> 4.6-7.5 ms, 1 statement.
"""
import json
import statistics
import sys
import tempfile
import time

import sqlalchemy as sa

from app import create_app
from app.extensions import db
from app.services import bootstrap, settings
from tests.conftest import csrf_token, server_database
from tests.helpers.users import existing_user

N = 300
url = sys.argv[1] if len(sys.argv) > 1 else ""
if url:
    url = server_database(url)
app = create_app({"INSTANCE_PATH": tempfile.mkdtemp(), "DATABASE_URL": url, "TESTING": True, "SEED_DEMO": False})
with app.app_context():
    db.drop_all(); db.create_all(); settings.sync_definitions(); bootstrap.seed_reference_data()
    existing_user("alice", "alicepass")
    engine = db.engine

api, web = app.test_client(), app.test_client()
key = json.loads(api.post("/client/api", data={"command": "login", "username": "alice", "password": "alicepass",
                                               "response": "json"}).data)["loginresponse"]["sessionkey"]
web.post("/login", data={"username": "alice", "password": "alicepass", "csrf_token": csrf_token(web)})
cases = {
    "API listCapabilities (sessionkey)": lambda: api.get("/client/api", query_string={
        "command": "listCapabilities", "sessionkey": key, "response": "json"}),
    "web /portal/account": lambda: web.get("/portal/account"),
}
for name, call in cases.items():
    assert call().status_code == 200
    statements = []
    listener = lambda *a: statements.append(1)  # noqa: E731
    sa.event.listen(engine, "before_cursor_execute", listener)
    call()
    sa.event.remove(engine, "before_cursor_execute", listener)
    rounds = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(N):
            call()
        rounds.append((time.perf_counter() - t) / N * 1000)
    print(f"{name}: {statistics.median(rounds):.2f} ms/request (median of 5 x {N}), "
          f"{len(statements)} SQL statements/request")
