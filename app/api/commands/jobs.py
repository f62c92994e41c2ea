"""queryAsyncJobResult, listAsyncJobs."""
from __future__ import annotations

from sqlalchemy import select

from app.api.registry import Param, command
from app.extensions import db
from app.jobs import service as jobs
from app.models import AsyncJob
from app.services.errors import NotFound
from app.services.pagination import page_ids


def _conditions(ctx, p) -> list:
    from app.services import access
    conditions = [access.owned(ctx.user, AsyncJob.account_id)]
    if p.get("id"):
        conditions.append(AsyncJob.uuid == p["id"])
    if p.get("startdate"):
        conditions.append(AsyncJob.created >= p["startdate"].replace(tzinfo=None))
    if p.get("keyword"):
        conditions.append(AsyncJob.cmd.contains(p["keyword"]))
    return conditions


@command("queryAsyncJobResult", "Retrieves the current status of an asynchronous job",
         params=[Param("jobid", "uuid", "the job", required=True)])
def query_async_job_result(ctx, p):
    from app.services import access
    # The job's row first (one statement built once); whether the caller may see it is then
    # plain for root and for the caller's own jobs, and asked of the database otherwise.
    row = jobs.answer_row(p["jobid"])
    if row is None or not (access.plainly_owned(ctx.user, row.account_id) or db.session.scalar(
            select(AsyncJob.id).where(AsyncJob.id == row.job_id, access.owned(ctx.user, AsyncJob.account_id)))):
        raise NotFound("Unable to find job with the specified id", field="jobid")
    return jobs.answer_of(row)


@command("listAsyncJobs", "Lists asynchronous jobs", response="asyncjobs", list=True,
         params=[Param("startdate", "date", "jobs created after this date")])
def list_async_jobs(ctx, p):
    """Newest first. A page is found by its ids (page_ids), then read as answer rows."""
    conditions = _conditions(ctx, p)
    newest_first = AsyncJob.id.desc()
    rows = jobs.answer_select().order_by(newest_first)
    conn = db.session.connection()  # Core rows: none of the ORM's execution steps
    if ctx.page is None:
        found = conn.execute(rows.where(*conditions)).all()
        return found, len(found)
    ids, total = page_ids(select(AsyncJob).where(*conditions).order_by(newest_first), ctx.page)
    return (conn.execute(rows.where(AsyncJob.id.in_(ids))).all() if ids else []), total
