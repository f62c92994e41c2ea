"""Guest OS mappings: a catalogue CloudStack clients read (regions: resource_details.py)."""
from __future__ import annotations

from app.api.registry import ADMIN, Param, command
from app.services import catalog


@command("listGuestOsMapping", "Lists all available OS mappings for given hypervisor", role=ADMIN,
         response="guestosmapping", list=True, params=[
             Param("id", "uuid", "list mapping by its UUID"),
             Param("ostypeid", "uuid", "list mapping by Guest OS Type UUID"),
             Param("osdisplayname", "string", "list Guest OS mapping by OS display name"),
             Param("osnameforhypervisor", "string", "list Guest OS mapping by OS mapping name with hypervisor"),
             Param("hypervisor", "string", "list Guest OS mapping by hypervisor"),
             Param("hypervisorversion", "string", "list Guest OS mapping by hypervisor version")])
def list_guest_os_mapping(ctx, p):
    return catalog.list_guest_os_mappings(id=p.get("id"), os_type_uuid=p.get("ostypeid"),
                                          os_display_name=p.get("osdisplayname"), hypervisor=p.get("hypervisor"),
                                          hypervisor_version=p.get("hypervisorversion"),
                                          os_name_for_hypervisor=p.get("osnameforhypervisor"),
                                          keyword=p.get("keyword"), page=ctx.page)
