"""The huey queue. SqliteHuey in the instance directory by default; a
`redis://` NUBO_JOBS_URL selects RedisHuey for several workers on several machines.

The consumer runs `huey_consumer app.jobs.worker.huey` (see Procfile); tasks
get a Flask app context from app/jobs/worker.py.
"""
from __future__ import annotations

import os

from huey import RedisHuey, SqliteHuey

from app.config import instance_path_from_env


def make_huey(url: str | None = None, immediate: bool = False):
    url = url or os.environ.get("NUBO_JOBS_URL") or ""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHuey("nubo", url=url, immediate=immediate)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
    else:
        instance = instance_path_from_env()
        instance.mkdir(parents=True, exist_ok=True)
        path = str(instance / "jobs.db")
    return SqliteHuey("nubo", filename=path, immediate=immediate)


huey = make_huey()
