"""CloudStack's metrics lists: listVirtualMachinesMetrics, listHostsMetrics, listVolumesMetrics."""
from __future__ import annotations

from app.api.registry import ADMIN, Param, command
from app.api.serializers import serialize, vm_dicts
from app.models import cs_date
from app.services import vm_metrics


@command("listVirtualMachinesMetrics", "Lists VM metrics", response="virtualmachine", list=True, params=[
    Param("name", "string", "the name"), Param("state", "string", "the state"), Param("zoneid", "uuid", "the zone"),
    Param("hostid", "uuid", "the host (admins)"), Param("groupid", "uuid", "the instance group")])
def list_vm_metrics(ctx, p):
    rows, total = vm_metrics.list_vm_metrics(ctx.user, id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"),
                                             state=p.get("state"), zone_uuid=p.get("zoneid"),
                                             host_uuid=p.get("hostid"), account=p.get("account"),
                                             group_uuid=p.get("groupid"), page=ctx.page)
    return [{**answer, **vm_metrics.vm_figures(vm)}
            for vm, answer in zip(rows, vm_dicts(rows, admin=ctx.user.is_admin))], total


@command("listHostsMetrics", "Lists hosts metrics", role=ADMIN, response="host", list=True, params=[
    Param("zoneid", "uuid", "the zone"), Param("podid", "uuid", "the pod"), Param("clusterid", "uuid", "the cluster"),
    Param("state", "string", "Up, Down, Alert, ..."), Param("resourcestate", "string", "Enabled, Maintenance, ..."),
    Param("hypervisor", "string", "the hypervisor type"), Param("name", "string", "the host's name"),
    Param("type", "string", "Routing (the only type)")])
def list_host_metrics(ctx, p):
    rows, total, counts = vm_metrics.list_host_metrics(
        ctx.user, id=p.get("id"), zone_uuid=p.get("zoneid"), pod_uuid=p.get("podid"), cluster_uuid=p.get("clusterid"),
        state=p.get("state"), hypervisor=p.get("hypervisor"), name=p.get("name"), keyword=p.get("keyword"),
        resource_state=p.get("resourcestate"), page=ctx.page)
    return [{**serialize("host", h), **vm_metrics.host_figures(h, counts)} for h in rows], total


@command("listVolumesMetrics", "Lists volume metrics", response="volume", list=True, params=[
    Param("name", "string", "the name"), Param("virtualmachineid", "uuid", "the VM"),
    Param("zoneid", "uuid", "the zone"), Param("type", "string", "ROOT or DATADISK")])
def list_volume_metrics(ctx, p):
    rows, total = vm_metrics.list_volume_metrics(ctx.user, id=p.get("id"), name=p.get("name"),
                                                 keyword=p.get("keyword"), vm_uuid=p.get("virtualmachineid"),
                                                 zone_uuid=p.get("zoneid"), type_=p.get("type"), page=ctx.page)
    return [{**serialize("volume", v), **vm_metrics.volume_figures(v)} for v in rows], total


def _utc(value):
    """A date parameter as the naive UTC the samples are kept in."""
    if value is not None and value.tzinfo is not None:
        from datetime import timezone
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _stats(vm, row, interval: float) -> dict:
    """CloudStack's StatsResponse for one sample. Nubo keeps rates: the KiB figures are the
    rate over one vm.stats.interval, as CloudStack's are the traffic of one collection cycle."""
    kib = (lambda bps: None if bps is None else int(bps * interval / 1024))
    out = {"timestamp": cs_date(row.at), "cpuused": None if row.cpu_pct is None else f"{row.cpu_pct:.2f}%",
           "memorykbs": vm.memory * 1024, "diskiopstotal": 0,
           "diskkbsread": kib(row.disk_read_bps), "diskkbswrite": kib(row.disk_write_bps),
           "networkkbsread": kib(row.net_rx_bps), "networkkbswrite": kib(row.net_tx_bps)}
    if row.memory_used is not None:
        out["memoryintfreekbs"] = max(vm.memory * 1024 - row.memory_used // 1024, 0)
    for key, kbs in (("networkread", out["networkkbsread"]), ("networkwrite", out["networkkbswrite"])):
        if kbs is not None:
            out[key] = f"{kbs / 1024.0:.2f} MiB"
    return {k: v for k, v in out.items() if v is not None}


@command("listVirtualMachinesUsageHistory", "Lists VM stats history (the monitor's samples)",
         response="virtualmachine", list=True, params=[
             Param("name", "string", "the VM's name"),
             Param("startdate", "date", "samples from this time (yyyy-MM-dd HH:mm:ss, UTC)"),
             Param("enddate", "date", "samples until this time")])
def list_vm_usage_history(ctx, p):
    from app.services import settings
    from app.services.metrics import history
    rows, total = history.vm_usage_history(ctx.user, id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"),
                                           start=_utc(p.get("startdate")), end=_utc(p.get("enddate")), page=ctx.page)
    interval = settings.get("vm.stats.interval") / 1000.0
    return [{"id": vm.uuid, "name": vm.name, "displayname": vm.display_name or vm.name,
             "stats": [_stats(vm, s, interval) for s in samples]} for vm, samples in rows], total
