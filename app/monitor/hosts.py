"""Host pings: every host answers (its stats) or its state says it does not.

CloudStack's rules, simplified: a host that answers is Up; one that misses a
ping goes Alert; one that has not answered for `ping.interval` × `ping.timeout`
seconds goes Down. Hosts in maintenance are not pinged. Each change of state is
an event. Calls run in a thread pool (each with its own driver) and the
results are written back in one short transaction, so a sweep of thousands of
hosts costs a few queries, not one transaction per host.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from app.extensions import db
from app.hypervisors.base import DriverError
from app.models import Host, HostState, ResourceState, utcnow
from app.services import events, settings
from app.services.ha import investigation as ha_investigation, work as ha_work
from app.services.metrics import history
from app.services import hypervisors as hv
from app.services.errors import InvalidParameter
from app.services.settings import Definition, define

log = logging.getLogger("nubo.monitor")

define(Definition("ping.interval", "30", "Seconds between two pings of every host by the monitor.",
                  category="Monitor", type="integer", min=1, max=3600, unit="seconds"))
define(Definition("ping.timeout", "2.5", "A host that has not answered for ping.interval × this is Down "
                  "(before that it is Alert).", category="Monitor", type="float", min=1, max=100))
define(Definition("monitor.threads", "16", "Hosts the monitor pings at the same time.", category="Monitor",
                  type="integer", min=1, max=256, dynamic=False))


@dataclass
class SweepResult:
    hosts: int = 0
    up: int = 0
    failed: int = 0
    changed: int = 0
    seconds: float = 0.0
    vm_answers: list = field(default_factory=list)  # for monitor.vms.apply_answers
    seen_at: object = None


def _ping(app, host_id: int, type_name: str, conn, with_vms: bool):
    """(host id, HostStats or None, error, the VM answer for monitor.vms or None): one driver
    session per host, which also lists its VMs and their stats when asked (the sweep does)."""
    from app.monitor.vms import driver_of, probe_vms
    with app.app_context():
        try:
            driver = driver_of(host_id, type_name, conn)
        except DriverError as e:
            return host_id, None, str(e), None
        try:
            with driver.snapshot_reads():  # the three answers from one look (the Simulator: one query)
                stats = driver.host_stats()
                return host_id, stats, None, probe_vms(driver, host_id) if with_vms else None
        except DriverError as e:
            return host_id, None, str(e), None
        except Exception as e:  # noqa: BLE001 - a driver bug must not stop the sweep
            log.exception("pinging host %s failed", host_id)
            return host_id, None, f"internal error: {e}", None
        finally:
            driver.close()


def ask_hosts(work: list[tuple], call: Callable[..., Any]) -> list:
    """call(*w) for every w = (host id, type name, ...), in parallel; the answers in the
    order of `work`. Each type's hosts get a pool of their own: monitor.threads wide, or
    narrower where the type says so (HypervisorType.max_parallel_calls)."""
    threads = settings.get("monitor.threads")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, w in enumerate(work):
        groups[w[1]].append(i)
    answers: list = [None] * len(work)
    pools, futures = [], []
    try:
        for type_name, indexes in groups.items():
            try:
                cap = hv.resolve(type_name).max_parallel_calls or threads
            except InvalidParameter:  # a type whose plugin is gone: its calls fail on their own
                cap = threads
            pool = ThreadPoolExecutor(max_workers=max(1, min(threads, cap)))
            pools.append(pool)
            futures += [(i, pool.submit(call, *work[i])) for i in indexes]
        for i, future in futures:
            answers[i] = future.result()
    finally:
        for pool in pools:
            pool.shutdown()
    return answers


def ping_hosts(now=None, with_vms: bool = False) -> SweepResult:
    """Ping every host (not in maintenance) in parallel and set its state from the answer.
    with_vms: also list each answering host's VMs in the same session (result.vm_answers)."""
    from app.services.hosts import connection_for
    t0 = time.monotonic()
    now = now or utcnow()
    rows = list(db.session.scalars(select(Host).where(
        Host.removed.is_(None), Host.resource_state.not_in([ResourceState.MAINTENANCE,
                                                            ResourceState.PREPARE_FOR_MAINTENANCE]))))
    work = [(h.id, h.hypervisor_type, connection_for(h)) for h in rows]
    db.session.commit()  # no transaction held while hosts answer
    app = current_app._get_current_object()
    seen_at = utcnow()
    answers = ask_hosts(work, lambda *w: _ping(app, *w, with_vms))
    down_after = timedelta(seconds=settings.get("ping.interval") * settings.get("ping.timeout"))
    result = SweepResult(hosts=len(rows))
    hosts = {h.id: h for h in db.session.scalars(select(Host).where(Host.id.in_([a[0] for a in answers])))}
    # Silent for ping.interval × ping.timeout and not Down yet: investigated (its neighbours read
    # its storage heartbeat) before anything is decided (app/services/ha/).
    due = [hosts[a[0]] for a in answers if a[1] is None and a[0] in hosts and hosts[a[0]].state != HostState.DOWN
           and now - (hosts[a[0]].last_pinged or hosts[a[0]].created) >= down_after]
    verdicts = ha_investigation.judge(due) if due else {}
    quiet = []  # hosts whose state did not change: one bulk UPDATE for all of them
    kept = []  # (host id, CPU %, memory used) for the metrics history
    result.vm_answers = [a[3] for a in answers if a[3] is not None and a[3][1] is not None]
    result.seen_at = seen_at
    for host_id, stats, error, _ in answers:
        host = hosts.get(host_id)
        if host is None or host.removed:
            continue
        if stats is not None:
            result.up += 1
            state, reason = HostState.UP, None
        else:
            result.failed += 1
            silent_since = host.last_pinged or host.created
            state = HostState.DOWN if now - silent_since >= down_after else HostState.ALERT
            reason = (error or "no answer")[:1000]
            verdict = verdicts.get(host.id)
            if verdict is not None:
                if verdict.dead is False:
                    state = HostState.ALERT  # alive, only cut off from Nubo: never Down
                reason = f"{error or 'no answer'}; {verdict.reason}"[:1000]
        values = {"state": state, "state_reason": reason}
        if stats is not None:
            values.update(last_pinged=now, cpu_used_pct=stats.cpu_pct,
                          memory_used=max(0, stats.memory_total_bytes - stats.memory_free_bytes))
            kept.append((host.id, values["cpu_used_pct"], values["memory_used"]))
        if state == host.state:
            quiet.append({"id": host.id, **values})
            continue
        result.changed += 1
        for k, v in values.items():
            setattr(host, k, v)
        events.record("HOST.STATE", f"Host {host.name} is {host.state}"
                      + (f": {host.state_reason}" if host.state_reason else " again"),
                      level="INFO" if host.state == HostState.UP else "WARN",
                      resource_type="Host", resource_id=host.uuid)
        from app.services.alerts import triggers as alert_triggers
        alert_triggers.host_state_changed(host)  # an alert (Alert, Down) or its clearing (Up)
        if host.state in (HostState.ALERT, HostState.DOWN):
            from app.monitor.vms import host_silent
            if host.state == HostState.DOWN:  # its VMs' HA work first, while they are still on it
                ha_work.host_down(host, verdicts.get(host.id))
            host_silent(host)
    db.session.commit()
    if quiet:
        db.session.execute(update(Host), quiet)
        db.session.commit()
    from app.monitor.vms import keep_history
    keep_history(lambda: history.record_hosts(kept, seen_at))
    result.seconds = time.monotonic() - t0
    return result
