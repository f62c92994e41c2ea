"""The huey queues. SqliteHuey in the instance directory by default; a
`redis://` NUBO_JOBS_URL selects RedisHuey for several workers on several machines.

Two queues, each with its own consumer process (see Procfile):
- `huey` ("nubo"): short jobs (VM actions, volumes, zone launch) and the periodic
  tasks (reaper, expunge): `huey_consumer app.jobs.worker.huey`;
- `transfers` ("nubo-transfers"): long transfers (template and ISO downloads), a
  bounded pool of their own so a slow download never holds a thread short jobs need:
  `huey_consumer app.jobs.worker.transfers --no-periodic`.
Job rows, handlers, progress, the per-account transfer limit and the reaper are in
app/jobs/service.py.
"""
from __future__ import annotations

import os

from huey import RedisHuey, SqliteHuey
from huey.storage import RedisStorage, SqliteStorage

from app.config import instance_path_from_env

JOBS, TRANSFERS = "jobs", "transfers"  # AsyncJob.queue values
_NAMES = {JOBS: "nubo", TRANSFERS: "nubo-transfers"}  # huey queue names (Redis keys, SQLite rows)


def _redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "unix://"))


def _sqlite_path(url: str) -> str:
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):]
    instance = instance_path_from_env()
    instance.mkdir(parents=True, exist_ok=True)
    return str(instance / "jobs.db")


def make_huey(url: str | None = None, immediate: bool = False, name: str = _NAMES[JOBS]):
    url = url or os.environ.get("NUBO_JOBS_URL") or ""
    if _redis(url):
        return RedisHuey(name, url=url, immediate=immediate)
    return SqliteHuey(name, filename=_sqlite_path(url), immediate=immediate)


huey = make_huey()
transfers = make_huey(name=_NAMES[TRANSFERS])
QUEUES = {JOBS: huey, TRANSFERS: transfers}


def pending_count() -> int:
    """Tasks waiting in both queues."""
    return sum(h.pending_count() for h in QUEUES.values())


def configure(url: str, immediate: bool = False) -> None:
    """Point the module's queues at the app's JOBS_URL (tasks stay bound to them)."""
    for h in QUEUES.values():
        _configure(h, url, immediate)


def _configure(h, url: str, immediate: bool) -> None:
    if immediate:
        h.immediate = True
        return
    h.immediate = False
    if _redis(url):
        if not isinstance(h.storage, RedisStorage) or getattr(h, "_nubo_url", None) != url:
            h.storage = RedisStorage(h.name, url=url)
    else:
        path = _sqlite_path(url)
        if not isinstance(h.storage, SqliteStorage) or h.storage.filename != path:
            h.storage = SqliteStorage(h.name, filename=path)
    h._nubo_url = url
