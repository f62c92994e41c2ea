"""The jobs pages' view of async jobs: every job the caller may see (root admin: all, with the
system's own; a user: their account's), filtered by status, command, account and resource,
paged; each with who started it, what it acted on (named), its progress, result or error."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select

from app.extensions import db
from app.models import (Account, AffinityGroup, AsyncJob, Host, JobStatus, Network, Router, SecurityGroup, Snapshot,
                        StoragePool, Template, User, VirtualMachine, VMSnapshot, Volume, Zone)
from app.services import access
from app.services.errors import NotFound
from app.services.pagination import page_of, sorted_by

STATUSES = {"pending": JobStatus.PENDING, "succeeded": JobStatus.SUCCEEDED, "failed": JobStatus.FAILED,
            "cancelled": JobStatus.CANCELLED}
STATUS_NAMES = {v: k for k, v in STATUSES.items()}
JOB_SORTS = {"id": AsyncJob.id, "created": AsyncJob.created, "cmd": AsyncJob.cmd, "status": AsyncJob.status,
             "completed": AsyncJob.completed}

# CloudStack's jobinstancetype → the model holding that resource (named on the page).
RESOURCE_MODELS = {"VirtualMachine": VirtualMachine, "Volume": Volume, "Template": Template, "Iso": Template,
                   "Snapshot": Snapshot, "VMSnapshot": VMSnapshot, "Network": Network, "Host": Host,
                   "StoragePool": StoragePool, "Zone": Zone, "Account": Account, "SecurityGroup": SecurityGroup,
                   "AffinityGroup": AffinityGroup, "DomainRouter": Router}


@dataclass
class JobView:
    job: AsyncJob
    account: str | None
    username: str | None
    resource_name: str | None  # the resource's name when it still exists

    @property
    def status(self) -> str:
        return STATUS_NAMES.get(self.job.status, str(self.job.status))

    @property
    def running(self) -> bool:
        return self.job.status == JobStatus.PENDING

    @property
    def result(self) -> Any:
        if self.job.status == JobStatus.PENDING or not self.job.result:
            return None
        try:
            return json.loads(self.job.result)
        except ValueError:
            return self.job.result

    @property
    def error(self) -> str | None:
        r = self.result
        if self.job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            return r.get("errortext") if isinstance(r, dict) else (str(r) if r else "failed")
        return None

    @property
    def result_text(self) -> str | None:
        """The result as pretty JSON (the detail page)."""
        r = self.result
        return None if r is None else json.dumps(r, indent=2, sort_keys=True, default=str)

    @property
    def steps(self) -> list[dict]:
        try:
            return json.loads(self.job.steps) if self.job.steps else []
        except ValueError:
            return []

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, to a tenth (a job's milliseconds say nothing to a reader)."""
        start, end = self.job.started or self.job.created, self.job.completed
        return max(round((end - start).total_seconds(), 1), 0.1) if start and end else None


def _visible(caller):
    return select(AsyncJob).where(access.owned(caller, AsyncJob.account_id))


def _views(jobs: list[AsyncJob]) -> list[JobView]:
    """Views of a page of jobs: accounts, users and resources named in one query per kind."""
    acct_ids = {j.account_id for j in jobs if j.account_id}
    user_ids = {j.user_id for j in jobs if j.user_id}
    accounts = dict(db.session.execute(select(Account.id, Account.name).where(Account.id.in_(acct_ids)))
                    .all()) if acct_ids else {}
    users = dict(db.session.execute(select(User.id, User.username).where(User.id.in_(user_ids)))
                 .all()) if user_ids else {}
    names: dict[tuple[str, str], str] = {}
    wanted: dict[str, set[str]] = {}
    for j in jobs:
        if j.instance_type in RESOURCE_MODELS and j.instance_id:
            wanted.setdefault(j.instance_type, set()).add(j.instance_id)
    for kind, ids in wanted.items():
        model = RESOURCE_MODELS[kind]
        for uuid, name in db.session.execute(select(model.uuid, model.name).where(model.uuid.in_(ids))):
            names[(kind, uuid)] = name
    return [JobView(j, accounts.get(j.account_id), users.get(j.user_id),
                    names.get((j.instance_type, j.instance_id))) for j in jobs]


def list_jobs(caller, *, keyword: str | None = None, status: str | None = None, cmd: str | None = None,
              account: str | None = None, resource: str | None = None, sort: str | None = None,
              page: tuple[int, int] | None = None) -> tuple[list[JobView], int]:
    """(views, total) of the jobs the caller may see, newest first unless sorted otherwise.
    resource: a resource's id, or a resource type (VirtualMachine, Volume ...)."""
    q = _visible(caller)
    if status:
        if status not in STATUSES:
            raise NotFound(f"Unknown job status {status}", field="status")
        q = q.where(AsyncJob.status == STATUSES[status])
    if cmd:
        q = q.where(AsyncJob.cmd == cmd)
    if account:
        q = q.where(AsyncJob.account_id.in_(select(Account.id).where(Account.name == account)))
    if resource:
        q = q.where(or_(AsyncJob.instance_id == resource, AsyncJob.instance_type == resource))
    if keyword:
        q = q.where(or_(AsyncJob.cmd.contains(keyword, autoescape=True), AsyncJob.uuid == keyword,
                        AsyncJob.instance_id == keyword))
    q = sorted_by(q, sort, JOB_SORTS, AsyncJob.id.desc())
    rows, total = page_of(q, page)
    return _views(list(rows)), total


def commands(caller) -> list[str]:
    """The commands of the jobs the caller may see (the command filter's choices)."""
    return list(db.session.scalars(select(AsyncJob.cmd).distinct().where(access.owned(caller, AsyncJob.account_id))
                                   .order_by(AsyncJob.cmd)))


def get_job(caller, uuid: str) -> JobView:
    job = db.session.scalar(_visible(caller).where(AsyncJob.uuid == uuid))
    if job is None:
        raise NotFound("Unable to find job with the specified id", field="jobid")
    return _views([job])[0]
