"""CloudStack's metrics lists (its metrics plugin): listVirtualMachinesMetrics,
listHostsMetrics, listVolumesMetrics. Each is its plain list plus figures in CloudStack's
formats, from what the monitor sampled at its last sweep (app/monitor): a VM's CPU use,
memory, and its disk and network rates; a host's CPU and memory use.

CloudStack's networkread/diskread are totals since the VM started; the monitor keeps
rates, so Nubo's are the last sweep's per-second figures (in the same units).
"""
from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import VirtualMachine, VMState
from app.services import hosts, vm_views, volumes

GIB = 1 << 30


def _mib(v: float | None) -> str | None:
    return None if v is None else f"{v / (1 << 20):.2f} MiB"


def vm_figures(vm) -> dict:
    """VmMetricsResponse's own fields for one VM (a vm_views.VMView)."""
    out = {"cputotal": f"{vm.cpu_number * vm.cpu_speed / 1000.0:.1f} Ghz",
           "memorytotal": f"{vm.memory / 1024.0:.2f} GiB",
           "networkread": _mib(vm.net_rx_bps), "networkwrite": _mib(vm.net_tx_bps),
           "diskread": _mib(vm.disk_read_bps), "diskwrite": _mib(vm.disk_write_bps)}
    if vm.memory_used_kib is not None:
        out["memorykbs"] = vm.memory * 1024
        out["memoryintfreekbs"] = max(vm.memory * 1024 - vm.memory_used_kib, 0)
    if vm.cpu_used_pct is not None:
        out["cpuused"] = f"{vm.cpu_used_pct:.2f}%"
    return out


def list_vm_metrics(caller, *, page=None, **filters):
    """(VMView rows, total): listVirtualMachines' rows and visibility."""
    return vm_views.list_vms(caller, page=page, **filters)


def host_figures(h, counts: dict[int, tuple[int, int]]) -> dict:
    """HostMetricsResponse's own fields for one host."""
    total_mhz = (h.cpu_number or 0) * (h.cpu_speed or 0)
    running, total = counts.get(h.id, (0, 0))
    mem = h.memory_total or 0
    out = {"cputotalghz": f"{total_mhz / 1000.0:.2f} Ghz",
           "cpuallocatedghz": f"{(h.cpu_allocated or 0) / 1000.0:.2f} Ghz",
           "cpuallocatedpercentage": f"{100.0 * (h.cpu_allocated or 0) / total_mhz:.2f}%" if total_mhz else "0.00%",
           "memorytotalgb": f"{mem / GIB:.2f} GB", "memoryallocatedgb": f"{(h.memory_allocated or 0) / GIB:.2f} GB",
           "memoryallocatedpercentage": f"{100.0 * (h.memory_allocated or 0) / mem:.2f}%" if mem else "0.00%",
           "instances": f"{running} / {total}", "powerstate": "Unknown", "cpunumber": h.cpu_number}
    if h.cpu_used_pct is not None:
        out["cpuused"] = f"{h.cpu_used_pct:.2f}%"
        out["cpuusedghz"] = f"{total_mhz * h.cpu_used_pct / 100000.0:.2f} Ghz"
    if h.memory_used is not None:
        out["memoryusedgb"] = f"{h.memory_used / GIB:.2f} GB"
        out["memoryusedpercentage"] = f"{100.0 * h.memory_used / mem:.2f}%" if mem else "0.00%"
    return out


def list_host_metrics(caller, **filters):
    """(hosts, total, {host id: (running VMs, VMs)})."""
    rows, total = hosts.list_hosts(**filters)
    ids = [h.id for h in rows]
    counts: dict[int, tuple[int, int]] = {}
    if ids:
        for host_id, state, n in db.session.execute(
                select(VirtualMachine.host_id, VirtualMachine.state, func.count())
                .where(VirtualMachine.host_id.in_(ids), VirtualMachine.removed.is_(None))
                .group_by(VirtualMachine.host_id, VirtualMachine.state)):
            running, all_ = counts.get(host_id, (0, 0))
            counts[host_id] = (running + (n if state == VMState.RUNNING else 0), all_ + n)
    return rows, total, counts


def volume_figures(v) -> dict:
    """VolumeMetricsResponse's own fields for one volume."""
    return {"sizegb": f"{(v.size or 0) / GIB:.2f} GB", "diskiopstotal": 0,
            "storagetype": ("local" if v.pool.scope == "HOST" else "shared") if v.pool else None}


def list_volume_metrics(caller, **filters):
    return volumes.list_volumes(caller, **filters)
