"""The job runner itself: a worker that comes back after its job was reaped, the
transfer queue and its per-account limit."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.extensions import db
from app.jobs import service as jobs
from app.models import AsyncJob, JobStatus, utcnow

pytestmark = pytest.mark.db

CALLS: dict[str, list] = {"reaped": [], "after": []}


def _reap_from_outside(app, job_id: int) -> int:
    """What the reaper in another process does when this job's heartbeat went stale."""
    with app.app_context():  # its own session, as in another process
        with db.engine.begin() as conn:
            conn.execute(update(AsyncJob).where(AsyncJob.id == job_id)
                         .values(heartbeat=utcnow() - timedelta(hours=1)))
        return jobs.reap()


@jobs.handler("test.stalls_then_succeeds")
def _stalls_then_succeeds(job, params):
    from flask import current_app
    # The worker stalls (GC pause, stopped VM, network partition) long enough to be reaped...
    assert _reap_from_outside(current_app._get_current_object(), job.id) == 1
    CALLS["after"].append(job.id)
    return {"done": True}  # ...then comes back and finishes


@jobs.handler("test.stalls_then_reports_progress")
def _stalls_then_reports_progress(job, params):
    from flask import current_app
    assert _reap_from_outside(current_app._get_current_object(), job.id) == 1
    jobs.progress(job, 50, "half way")  # the first checkpoint after the reap stops the handler
    CALLS["after"].append(job.id)  # never reached
    return {"done": True}


jobs.on_reap("test.stalls_then_succeeds", lambda job: CALLS["reaped"].append(job.id))
jobs.on_reap("test.stalls_then_reports_progress", lambda job: CALLS["reaped"].append(job.id))


@pytest.fixture(autouse=True)
def _calls():
    for v in CALLS.values():
        v.clear()


def _pending(app) -> int:
    return db.session.scalar(select(func.count()).select_from(AsyncJob).where(AsyncJob.status == JobStatus.PENDING))


def test_a_worker_back_after_the_reap_does_not_overwrite_the_reaped_result(app):
    with app.app_context():
        job = jobs.submit("testCmd", None, "test.stalls_then_succeeds")
        db.session.expire_all()
        job = db.session.get(AsyncJob, job.id)
        assert job.status == JobStatus.FAILED and job.result_code == 530
        assert "no heartbeat" in json.loads(job.result)["errortext"]
        assert CALLS["reaped"] == [job.id]  # the clean-up ran once
        assert CALLS["after"] == [job.id]  # the handler did come back...
        assert _pending(app) == 0  # ...and its success was discarded, nothing left pending


def test_a_worker_back_after_the_reap_stops_at_its_next_progress(app):
    with app.app_context():
        job = jobs.submit("testCmd", None, "test.stalls_then_reports_progress")
        db.session.expire_all()
        job = db.session.get(AsyncJob, job.id)
        assert job.status == JobStatus.FAILED
        assert "no heartbeat" in json.loads(job.result)["errortext"]  # the reaper's reason, not JobLost's
        assert job.progress == 0  # the late progress was not written
        assert CALLS["reaped"] == [job.id] and CALLS["after"] == []
