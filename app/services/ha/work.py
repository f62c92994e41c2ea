"""The HA work rows (app/models/ha.py): written when a host goes Down, worked off by every
monitor sweep (CloudStack's HA worker threads on op_ha_work), so that a monitor killed at
any step leaves rows the next sweep finishes:

- Scheduled (due): the VM is Stopped and free → a start job (vm.start, restricted to the
  dead host's cluster) is submitted and the row is Restarting with the job's id;
- Restarting: the job succeeded → Done (event, alert); failed → Scheduled again after
  restart.retry.interval, Error after max.retries; a row claimed by a monitor that died
  before submitting its job goes back to Scheduled;
- a returned host's copies of VMs the database places elsewhere are destroyed there
  (fence_returned) before the sweep reads its VM states.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from datetime import timedelta

from sqlalchemy import delete, select, update

from app.extensions import db
from app.models import (FINAL_STEPS, AsyncJob, HaStep, HaWork, HaWorkType, Host, JobStatus, VirtualMachine,
                        VMState, utcnow)
from app.services import events, settings

log = logging.getLogger("nubo.ha")

# VM states a Down host's VMs may be in (the monitor's WATCHED).
_ON_HOST = (VMState.RUNNING, VMState.STOPPED, VMState.UNKNOWN, VMState.STARTING, VMState.STOPPING)
# A row claimed for a start whose job was never recorded (its monitor died): free again after this.
CLAIM_SECONDS = 120


def host_down(host: Host, verdict) -> int:
    """`host` goes Down now (its VMs are still on it): one row per VM. Its HA-enabled VMs are
    scheduled for a restart when the investigation judged it dead (`verdict.dead`); otherwise,
    and for the others, the row only marks the VM as taken from the host. Returns the VMs
    scheduled. Commits nothing itself (the sweep's transaction does)."""
    judged = verdict is not None and verdict.dead is True
    now = utcnow()
    scheduled, kept = [], []
    for vm in db.session.scalars(select(VirtualMachine).where(
            VirtualMachine.host_id == host.id, VirtualMachine.removed.is_(None),
            VirtualMachine.state.in_(_ON_HOST)).order_by(VirtualMachine.id)):
        restart, why = False, None
        if vm.ha_enable:
            if vm.service_offering.storage_type == "local":
                why = "its root disk is on the host's local storage: its fate is tied to the host"
            elif not judged:
                why = f"its host's death is not confirmed ({verdict.reason if verdict else 'not investigated'})"
            else:
                restart = True
        db.session.add(HaWork(vm_id=vm.id, host_id=host.id, work_type=HaWorkType.HA if restart else HaWorkType.STOP,
                              step=HaStep.SCHEDULED if restart else (HaStep.CANCELLED if why else HaStep.DONE),
                              previous_state=vm.state, time_to_try=now, reason=why))
        if restart:
            scheduled.append(vm.name)
        elif why:
            kept.append(vm.name)
            events.record("VM.HA", f"VM {vm.name} is not restarted elsewhere: {why}", level="WARN",
                          resource_type="VirtualMachine", resource_id=vm.uuid, account_id=vm.account_id)
    if scheduled:
        events.record("HA.HOST.DOWN", f"Host {host.name} is Down ({verdict.reason}): starting HA on the following "
                      f"VMs: {', '.join(scheduled)}", level="WARN", resource_type="Host", resource_id=host.uuid)
    return len(scheduled)


def sweep(answers: list) -> list:
    """The monitor's one call per sweep, with the hosts' VM answers (monitor.vms.probe_vms
    tuples): copies left on returned hosts destroyed (and taken out of the answers), then the
    HA work. Each part on its own: a failure is logged and the sweep goes on."""
    try:
        answers = fence_returned(answers)
    except Exception:  # noqa: BLE001
        log.exception("clearing returned hosts failed")
        db.session.rollback()
    try:
        process(skip_hosts={a[0] for a in answers})
    except Exception:  # noqa: BLE001
        log.exception("HA work failed")
        db.session.rollback()
    return answers


# --- A Down host answers again ----------------------------------------------------------------

def fence_returned(answers: list) -> list:
    """For each answering host with uncleared rows: a domain of a VM that the database places
    on another host (or has removed) is destroyed and undefined there, never restarted; the
    answers then no longer show it. A VM still being worked on (a job, a migration) waits."""
    from app.services import hypervisors as hv
    from app.services.hosts import connection_for
    ids = [a[0] for a in answers]
    if not ids:
        return answers
    rows = list(db.session.scalars(select(HaWork).where(HaWork.host_id.in_(ids), HaWork.host_cleared.is_(False))))
    if not rows:
        return answers
    by_host: dict[int, list[HaWork]] = defaultdict(list)
    for r in rows:
        by_host[r.host_id].append(r)
    doomed: list[tuple[Host, HaWork, VirtualMachine]] = []
    for host_id, seen, _, _ in answers:
        for row in by_host.get(host_id, ()):
            vm = row.vm
            if vm.instance_name not in seen or vm.host_id == host_id:
                row.host_cleared = True  # nothing left there, or it is rightly there again
            elif vm.removed is None and vm.host_id is None:
                # Placed nowhere: a running copy is adopted by the sweep (the VM runs again); done
                # once no restart is pending.
                if vm.active_job_id is None and row.step in FINAL_STEPS:
                    row.host_cleared = True
            elif vm.active_job_id is None and vm.state != VMState.MIGRATING:
                doomed.append((row.host, row, vm))
    work = [(h.hypervisor_type, connection_for(h), h.name, vm.instance_name) for h, _, vm in doomed]
    db.session.commit()  # nothing held while the hosts work
    gone: set[tuple[int, str]] = set()
    for (host, row, vm), (type_name, conn, host_name, name) in zip(doomed, work):
        try:
            driver = hv.driver_for(type_name, conn)
            try:
                driver.destroy_vm(name)
            finally:
                driver.close()
        except Exception as e:  # noqa: BLE001 - tried again next sweep
            log.warning("could not destroy the copy of %s on %s: %s", name, host_name, e)
            continue
        gone.add((host.id, name))
        row.host_cleared = True
        where = f"it runs on {vm.host.name}" if vm.host_id and vm.removed is None else "it was removed meanwhile"
        events.record("VM.HA", f"VM {vm.name}: the copy left on {host_name} (Down since it was fenced) was "
                      f"destroyed there, not restarted: {where}", level="WARN", resource_type="VirtualMachine",
                      resource_id=vm.uuid, account_id=vm.account_id)
    db.session.commit()
    if not gone:
        return answers
    out = []
    for host_id, seen, error, stats in answers:
        if seen is not None and any(h == host_id for h, _ in gone):
            seen = {n: s for n, s in seen.items() if (host_id, n) not in gone}
            stats = {n: s for n, s in (stats or {}).items() if (host_id, n) not in gone}
        out.append((host_id, seen, error, stats))
    return out


# --- Restarts ---------------------------------------------------------------------------------

def process(now=None, skip_hosts: set[int] = frozenset()) -> int:
    """Follow the restarts under way, then start what is due. Rows of a host that answers
    again (skip_hosts) wait one sweep: a copy still running there is adopted first. Returns
    the restarts submitted."""
    now = now or utcnow()
    for row in list(db.session.scalars(select(HaWork).where(HaWork.step == HaStep.RESTARTING))):
        _follow(row, now)
    submitted = 0
    due = list(db.session.scalars(select(HaWork).where(HaWork.step == HaStep.SCHEDULED, HaWork.time_to_try <= now)
                                  .order_by(HaWork.id)))
    for row in due:
        if row.host_id in skip_hosts:
            continue
        vm = row.vm
        if vm.removed is not None or vm.state in (VMState.DESTROYED, VMState.EXPUNGING, VMState.ERROR):
            _end(row, HaStep.CANCELLED, f"VM is {vm.state}")
        elif vm.state == VMState.RUNNING:
            if vm.host_id == row.host_id:
                _end(row, HaStep.CANCELLED, "it runs on its host again")
            else:
                _end(row, HaStep.DONE, f"already running on {vm.host.name if vm.host else '?'}")
        elif vm.active_job_id is not None or vm.state != VMState.STOPPED:
            continue  # another action, or not marked Stopped yet: next sweep
        elif not vm.ha_enable:
            _end(row, HaStep.CANCELLED, "HA was disabled on the VM")
        else:
            submitted += _restart(row, vm, now)
    db.session.commit()
    _purge()
    return submitted


def _end(row: HaWork, step: str, reason: str) -> None:
    row.step, row.reason = step, reason[:1024]
    db.session.commit()


def _restart(row: HaWork, vm: VirtualMachine, now) -> int:
    """Claim the row (one monitor), lock the VM, submit its start job on the dead host's cluster."""
    from app.jobs import service as jobs
    from app.services import vms
    from app.services.errors import ServiceError
    claimed = db.session.execute(update(HaWork).where(HaWork.id == row.id, HaWork.step == HaStep.SCHEDULED).values(
        step=HaStep.RESTARTING, taken=now, job_id=None, times_tried=HaWork.times_tried + 1)
        .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    if not claimed:
        return 0
    db.session.refresh(row)
    dead = row.host
    try:
        token = vms.lock(vm, "start", (VMState.STOPPED,))
    except ServiceError as e:  # taken by an action meanwhile: next sweep
        row.step, row.times_tried, row.reason = HaStep.SCHEDULED, row.times_tried - 1, e.message[:1024]
        db.session.commit()
        return 0
    events.record("VM.HA", f"HA restarting VM {vm.name} (it ran on {dead.name}, which is Down) on another host "
                  f"of cluster {dead.cluster.name}, try {row.times_tried} of {settings.get('max.retries')}",
                  level="WARN", resource_type="VirtualMachine", resource_id=vm.uuid, account_id=vm.account_id)
    db.session.commit()
    try:
        job = jobs.submit("startVirtualMachine", None, "vm.start",
                          {"vm": vm.uuid, "token": token, "host": None, "cluster": dead.cluster_id},
                          instance_type="VirtualMachine", instance_id=vm.uuid)
    except Exception:
        vms.unlock(vm.id, token)
        row.step, row.reason = HaStep.SCHEDULED, "the start job could not be submitted"
        db.session.commit()
        raise
    vms.hand_lock(vm.id, token, job.id)
    row = db.session.get(HaWork, row.id)
    row.job_id = job.id
    db.session.commit()
    _follow(row, now)  # already done where jobs run in-process
    return 1


def _follow(row: HaWork, now) -> None:
    from app.services import alerts
    if row.job_id is None:
        if row.taken is None or row.taken <= now - timedelta(seconds=CLAIM_SECONDS):
            row.step, row.reason = HaStep.SCHEDULED, "its monitor stopped before the start job was submitted"
            db.session.commit()
        return
    job = db.session.get(AsyncJob, row.job_id)
    if job is not None and job.status == JobStatus.PENDING:
        return
    vm = db.session.get(VirtualMachine, row.vm_id)
    db.session.refresh(vm)
    dead = row.host
    where = {"zone_id": vm.zone_id, "resource": ("VirtualMachine", vm.uuid)}
    if job is not None and job.status == JobStatus.SUCCEEDED and vm.state == VMState.RUNNING and vm.host_id:
        row.step, row.reason = HaStep.DONE, f"restarted on {vm.host.name}"
        events.record("VM.HA", f"VM {vm.name} restarted on {vm.host.name} by HA (its host {dead.name} is Down)",
                      resource_type="VirtualMachine", resource_id=vm.uuid, account_id=vm.account_id)
        alerts.clear(alerts.USERVM, **where)
        alerts.raise_alert(alerts.USERVM, f"HA starting VM: {vm.name} ({vm.instance_name})",
                           content=f"VM {vm.name} ran on host {dead.name}, which is Down; it runs on {vm.host.name} "
                                   "now", **where)
        db.session.commit()
        return
    why = _job_error(job) if job is not None else "its start job is gone"
    last = row.times_tried >= settings.get("max.retries")
    row.step = HaStep.ERROR if last else HaStep.SCHEDULED
    row.reason = why[:1024]
    row.job_id, row.taken = None, None
    row.time_to_try = now + timedelta(seconds=settings.get("restart.retry.interval"))
    events.record("VM.HA", f"HA could not restart VM {vm.name} (try {row.times_tried}): {why}"
                  + ("; giving up (max.retries)" if last else
                     f"; trying again in {settings.get('restart.retry.interval')} s"),
                  level="ERROR", resource_type="VirtualMachine", resource_id=vm.uuid, account_id=vm.account_id)
    alerts.raise_alert(alerts.USERVM, f"Unable to restart {vm.name} which was running on host {dead.name}",
                       content=why, **where)
    db.session.commit()


def _job_error(job: AsyncJob) -> str:
    try:
        result = json.loads(job.result or "{}")
    except ValueError:
        return job.result or "the start failed"
    return str(result.get("errortext") or result or "the start failed")


def _purge() -> None:
    """Rows whose work is over and whose host holds no copy any more (or is removed)."""
    removed = select(Host.id).where(Host.removed.is_not(None))
    db.session.execute(delete(HaWork).where(HaWork.step.in_(FINAL_STEPS), HaWork.host_cleared.is_(True))
                       .execution_options(synchronize_session=False))
    db.session.execute(delete(HaWork).where(HaWork.step.in_(FINAL_STEPS), HaWork.host_id.in_(removed))
                       .execution_options(synchronize_session=False))
    db.session.commit()


def pending(vm_id: int) -> HaWork | None:
    """The VM's HA work under way, if any (for pages and the API)."""
    return db.session.scalar(select(HaWork).where(HaWork.vm_id == vm_id, HaWork.step.in_(
        (HaStep.SCHEDULED, HaStep.RESTARTING))).order_by(HaWork.id.desc()).limit(1))
