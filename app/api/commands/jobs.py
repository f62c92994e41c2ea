"""queryAsyncJobResult, listAsyncJobs."""
from __future__ import annotations

from sqlalchemy import select

from app.api.registry import Param, command
from app.extensions import db
from app.jobs import service as jobs
from app.models import AsyncJob
from app.services.errors import NotFound
from app.services.pagination import page_of


def _visible(ctx):
    from app.services import access
    return select(AsyncJob).where(access.owned(ctx.user, AsyncJob.account_id)).order_by(AsyncJob.id.desc())


@command("queryAsyncJobResult", "Retrieves the current status of an asynchronous job",
         params=[Param("jobid", "uuid", "the job", required=True)])
def query_async_job_result(ctx, p):
    job = db.session.scalar(_visible(ctx).where(AsyncJob.uuid == p["jobid"]))
    if job is None:
        raise NotFound("Unable to find job with the specified id", field="jobid")
    return jobs.job_result(job)


@command("listAsyncJobs", "Lists asynchronous jobs", response="asyncjobs", list=True,
         params=[Param("startdate", "date", "jobs created after this date")])
def list_async_jobs(ctx, p):
    q = _visible(ctx)
    if p.get("id"):
        q = q.where(AsyncJob.uuid == p["id"])
    if p.get("startdate"):
        q = q.where(AsyncJob.created >= p["startdate"].replace(tzinfo=None))
    if p.get("keyword"):
        q = q.where(AsyncJob.cmd.contains(p["keyword"]))
    return page_of(q, ctx.page)
