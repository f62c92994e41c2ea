"""VM state from the hypervisors: what Nubo shows is what the host says.

- `reconcile_host` compares a host's domains (list_vms) with Nubo's records and
  corrects the records, with an event per change; domains Nubo does not know
  are reported, never touched. A VM with an action running is left to it.
- `apply` is the one place a seen power state changes a record: used by the
  sweep, by libvirt lifecycle events (EventListener) and after a reaped job.
- Hosts that stop answering: their VMs become Unknown (Alert) and then Stopped
  with their capacity given back (Down).
"""
from __future__ import annotations

import logging
import queue
import threading
from collections import defaultdict

from flask import current_app
from sqlalchemy import BigInteger, Integer, select, text

from app.extensions import db
from app.hypervisors.base import DriverError, PowerState, VMNotFound, VMStats
from app.models import Host, HostState, VirtualMachine, VMState, utcnow
from app.services import events, planner
from app.services.metrics import history
from app.services import hypervisors as hv

log = logging.getLogger("nubo.monitor")
# VM states a host's answer may correct (not Destroyed/Expunging/Error: those are Nubo's own).
WATCHED = (VMState.RUNNING, VMState.STOPPED, VMState.UNKNOWN, VMState.STARTING, VMState.STOPPING)
_reported_unknown: set[tuple[str, str]] = set()
_reported_twice: set[tuple[str, str]] = set()  # (host uuid, domain) found running on a second host


def _need(vm: VirtualMachine) -> planner.Need:
    return planner.Need.of(vm.cpu_number, vm.cpu_speed, vm.memory)


def _running(state: PowerState | None) -> bool:
    return state in (PowerState.RUNNING, PowerState.PAUSED, PowerState.STARTING, PowerState.STOPPING)


def may_change(vm, host_id: int, state: PowerState | None, seen_at=None) -> bool:
    """Whether `host_id`'s answer (`state`; None: it does not have the VM) changes the
    record: apply()'s whole decision, on the columns of _COMPARED (a VM object or row)."""
    if vm.active_job_id is not None or vm.state not in WATCHED:
        return False
    if state == PowerState.UNKNOWN:
        return False  # the host has the VM but cannot tell its state (an extension's failed `status`)
    if seen_at is not None and vm.state_updated is not None and vm.state_updated > seen_at:
        return False  # the record changed after the host answered: it is newer
    if _running(state):
        return vm.state != VMState.RUNNING or vm.host_id != host_id
    return vm.state in (VMState.RUNNING, VMState.UNKNOWN, VMState.STARTING, VMState.STOPPING) \
        and vm.host_id == host_id


def apply(vm: VirtualMachine, host: Host, state: PowerState | None, seen_at=None) -> bool:
    """Set the record from what `host` said of the VM at `seen_at` (None: the host does not
    have it). A record changed since then (an action finished meanwhile) is newer than the
    answer and is left alone. Returns True when the record changed. Commits nothing itself."""
    if not may_change(vm, host.id, state, seen_at):
        return False
    # Capacity moves with guards on the VM row (planner.hold/unhold): `vm` may be older than
    # the row (the reaper or a job changed it meanwhile) and must not count it twice.
    if _running(state):
        if vm.host_id and vm.host_id != host.id:
            planner.unhold(vm.id, vm.host_id, _need(vm))
        planner.hold(vm.id, host.id, _need(vm), force=True)  # counted even if the host is full
        before = vm.state
        vm.state, vm.host_id, vm.last_host_id, vm.state_updated = VMState.RUNNING, host.id, host.id, utcnow()
        events.record("VM.STATE", f"VM {vm.name} is Running on {host.name} (was {before}, changed outside Nubo)",
                      level="WARN", resource_type="VirtualMachine", resource_id=vm.uuid, account_id=vm.account_id)
        return True
    # Not running there, while the record says it runs on this host.
    planner.unhold(vm.id, host.id, _need(vm))
    before = vm.state
    vm.capacity_reserved, vm.last_host_id, vm.host_id = False, host.id, None
    vm.state, vm.state_updated, vm.console_port = VMState.STOPPED, utcnow(), None
    events.record("VM.STATE", f"VM {vm.name} is Stopped (was {before}; {host.name} "
                  f"{'does not have it' if state is None else 'reports it ' + state.value})",
                  level="WARN", resource_type="VirtualMachine", resource_id=vm.uuid, account_id=vm.account_id)
    return True


def _driver(host: Host, vm: VirtualMachine | None = None):
    from app.services.extensions import calls as extension_calls
    if extension_calls.serves(host):
        return extension_calls.driver_for(host, [vm] if vm is not None else [])
    from app.services.hosts import connection_for
    return hv.driver_for(host.hypervisor_type, connection_for(host))


def driver_of(host_id: int, type_name: str, conn):
    """A sweep's driver for one host (in the sweep's thread, inside an app context): an
    extension's with every VM Nubo has there (its `status` is asked for each), else the type's."""
    if type_name in ("External", "Custom"):
        from app.services.extensions import calls as extension_calls
        host = db.session.get(Host, host_id)
        if extension_calls.serves(host):
            try:
                return extension_calls.driver_for_host_id(host_id)
            finally:
                db.session.commit()  # no transaction held while the extension answers
    return hv.driver_for(type_name, conn)


def probe_vms(driver, host_id: int):
    """(host id, {domain: power state} or None, error, {domain: VMStats}) from one driver."""
    try:
        seen = {v.name: v.state for v in driver.list_vms()}
    except DriverError as e:
        return host_id, None, str(e), {}
    try:
        stats = driver.vm_stats()
    except DriverError:
        stats = {}  # states matter more than stats: keep the sweep going
    return host_id, seen, None, stats


def _list(app, host_id: int, type_name: str, conn):
    with app.app_context():
        try:
            driver = driver_of(host_id, type_name, conn)
        except DriverError as e:
            return host_id, None, str(e), {}
        try:
            with driver.snapshot_reads():
                return probe_vms(driver, host_id)
        finally:
            driver.close()


# The previous sample of each domain (this process), to turn counters into rates.
_last_stats: dict[str, VMStats] = {}


def _sample(vm: VirtualMachine, now: VMStats) -> dict | None:
    """The VM's new stats as a row for a bulk UPDATE (None until there are two samples)."""
    before = _last_stats.get(vm.instance_name)
    _last_stats[vm.instance_name] = now
    if before is None or now.timestamp <= before.timestamp:
        return {"id": vm.id, "memory_used_kib": now.memory_kib} if now.memory_kib else None
    dt = now.timestamp - before.timestamp
    cpu = (now.cpu_time_ns - before.cpu_time_ns) / (dt * 1e9) / max(vm.cpu_number, 1) * 100
    row = {"id": vm.id, "cpu_used_pct": round(min(max(cpu, 0.0), 100.0), 2),
           "memory_used_kib": now.memory_kib or vm.memory_used_kib}
    for attr, a, b in (("disk_read_bps", now.disk_read_bytes, before.disk_read_bytes),
                       ("disk_write_bps", now.disk_write_bytes, before.disk_write_bytes),
                       ("net_rx_bps", now.net_rx_bytes, before.net_rx_bytes),
                       ("net_tx_bps", now.net_tx_bytes, before.net_tx_bytes)):
        row[attr] = round(max(a - b, 0) / dt, 1)
    return row


def reconcile_hosts(hosts: list[Host]) -> int:
    """One list_vms per host (in parallel), then the records corrected in one transaction."""
    from app.services.hosts import connection_for
    work = [(h.id, h.hypervisor_type, connection_for(h)) for h in hosts]
    db.session.commit()
    app = current_app._get_current_object()
    seen_at = utcnow()  # the hosts' answers are at least this old when they are applied
    from app.monitor.hosts import ask_hosts
    answers = [a for a in ask_hosts(work, lambda *w: _list(app, *w)) if a[1] is not None]
    return apply_answers(answers, seen_at)


# What the sweep compares (may_change) and samples (_sample): read as plain rows for every
# VM of every answering host; only the VMs that may change are loaded as objects.
_COMPARED = (VirtualMachine.id, VirtualMachine.instance_name, VirtualMachine.state, VirtualMachine.host_id,
             VirtualMachine.active_job_id, VirtualMachine.state_updated, VirtualMachine.cpu_number,
             VirtualMachine.memory_used_kib)


def apply_answers(answers: list, seen_at) -> int:
    """Correct the records from the hosts' answers (probe_vms's tuples), in one transaction.

    The 50,000 VMs of a large sweep are compared as rows; a VM becomes an object (and
    goes through apply) only when some answer may change it — apply can then change it
    in the order the answers come, as it always did."""
    if not answers:
        return 0
    ids = [a[0] for a in answers]
    host_rows = {h.id: h for h in db.session.scalars(select(Host).where(Host.id.in_(ids)))}
    rows = db.session.execute(select(*_COMPARED).where(
        VirtualMachine.removed.is_(None),
        (VirtualMachine.host_id.in_(ids)) | (VirtualMachine.last_host_id.in_(ids)
                                             & (VirtualMachine.state == VMState.STOPPED)))).all()
    by_name = {r.instance_name: r for r in rows}
    on_host: dict[int, list] = defaultdict(list)
    for r in rows:
        if r.host_id is not None:
            on_host[r.host_id].append(r)
    suspects = set()
    for host_id, seen, _, _ in answers:  # any answer that may change a VM, in any order
        suspects.update(r.id for r in on_host.get(host_id, ())
                        if r.instance_name not in seen and may_change(r, host_id, None, seen_at))
        suspects.update(by_name[n].id for n, state in seen.items()
                        if n in by_name and may_change(by_name[n], host_id, state, seen_at))
    if suspects:
        for vm in db.session.scalars(select(VirtualMachine).where(VirtualMachine.id.in_(suspects))):
            by_name[vm.instance_name] = vm
    by_host: dict[int, list] = defaultdict(list)
    for vm in by_name.values():
        if vm.host_id is not None:
            by_host[vm.host_id].append(vm)
    changed, samples = 0, []
    touched: set[int] = set()  # changed by this sweep: newer than seen_at, yet by the same answers
    seen_by = {a[0]: a[1] for a in answers}
    # The corrections' own changes (the record, its event, the change stream's row) are flushed
    # together at the end, not one VM at a time before the next VM's capacity statements:
    # those touch only that VM's row and its hosts' counters. A VM corrected a second time
    # (stopped by one host's answer, found running on another) is flushed first, so that
    # planner.hold reads and writes its row as it now is.
    with db.session.no_autoflush:
        for host_id, seen, _, stats in answers:
            host = host_rows[host_id]
            for vm in by_host.get(host_id, ()):
                if vm.instance_name not in seen and vm.id in suspects and apply(vm, host, None, seen_at):
                    changed += 1
                    touched.add(vm.id)
            for name, state in seen.items():
                vm = by_name.get(name)
                if vm is None:
                    _report_unknown(host, name, state)
                elif vm.host_id in (host_id, None):
                    # A VM another host's silence just stopped (moved behind Nubo's back) may run here.
                    if vm.id in touched:
                        db.session.flush()
                    if vm.id in suspects and apply(vm, host, state, None if vm.id in touched else seen_at):
                        changed += vm.id not in touched  # one VM corrected once
                        touched.add(vm.id)
                    if name in stats and vm.state == VMState.RUNNING:
                        row = _sample(vm, stats[name])
                        if row:
                            samples.append(row)
                elif _running(state) and _running(seen_by.get(vm.host_id, {}).get(name)):
                    # Split brain: its recorded host runs it too. The record (and the capacity) stay
                    # with the recorded host; the other copy is reported, never touched.
                    _report_twice(host, vm, state)
    _write_samples(samples)
    db.session.commit()
    keep_history(lambda: history.record_vms(samples, seen_at or utcnow()))
    return changed


def keep_history(write) -> None:
    """Add the sweep's samples to the metrics history (if due), in a transaction of their own:
    a failure there is logged and never undoes what the sweep corrected."""
    try:
        if write():
            db.session.commit()
    except Exception:  # noqa: BLE001 - the history is a nicety; the sweep's state is not
        log.exception("keeping the metrics history failed")
        db.session.rollback()


def _write_samples(rows: list[dict]) -> None:
    """Stats of every running VM, per shape of row (a first sample has only the memory), in
    the sweep's transaction. (The ORM's bulk UPDATE by primary key also matched every row
    against the session: 0.5 of the 1.3 s of applying 500 hosts.)"""
    t = VirtualMachine.__table__
    shapes: dict[tuple[str, ...], list[dict]] = defaultdict(list)
    for row in rows:
        shapes[tuple(sorted(k for k in row if k != "id"))].append(row)
    dialect = db.session.get_bind().dialect
    for columns, batch in shapes.items():
        if dialect.name == "postgresql":
            _update_from_arrays(t, columns, batch)
            continue
        if dialect.name in ("mysql", "mariadb"):
            _update_through_temporary_table(t, columns, batch)
            continue
        # SQLite: the driver's executemany of plain tuples (SQLAlchemy's per-row parameter
        # processing was a third of the time).
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        sql = f"UPDATE {t.name} SET {', '.join(f'{c} = {mark}' for c in columns)} WHERE id = {mark}"
        db.session.connection().exec_driver_sql(
            sql, [tuple(r[c] for c in columns) + (r["id"],) for r in batch])


def _update_through_temporary_table(t, columns: tuple[str, ...], batch: list[dict]) -> None:
    """MariaDB: the rows into a temporary table (a multi-row INSERT), then one UPDATE … JOIN.
    Its executemany of an UPDATE is one round trip per row (50,000 per sweep: ~14 s of the
    2,000-host sweep). A temporary table commits nothing; it lives with the connection."""
    names = ("id", *columns)
    kinds = {n: "BIGINT" if isinstance(t.c[n].type, (BigInteger, Integer)) else "DOUBLE" for n in names}
    conn = db.session.connection()
    conn.exec_driver_sql("DROP TEMPORARY TABLE IF EXISTS nubo_vm_samples")
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE nubo_vm_samples "
                         f"({', '.join(f'{n} {kinds[n]}' for n in names)}, PRIMARY KEY (id))")
    conn.exec_driver_sql(f"INSERT INTO nubo_vm_samples ({', '.join(names)}) VALUES "
                         f"({', '.join(['%s'] * len(names))})", [tuple(r[n] for n in names) for r in batch])
    conn.exec_driver_sql(f"UPDATE {t.name} JOIN nubo_vm_samples n ON {t.name}.id = n.id "
                         f"SET {', '.join(f'{t.name}.{c} = n.{c}' for c in columns)}")
    conn.exec_driver_sql("DROP TEMPORARY TABLE nubo_vm_samples")


def _update_from_arrays(t, columns: tuple[str, ...], batch: list[dict], chunk: int = 10_000) -> None:
    """PostgreSQL: one UPDATE … FROM unnest(arrays) per `chunk` rows. An executemany is one
    statement per row for the server to run (50,000 per sweep: 5 s of the 2,000-host sweep)."""
    names = ("id", *columns)
    kinds = {n: "bigint" if isinstance(t.c[n].type, (BigInteger, Integer)) else "double precision" for n in names}
    sql = text(f"UPDATE {t.name} SET {', '.join(f'{c} = n.{c}' for c in columns)} "
               f"FROM unnest({', '.join(f'CAST(:{n} AS {kinds[n]}[])' for n in names)}) AS n({', '.join(names)}) "
               f"WHERE {t.name}.id = n.id")
    for i in range(0, len(batch), chunk):
        part = batch[i:i + chunk]
        db.session.execute(sql, {n: [r[n] for r in part] for n in names})


def _report_unknown(host: Host, name: str, state: PowerState) -> None:
    if (host.uuid, name) in _reported_unknown:
        return
    _reported_unknown.add((host.uuid, name))
    known = db.session.scalar(select(VirtualMachine.id).where(VirtualMachine.instance_name == name))
    if known is None:  # an expunged VM's leftovers are not news; a stranger is
        events.record("HOST.UNKNOWN.VM", f"Host {host.name} runs {name} ({state.value}), which Nubo does not "
                      "manage; it is left alone", level="WARN", resource_type="Host", resource_id=host.uuid)


def _report_twice(host: Host, row, state: PowerState) -> None:
    """Once per host and domain. `row`: the VM (an object or a _COMPARED row)."""
    if (host.uuid, row.instance_name) in _reported_twice:
        return
    _reported_twice.add((host.uuid, row.instance_name))
    vm = db.session.get(VirtualMachine, row.id)
    recorded = db.session.get(Host, vm.host_id)
    events.record("VM.STATE", f"VM {vm.name} ({vm.instance_name}) is {state.value} on {host.name} as well as "
                  f"on {recorded.name}, where Nubo runs it: the copy on {host.name} is left alone; stop one of "
                  "them", level="ERROR", resource_type="VirtualMachine", resource_id=vm.uuid,
                  account_id=vm.account_id)


def reconcile_vm(vm: VirtualMachine) -> None:
    """Ask the VM's host about this one VM (after a reaped job) and set the record from it."""
    db.session.refresh(vm)  # the row as it is now, not as the caller loaded it
    host = vm.host or (db.session.get(Host, vm.last_host_id) if vm.last_host_id else None)
    if host is None:
        if vm.state in (VMState.STARTING, VMState.STOPPING):
            vm.state = VMState.STOPPED
            db.session.commit()
        return
    driver = _driver(host, vm)
    try:
        state = driver.vm_info(vm.instance_name).state
    except VMNotFound:
        state = None
    except DriverError:
        log.warning("could not reconcile %s: host %s did not answer", vm.name, host.name)
        return
    finally:
        driver.close()
    if vm.state in (VMState.STARTING, VMState.STOPPING, VMState.MIGRATING):
        vm.state = VMState.UNKNOWN  # let apply decide from the host's answer
        vm.host_id = vm.host_id or host.id
    apply(vm, host, state)
    db.session.commit()


def host_silent(host: Host) -> None:
    """The host stopped answering: its VMs are Unknown (Alert), or Stopped with capacity back (Down)."""
    for vm in db.session.scalars(select(VirtualMachine).where(VirtualMachine.host_id == host.id,
                                                              VirtualMachine.removed.is_(None),
                                                              VirtualMachine.state.in_(WATCHED))):
        if host.state == HostState.DOWN:
            apply(vm, host, None)
        elif vm.state == VMState.RUNNING and vm.active_job_id is None:
            vm.state, vm.state_updated = VMState.UNKNOWN, utcnow()
            events.record("VM.STATE", f"VM {vm.name} is Unknown: its host {host.name} does not answer",
                          level="WARN", resource_type="VirtualMachine", resource_id=vm.uuid,
                          account_id=vm.account_id)


class EventListener:
    """libvirt lifecycle events of every host that has them, applied within a second.
    One driver (connection, with keepalive and reconnect in the driver) per host."""

    def __init__(self, app):
        self.app = app
        self.queue: queue.Queue = queue.Queue()
        self.drivers: dict[int, object] = {}
        self.sync_lock = threading.Lock()
        self.thread = threading.Thread(target=self._apply_loop, daemon=True, name="nubo-vm-events")
        self.thread.start()

    def sync(self, hosts: list[Host]) -> None:
        """Listen on the hosts that push events and are Up; stop listening on the others.
        Called by the sweep and by the monitor's host follower (app/monitor/__init__.py)."""
        with self.sync_lock:
            self._sync(hosts)

    def _sync(self, hosts: list[Host]) -> None:
        from app.services.hosts import connection_for
        wanted = {h.id: h for h in hosts if h.state == HostState.UP
                  and hv.resolve(h.hypervisor_type).capabilities.lifecycle_events}
        for host_id in set(self.drivers) - set(wanted):
            self.drivers.pop(host_id).close()
        for host_id, h in wanted.items():
            if host_id in self.drivers:
                continue
            driver = hv.driver_for(h.hypervisor_type, connection_for(h))
            try:
                driver.register_events(lambda name, state, hid=host_id: self.queue.put((hid, name, state)))
                self.drivers[host_id] = driver
            except DriverError as e:
                driver.close()
                log.warning("no events from %s: %s", h.name, e)

    def _apply_loop(self) -> None:
        while True:
            host_id, name, state = self.queue.get()
            with self.app.app_context():
                try:
                    vm = db.session.scalar(select(VirtualMachine).where(VirtualMachine.instance_name == name,
                                                                       VirtualMachine.removed.is_(None)))
                    host = db.session.get(Host, host_id)
                    if vm is not None and host is not None:
                        shown = None if state in (PowerState.STOPPED, PowerState.CRASHED) else state
                        if apply(vm, host, shown):
                            log.info("event: %s is %s on %s", name, state.value, host.name)
                        db.session.commit()
                except Exception:  # noqa: BLE001 - one bad event must not stop the listener
                    log.exception("applying event for %s failed", name)
                    db.session.rollback()
                finally:
                    db.session.remove()

    def close(self) -> None:
        for d in self.drivers.values():
            d.close()
        self.drivers.clear()
