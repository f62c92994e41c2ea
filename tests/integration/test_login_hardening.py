"""Login throttling as an attacker meets it: parallel guesses, known and unknown
names, one locked name at one address, and a flood of failures from nowhere."""
from __future__ import annotations

import re
import statistics
import threading
import time
from datetime import timedelta
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, update
from werkzeug.security import generate_password_hash

from app.extensions import db
from app.models import Event, User
from app.services import accounts, settings
from tests.conftest import csrf_token

pytestmark = pytest.mark.db

# A CSRF token (itsdangerous: base64 of a JSON string, then a timestamp and a signature)
TOKEN_RE = re.compile(rb'I[A-Za-z0-9_=-]{10,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+')


def post_login(client, username, password, addr="127.0.0.1", token=None):
    token = token or csrf_token(client)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": addr})


def count_rows(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def counted_checks(monkeypatch):
    """The number of password hashes compared (real and dummy)."""
    calls = []
    real = accounts.check_password_hash

    def counting(pwhash, password):
        calls.append(1)
        return real(pwhash, password)
    monkeypatch.setattr(accounts, "check_password_hash", counting)
    return calls


def test_forty_parallel_guesses_check_at_most_the_allowed_passwords(app, users, counted_checks, monkeypatch):
    """Issue: 40 parallel guesses gave 24 password checks while the counter rose by 3."""
    allowed = 3
    # The count is under test, not the wait's length: an hour's wait instead of the first 1 s,
    # so that a loaded machine spreading the 40 requests over seconds sees the same limit.
    real_lock = accounts._lock_until
    monkeypatch.setattr(accounts, "_lock_until",
                        lambda n, now: real_lock(n, now) and now + timedelta(hours=1))
    clients = [app.test_client() for _ in range(40)]
    tokens = [csrf_token(c) for c in clients]
    start = threading.Barrier(40)

    def guess(i):
        start.wait()
        return post_login(clients[i], "alice", f"guess-number-{i}", token=tokens[i]).status_code

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(guess, range(40)))
    checks = len(counted_checks)
    with app.app_context():
        failed = db.session.scalar(select(User.failed_logins).where(User.username == "alice"))
    assert checks <= allowed, f"{checks} passwords checked by 40 parallel guesses"
    assert failed == checks  # every check counted
    assert statuses.count(401) == checks and statuses.count(429) == 40 - checks
    from app.models import LoginThrottle
    with app.app_context():
        assert db.session.scalar(select(LoginThrottle.attempts).where(LoginThrottle.username == "alice")) == checks


def _answer(resp) -> tuple[int, bytes]:
    # the wait ("Try again in 1 h", "in 59 min 59 s") may cross a second between the two
    return resp.status_code, re.sub(rb"in (?:1 h|5\d min(?: \d+ s)?)\.", b"in an hour.", TOKEN_RE.sub(b"-", resp.data))


def test_unknown_and_known_names_answer_alike(app, users, client):
    """Same status and body, attempt by attempt, through the lock-out and after it."""
    from app.models import LoginThrottle

    def attempts(name):
        answers = [_answer(post_login(client, name, "wrong-password-1", addr="10.20.0.1")) for _ in range(3)]
        with app.app_context():  # an hour's wait, so a slow machine cannot see past it
            db.session.execute(update(LoginThrottle).where(LoginThrottle.username == name)
                               .values(locked_until=accounts.utcnow() + timedelta(hours=1)))
            db.session.commit()
        return answers + [_answer(post_login(client, name, "wrong-password-1", addr="10.20.0.1"))
                          for _ in range(2)]

    known, unknown = attempts("alice"), attempts("alice-nobody")
    assert [s for s, _ in known] == [401, 401, 401, 429, 429]
    assert [s for s, _ in unknown] == [s for s, _ in known]
    for (_, a), (_, b) in zip(known, unknown):
        assert a.replace(b"alice-nobody", b"alice") == b.replace(b"alice-nobody", b"alice")


def test_unknown_and_known_names_take_the_same_time(app, users, client):
    """Medians of several tries (each from a fresh address, so each checks a hash);
    the bound is generous: the difference a missing hash makes is 10x, not 2x."""
    def timed(name, i):
        token = csrf_token(client)
        t0 = time.perf_counter()
        assert post_login(client, name, "wrong-password-1", addr=f"10.30.{len(name)}.{i}", token=token
                          ).status_code == 401
        return time.perf_counter() - t0

    known, unknown = [], []
    for i in range(7):
        known.append(timed("alice", i))
        unknown.append(timed("nobody-here", i))
    mk, mu = statistics.median(known), statistics.median(unknown)
    assert max(mk, mu) < 2.5 * min(mk, mu), (known, unknown)


def test_a_locked_name_is_locked_at_its_address_only(app, users, client):
    """An attacker locking `admin` out from one address does not lock out the admin."""
    for _ in range(3):
        assert post_login(client, "admin", "not-the-password", addr="10.40.0.66").status_code == 401
    with app.app_context():  # a long wait, so a slow machine cannot see it over
        from app.models import LoginThrottle
        db.session.execute(update(LoginThrottle).values(locked_until=accounts.utcnow().replace(year=2100)))
        db.session.commit()
    assert post_login(client, "admin", "adminpass", addr="10.40.0.66").status_code == 429
    assert post_login(client, "admin", "adminpass", addr="10.40.0.67").status_code == 302
    client = app.test_client()
    # ... and still locked where the attack came from, while the wait lasts
    assert post_login(client, "admin", "adminpass", addr="10.40.0.66").status_code == 429
    with app.app_context():  # once the wait is over, the right password works there too
        db.session.execute(update(LoginThrottle).values(locked_until=accounts.utcnow().replace(year=2000)))
        db.session.commit()
    assert post_login(client, "admin", "adminpass", addr="10.40.0.66").status_code == 302
    assert count_rows(app, LoginThrottle, LoginThrottle.username == "admin") == 0  # success forgets


def test_ipv6_clients_are_throttled_per_slash_64(app, users, client):
    for i in range(3):
        assert post_login(client, "alice", "not-the-password", addr=f"2001:db8:1:2::{i + 1}").status_code == 401
    with app.app_context():
        from app.models import LoginThrottle
        db.session.execute(update(LoginThrottle).values(locked_until=accounts.utcnow().replace(year=2100)))
        db.session.commit()
    assert post_login(client, "alice", "alicepass", addr="2001:db8:1:2::99").status_code == 429
    assert post_login(client, "alice", "alicepass", addr="2001:db8:1:3::1").status_code == 302


ATTEMPTS = 400


def test_hundreds_of_failed_logins_of_unknown_users_add_bounded_rows(app, users, client, monkeypatch):
    # The dummy hash made cheap: this test is about rows, not CPU. 400 attempts (16 from each of
    # 25 sources, eight times the burst) bound the rows as well as 1,000 did, in 40 % of the time.
    monkeypatch.setattr(accounts, "_dummy_hash", lambda: generate_password_hash("x", method="pbkdf2:sha256:1"))
    # The events' clock stands still: on a loaded machine the logins may take longer
    # than a window, and which sources got their own bucket would then depend on timing.
    from app.services import events
    frozen = events.utcnow()
    monkeypatch.setattr(events, "utcnow", lambda: frozen)
    sources, max_sources, burst = 25, 10, 2
    with app.app_context():
        settings.update("event.unauthenticated.max.sources", str(max_sources))
        settings.update("event.unauthenticated.burst", str(burst))
    events_before = count_rows(app, Event)
    token = csrf_token(client)
    statuses = set()
    for i in range(ATTEMPTS):
        statuses.add(post_login(client, f"ghost{i}", "wrong-password-1", addr=f"10.50.0.{i % sources}",
                                token=token).status_code)
    windows = 1  # the clock stands still
    assert statuses == {401}
    added = count_rows(app, Event) - events_before
    # Per window: `burst` events and one aggregate for each of 10 sources, the same
    # for the 15 others together (source "*").
    assert 1 <= added <= windows * (max_sources + 1) * (burst + 1), (added, windows)
    with app.app_context():
        from app.models import EventBucket
        counts = select(func.sum(EventBucket.count)).where(EventBucket.kind == "USER.LOGIN")
        assert db.session.scalar(counts) == ATTEMPTS
        shared = db.session.scalar(select(Event).where(Event.source_address.is_(None), Event.type == "USER.LOGIN"))
        assert shared is not None and "from other addresses" in shared.description
        counted = db.session.scalar(select(Event).where(Event.source_address == "10.50.0.1",
                                                        Event.description.contains(" times from 10.50.0.1")))
        assert counted is not None


def test_a_flood_from_one_address_adds_bounded_rows(app, users, client, monkeypatch):
    """One address spraying names: its own aggregated event, and at most
    login.throttle.names.per.source throttle rows (then everything from it waits)."""
    monkeypatch.setattr(accounts, "_dummy_hash", lambda: generate_password_hash("x", method="pbkdf2:sha256:1"))
    from app.models import LoginThrottle
    events_before = count_rows(app, Event)
    token = csrf_token(client)
    statuses = [post_login(client, f"ghost{i}", "wrong-password-1", addr="10.60.0.1", token=token).status_code
                for i in range(300)]  # the cap, then five times as many refused
    cap = 50
    assert statuses[:cap] == [401] * cap and set(statuses[cap:]) == {429}
    assert count_rows(app, LoginThrottle) == cap
    with app.app_context():
        per_window = 2 * (settings.get("event.unauthenticated.burst") + 1)  # failures and throttled ones
    assert count_rows(app, Event) - events_before <= 3 * per_window  # the test may span windows
    # The cap is per address: another one still gets its own answers.
    assert post_login(client, "alice", "alicepass", addr="10.60.0.2").status_code == 302
