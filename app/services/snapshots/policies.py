"""Snapshot policies: a volume's HOURLY/DAILY/WEEKLY/MONTHLY schedule in a time zone and the
number of its snapshots kept (maxsnaps). One policy per volume and interval type: creating
one for an interval the volume already has replaces its schedule, as CloudStack does.

The worker's periodic task (app/jobs/tasks.py) runs `run_due` every minute: each policy
whose next run has passed is claimed by one guarded UPDATE (so two workers never take the
same run), its next run set to the first slot after now — so runs missed while nothing
ran are caught up once, not once per missed slot — and a snapshot is taken. When that
snapshot is backed up, the oldest of the volume's snapshots of that interval beyond
maxsnaps are deleted.
"""
from __future__ import annotations

import logging

from sqlalchemy import delete, select, update

from app.extensions import db
from app.jobs import service as jobs
from app.models import (Account, Snapshot, SnapshotPolicy, SnapshotState, User, Volume, VolumeState,
                        new_uuid, utcnow)
from app.services import access, events, volumes
from app.services.errors import InvalidParameter, NotFound, ServiceError
from app.services.pagination import page_of
from app.services.settings import Definition, define
from app.services.snapshots import schedule as sched
from app.services.snapshots import volume as snaps

log = logging.getLogger("nubo.snapshots")

for _interval, _default in (("hourly", "8"), ("daily", "8"), ("weekly", "8"), ("monthly", "8")):
    define(Definition(f"snapshot.max.{_interval}", _default, f"Most {_interval} scheduled snapshots a policy "
                      "may keep (maxsnaps).", category="Snapshots", type="integer", min=1, max=1000))


def _visible(caller):
    return select(SnapshotPolicy).where(access.owned(caller, SnapshotPolicy.account_id))


def get_policy(caller, uuid: str, field: str = "id") -> SnapshotPolicy:
    p = db.session.scalar(_visible(caller).where(SnapshotPolicy.uuid == uuid))
    if p is None:
        raise NotFound("Unable to find snapshot policy with the specified id", field=field)
    return p


def schedule_of(p: SnapshotPolicy) -> sched.Schedule:
    return sched.parse(p.interval_type, p.schedule, p.timezone)


def create_policy(caller, *, volume_uuid: str, interval_type: str, schedule: str, timezone: str | None,
                  max_snaps: int, display: bool | None = None) -> SnapshotPolicy:
    from app.services import settings
    volume = volumes.get_volume(caller, volume_uuid, "volumeid")
    interval = sched.interval_of(interval_type)
    parsed = sched.parse(interval, schedule, timezone or "UTC")
    if max_snaps is None or int(max_snaps) < 1:
        raise InvalidParameter("maxsnaps should be greater than 0", field="maxsnaps")
    most = settings.get(f"snapshot.max.{interval.lower()}")
    if int(max_snaps) > most:
        raise InvalidParameter(f"maxSnaps exceeds limit: {most} for interval type: {interval}", field="maxsnaps")
    if volume.state != VolumeState.READY:
        raise InvalidParameter(f"VolumeId: {volume.uuid} is not in {VolumeState.READY} state but {volume.state}. "
                               "Cannot take snapshot.", field="volumeid")
    snaps.check_supported(snaps.type_of(volume))
    p = db.session.scalar(select(SnapshotPolicy).where(SnapshotPolicy.volume_id == volume.id,
                                                       SnapshotPolicy.interval_type == interval))
    now = utcnow()
    if p is None:
        p = SnapshotPolicy(uuid=new_uuid(), account_id=volume.account_id, volume_id=volume.id, interval_type=interval)
        db.session.add(p)
        what = "created"
    else:
        what = "updated"
    p.schedule, p.timezone, p.max_snaps = schedule.strip(), parsed.tz, int(max_snaps)
    if display is not None:
        p.display = bool(display)
    p.next_run = parsed.next_after(now)
    events.record("SNAPSHOTPOLICY.CREATE" if what == "created" else "SNAPSHOTPOLICY.UPDATE",
                  f"Snapshot policy {interval} {p.schedule} ({p.timezone}) of volume {volume.name} {what}",
                  user=caller, account_id=volume.account_id, resource_type="SnapshotPolicy", resource_id=p.uuid)
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return p


def update_policy(caller, uuid: str, *, display: bool | None = None) -> SnapshotPolicy:
    """updateSnapshotPolicy: CloudStack changes only fordisplay (and customid) here."""
    p = get_policy(caller, uuid)
    if display is not None:
        p.display = bool(display)
    events.record("SNAPSHOTPOLICY.UPDATE", f"Snapshot policy {p.uuid} updated", user=caller, account_id=p.account_id,
                  resource_type="SnapshotPolicy", resource_id=p.uuid)
    db.session.commit()
    return p


def delete_policies(caller, *, id: str | None = None, ids: list[str] | None = None) -> None:
    wanted = [x for x in ([id] if id else []) + list(ids or []) if x]
    if not wanted:
        raise InvalidParameter("Either id or ids parameter must be specified", field="id")
    rows = [get_policy(caller, u) for u in wanted]  # every one checked before any goes
    for p in rows:
        events.record("SNAPSHOTPOLICY.DELETE", f"Snapshot policy {p.interval_type} of volume {p.volume.name} deleted",
                      user=caller, account_id=p.account_id, resource_type="SnapshotPolicy", resource_id=p.uuid)
        db.session.execute(update(Snapshot).where(Snapshot.policy_id == p.id).values(policy_id=None)
                           .execution_options(synchronize_session=False))
        db.session.delete(p)
    db.session.commit()


def list_policies(caller, *, id=None, volume_uuid=None, display=None, tags=None, page=None):
    from app.services import tags as tagging
    q = _visible(caller).join(Volume, Volume.id == SnapshotPolicy.volume_id).where(Volume.removed.is_(None)) \
        .order_by(SnapshotPolicy.id)
    if id:
        q = q.where(SnapshotPolicy.uuid == id)
    if volume_uuid:
        q = q.where(SnapshotPolicy.volume_id == volumes.get_volume(caller, volume_uuid, "volumeid").id)
    if display is not None:
        q = q.where(SnapshotPolicy.display.is_(bool(display)))
    return page_of(tagging.matching(q, "SnapshotPolicy", SnapshotPolicy.id, tags), page)


def policies_of_volume(caller, volume: Volume) -> list[SnapshotPolicy]:
    return list(db.session.scalars(_visible(caller).where(SnapshotPolicy.volume_id == volume.id)
                                   .order_by(SnapshotPolicy.id)))


# --- The scheduler ---------------------------------------------------------------------

def _owner_user(account_id: int) -> User | None:
    return db.session.scalar(select(User).where(User.account_id == account_id, User.removed.is_(None))
                             .order_by(User.id))


def run_due(now=None) -> int:
    """Take one snapshot for every policy whose time has come (a missed run once); returns how many
    snapshots were requested."""
    now = now or utcnow()
    taken = 0
    due = db.session.execute(select(SnapshotPolicy.id, SnapshotPolicy.next_run)
                             .where(SnapshotPolicy.next_run <= now).order_by(SnapshotPolicy.next_run)).all()
    db.session.commit()
    for policy_id, next_run in due:
        p = db.session.get(SnapshotPolicy, policy_id)
        if p is None:
            continue
        volume = db.session.get(Volume, p.volume_id)
        if volume is None or volume.removed is not None:
            db.session.execute(delete(SnapshotPolicy).where(SnapshotPolicy.id == policy_id))
            db.session.commit()  # the volume is gone: so is its schedule, as in CloudStack
            continue
        following = schedule_of(p).next_after(now)
        claimed = db.session.execute(update(SnapshotPolicy).where(SnapshotPolicy.id == policy_id,
                                                                  SnapshotPolicy.next_run == next_run)
                                     .values(next_run=following, last_run=now)
                                     .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
        if claimed != 1:
            continue  # another worker took this run
        p = db.session.get(SnapshotPolicy, policy_id)
        account = db.session.get(Account, p.account_id)
        user = _owner_user(p.account_id)
        try:
            s = snaps.allocate(p.account_id, db.session.get(Volume, p.volume_id), policy=p, user=user)
        except ServiceError as e:
            db.session.rollback()
            events.record("SNAPSHOT.CREATE", f"Scheduled {p.interval_type} snapshot of volume {volume.name} "
                          f"not taken: {e.message}", account_id=p.account_id, level="WARN",
                          resource_type="SnapshotPolicy", resource_id=p.uuid, commit=True)
            log.warning("policy %s of account %s: %s", p.uuid, account.name if account else "?", e.message)
            continue
        jobs.submit("createSnapshot", user, "snapshot.create", {"id": s.uuid}, instance_type="Snapshot",
                    instance_id=s.uuid)
        taken += 1
    return taken


def prune(policy_id: int) -> int:
    """Delete the oldest backed-up snapshots of the policy's volume and interval beyond maxsnaps."""
    p = db.session.get(SnapshotPolicy, policy_id)
    if p is None:
        return 0
    rows = list(db.session.scalars(select(Snapshot).where(
        Snapshot.volume_id == p.volume_id, Snapshot.snapshot_type == p.interval_type, Snapshot.removed.is_(None),
        Snapshot.state == SnapshotState.BACKED_UP).order_by(Snapshot.created.desc(), Snapshot.id.desc())))
    gone = 0
    for s in rows[p.max_snaps:]:
        try:
            snaps.delete_row(s)
            gone += 1
        except ServiceError as e:
            db.session.rollback()
            log.warning("snapshot %s kept: %s", s.uuid, e.message)
    return gone
