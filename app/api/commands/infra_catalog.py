"""Regions and guest OS mappings: catalogues CloudStack clients read."""
from __future__ import annotations

from flask import request

from app.api.registry import ADMIN, Param, command
from app.services import catalog


@command("listRegions", "Lists Regions", response="region", list=True, params=[
    Param("id", "integer", "List Region by region ID."),
    Param("name", "string", "List Region by region name.")])
def list_regions(ctx, p):
    # The one region is this management server; its endpoint is the address the client used.
    rows = catalog.list_regions(request.url_root.rstrip("/") + "/client/", id=p.get("id"), name=p.get("name"),
                                keyword=p.get("keyword"))
    return rows, len(rows)


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
