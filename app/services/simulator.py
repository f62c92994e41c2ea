"""Fault injection for the Simulator hypervisor: take a sim host down or bring
it back, slow its operations, and arm "the next N operations fail" faults on a
host or a VM. Used by tests and by the admin-only control (app/web/simulator.py).

These rules only change the *simulated hypervisor's* state (sim_* tables); the
monitor then notices, exactly as it would notice a real host failing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import case, delete, func, select

from app.extensions import db
from app.hypervisors.simulator import OPERATIONS, NAME_RE
from app.models import SimFault, SimHost, SimVM
from app.services import events
from app.services.errors import InvalidParameter, NotFound
from app.services.units import duration

MAX_DELAY = 600.0
MAX_FAULT_COUNT = 10_000
DEFAULT_MESSAGE = "Simulated failure"
PAGE_SIZE = 100


@dataclass
class HostSummary:
    host: SimHost
    vms: int = 0
    running: int = 0
    faults: list[SimFault] = field(default_factory=list)


def get_host(name: str) -> SimHost:
    host = db.session.scalar(select(SimHost).where(SimHost.name == (name or "").strip()))
    if host is None:
        raise NotFound(f"No Simulator host named {name}", field="host")
    return host


def list_hosts(keyword: str | None = None, limit: int = PAGE_SIZE) -> tuple[list[HostSummary], int]:
    """The first `limit` sim hosts by name (matching keyword) with their VM
    counts and armed faults, and how many match in all: three queries."""
    q = select(SimHost)
    if keyword:
        q = q.where(SimHost.name.contains(keyword.strip(), autoescape=True))
    total = db.session.scalar(select(func.count()).select_from(q.subquery())) or 0
    hosts = list(db.session.scalars(q.order_by(SimHost.name).limit(limit)))
    return _summaries(hosts), total


def host_summary(name: str) -> HostSummary:
    return _summaries([get_host(name)])[0]


def _summaries(hosts: list[SimHost]) -> list[HostSummary]:
    ids = [h.id for h in hosts]
    if not ids:
        return []
    counts = {hid: (n, r) for hid, n, r in db.session.execute(
        select(SimVM.host_id, func.count(),
               func.sum(case((SimVM.state.in_(("running", "starting")), 1), else_=0)))
        .where(SimVM.host_id.in_(ids)).group_by(SimVM.host_id))}
    faults: dict[int, list[SimFault]] = {}
    for f in db.session.scalars(select(SimFault).where(SimFault.host_id.in_(ids), SimFault.vm_name.is_(None),
                                                       SimFault.remaining > 0).order_by(SimFault.id)):
        faults.setdefault(f.host_id, []).append(f)
    return [HostSummary(h, *(int(x or 0) for x in counts.get(h.id, (0, 0))), faults=faults.get(h.id, []))
            for h in hosts]


def set_host_up(name: str, up: bool, *, heartbeat: bool = False, user=None) -> SimHost:
    """A host goes down (every driver call raises HostUnreachable) or comes back.
    Down is a power cut (its storage heartbeat stops too), or with heartbeat=True a host cut
    off from the management network only: it keeps writing its heartbeat, which the HA
    investigation reads through its neighbours (it is then never judged Down)."""
    host = get_host(name)
    if up:
        host.heartbeat_stopped_at = None
    elif heartbeat:
        host.heartbeat_stopped_at = None
    elif host.up or host.heartbeat_stopped_at is None:
        host.heartbeat_stopped_at = time.time()
    if host.up != up:
        host.up = up
        what = "brought back up" if up else ("cut off from the management network (still running)" if heartbeat
                                             else "taken down")
        events.record("SIMULATOR.HOST.UP" if up else "SIMULATOR.HOST.DOWN", f"Simulator host {host.name} {what}",
                      user=user, resource_type="SimulatorHost", resource_id=str(host.id))
    db.session.commit()
    return host


def set_delay(name: str, seconds, *, user=None) -> SimHost:
    """Slow every operation on the host by `seconds` (0 = normal speed)."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise InvalidParameter("The delay must be a number of seconds", field="seconds") from None
    if not 0 <= value <= MAX_DELAY:  # also refuses NaN
        raise InvalidParameter(f"The delay must be between 0 and {MAX_DELAY:g} seconds", field="seconds")
    host = get_host(name)
    host.delay_seconds = value
    events.record("SIMULATOR.HOST.DELAY", f"Simulator host {host.name}: operations delayed by {duration(value)}",
                  user=user, resource_type="SimulatorHost", resource_id=str(host.id))
    db.session.commit()
    return host


def _operations(raw) -> str:
    if isinstance(raw, str):
        items = [p.strip() for p in raw.split(",")]
    else:
        items = [str(p).strip() for p in (raw or ())]
    items = [p for p in items if p]
    unknown = [p for p in items if p not in OPERATIONS]
    if unknown:
        raise InvalidParameter(f"Unknown operation(s): {', '.join(unknown)}; known: "
                               f"{', '.join(sorted(OPERATIONS))}", field="operations")
    return ",".join(dict.fromkeys(items))


def arm_fault(*, host: str | None = None, vm: str | None = None, count=1, message: str | None = None,
              operations=(), user=None) -> SimFault:
    """The next `count` operations on a host (every VM on it included) or on a VM
    (by instance name, wherever it runs, even before it exists) fail with
    `message`. Without `operations`, every action counts; polling queries
    (list_vms, vm_info, ...) count only when named."""
    host = (host or "").strip() or None
    vm = (vm or "").strip() or None
    if bool(host) == bool(vm):
        raise InvalidParameter("Give either a host or a VM name for the fault", field="host")
    if vm and not NAME_RE.match(vm):
        raise InvalidParameter("A VM name is 1-128 letters, digits, '.', '_' or '-'", field="vm")
    try:
        n = int(count)
    except (TypeError, ValueError):
        raise InvalidParameter("The count must be a whole number", field="count") from None
    if not 1 <= n <= MAX_FAULT_COUNT:
        raise InvalidParameter(f"The count must be between 1 and {MAX_FAULT_COUNT}", field="count")
    message = (message or "").strip() or DEFAULT_MESSAGE
    if len(message) > 1024:
        raise InvalidParameter("The message is at most 1024 characters", field="message")
    ops = _operations(operations)
    host_row = get_host(host) if host else None
    fault = SimFault(host_id=host_row.id if host_row else None, vm_name=vm, remaining=n,
                     message=message, operations=ops)
    db.session.add(fault)
    target = f"host {host_row.name}" if host_row else f"VM {vm}"
    events.record("SIMULATOR.FAULT.ARM",
                  f"Simulator: next {n} {ops or 'action'}(s) on {target} fail: {message}",
                  user=user, resource_type="SimulatorFault")
    db.session.commit()
    return fault


def list_faults() -> list:
    """Armed faults, oldest first, with their host's name (None for VM faults)."""
    return list(db.session.execute(
        select(SimFault, SimHost.name).outerjoin(SimHost, SimHost.id == SimFault.host_id)
        .where(SimFault.remaining > 0).order_by(SimFault.id)))


def clear_fault(fault_id: int, *, user=None) -> None:
    fault = db.session.get(SimFault, fault_id)
    if fault is None:
        raise NotFound("No such fault (it may have fired already)", field="id")
    db.session.delete(fault)
    events.record("SIMULATOR.FAULT.CLEAR", f"Simulator fault {fault_id} cleared", user=user,
                  resource_type="SimulatorFault")
    db.session.commit()


def reset(name: str | None = None, *, user=None) -> None:
    """Back to normal: one host (or every host) up, no delay, no armed faults
    (VM faults too when resetting everything)."""
    hosts = [get_host(name)] if name else list(db.session.scalars(select(SimHost)))
    for h in hosts:
        h.up, h.delay_seconds, h.heartbeat_stopped_at = True, 0.0, None
    if name:
        db.session.execute(delete(SimFault).where(SimFault.host_id == hosts[0].id))
    else:
        db.session.execute(delete(SimFault))
    events.record("SIMULATOR.RESET", f"Simulator {'host ' + name if name else 'hosts'} reset", user=user,
                  resource_type="SimulatorHost")
    db.session.commit()
