"""listHypervisors, listHypervisorCapabilities, updateHypervisorCapabilities."""
from __future__ import annotations

from app.api.registry import ADMIN, Param, command
from app.api.serializers import hypervisor_name
from app.services import hypervisors as hv


@command("listHypervisors", "Lists hypervisor types (by CloudStack's names: KVM, Hyperv, ...)", response="hypervisor",
         list=True, params=[Param("zoneid", "uuid", "only the types with a cluster in this zone")])
def list_hypervisors(ctx, p):
    names = [hypervisor_name(hv.resolve(n).name) for n in hv.list_hypervisors(p.get("zoneid"))]
    return [{"name": n} for n in names], len(names)


@command("listHypervisorCapabilities", "Lists hypervisor capabilities and limits",
         response="hypervisorCapabilities", list=True,
         params=[Param("hypervisor", "string", "the hypervisor type (display or internal name)")])
def list_hypervisor_capabilities(ctx, p):
    rows = hv.list_capabilities(p.get("hypervisor"), p.get("id"))
    return rows, len(rows)


@command("updateHypervisorCapabilities", "Updates a hypervisor type's admin-tunable limits", role=ADMIN,
         response="hypervisorCapabilities", params=[
             Param("id", "uuid", "the capabilities row", required=True),
             Param("maxguestslimit", "long", "the maximum number of guests per host"),
             Param("maxdatavolumeslimit", "integer", "the maximum number of data volumes per VM"),
             Param("maxhostspercluster", "integer", "the maximum number of hosts per cluster"),
             Param("vmsnapshotenabled", "boolean", "Set true to enable VM snapshots for this hypervisor")])
def update_hypervisor_capabilities(ctx, p):
    return hv.update_capabilities(p["id"], max_guests_limit=p.get("maxguestslimit"),
                                  max_data_volumes_limit=p.get("maxdatavolumeslimit"),
                                  max_hosts_per_cluster=p.get("maxhostspercluster"),
                                  vm_snapshot_enabled=p.get("vmsnapshotenabled"))
