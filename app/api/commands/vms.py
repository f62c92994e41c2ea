"""Virtual machines, service offerings and events (CloudStack names); networks: network/."""
from __future__ import annotations

from app.api.registry import ADMIN, DOMAIN_ADMIN, Param, command
from app.api.serializers import vm_dicts
from app.jobs import service as jobs
from app.services import events, offerings, vm_views, vms, zones
from app.services.errors import InvalidParameter


@command("deployVirtualMachine", "Creates a VM from a template or a bootable ISO and starts it", is_async=True,
         response="virtualmachine", async_returns_id=True, params=[
             Param("zoneid", "uuid", "the zone", required=True),
             Param("serviceofferingid", "uuid", "the service offering", required=True),
             Param("templateid", "uuid", "the template or bootable ISO", required=True),
             Param("name", "string", "host name of the VM"), Param("displayname", "string", "display name"),
             Param("networkids", "list", "guest networks (default: the zone's)", item_type="uuid"),
             Param("keypair", "string", "SSH key pair name"),
             Param("userdata", "string", "base64 user data for cloud-init", length=1048576),
             Param("diskofferingid", "uuid", "root disk of a VM from an ISO"),
             Param("rootdisksize", "long", "root disk size in GiB"),
             Param("startvm", "boolean", "start it (default true)"),
             Param("hostid", "uuid", "the host (admins)"), Param("hypervisor", "string", "the hypervisor"),
             Param("ipaddress", "string", "the IP address of the default NIC"),
             Param("iptonetworklist", "map", "networks with the IP each NIC gets: iptonetworklist[0].networkid, "
                   "iptonetworklist[0].ip (instead of networkids and ipaddress)"),
             Param("securitygroupids", "list", "security groups of its NICs on security-group networks "
                   "(mutually exclusive with securitygroupnames)", item_type="uuid"),
             Param("securitygroupnames", "list", "security groups by name (mutually exclusive with "
                   "securitygroupids)"),
             Param("group", "string", "an optional group for the virtual machine"),
             Param("userdataid", "uuid", "the ID of the registered user data"),
             Param("userdatadetails", "map", "the values of the user data's variables: userdatadetails[0].name=value"),
             Param("affinitygroupids", "list", "comma separated list of affinity groups id that are going to be "
                   "applied to the virtual machine (mutually exclusive with affinitygroupnames)", item_type="uuid"),
             Param("affinitygroupnames", "list", "comma separated list of affinity groups names that are going to be "
                   "applied to the virtual machine (mutually exclusive with affinitygroupids)"),
             Param("account", "string", "the owner's account (admins; with domainid)"),
             Param("domainid", "uuid", "the owner's domain"),
             Param("projectid", "uuid", "the project that owns the VM"),
             Param("details", "map", "a customized offering's size: details[0].cpuNumber, details[0].memory"),
             Param("externaldetails", "map", "Details in key/value pairs using format externaldetails[i].keyname="
                   "keyvalue (External VMs: sent to the extension)")])
def deploy(ctx, p):
    from flask import request
    # vms.deploy runs without expiry on commit; its answer reads only the job's uuid and VM id, which
    # never change, so nothing it loaded is expired on the way out (no re-SELECT of the job).
    with jobs.not_expiring(expire_after=False):
        vm, job = vms.deploy(ctx.user, zone_uuid=p["zoneid"], service_offering_uuid=p["serviceofferingid"],
                             template_uuid=p["templateid"], name=p.get("name"), display_name=p.get("displayname"),
                             network_uuids=p.get("networkids"), keypair=p.get("keypair"), userdata=p.get("userdata"),
                             disk_offering_uuid=p.get("diskofferingid"), root_disk_size_gib=p.get("rootdisksize"),
                             start=p.get("startvm", True), host_uuid=p.get("hostid"), hypervisor=p.get("hypervisor"),
                             ip_address=p.get("ipaddress"), ip_to_network=p.get("iptonetworklist"),
                             security_group_uuids=p.get("securitygroupids"),
                             security_group_names=p.get("securitygroupnames"), group=p.get("group"),
                             userdata_uuid=p.get("userdataid"), userdata_details=p.get("userdatadetails"),
                             http_method=request.method, affinity_group_uuids=p.get("affinitygroupids"),
                             affinity_group_names=p.get("affinitygroupnames"), account=p.get("account"),
                             domainid=p.get("domainid"),
                             details={k: v for d in p.get("details", []) for k, v in d.items()},
                             external_details=p.get("externaldetails"))
    return job


ID = [Param("id", "uuid", "the VM", required=True)]


@command("startVirtualMachine", "Starts a stopped VM (on its last host when it can)", is_async=True,
         response="virtualmachine", params=[*ID, Param("hostid", "uuid", "the host (admins)")])
def start(ctx, p):
    return vms.start(ctx.user, p["id"], p.get("hostid"))


@command("stopVirtualMachine", "Stops a VM: graceful, powered off only with forced=true", is_async=True,
         response="virtualmachine", params=[*ID, Param("forced", "boolean", "power off if the guest does not stop")])
def stop(ctx, p):
    return vms.stop(ctx.user, p["id"], p.get("forced", False))


@command("rebootVirtualMachine", "Reboots a running VM", is_async=True, response="virtualmachine", params=ID)
def reboot(ctx, p):
    return vms.reboot(ctx.user, p["id"])


@command("destroyVirtualMachine", "Destroys a VM (recoverable until expunged)", is_async=True,
         response="virtualmachine", params=[*ID, Param("expunge", "boolean", "expunge at once")])
def destroy(ctx, p):
    return vms.destroy(ctx.user, p["id"], p.get("expunge", False))


@command("recoverVirtualMachine", "Recovers a destroyed VM (it is Stopped again)", response="virtualmachine",
         params=ID)
def recover(ctx, p):
    return vms.recover(ctx.user, p["id"])


@command("expungeVirtualMachine", "Expunges a destroyed VM: volumes, IPs and capacity go", is_async=True,
         params=ID)
def expunge(ctx, p):
    return vms.expunge(ctx.user, p["id"])


@command("migrateVirtualMachine", "Live-migrates a running VM to another host of its cluster", role=ADMIN,
         is_async=True, response="virtualmachine", params=[
             Param("virtualmachineid", "uuid", "the VM", required=True),
             Param("hostid", "uuid", "the destination (default: chosen by the planner)")])
def migrate(ctx, p):
    return vms.migrate(ctx.user, p["virtualmachineid"], p.get("hostid"))


@command("migrateVirtualMachineWithVolume", "Attempts Migration of a VM with its volumes to a different host",
         role=ADMIN, is_async=True, response="virtualmachine", params=[
             Param("virtualmachineid", "uuid", "the ID of the virtual machine", required=True),
             Param("hostid", "uuid", "Destination Host ID to migrate VM to."),
             Param("migrateto", "map", "Storage to pool mapping: migrateto[0].volume=<uuid>&migrateto[0].pool=<uuid> "
                   "(volumes not named move only where the destination does not reach their pool)")])
def migrate_with_volume(ctx, p):
    mapping = {}
    for entry in p.get("migrateto") or []:
        if not entry.get("volume") or not entry.get("pool"):
            raise InvalidParameter("Each migrateto entry needs a volume and a pool", field="migrateto")
        mapping[entry["volume"]] = entry["pool"]
    return vms.migrate_with_volume(ctx.user, p["virtualmachineid"], p.get("hostid"), mapping or None)


@command("changeServiceForVirtualMachine", "Changes the offering of a stopped VM", response="virtualmachine",
         params=[*ID, Param("serviceofferingid", "uuid", "the new offering", required=True)])
def change_service(ctx, p):
    return vms.change_offering(ctx.user, p["id"], p["serviceofferingid"])


@command("scaleVirtualMachine", "Changes the offering of a stopped VM (as changeServiceForVirtualMachine)",
         is_async=True, response="virtualmachine",
         params=[*ID, Param("serviceofferingid", "uuid", "the new offering", required=True)])
def scale(ctx, p):
    return vms.scale_job(ctx.user, p["id"], p["serviceofferingid"])


@command("attachIso", "Attaches an ISO to a VM", is_async=True, response="virtualmachine", params=[
    Param("id", "uuid", "the ISO", required=True), Param("virtualmachineid", "uuid", "the VM", required=True)])
def attach_iso(ctx, p):
    return vms.attach_iso(ctx.user, p["virtualmachineid"], p["id"])


@command("detachIso", "Detaches the ISO of a VM", is_async=True, response="virtualmachine",
         params=[Param("virtualmachineid", "uuid", "the VM", required=True)])
def detach_iso(ctx, p):
    return vms.detach_iso(ctx.user, p["virtualmachineid"])


@command("listVirtualMachines", "Lists VMs (details=min for a lighter answer)", response="virtualmachine",
         list=True, params=[Param("name", "string", "the name"), Param("state", "string", "the state"),
                            Param("zoneid", "uuid", "the zone"), Param("hostid", "uuid", "the host (admins)"),
                            Param("details", "list", "min or all"), Param("tags", "map", "List resources by tags (key/value pairs): tags[0].key=...&tags[0].value=..."),
                            Param("groupid", "uuid", "the instance group")])
def list_vms(ctx, p):
    minimal = "min" in [d.lower() for d in p.get("details", [])]
    rows, total = vm_views.list_vms(ctx.user, id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"),
                               state=p.get("state"), zone_uuid=p.get("zoneid"), host_uuid=p.get("hostid"),
                               account=p.get("account"), domainid=p.get("domainid"), tags=p.get("tags"),
                               group_uuid=p.get("groupid"), page=ctx.page, details_min=minimal)
    return vm_dicts(rows, minimal, admin=ctx.user.is_admin), total


@command("createServiceOffering", "Creates a service offering", role=DOMAIN_ADMIN, response="serviceoffering", params=[
    Param("name", "string", "the name", required=True), Param("displaytext", "string", "the display text"),
    Param("cpunumber", "integer", "vCPUs (not for a customized offering)"),
    Param("cpuspeed", "integer", "MHz per vCPU", required=True),
    Param("memory", "integer", "MiB (not for a customized offering)"),
    Param("customized", "boolean", "whether the vCPUs and memory are chosen at deploy (details cpuNumber, memory)"),
    Param("mincpunumber", "integer", "the minimum number of CPUs to be set with a customized offering"),
    Param("maxcpunumber", "integer", "the maximum number of CPUs to be set with a customized offering"),
    Param("minmemory", "integer", "the minimum memory (MiB) to be set with a customized offering"),
    Param("maxmemory", "integer", "the maximum memory (MiB) to be set with a customized offering"),
    Param("storagetype", "string", "shared (default) or local"),
    Param("rootdisksize", "long", "root disk GiB"), Param("offerha", "boolean", "HA"),
    Param("hosttags", "string", "the host tag for this service offering (comma separated: hosts need them all)"),
    Param("tags", "string", "the storage tags for this service offering (comma separated)"),
    Param("domainid", "list", "the ID of the containing domain(s), null for public offerings"),
    Param("zoneid", "list", "the ID of the containing zone(s), null for public offerings"),
    Param("externaldetails", "map", "Details in key/value pairs using format externaldetails[i].keyname=keyvalue "
          "(sent to the extension of External VMs made with it)")])
def create_offering(ctx, p):
    return offerings.create(ctx.user, name=p["name"], display_text=p.get("displaytext"),
                            cpu_number=p.get("cpunumber"), cpu_speed=p["cpuspeed"], memory=p.get("memory"),
                            storage_type=p.get("storagetype", "shared"), root_disk_size=p.get("rootdisksize"),
                            offer_ha=p.get("offerha", False), host_tags=p.get("hosttags"), storage_tags=p.get("tags"),
                            customized=p.get("customized", False), min_cpu_number=p.get("mincpunumber"),
                            max_cpu_number=p.get("maxcpunumber"), min_memory=p.get("minmemory"),
                            max_memory=p.get("maxmemory"), domain_ids=p.get("domainid"), zone_ids=p.get("zoneid"),
                            external_details=p.get("externaldetails"))


@command("updateServiceOffering", "Updates a service offering", role=DOMAIN_ADMIN, response="serviceoffering", params=[
    Param("id", "uuid", "the ID of the service offering to be updated", required=True),
    Param("name", "string", "the name of the service offering to be updated"),
    Param("displaytext", "string", "the display text of the service offering to be updated"),
    Param("sortkey", "integer", "sort key of the service offering, integer"),
    Param("hosttags", "string", "comma-separated list of host tags for the service offering, tags should match "
          "with existing host tags"),
    Param("storagetags", "string", "comma-separated list of tags for the service offering, tags should match "
          "with existing storage pool tags"),
    Param("domainid", "string", "the ID of the containing domain(s) as comma separated string, public for public "
          "offerings"),
    Param("zoneid", "string", "the ID of the containing zone(s) as comma separated string, all for all zones "
          "offerings")])
def update_offering(ctx, p):
    return offerings.update(ctx.user, p["id"], name=p.get("name"), display_text=p.get("displaytext"),
                            sort_key=p.get("sortkey"), host_tags=p.get("hosttags"), storage_tags=p.get("storagetags"),
                            domain_ids=p.get("domainid"), zone_ids=p.get("zoneid"))


@command("listServiceOfferings", "Lists service offerings", response="serviceoffering", list=True,
         params=[Param("name", "string", "the name"),
                 Param("zoneid", "uuid", "id of zone service offering is associated with")])
def list_offerings(ctx, p):
    zone = zones.get_zone(p["zoneid"]) if p.get("zoneid") else None
    return offerings.list_offerings(ctx.user, id=p.get("id"), name=p.get("name"), keyword=p.get("keyword"),
                                    page=ctx.page, domainid=p.get("domainid"), recursive=p.get("isrecursive", False),
                                    zone=zone)


@command("deleteServiceOffering", "Deletes an unused service offering", role=DOMAIN_ADMIN, params=ID)
def delete_offering(ctx, p):
    offerings.delete(ctx.user, p["id"])
    return {"success": True}


@command("listEvents", "Lists events (the audit log)", response="event", list=True, params=[
    Param("type", "string", "the event type, e.g. VM.START"), Param("level", "string", "INFO, WARN or ERROR"),
    Param("startdate", "date", "from"), Param("enddate", "date", "until"),
    Param("resourceid", "string", "events of this object")])
def list_events(ctx, p):
    return events.event_views(ctx.user, type_=p.get("type"), level=p.get("level"), start=p.get("startdate"),
                              end=p.get("enddate"), keyword=p.get("keyword"), resource_id=p.get("resourceid"),
                              page=ctx.page)
