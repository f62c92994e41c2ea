"""Metrics history: VM and host samples kept as a time series, for the charts.

The monitor already samples every running VM and every answering host on each sweep
(app/monitor); `record_vms`/`record_hosts` keep one sample per resource every
`vm.stats.interval` / `host.stats.interval` (CloudStack's names, milliseconds) as one bulk
INSERT. `maintain`, run by each sweep, rolls every finished hour into one averaged row per
resource, then prunes samples older than `vm.stats.max.retention.time` (CloudStack's:
minutes; 0 keeps them) and hourly rows older than `metrics.hourly.retention.days`.
`series` reads a range (1 h, 24 h, 7 d) and averages it into buckets, server side.
"""
from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, DateTime, Integer, cast, delete, func, insert, literal, select

from app.extensions import db
from app.models import HOURLY, RAW, MetricKind, MetricSample, utcnow
from app.services import settings
from app.services.errors import InvalidParameter
from app.services.settings import Definition, define

define(Definition("vm.stats.interval", "60000", "How often (in milliseconds) a VM's CPU, memory, network and disk "
                  "figures are kept in the metrics history (the monitor samples them every sweep; a shorter "
                  "interval than ping.interval keeps every sweep's).", category="Advanced", type="integer",
                  min=1000, max=86_400_000, unit="milliseconds"))
define(Definition("host.stats.interval", "60000", "How often (in milliseconds) a host's CPU and memory use are kept in "
                  "the metrics history.", category="Advanced", type="integer", min=1000, max=86_400_000,
                  unit="milliseconds"))
define(Definition("vm.stats.max.retention.time", "720", "The maximum time (in minutes) for keeping VM and host "
                  "samples in the database; each finished hour is first kept as its average "
                  "(metrics.hourly.retention.days), which older parts of a chart read. 0 or less keeps every "
                  "sample.", category="Advanced",
                  type="integer", min=-1, max=525_600, unit="minutes"))
define(Definition("metrics.hourly.retention.days", "7", "How many days the hourly averages of VM and host metrics "
                  "are kept (the 7-day charts read them). 0 or less keeps them.", category="Advanced",
                  type="integer", min=-1, max=3650, unit="days"))

T = MetricSample.__table__
FIELDS = ("cpu_pct", "memory_used", "net_rx_bps", "net_tx_bps", "disk_read_bps", "disk_write_bps")
_INTERVAL = {MetricKind.VM: "vm.stats.interval", MetricKind.HOST: "host.stats.interval"}
_last: dict[MetricKind, datetime] = {}  # when this process last kept each kind's samples


def due(kind: MetricKind, now: datetime) -> bool:
    """Whether the sweep at `now` keeps its samples of `kind` (one every interval, per process)."""
    last = _last.get(kind)
    return last is None or now - last >= timedelta(milliseconds=settings.get(_INTERVAL[kind]) - 500)


def _record(kind: MetricKind, rows: list[dict], at: datetime) -> int:
    at = at.replace(microsecond=0)
    if not rows or not due(kind, at):
        return 0
    seen: set[int] = set()
    batch = []
    for r in rows:
        if r["resource_id"] not in seen:
            seen.add(r["resource_id"])
            batch.append({"kind": int(kind), "at": at, "period": RAW, **{f: r.get(f) for f in FIELDS},
                          "resource_id": r["resource_id"]})
    if len(batch) >= 1000 and db.session.get_bind().dialect.name == "postgresql":
        _copy(batch)
    else:
        db.session.execute(insert(T), batch)
    _last[kind] = at
    return len(batch)


def _copy(batch: list[dict]) -> None:
    """PostgreSQL: the rows through COPY … FROM STDIN on the session's connection (in its
    transaction). A 2,000-host sweep's 50,000 VM samples: ~2 s as a multi-row INSERT."""
    columns = ("kind", "resource_id", "period", "at", *FIELDS)
    sql = f"COPY {T.name} ({', '.join(columns)}) FROM STDIN"
    conn = db.session.connection()
    with conn.connection.driver_connection.cursor() as cur:  # psycopg's own cursor
        # The engine's listeners see it as any statement: app/engine.py's keep_prepared_statements
        # must count it a write (else a rollback of this transaction would be sent as COMMIT).
        conn.dispatch.before_cursor_execute(conn, cur, sql, (), None, False)
        with cur.copy(sql) as copy:
            for row in batch:
                copy.write_row(tuple(row[c] for c in columns))


def record_vms(samples: Iterable[dict], at: datetime) -> int:
    """The monitor's VM samples (monitor.vms._sample rows: id, cpu_used_pct, memory_used_kib and
    the rates), kept if due. Adds to the session; the caller commits. Returns rows written."""
    rows = [{"resource_id": s["id"], "cpu_pct": s.get("cpu_used_pct"),
             "memory_used": s["memory_used_kib"] * 1024 if s.get("memory_used_kib") else None,
             "net_rx_bps": s.get("net_rx_bps"), "net_tx_bps": s.get("net_tx_bps"),
             "disk_read_bps": s.get("disk_read_bps"), "disk_write_bps": s.get("disk_write_bps")} for s in samples]
    return _record(MetricKind.VM, rows, at)


def record_hosts(samples: Iterable[tuple[int, float | None, int | None]], at: datetime) -> int:
    """(host id, CPU %, memory used in bytes) of the hosts that answered, kept if due."""
    return _record(MetricKind.HOST, [{"resource_id": h, "cpu_pct": cpu, "memory_used": mem}
                                     for h, cpu, mem in samples], at)


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def rollup(now: datetime | None = None, limit: int = 200) -> int:
    """Average every finished hour of samples not yet averaged into one HOURLY row per resource
    (an INSERT … SELECT … GROUP BY per hour). Returns the hours rolled up."""
    current = _hour(now or utcnow())
    last = db.session.scalar(select(func.max(T.c.at)).where(T.c.period == HOURLY))
    start = last + timedelta(hours=1) if last else None
    done = 0
    while done < limit:
        q = select(func.min(T.c.at)).where(T.c.period == RAW)
        first = db.session.scalar(q.where(T.c.at >= start) if start else q)
        if first is None or _hour(first) >= current:
            break
        hour = _hour(first)
        averages = [cast(func.avg(T.c[f]), BigInteger) if f == "memory_used" else func.avg(T.c[f]) for f in FIELDS]
        db.session.execute(insert(T).from_select(
            ["kind", "resource_id", "at", "period", *FIELDS],
            select(T.c.kind, T.c.resource_id, literal(hour, DateTime), literal(HOURLY, Integer), *averages)
            .where(T.c.period == RAW, T.c.at >= hour, T.c.at < hour + timedelta(hours=1))
            .group_by(T.c.kind, T.c.resource_id)))
        start = hour + timedelta(hours=1)
        done += 1
    return done


def prune(now: datetime | None = None) -> int:
    """Delete samples past vm.stats.max.retention.time (never an hour not yet averaged) and
    hourly rows past metrics.hourly.retention.days. Returns the rows deleted."""
    now = now or utcnow()
    deleted = 0
    minutes = settings.get("vm.stats.max.retention.time")
    if minutes > 0:
        last = db.session.scalar(select(func.max(T.c.at)).where(T.c.period == HOURLY))
        cutoff = now - timedelta(minutes=minutes)
        cutoff = min(cutoff, last + timedelta(hours=1)) if last else min(cutoff, _hour(now))
        deleted += db.session.execute(delete(T).where(T.c.period == RAW, T.c.at < cutoff)).rowcount
    days = settings.get("metrics.hourly.retention.days")
    if days > 0:
        deleted += db.session.execute(delete(T).where(T.c.period == HOURLY,
                                                      T.c.at < now - timedelta(days=days))).rowcount
    return deleted


def maintain(now: datetime | None = None) -> tuple[int, int]:
    """Roll up, then prune, each in its own transaction: (hours rolled up, rows deleted). Two
    monitors may race to roll the same hour: the loser's INSERT fails on the primary key and
    is rolled back (the hour is done)."""
    try:
        hours = rollup(now)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    deleted = prune(now)
    db.session.commit()
    return hours, deleted


# --- Reading ---------------------------------------------------------------

# range: (span, bucket): a chart has at most ~240 points whatever the range.
RANGES = {"1h": (3600, 60), "24h": (86400, 600), "7d": (7 * 86400, 3600)}


def _epoch(at: datetime) -> int:
    return calendar.timegm(at.timetuple())


def series(kind: MetricKind, resource_id: int, range_key: str = "1h", now: datetime | None = None) -> dict:
    """{"range", "step", "start", "end", "t": [epoch seconds], and one list per field}: the samples of one
    resource over the range, averaged per bucket (no bucket without a sample). The part of the
    range older than the samples still kept comes from the hourly averages."""
    if range_key not in RANGES:
        raise InvalidParameter(f"range must be one of {', '.join(RANGES)}", field="range")
    span, step = RANGES[range_key]
    step = max(step, settings.get(_INTERVAL[kind]) // 1000)
    now = now or utcnow()
    start = now - timedelta(seconds=span)
    cols = [T.c.at, *(T.c[f] for f in FIELDS)]
    mine = (T.c.kind == int(kind), T.c.resource_id == resource_id)
    raw = db.session.execute(select(*cols).where(*mine, T.c.period == RAW, T.c.at >= start, T.c.at <= now)
                             .order_by(T.c.at)).all()
    oldest = raw[0].at if raw else now
    hourly = db.session.execute(select(*cols).where(*mine, T.c.period == HOURLY, T.c.at >= _hour(start),
                                                    T.c.at <= oldest - timedelta(hours=1))
                                .order_by(T.c.at)).all()
    sums: dict[int, list] = defaultdict(lambda: [[0.0, 0] for _ in FIELDS])
    for row in (*hourly, *raw):
        bucket = _epoch(row.at) // step * step
        acc = sums[bucket]
        for i, f in enumerate(FIELDS):
            v = getattr(row, f)
            if v is not None:
                acc[i][0] += v
                acc[i][1] += 1
    keys = sorted(sums)
    out = {"range": range_key, "step": step, "start": _epoch(start), "end": _epoch(now), "t": keys}
    for i, f in enumerate(FIELDS):
        out[f] = [round(sums[k][i][0] / sums[k][i][1], 2) if sums[k][i][1] else None for k in keys]
    return out


def vm_series(caller, uuid: str, range_key: str = "1h") -> dict:
    """A VM's series, if `caller` may see the VM (another account's is "not found")."""
    from app.services import vms
    vm = vms.get_vm(caller, uuid)
    return {**series(MetricKind.VM, vm.id, range_key), "memory_total": vm.memory * (1 << 20)}


def host_series(uuid: str, range_key: str = "1h") -> dict:
    """A host's series (admins: the caller's role was checked by the page)."""
    from app.services import hosts
    host = hosts.get_host(uuid)
    return {**series(MetricKind.HOST, host.id, range_key), "memory_total": host.memory_total}


def vm_usage_history(caller, *, page=None, start: datetime | None = None, end: datetime | None = None,
                     **filters) -> tuple[list[tuple], int]:
    """listVirtualMachinesUsageHistory: a page of the VMs `caller` may list (listVirtualMachines'
    filters and visibility), each with its samples between start and end, oldest first:
    ([(VMView, [sample rows])], total). The samples' rates are per second."""
    from app.services import vm_views
    vms, total = vm_views.list_vms(caller, page=page, details_min=True, **filters)
    if not vms:
        return [], total
    from app.models import VirtualMachine
    ids = dict(db.session.execute(select(VirtualMachine.uuid, VirtualMachine.id)
                                  .where(VirtualMachine.uuid.in_([v.uuid for v in vms]))).all())
    q = select(T).where(T.c.kind == int(MetricKind.VM), T.c.period == RAW, T.c.resource_id.in_(ids.values()))
    if start is not None:
        q = q.where(T.c.at >= start)
    if end is not None:
        q = q.where(T.c.at <= end)
    by_vm: dict[int, list] = defaultdict(list)
    for row in db.session.execute(q.order_by(T.c.resource_id, T.c.at)):
        by_vm[row.resource_id].append(row)
    return [(vm, by_vm.get(ids.get(vm.uuid), [])) for vm in vms], total
