"""Fixtures in the pattern of Flask's tutorial: app, client, runner, auth, hx.

Every test gets a fresh instance directory. The database is SQLite unless the
test is marked `db`, in which case it also runs once per URL listed in
NUBO_TEST_DATABASE_URLS (PostgreSQL, MariaDB). Server databases get one
database per xdist worker, created on first use; tables are emptied after
each test.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import time

import flask
import jinja2
import pytest
import sqlalchemy as sa
import werkzeug.routing.rules

# Before the app is imported: a cheap scrypt cost for the thousands of passwords the suite hashes
# and checks (the default cost takes ~0.15 s each); processes the tests start inherit it.
# tests/integration/test_auth.py checks that production's default is scrypt at werkzeug's cost.
os.environ.setdefault("NUBO_PASSWORD_HASH", "scrypt:1024:8:1")

from app import create_app  # noqa: E402
from app.extensions import db as _db  # noqa: E402
from app.runtime import tune_gc  # noqa: E402
from app.services import settings  # noqa: E402
from tests.helpers.users import existing_user  # noqa: E402

SERVER_URLS = [u for u in os.environ.get("NUBO_TEST_DATABASE_URLS", "").split() if u]
BACKSTOP_SECONDS = 120
TIMINGS = os.environ.get("NUBO_TEST_TIMINGS")  # see pytest_runtest_protocol
_hang_file = None


def _timeout(item) -> float:
    """pytest-timeout's limit for this test: its mark, else --timeout, else the ini (0: none)."""
    marker = item.get_closest_marker("timeout")
    if marker and marker.args:
        return float(marker.args[0])
    try:
        return float(item.config.getoption("timeout") or item.config.getini("timeout") or 0)
    except ValueError:  # pytest-timeout is not installed
        return 0.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """pytest-timeout's signal cannot interrupt a test blocked inside C code (a
    libvirt call, a read on a socket that never answers): BACKSTOP_SECONDS after
    its timeout, faulthandler writes the test's id and every thread's stack to
    test-artifacts/hung-<worker>-<pid>.txt (stderr is captured) and ends the process
    (under xdist the worker is replaced and the run goes on)."""
    import faulthandler
    global _hang_file
    timeout = _timeout(item)
    if timeout:
        if _hang_file is None:
            path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test-artifacts",
                                f"hung-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{os.getpid()}.txt")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _hang_file = open(path, "w")
        _hang_file.seek(0)
        _hang_file.truncate()
        _hang_file.write(f"{item.nodeid} still running {timeout + BACKSTOP_SECONDS:.0f} s after it started\n")
        _hang_file.flush()
        faulthandler.dump_traceback_later(timeout + BACKSTOP_SECONDS, exit=True, file=_hang_file)
    started = time.monotonic()
    try:
        yield
    finally:
        if timeout:
            faulthandler.cancel_dump_traceback_later()
        if TIMINGS:  # NUBO_TEST_TIMINGS=file: each test's wall time (setup to teardown), as it ends
            with open(TIMINGS, "a") as f:
                f.write(f"{time.monotonic() - started:.2f} {_plain_id(item.nodeid)}\n")


def _plain_id(nodeid: str) -> str:
    """The test's id without the "@group" suffix that --dist loadgroup adds."""
    at = nodeid.rfind("@")
    return nodeid[:at] if at > nodeid.rfind("]") else nodeid


TIMINGS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "timings.json")


def _guess_seconds(item) -> float:
    """A test the timings file does not know yet: by its kind (a stack, a browser or a real guest
    takes tens of seconds, the rest about one)."""
    if item.nodeid.startswith(("tests/e2e/", "tests/network/")) or item.get_closest_marker("libvirt"):
        return 30.0
    return 1.0


def _group(item) -> str | None:
    marks = [m.args[0] if m.args else m.kwargs.get("name", "default") for m in item.iter_markers("xdist_group")]
    return "_".join(sorted(set(map(str, marks)))) if marks else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Two things for `pytest -n 2 --dist loadgroup` (make test):

    - xdist_group works again. pytest-xdist 3.8 puts a test into its group by renaming
      item._nodeid to "<id>@<group>"; pytest 9.2 reads the id from item._id instead, so the
      group was ignored and grouped tests ran beside each other on both workers.
    - The longest work goes first, so that the two workers end together instead of one
      starting a long test when the other is nearly done. The unit is an xdist group, else
      a module (its tests stay together, so module-scoped fixtures are set up once), ordered
      by its total seconds in tests/timings.json (scripts/test_timings.py makes it from
      NUBO_TEST_TIMINGS output); tests keep their order inside a unit. Every worker sorts
      the same way (xdist checks that their collections are equal); make test passes
      --no-loadscope-reorder so that xdist keeps this order rather than sorting groups by size.
    """
    if config.getoption("loadgroup", False):
        from _pytest.nodeid import NodeId
        for item in items:
            renamed = item.__dict__.get("_nodeid")
            if renamed and renamed != item.nodeid:
                item._id = NodeId.parse(renamed)
    if not os.path.exists(TIMINGS_FILE):
        return
    import json
    with open(TIMINGS_FILE) as f:
        known: dict[str, float] = json.load(f)
    units: dict[str, float] = {}
    unit_of = {}
    for item in items:
        unit = _group(item) or item.nodeid.split("::", 1)[0]
        unit_of[item] = unit
        units[unit] = units.get(unit, 0.0) + (known.get(_plain_id(item.nodeid)) or _guess_seconds(item))
    first_seen = {}
    for i, item in enumerate(items):
        first_seen.setdefault(unit_of[item], i)
    items.sort(key=lambda it: (-units[unit_of[it]], first_seen[unit_of[it]]))


def pytest_sessionfinish(session):
    if _hang_file is not None:  # nothing hung
        _hang_file.close()
        with contextlib.suppress(FileNotFoundError):  # e.g. test-artifacts/ emptied by someone
            os.unlink(_hang_file.name)


def _backend_id(url: str) -> str:
    return url.split("+")[0].split(":")[0] if url != "sqlite" else "sqlite"


def pytest_generate_tests(metafunc):
    if "db_url" in metafunc.fixturenames:
        urls = ["sqlite"]
        if metafunc.definition.get_closest_marker("db"):
            urls += SERVER_URLS
        metafunc.parametrize("db_url", urls, ids=[_backend_id(u) for u in urls], scope="function")


_prepared: set[str] = set()


def _worker() -> str:
    """Unique per checkout and xdist worker, so parallel runs never share a database."""
    import hashlib
    checkout = hashlib.sha1(os.path.dirname(os.path.dirname(os.path.abspath(__file__))).encode()).hexdigest()[:6]
    return f"{checkout}_{os.environ.get('PYTEST_XDIST_WORKER', 'gw0')}"


def server_database(url: str) -> str:
    """A private database for this xdist worker on the server behind `url`."""
    name = f"nubo_test_{_worker()}"
    base = sa.engine.make_url(url)
    if url.startswith("postgresql"):
        admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            if not c.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname=:n"), {"n": name}):
                c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    else:
        admin = sa.create_engine(base)
        with admin.connect() as c:
            c.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def fresh_server_database(url: str, purpose: str) -> str:
    """An empty database named for this checkout, worker and purpose (dropped first)."""
    name = f"nubo_{purpose}_{_worker()}"
    base = sa.engine.make_url(url)
    if url.startswith("postgresql"):
        eng = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    else:
        eng = sa.create_engine(base)
        with eng.connect() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
            c.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    eng.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def db_url(request):  # parametrized by pytest_generate_tests
    return request.param


class _SharedBytecode(jinja2.BytecodeCache):
    """Every test makes its own app, and with it a Jinja environment that would compile each
    template again; compiled templates are shared in memory instead (keyed by name and source)."""
    store: dict[str, bytes] = {}

    def load_bytecode(self, bucket):
        if bucket.key in self.store:
            bucket.bytecode_from_string(self.store[bucket.key])

    def dump_bytecode(self, bucket):
        self.store[bucket.key] = bucket.bytecode_to_string()


_flask_jinja_env = flask.Flask.create_jinja_environment


def _jinja_env_with_shared_bytecode(self):
    env = _flask_jinja_env(self)
    env.bytecode_cache = _SharedBytecode()
    return env


flask.Flask.create_jinja_environment = _jinja_env_with_shared_bytecode


# Every test's app binds its ~180 URL rules again, and werkzeug compiles two URL builders per rule
# from a Python AST (~90 % of create_app's time). A builder depends only on the rule's text and
# parts (it reaches the rule's converters through its `self` argument), so the compiled
# functions are shared between the tests' apps; rules with defaults are compiled as usual.
_rule_builders: dict = {}
_compile_builder = werkzeug.routing.rules.Rule._compile_builder


def _shared_compile_builder(self, append_unknown: bool = True):
    if self.defaults:
        return _compile_builder(self, append_unknown)
    key = (self.rule, tuple(self._trace), append_unknown)
    if key not in _rule_builders:
        _rule_builders[key] = _compile_builder(self, append_unknown)
    return _rule_builders[key]


werkzeug.routing.rules.Rule._compile_builder = _shared_compile_builder

# The collector as the app's processes run it (app/runtime.py): the modules imported by now are
# frozen out of its sight and young collections run every 10,000 allocations, not 700. Each test
# builds an app (~50,000 objects); with the defaults, full collections walking every imported
# module took about half of create_app's time.
tune_gc()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    """A SQLite database with the schema and reference data, made once per worker: each test
    copies the file (milliseconds) instead of creating ~100 tables again."""
    instance = tmp_path_factory.mktemp("sqlite-template")
    app = create_app({"INSTANCE_PATH": str(instance), "TESTING": True, "SEED_DEMO": False})
    with app.app_context():
        _db.create_all()
        settings.clear_cache()
        settings.sync_definitions()
        from app.services import bootstrap
        bootstrap.seed_reference_data()
        _db.session.remove()
        _db.engine.dispose()
    settings.clear_cache()
    return str(instance / "nubo.db")


@pytest.fixture
def app(tmp_path, db_url, sqlite_template):
    url = "" if db_url == "sqlite" else server_database(db_url)
    if not url:
        (tmp_path / "instance").mkdir()
        shutil.copyfile(sqlite_template, tmp_path / "instance" / "nubo.db")
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": url,
                      "TESTING": True, "SEED_DEMO": False, "JOBS_IMMEDIATE": True})
    with app.app_context():
        if url and url not in _prepared:
            _db.drop_all()
            _db.create_all()
            _prepared.add(url)
        settings.clear_cache()
        settings.sync_definitions()
        from app.services import bootstrap
        bootstrap.seed_reference_data()
    yield app
    with app.app_context():
        _db.session.remove()
        if url:  # empty the shared database for the next test
            with _db.engine.begin() as conn:
                for table in reversed(_db.metadata.sorted_tables):
                    conn.execute(table.delete())
        _db.engine.dispose()
    settings.clear_cache()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def users(app):
    """admin/adminpass (admin), alice/alicepass and bob/bobpass (users, own accounts)."""
    from app.services import accounts
    with app.app_context():
        existing_user("admin", "adminpass", role="admin", account="admin")
        existing_user("alice", "alicepass")
        existing_user("bob", "bobpass")
    return {"admin": "adminpass", "alice": "alicepass", "bob": "bobpass"}


CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


def csrf_token(client, path="/login") -> str:
    html = client.get(path).get_data(as_text=True)
    m = CSRF_RE.search(html)
    assert m, f"no csrf token on {path}"
    return m.group(1)


class AuthActions:
    def __init__(self, client):
        self._client = client

    def login(self, username="admin", password=None):
        password = password or {"admin": "adminpass", "alice": "alicepass", "bob": "bobpass"}[username]
        token = csrf_token(self._client)
        return self._client.post("/login", data={"username": username, "password": password,
                                                 "csrf_token": token})

    def logout(self):
        token = csrf_token(self._client, "/portal/")
        return self._client.post("/logout", data={"csrf_token": token})

    def csrf(self, path="/portal/") -> str:
        return csrf_token(self._client, path)


@pytest.fixture
def auth(client, users):
    return AuthActions(client)


class HxClient:
    """The test client, sending what htmx sends: HX-Request and the CSRF header."""

    def __init__(self, client, auth):
        self._client, self._auth = client, auth

    def get(self, path, **kw):
        return self._client.get(path, headers={"HX-Request": "true", **kw.pop("headers", {})}, **kw)

    def post(self, path, **kw):
        headers = {"HX-Request": "true", "X-CSRFToken": self._auth.csrf(), **kw.pop("headers", {})}
        return self._client.post(path, headers=headers, **kw)


@pytest.fixture
def hx(client, auth):
    return HxClient(client, auth)


@pytest.fixture
def count_queries(app, monkeypatch):
    """count_queries(client, url) -> the number of SQL statements the request ran (asserting 200).
    The settings cache does not expire during the test: on a loaded machine its refresh would
    land in one count and not another."""
    monkeypatch.setattr(settings, "CACHE_SECONDS", 3600.0)
    def count(client, url: str) -> int:
        seen: list[str] = []
        with app.app_context():
            engine = _db.engine
        listener = lambda conn, cursor, statement, *args: seen.append(statement)  # noqa: E731
        sa.event.listen(engine, "before_cursor_execute", listener)
        try:
            assert client.get(url).status_code == 200
        finally:
            sa.event.remove(engine, "before_cursor_execute", listener)
        return len(seen)
    return count
