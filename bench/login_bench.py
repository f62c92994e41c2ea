"""The login issue's numbers on the code checked out (SQLite, or a server database):
40 parallel guesses (password checks vs. the counter), a name locked at one address
tried from another, an unknown name's answers through the lock-out, and the event
rows 1,000 failed logins of unknown users add (25 source addresses).

    PYTHONPATH=$PWD .venv/bin/python bench/login_bench.py [postgresql+psycopg://...]

Measured 2026-12-05 (2 shared cores), before (75920bc) -> after the hardening:
  40 parallel guesses: 38 password checks, counter +3  ->  3 checks, counter +3 (SQLite and PostgreSQL)
  admin locked at 10.0.0.66, right password from 10.0.0.67: 429  ->  302
  unknown name x5: 401 x5 (a known one: 401 x3, 429 x2)  ->  401 x3, 429 x2 like a known one
  1,000 unknown-user failures from 25 addresses: +1000 event rows  ->  +150 (SQLite, one 60 s window:
  per address the first 5 one by one, then one event carrying the count; defaults)
"""
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from sqlalchemy import select, func
from app import create_app
from app.extensions import db
from app.models import Event, User
from app.services import accounts, settings, bootstrap
from tests.conftest import csrf_token, server_database
from tests.helpers.users import existing_user

url = sys.argv[1] if len(sys.argv) > 1 else ""
if url:
    url = server_database(url)
app = create_app({"INSTANCE_PATH": tempfile.mkdtemp(), "DATABASE_URL": url, "TESTING": True, "SEED_DEMO": False})
with app.app_context():
    db.drop_all(); db.create_all(); settings.sync_definitions(); bootstrap.seed_reference_data()
    existing_user("admin", "adminpass", role="admin", account="admin"); existing_user("alice", "alicepass")
checks = []
real = accounts.check_password_hash
accounts.check_password_hash = lambda h, p: (checks.append(1), real(h, p))[1]

def login(c, name, pw, addr="127.0.0.1", token=None):
    return c.post("/login", data={"username": name, "password": pw, "csrf_token": token or csrf_token(c)},
                  environ_base={"REMOTE_ADDR": addr}).status_code

clients = [app.test_client() for _ in range(40)]
tokens = [csrf_token(c) for c in clients]
bar = threading.Barrier(40)
def guess(i):
    bar.wait(); return login(clients[i], "alice", f"guess-{i}", token=tokens[i])
with ThreadPoolExecutor(40) as p:
    st = list(p.map(guess, range(40)))
with app.app_context():
    fl = db.session.scalar(select(User.failed_logins).where(User.username == "alice"))
print(f"40 parallel guesses: {len(checks)} password checks, failed_logins +{fl}, statuses {sorted(set(st))}")
c = app.test_client()
print("admin x3 wrong from 10.0.0.66 then right:", [login(c, "admin", "wrong-pw-123", "10.0.0.66") for _ in range(3)],
      login(c, "admin", "adminpass", "10.0.0.66"), "| right from 10.0.0.67:", login(app.test_client(), "admin", "adminpass", "10.0.0.67"))
c = app.test_client()
print("unknown 'ghost' x5 from 10.0.0.70:", [login(c, "ghost", "wrong-pw-123", "10.0.0.70") for _ in range(5)])
with app.app_context():
    before = db.session.scalar(select(func.count()).select_from(Event))
from werkzeug.security import generate_password_hash
accounts._DUMMY_HASH = generate_password_hash("x", method="pbkdf2:sha256:1")
c = app.test_client(); tok = csrf_token(c)
t0 = time.perf_counter()
st = [login(c, f"ghost{i}", "wrong-pw-123", f"10.1.0.{i % 25}", tok) for i in range(1000)]
with app.app_context():
    after = db.session.scalar(select(func.count()).select_from(Event))
print(f"1000 failed logins of unknown users from 25 addresses: +{after - before} event rows "
      f"({time.perf_counter() - t0:.1f} s), statuses {sorted(set(st))}")
