"""Async jobs: a row per long action (what queryAsyncJobResult and the progress
widgets read) plus one huey task that runs the registered handler.

    @jobs.handler("zone.launch")
    def launch(job, params): ...            # returns a result dict or raises ServiceError

    job = jobs.submit("createZone", user, "zone.launch", {"wizard": ...},
                      instance_type="Zone", instance_id=zone.uuid)
    jobs.submit(..., queue=jobs.TRANSFERS)   # a long transfer: its own queue and pool
    jobs.progress(job, 40, "Adding the first host")   # from inside the handler

The terminal state is always recorded (a `finally`); a running job heart-beats,
and the reaper fails jobs whose worker stopped heart-beating, with a reason.

Long transfers (template/ISO downloads) go to the `transfers` queue, consumed by a
process of its own with a bounded thread pool, so they never hold a thread that VM
actions, the reaper or the expunge sweep need. One account runs at most
`concurrent.transfers.per.account` of them at once; its others wait their turn in the
queue (as CloudStack queues downloads rather than refusing the registration), leaving
the pool's threads to other accounts meanwhile.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import threading
import time
from datetime import timedelta
from typing import Any, Callable

import orjson
from flask import current_app, has_app_context
from prometheus_client import Histogram
from sqlalchemy import Select, bindparam, func, inspect, select, update
from sqlalchemy.orm import MANYTOONE, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from app.extensions import db
from app.jobs import JOBS, TRANSFERS  # noqa: F401  (callers name the queue as jobs.TRANSFERS)
from app.models import DOMAIN_ID, AsyncJob, JobStatus, cs_date, utcnow
from app.services import settings
from app.services.errors import ServiceError
from app.services.settings import Definition, define

log = logging.getLogger("nubo.jobs")

define(Definition("job.heartbeat.timeout", "60", "Seconds without a heartbeat after which the "
                  "reaper fails a running job (its worker is gone).", category="Jobs",
                  type="integer", min=10, max=86400, unit="seconds"))
define(Definition("job.queue.timeout", "3600", "Seconds a job may wait in the queue before the "
                  "reaper fails it.", category="Jobs", type="integer", min=60, max=604800, unit="seconds"))
define(Definition("concurrent.transfers.per.account", "2", "Template and ISO downloads one account may run "
                  "at once; its further downloads wait their turn in the transfer queue.", category="Jobs",
                  type="integer", min=1, max=1000))

JOB_SECONDS = Histogram("nubo_job_seconds", "Time a job ran, by handler and outcome", ["handler", "status"],
                        buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))

HEARTBEAT_SECONDS = 10
TRANSFER_WAIT_SECONDS = 3  # how often a transfer waiting for its account's turn looks again
_HANDLERS: dict[str, Callable[[AsyncJob, dict], Any]] = {}
# Handlers reviewed to run in a session that does not expire its objects on commit (issue 21):
# each of their reads after a commit either wants what it loaded before, or refreshes.
_NO_EXPIRY: set[str] = set()
# Clean-up run when the reaper fails a job of that handler (its worker died mid-way).
_REAP_HOOKS: dict[str, Callable[[AsyncJob], None]] = {}
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class JobLost(BaseException):
    """The job row is no longer pending: the reaper failed it while its worker still ran.

    Raised by progress(). Like asyncio's CancelledError it is a BaseException, so the
    handler's own `except Exception` / `except ServiceError` clean-up does not run (the
    reaper's clean-up already did, and what it freed may have a new owner, e.g. a retried
    download writing the same file); only `finally` blocks and context managers unwind."""


class ObjectResult:
    """A handler's answer object (a VM, a network, ...) to be put in CloudStack's shape when the
    job ends. The API layer registers how (set_formatter), so jobs and services never import it:
    return {"virtualmachine": ObjectResult("virtualmachine", vm)}."""

    __slots__ = ("kind", "obj")

    def __init__(self, kind: str, obj):
        self.kind, self.obj = kind, obj


_formatter: Callable[[str, object], dict] | None = None


def set_formatter(fn: Callable[[str, object], dict]) -> None:
    """The API layer's serializer for ObjectResult values (registered when the app is made)."""
    global _formatter
    _formatter = fn


def _formatted(out, in_hand: bool = False):
    """The handler's answer with its ObjectResult values serialised (top level of the dict).
    in_hand: a no-expiry handler's objects, still loaded as it left them: only their own row is
    read again (_reread), not every relation the answer shows."""
    if not isinstance(out, dict):
        return out
    done = {}
    for key, value in out.items():
        if isinstance(value, ObjectResult):
            if _formatter is None:
                raise RuntimeError("no result formatter registered (app.api not loaded)")
            # what the job left, not what was loaded before it (a tuple: each model in it)
            for obj in value.obj if isinstance(value.obj, tuple) else (value.obj,):
                if isinstance(obj, db.Model) and obj in db.session:
                    _reread(obj) if in_hand else db.session.refresh(obj)
            value = _formatter(value.kind, value.obj)
        done[key] = value
    return done


def _reread(obj) -> None:
    """obj's columns read again (one SELECT of its row: what the job, Core UPDATEs or another
    process left); a loaded many-to-one relation whose key changed meanwhile is expired (read
    when shown), the others are kept as loaded (a VM's zone, offering, template, NICs)."""
    state = inspect(obj)
    mapper = state.mapper
    db.session.refresh(obj, [p.key for p in mapper.column_attrs])
    stale = []
    for rel in mapper.relationships:
        if rel.direction is not MANYTOONE or rel.key not in state.dict:
            continue
        target = state.dict[rel.key]
        keys = tuple(getattr(obj, mapper.get_property_by_column(c).key) for c in rel.local_columns)
        ident = tuple(inspect(target).identity or ()) if target is not None else (None,) * len(keys)
        if keys != ident:
            stale.append(rel.key)
    if stale:
        db.session.expire(obj, stale)


def handler(name: str, *, expire_on_commit: bool = True):
    """Register a job handler. expire_on_commit=False runs it in a session whose commits do
    not expire what it loaded (no re-SELECT of the VM after each of its ~10 commits): only for
    handlers reviewed for it — a read after a commit sees what this session loaded or wrote,
    not what Core UPDATEs or other processes changed since; such reads must refresh (or run
    inside expiring())."""
    def decorate(fn):
        _HANDLERS[name] = fn
        if expire_on_commit:
            _NO_EXPIRY.discard(name)
        else:
            _NO_EXPIRY.add(name)
        return fn
    return decorate


@contextlib.contextmanager
def expiring():
    """Inside a no-expiry handler: a part written for expiry-on-commit (other services' steps,
    e.g. implementing a network) runs as it was written: everything loaded is expired first
    and each commit inside expires again."""
    session = db.session()
    before = session.expire_on_commit
    session.expire_all()
    session.expire_on_commit = True
    try:
        yield
    finally:
        session.expire_on_commit = before


@contextlib.contextmanager
def not_expiring(*, expire_after: bool = True):
    """The other way round, outside jobs: a request's path reviewed for it (vms.deploy, issue 21)
    runs with commits that do not expire what it loaded, so the caller, zone, template, offering,
    networks and the new VM are not re-read after each of its commits. The rule of
    handler(expire_on_commit=False) holds: a read after a commit sees what this session loaded or
    wrote, not what Core UPDATEs or other processes changed since; such reads refresh (or run
    inside expiring()). A rollback still expires everything.
    On the way out, a session that expired on commit before is expired as its last commit would
    have left it (its caller may read the VM its job has changed); expire_after=False leaves it as
    it is, for a caller that reads nothing changeable afterwards (the API command: the job's ids)."""
    session = db.session()
    before = session.expire_on_commit
    session.expire_on_commit = False
    try:
        yield
    finally:
        session.expire_on_commit = before
        if before and expire_after:
            session.expire_all()


def on_reap(name: str, hook: Callable[[AsyncJob], None]) -> None:
    """Register what to undo when a job of handler `name` is reaped."""
    _REAP_HOOKS[name] = hook


# Told when any job reached its terminal state (committed): hook(job_id, status, result, cmd)
# (cmd: the job's command when in hand, else None). Services register here (the alerts); the
# runner never imports them. A hook's probe(status, cmd), if it has one, reads (never writes)
# in the transaction that records the outcome, before its commit: the hook is called only if it
# answered True (most successes clear no alert: one SELECT there instead of a transaction after).
_FINISH_HOOKS: list[tuple[Callable[[int, int, Any, str | None], None], Callable[[int, str | None], bool] | None]] = []


def on_finish(hook: Callable[[int, int, Any, str | None], None],
              probe: Callable[[int, str | None], bool] | None = None) -> None:
    if all(h is not hook for h, _ in _FINISH_HOOKS):
        _FINISH_HOOKS.append((hook, probe))


def at_end(step: Callable[[], None]) -> None:
    """`step` (statements on the session, no commit of its own) written in the transaction that
    records the running job's outcome, whatever it is: one commit for both (a VM's lock given back
    with its job's end). Outside a job's run it runs now, committed."""
    from flask import g
    steps = g.get("nubo_job_end")
    if steps is None:
        step()
        db.session.commit()
    else:
        steps.append(step)


def _probed(status: int, cmd: str | None) -> list:
    """The finish hooks that have something to do (their probes run on the open transaction)."""
    due = []
    for hook, probe in _FINISH_HOOKS:
        try:
            if probe is None or probe(status, cmd):
                due.append(hook)
        except Exception:  # noqa: BLE001 - the hook itself looks again after the commit
            log.exception("job finish probe %s failed", getattr(probe, "__name__", probe))
            due.append(hook)
    return due


def _finished(job_id: int, status: int, result, cmd: str | None = None, due: list | None = None) -> None:
    for hook in (due if due is not None else [h for h, _ in _FINISH_HOOKS]):
        try:
            hook(job_id, status, result, cmd)
        except Exception:  # noqa: BLE001 - the job's outcome is recorded already
            db.session.rollback()
            log.exception("job %s: finish hook %s failed", job_id, getattr(hook, "__name__", hook))


def submit(cmd: str, user, handler_name: str, params: dict | None = None, *,
           instance_type: str | None = None, instance_id: str | None = None, queue: str = JOBS,
           with_job: Callable[[int], None] | None = None) -> AsyncJob:
    """Create the job row (committed) and enqueue its task on `queue` (JOBS or TRANSFERS).
    with_job(job id): more writes in the job row's transaction (committed with it, before the
    task is queued: the job cannot have run yet), e.g. a lock handed over to the job."""
    if handler_name not in _HANDLERS:
        raise RuntimeError(f"no job handler named {handler_name}")
    if queue not in (JOBS, TRANSFERS):
        raise RuntimeError(f"no job queue named {queue}")
    job = AsyncJob(cmd=cmd, user_id=getattr(user, "id", None), account_id=getattr(user, "account_id", None),
                   instance_type=instance_type, instance_id=instance_id, queue=queue,
                   params=json.dumps({"handler": handler_name, "params": params or {}}))
    db.session.add(job)
    db.session.flush()
    fixed = {name: getattr(job, name) for name in _JOB_FIXED}
    if with_job is not None:
        with_job(fixed["id"])
    db.session.commit()
    from app.jobs.tasks import run_job, run_transfer
    (run_transfer if queue == TRANSFERS else run_job)(fixed["id"])
    # End any read snapshot taken before the task ran (REPEATABLE READ on MariaDB),
    # so the caller sees the job as it is now (done already in immediate mode). Only what a
    # worker changes is read again, and only if the caller reads it: most answer the job's ids,
    # which are set back as they were written (a commit that expires everything expired them too).
    db.session.commit()
    _keep_ids(job, fixed)
    return job


def expire_all_but_ids(job: AsyncJob) -> None:
    """Everything in the session expired, as a commit that expires leaves it, but the fixed columns
    of a job just submitted (its ids, command, owner), which submit sets back after its commit: an
    answer that names the job reads nothing again."""
    fixed = {name: getattr(job, name) for name in _JOB_FIXED}  # loaded: submit set them
    db.session.expire_all()
    _keep_ids(job, fixed)


def _keep_ids(job: AsyncJob, fixed: dict) -> None:
    for name, value in fixed.items():
        set_committed_value(job, name, value)
    db.session.expire(job, _JOB_MUTABLE)


# What a worker writes on a job row; every other column is fixed at submit.
_JOB_MUTABLE = ["status", "progress", "progress_message", "steps", "result_code", "result_type", "result",
                "started", "completed", "worker", "heartbeat"]
_JOB_FIXED = [a.key for a in AsyncJob.__mapper__.column_attrs if a.key not in _JOB_MUTABLE]


def _progress_values(percent: int, message: str | None, steps: list | None) -> dict[str, Any]:
    values: dict[str, Any] = {"progress": max(0, min(100, int(percent))), "heartbeat": utcnow()}
    if message is not None:
        values["progress_message"] = message[:1024]
    if steps is not None:
        values["steps"] = json.dumps(steps)
    return values


def _lost(job: AsyncJob) -> JobLost:
    # Reaped (or finished) under us: stop here rather than keep acting on what the
    # reaper's clean-up already gave back.
    return JobLost(f"Job {job.uuid} was ended while it ran (reaped); its work stops here")


def progress_with(job: AsyncJob, percent: int, message: str | None = None) -> None:
    """progress() in the session's transaction, which the caller commits at once (the planner's
    hold: the host and the step show together, one commit fewer). Not for a transaction that
    stays open across a host's work: its lock on the job's row would hold up the heartbeat."""
    from app.services import changes
    if not changes.update_row(AsyncJob, job.id, AsyncJob.status == JobStatus.PENDING,
                              known=(job.uuid, job.account_id), **_progress_values(percent, message, None)):
        raise _lost(job)


def progress(job: AsyncJob, percent: int, message: str | None = None, steps: list | None = None) -> None:
    """Record progress (and a heartbeat) in its own short transaction."""
    values = _progress_values(percent, message, steps)
    from app.services import changes
    with db.engine.begin() as conn:
        res = conn.execute(update(AsyncJob).where(AsyncJob.id == job.id, AsyncJob.status == JobStatus.PENDING)
                           .values(**values))
        if res.rowcount:  # the job's progress widgets hear of it (a Core UPDATE: no ORM hook sees it)
            changes.publish_on(conn, "job", job.uuid, job.account_id)
    if res.rowcount:
        changes.committed()
    if res.rowcount == 0:
        raise _lost(job)


def _heartbeat(app, job_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        with app.app_context():
            with db.engine.begin() as conn:
                conn.execute(update(AsyncJob).where(AsyncJob.id == job_id,
                                                    AsyncJob.status == JobStatus.PENDING)
                             .values(heartbeat=utcnow()))


def _claim(job_id: int) -> AsyncJob | None:
    """The job, claimed for this worker (committed); None if it was reaped, is gone or another
    worker has it. Claimed first, read after: one `UPDATE … RETURNING` where the database has it
    (PostgreSQL, SQLite), the row then put in the session as loaded (no SELECT of it); MariaDB
    has no UPDATE … RETURNING: the UPDATE, then the row read."""
    t = AsyncJob.__table__
    claim = update(t).where(t.c.id == job_id, t.c.started.is_(None), t.c.status == JobStatus.PENDING).values(
        started=utcnow(), heartbeat=utcnow(), worker=WORKER_ID)
    conn = db.session.connection()
    if not conn.dialect.update_returning:
        claimed = conn.execute(claim).rowcount
        db.session.commit()
        return db.session.get(AsyncJob, job_id) if claimed == 1 else None
    row = conn.execute(claim.returning(*t.c)).first()
    db.session.commit()
    if row is None:
        return None
    mapper = inspect(AsyncJob)
    values = {mapper.get_property_by_column(c).key: row._mapping[c] for c in t.c}
    job = db.session.identity_map.get(mapper.identity_key_from_primary_key((job_id,)))
    if job is not None:  # run in the session that holds it (a test's): brought up to date
        for key, value in values.items():
            set_committed_value(job, key, value)
        return job
    job = AsyncJob(**values)
    make_transient_to_detached(job)  # as if loaded: persistent once added, every column in hand
    db.session.add(job)
    return job


def execute(job_id: int) -> float | None:
    """Run one job to a terminal state (called by the huey task with an app context).
    Returns the seconds after which to try again when a transfer must wait its turn."""
    job = _claim(job_id)
    if job is None:
        return None
    job_uuid, account_id, cmd = job.uuid, job.account_id, job.cmd  # in hand for the end
    if job.queue == TRANSFERS and job.account_id is not None and not _transfer_turn(job):
        return TRANSFER_WAIT_SECONDS
    spec = json.loads(job.params or "{}")
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(current_app._get_current_object(), job_id, stop),
                            daemon=True)
    beat.start()
    status, code, result = JobStatus.FAILED, 530, {"errorcode": 530, "errortext": "Job did not finish"}
    t0 = time.monotonic()
    from flask import g
    from app.models import User
    g.caller = db.session.get(User, job.user_id) if job.user_id else None  # whom the result is for
    session = db.session()
    in_hand = spec["handler"] in _NO_EXPIRY
    session.expire_on_commit = not in_hand  # this job's own session (a fresh context)
    g.nubo_job_end = []  # at_end's steps
    try:
        out = _HANDLERS[spec["handler"]](job, spec.get("params", {}))
        # What a handler left uncommitted is not its outcome. Handlers end with a commit, so this
        # is a pass-through (nothing expired); the answer's reads then open the transaction that
        # records the outcome below.
        db.session.rollback()
        out = _formatted(out, in_hand)
        status, code, result = JobStatus.SUCCEEDED, 0, out if out is not None else {}
    except JobLost as e:
        db.session.rollback()
        result = {"errorcode": 530, "cserrorcode": 4250, "errortext": str(e)}  # the reaper's result stays
    except ServiceError as e:
        db.session.rollback()
        code, result = e.code, {"errorcode": e.code, "cserrorcode": e.cs_code, "errortext": e.message}
    except Exception as e:  # noqa: BLE001 - recorded, never lost
        db.session.rollback()
        log.exception("job %s (%s) failed", job_id, cmd)
        result = {"errorcode": 530, "cserrorcode": 4250, "errortext": f"Internal error: {e}"}
    finally:
        session.expire_on_commit = True
        stop.set()
        JOB_SECONDS.labels(spec["handler"], "succeeded" if status == JobStatus.SUCCEEDED else "failed").observe(
            time.monotonic() - t0)
        if status != JobStatus.SUCCEEDED:  # (a success's transaction holds only its answer's reads)
            db.session.rollback()
        steps, g.nubo_job_end = g.nubo_job_end, None
        for step in steps:  # with the outcome, even a discarded one (each step is guarded itself)
            step()
        # Only a job still pending and still ours gets the outcome: one the reaper failed
        # while this worker was stalled keeps the reaper's result (its clean-up already ran).
        # A Core UPDATE on the session's transaction: the change is published from what is in
        # hand, only if it happened (the ORM hook would read the row first).
        t = AsyncJob.__table__
        done = db.session.connection().execute(update(t).where(
            t.c.id == job_id, t.c.status == JobStatus.PENDING, t.c.worker == WORKER_ID).values(
            status=status, result_code=code, result=json.dumps(result), completed=utcnow(),
            progress=100 if status == JobStatus.SUCCEEDED else t.c.progress))
        due = []
        if done.rowcount == 1:
            from app.services import changes
            changes.publish("job", job_uuid, account_id)
            due = _probed(status, cmd)
        db.session.commit()
        if done.rowcount != 1:
            log.warning("job %s (%s) ended after it was reaped; its outcome (%s) is discarded",
                        job_id, cmd, result.get("errortext", "success") if isinstance(result, dict) else result)
        elif due:
            _finished(job_id, status, result, cmd, due)


def _transfer_turn(job: AsyncJob) -> bool:
    """Whether this claimed transfer may run now under its account's limit; if not, the
    claim is given back (the job waits in the queue, its thread is free for others).

    Claim first, count after: a job runs only if the account's claimed transfers, itself
    included, are within the limit. Of any set running together, the one that counted
    last saw all the others claimed, so no interleaving lets more than the limit run
    (at worst two back off at once and both look again)."""
    running = db.session.scalar(select(func.count()).select_from(AsyncJob).where(
        AsyncJob.account_id == job.account_id, AsyncJob.queue == TRANSFERS,
        AsyncJob.status == JobStatus.PENDING, AsyncJob.started.is_not(None)))
    if running <= settings.get("concurrent.transfers.per.account"):
        return True
    # Back to waiting: `heartbeat` notes when it last looked, so the queue-timeout reaper
    # counts from there, not from when the download was asked for.
    db.session.execute(update(AsyncJob).where(AsyncJob.id == job.id, AsyncJob.worker == WORKER_ID,
                                              AsyncJob.status == JobStatus.PENDING)
                       .values(started=None, worker=None, heartbeat=utcnow())
                       .execution_options(synchronize_session=False))
    db.session.commit()
    log.info("job %s waits: account %s runs %s transfers already", job.id, job.account_id, running - 1)
    return False


def reap(now=None) -> int:
    """Fail jobs whose worker stopped heart-beating, or that waited too long in the queue."""
    now = now or utcnow()
    stale = now - timedelta(seconds=settings.get("job.heartbeat.timeout"))
    queued = now - timedelta(seconds=settings.get("job.queue.timeout"))
    reaped = 0
    for reason, cond in (
        ("the worker running this job stopped (no heartbeat)",
         (AsyncJob.started.is_not(None)) & (AsyncJob.heartbeat < stale)),
        ("the job was never picked up by a worker",
         AsyncJob.started.is_(None) & (func.coalesce(AsyncJob.heartbeat, AsyncJob.created) < queued)),
    ):
        ids = list(db.session.scalars(select(AsyncJob.id).where(AsyncJob.status == JobStatus.PENDING, cond)))
        for job_id in ids:
            res = db.session.execute(update(AsyncJob).where(AsyncJob.id == job_id,
                                                             AsyncJob.status == JobStatus.PENDING)
                                     .values(status=JobStatus.FAILED, result_code=530, completed=now,
                                             result=json.dumps({"errorcode": 530, "errortext": f"Job failed: {reason}"}))
                                     .execution_options(synchronize_session=False))
            reaped += res.rowcount
            log.warning("reaped job %s: %s", job_id, reason)
            db.session.commit()
            if res.rowcount:
                _after_reap(job_id)
                _finished(job_id, JobStatus.FAILED, {"errorcode": 530, "errortext": f"Job failed: {reason}"})
    db.session.commit()
    return reaped


def _after_reap(job_id: int) -> None:
    job = db.session.get(AsyncJob, job_id)
    hook = _REAP_HOOKS.get(json.loads(job.params or "{}").get("handler", ""))
    if hook is None:
        return
    try:
        hook(job)
    except Exception:  # noqa: BLE001 - the job stays failed; the clean-up problem is logged
        db.session.rollback()
        log.exception("clean-up after reaping job %s failed", job_id)


def job_result(j: AsyncJob) -> dict:
    """The CloudStack shape of a job (queryAsyncJobResult / listAsyncJobs) loaded as an object."""
    from app.models import Account, User
    acct = db.session.get(Account, j.account_id) if j.account_id else None
    return answer_of((j.uuid, j.cmd, j.status, j.result_code, j.result_type, j.instance_type, j.instance_id,
                      j.created, j.completed, j.result, acct.uuid if acct else None, acct.name if acct else None,
                      acct.domain.uuid if acct else None,
                      db.session.get(User, j.user_id).uuid if j.user_id else None))


@functools.cache
def answer_select() -> Select:
    """A job's answer as one row (answer_of reads it), its account's, domain's and user's public
    ids joined in: the API only serialises jobs, so no objects are made (queryAsyncJobResult, the
    command clients poll, 5.2 → 4.75 million instructions a call; listAsyncJobs of 50 jobs 32.6 →
    24.3: bench/instructions_bench.py). Add WHERE and ORDER BY;
    the last two columns are the job's `account_id` and `job_id`, by name."""
    from app.models import Account, Domain, User
    return (select(AsyncJob.uuid, AsyncJob.cmd, AsyncJob.status, AsyncJob.result_code, AsyncJob.result_type,
                   AsyncJob.instance_type, AsyncJob.instance_id, AsyncJob.created, AsyncJob.completed,
                   AsyncJob.result, Account.uuid, Account.name, Domain.uuid, User.uuid,
                   AsyncJob.account_id.label("account_id"), AsyncJob.id.label("job_id"))
            .outerjoin(Account, Account.id == AsyncJob.account_id)
            .outerjoin(Domain, Domain.id == Account.domain_id)
            .outerjoin(User, User.id == AsyncJob.user_id))


@functools.cache
def _answer_by_uuid() -> Select:
    return answer_select().where(AsyncJob.uuid == bindparam("uuid"))


def answer_row(uuid: str):
    """The answer row (answer_select) of the job with this public id, or None."""
    # On the session's connection: a Core row needs none of the ORM's execution steps.
    return db.session.connection().execute(_answer_by_uuid(), {"uuid": uuid}).first()


def answer_of(r) -> dict:
    """The CloudStack shape of a job from an answer_select row."""
    out: dict[str, Any] = {
        "jobid": r[0], "cmd": r[1], "jobstatus": r[2], "jobprocstatus": 0, "jobresultcode": r[3],
        "jobresulttype": r[4], "jobinstancetype": r[5], "jobinstanceid": r[6], "created": cs_date(r[7]),
        "completed": cs_date(r[8]), "domainid": r[12] or DOMAIN_ID,
    }
    if r[10] is not None:
        out["accountid"], out["account"] = r[10], r[11]
    if r[13] is not None:
        out["userid"] = r[13]
    if r[2] != JobStatus.PENDING and r[9]:
        out["jobresult"] = orjson.loads(r[9])  # listAsyncJobs: 50 VM answers a page
    return out


def app_for_worker():
    """The Flask app a task runs in: the current one (immediate mode, tests) or the worker's."""
    if has_app_context():
        return current_app._get_current_object()
    from app.jobs import worker
    return worker.get_app()
