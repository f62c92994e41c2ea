"""The worker processes: `huey_consumer app.jobs.worker.huey` (short jobs and the
periodic tasks) and `huey_consumer app.jobs.worker.transfers --no-periodic` (long
transfers, a bounded pool of their own).

Creates the Flask app once so tasks run with an app context and the same
configuration as the web process.
"""
from __future__ import annotations

from app.jobs import huey, transfers  # noqa: F401  (the consumers import these names)

_app = None


def get_app():
    global _app
    if _app is None:
        from app import create_app
        from app.runtime import tune_gc
        _app = create_app()
        tune_gc()
    return _app


def set_app(app) -> None:
    """Run tasks in an existing app (a consumer embedded in tests or tools)."""
    global _app
    _app = app


if __name__ != "__main__":
    # Import tasks so the consumer knows them; the app is made on first use.
    import app.jobs.tasks  # noqa: F401,E402
