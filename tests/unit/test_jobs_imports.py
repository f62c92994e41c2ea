"""DESIGN.md "Imports flow one way": the job runner sits below app/api and app/web."""
import ast
from pathlib import Path

JOBS = Path(__file__).resolve().parents[2] / "app" / "jobs"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_jobs_never_import_api_or_web():
    bad = {f"{p.name}: {m}" for p in JOBS.glob("*.py") for m in _imports(p)
           if m.split(".")[:2] in (["app", "api"], ["app", "web"])}
    assert not bad, sorted(bad)


def test_a_consumers_threads_make_one_app_between_them(monkeypatch):
    """app.jobs.worker.get_app: every thread of a consumer takes its first task at once; one
    makes the app and the others get that one (several making it at once is how a task failed
    inside werkzeug's route compiling on CPython 3.11 and its job waited for the reaper)."""
    import threading
    import time

    import app
    import app.runtime
    from app.jobs import worker
    made = []

    def slow_create_app():
        made.append(threading.get_ident())
        time.sleep(0.05)  # long enough for the other threads to arrive meanwhile
        return object()
    monkeypatch.setattr(worker, "_app", None)
    monkeypatch.setattr(app, "create_app", slow_create_app)
    monkeypatch.setattr(app.runtime, "tune_gc", lambda: None)
    start = threading.Barrier(8)
    got = []

    def first_task():
        start.wait()
        got.append(worker.get_app())
    threads = [threading.Thread(target=first_task) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len(got) == 8 and len({id(a) for a in got}) == 1
