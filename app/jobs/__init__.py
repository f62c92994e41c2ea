"""The huey queue. SqliteHuey in the instance directory by default; a
`redis://` NUBO_JOBS_URL selects RedisHuey for several workers on several machines.

The consumer runs `huey_consumer app.jobs.worker.huey` (see Procfile). Job rows,
handlers, progress and the reaper are in app/jobs/service.py.
"""
from __future__ import annotations

import os

from huey import RedisHuey, SqliteHuey
from huey.storage import RedisStorage, SqliteStorage

from app.config import instance_path_from_env


def _sqlite_path(url: str) -> str:
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):]
    instance = instance_path_from_env()
    instance.mkdir(parents=True, exist_ok=True)
    return str(instance / "jobs.db")


def make_huey(url: str | None = None, immediate: bool = False):
    url = url or os.environ.get("NUBO_JOBS_URL") or ""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHuey("nubo", url=url, immediate=immediate)
    return SqliteHuey("nubo", filename=_sqlite_path(url), immediate=immediate)


huey = make_huey()


def configure(url: str, immediate: bool = False) -> None:
    """Point the module's huey at the app's JOBS_URL (tasks stay bound to it)."""
    if immediate:
        huey.immediate = True
        return
    huey.immediate = False
    if url.startswith(("redis://", "rediss://", "unix://")):
        if not isinstance(huey.storage, RedisStorage) or getattr(huey, "_nubo_url", None) != url:
            huey.storage = RedisStorage("nubo", url=url)
    else:
        path = _sqlite_path(url)
        if not isinstance(huey.storage, SqliteStorage) or huey.storage.filename != path:
            huey.storage = SqliteStorage("nubo", filename=path)
    huey._nubo_url = url
