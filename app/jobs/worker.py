"""The worker processes: `huey_consumer app.jobs.worker.huey` (short jobs and the
periodic tasks) and `huey_consumer app.jobs.worker.transfers --no-periodic` (long
transfers, a bounded pool of their own).

Creates the Flask app once so tasks run with an app context and the same
configuration as the web process.
"""
from __future__ import annotations

import threading

from app.jobs import huey, transfers  # noqa: F401  (the consumers import these names)

_app = None
_app_lock = threading.Lock()


def get_app():
    """The worker's app, made by the first task that needs it. A consumer's threads all take
    their first task at once: one makes the app, the others wait for it (several making it
    together was wasted work, and CPython 3.11 then failed one of them now and then inside
    werkzeug's route compiling, "AST constructor recursion depth mismatch": that task's job was
    lost until the reaper failed it)."""
    global _app
    if _app is None:
        with _app_lock:
            if _app is None:
                from app import create_app
                from app.runtime import tune_gc
                app = create_app()
                tune_gc()
                _app = app
    return _app


def set_app(app) -> None:
    """Run tasks in an existing app (a consumer embedded in tests or tools)."""
    global _app
    _app = app


if __name__ != "__main__":
    # Import tasks so the consumer knows them; the app is made on first use.
    import app.jobs.tasks  # noqa: F401,E402
