"""Configuration: defaults, NUBO_* overrides, generated secrets kept on disk."""
import os

from app import create_app


def test_defaults_use_sqlite_in_instance(tmp_path, monkeypatch):
    monkeypatch.setenv("NUBO_INSTANCE_PATH", str(tmp_path / "inst"))
    for var in ("NUBO_DATABASE_URL", "NUBO_JOBS_URL", "NUBO_PORT", "NUBO_SECRET_KEY"):
        monkeypatch.delenv(var, raising=False)
    app = create_app()
    inst = tmp_path / "inst"
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{inst / 'nubo.db'}"
    assert app.config["JOBS_URL"] == f"sqlite:///{inst / 'jobs.db'}"
    assert app.config["PORT"] == 8080 and app.config["CONSOLE_PORT"] == 6080
    assert app.config["BIND"] == "127.0.0.1"
    assert app.instance_path == str(inst)


def test_env_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("NUBO_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("NUBO_PORT", "9999")
    monkeypatch.setenv("NUBO_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("NUBO_JOBS_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("NUBO_ADMIN_PASSWORD", "123456")  # JSON-looking: must stay a string
    monkeypatch.setenv("NUBO_SEED_DEMO", "0")
    app = create_app()
    assert app.config["PORT"] == 9999
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"
    assert app.config["JOBS_URL"] == "redis://127.0.0.1:6379/3"
    assert app.config["ADMIN_PASSWORD"] == "123456"
    assert app.config["SEED_DEMO"] is False


def test_secret_key_generated_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("NUBO_INSTANCE_PATH", str(tmp_path))
    monkeypatch.delenv("NUBO_SECRET_KEY", raising=False)
    first = create_app().config["SECRET_KEY"]
    second = create_app().config["SECRET_KEY"]
    assert first == second and len(first) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "credentials.key").exists()


def test_secrets_created_by_processes_starting_together_are_one(tmp_path):
    """honcho starts web, worker and monitor at once on a new instance: each must read
    the one secret that won, never a second one or a file still being written."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(6)
    results = ctx.Queue()

    def start():
        from app.config import _read_or_create
        barrier.wait()
        results.put(_read_or_create(tmp_path / "secret_key", lambda: os.urandom(16).hex()))

    procs = [ctx.Process(target=start) for _ in range(6)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    kept = (tmp_path / "secret_key").read_text()
    assert len(kept) == 32 and got == [kept] * 6
    assert sorted(f.name for f in tmp_path.iterdir()) == ["secret_key"]  # no leftovers


def test_a_secret_that_appears_meanwhile_is_kept(tmp_path, monkeypatch):
    from pathlib import Path

    from app.config import _read_or_create
    (tmp_path / "secret_key").write_text("theirs")
    monkeypatch.setattr(Path, "exists", lambda self: False)  # lost the race after looking
    assert _read_or_create(tmp_path / "secret_key", lambda: "mine") == "theirs"
    monkeypatch.undo()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["secret_key"]


def test_secret_key_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NUBO_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("NUBO_SECRET_KEY", "from-the-environment")
    assert create_app().config["SECRET_KEY"] == "from-the-environment"
    assert not (tmp_path / "secret_key").exists()


def test_jobs_url_selects_huey_backend(tmp_path):
    from huey import RedisHuey, SqliteHuey

    from app.jobs import make_huey
    assert isinstance(make_huey(f"sqlite:///{tmp_path}/j.db"), SqliteHuey)
    assert isinstance(make_huey("redis://127.0.0.1:6379/0"), RedisHuey)
