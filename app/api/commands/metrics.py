"""CloudStack's metrics lists: listVirtualMachinesMetrics, listHostsMetrics, listVolumesMetrics."""
from __future__ import annotations

from app.api.registry import ADMIN, Param, command
from app.api.serializers import serialize, vm_dict
from app.services import vm_metrics


@command("listVirtualMachinesMetrics", "Lists VM metrics", response="virtualmachine", list=True, params=[
    Param("name", "string", "the name"), Param("state", "string", "the state"), Param("zoneid", "uuid", "the zone"),
    Param("hostid", "uuid", "the host (admins)"), Param("groupid", "uuid", "the instance group")])
def list_vm_metrics(ctx, p):
    rows, total = vm_metrics.list_vm_metrics(ctx.user, id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"),
                                             state=p.get("state"), zone_uuid=p.get("zoneid"),
                                             host_uuid=p.get("hostid"), account=p.get("account"),
                                             group_uuid=p.get("groupid"), page=ctx.page)
    return [{**vm_dict(vm, admin=ctx.user.is_admin), **vm_metrics.vm_figures(vm)} for vm in rows], total


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
