"""Service offerings (CPU, memory, storage type) — what a VM is sized by."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from app.extensions import db
from app.models import ServiceOffering, VirtualMachine, new_uuid, utcnow
from app.services import events, placement_tags, zones
from app.services.errors import InvalidParameter, NotFound, ResourceInUse
from app.services.pagination import page_of


def unique_name(model, name: str, exclude_id: int | None = None) -> None:
    """Refuse a second live offering (service or disk) with the same name: an offering is chosen
    by name in forms and clients, and two alike are contradictory input."""
    q = select(model.id).where(model.name == name, model.removed.is_(None))
    if exclude_id is not None:
        q = q.where(model.id != exclude_id)
    if db.session.scalar(q.limit(1)) is not None:
        what = "service" if model is ServiceOffering else "disk"
        raise InvalidParameter(f"A {what} offering named {name} already exists", field="name")


CPU_RANGE, SPEED_RANGE, MEMORY_RANGE = (1, 256), (100, 100000), (32, 16 * 1024 * 1024)


def _in_range(field: str, value, bounds: tuple[int, int]) -> None:
    if value is None or not bounds[0] <= value <= bounds[1]:
        raise InvalidParameter(f"{field} must be between {bounds[0]} and {bounds[1]}", field=field)


def _custom_bounds(cpu_number, memory, min_cpu, max_cpu, min_memory, max_memory) -> tuple[int, int, int, int]:
    """A customized offering's bounds, checked: vCPUs and memory are chosen at deploy, so giving
    them here contradicts it; each min at most its max."""
    for field, value in (("cpunumber", cpu_number), ("memory", memory)):
        if value is not None:
            raise InvalidParameter(f"A customized offering takes no {field}: it is chosen when a VM is deployed "
                                   "(give mincpunumber, maxcpunumber, minmemory, maxmemory)", field=field)
    for field, value, bounds in (("mincpunumber", min_cpu, CPU_RANGE), ("maxcpunumber", max_cpu, CPU_RANGE),
                                 ("minmemory", min_memory, MEMORY_RANGE), ("maxmemory", max_memory, MEMORY_RANGE)):
        _in_range(field, value, bounds)
    if min_cpu > max_cpu:
        raise InvalidParameter("mincpunumber must not be more than maxcpunumber", field="mincpunumber")
    if min_memory > max_memory:
        raise InvalidParameter("minmemory must not be more than maxmemory", field="minmemory")
    return min_cpu, max_cpu, min_memory, max_memory


def create(caller, *, name: str, display_text: str | None, cpu_number: int | None, cpu_speed: int,
           memory: int | None, storage_type: str = "shared", root_disk_size: int | None = None,
           offer_ha: bool = False, host_tags=None, storage_tags=None, customized: bool = False,
           min_cpu_number: int | None = None, max_cpu_number: int | None = None, min_memory: int | None = None,
           max_memory: int | None = None, domain_ids=None, zone_ids=None, external_details=None) -> ServiceOffering:
    from app.services import offering_domains
    from app.services.extensions import details as extension_details
    ext_values = extension_details.parse(external_details, "externaldetails")
    if ext_values and not offering_domains.is_root(caller):
        raise InvalidParameter("Only root administrators may give an offering external details",
                               field="externaldetails")
    domains = offering_domains.parse(domain_ids)
    in_zones = offering_domains.parse_zones(zone_ids)
    offering_domains.check_caller(caller, ServiceOffering(), domains, creating=True)
    if not offering_domains.is_root(caller) and (host_tags or storage_tags):
        raise InvalidParameter(f"Unable to create service offering with storage tags or host tags by admin: "
                               f"{caller.username} because it is domain-admin", field="hosttags")
    name = zones._name(name)
    unique_name(ServiceOffering, name)
    host_tags = placement_tags.normalize(host_tags, "hosttags")
    storage_tags = placement_tags.normalize(storage_tags, "tags")
    _in_range("cpuspeed", cpu_speed, SPEED_RANGE)
    bounds = (None,) * 4
    if customized:
        bounds = _custom_bounds(cpu_number, memory, min_cpu_number, max_cpu_number, min_memory, max_memory)
        cpu_number, memory = bounds[0], bounds[2]
    else:
        if any(v is not None for v in (min_cpu_number, max_cpu_number, min_memory, max_memory)):
            raise InvalidParameter("mincpunumber, maxcpunumber, minmemory and maxmemory are for a customized "
                                   "offering (customized=true)", field="customized")
        _in_range("cpunumber", cpu_number, CPU_RANGE)
        _in_range("memory", memory, MEMORY_RANGE)
    if storage_type not in ("shared", "local"):
        raise InvalidParameter("storagetype must be shared or local", field="storagetype")
    if root_disk_size is not None and not 1 <= root_disk_size <= 65536:
        raise InvalidParameter("rootdisksize must be between 1 and 65536 GiB", field="rootdisksize")
    o = ServiceOffering(uuid=new_uuid(), name=name, display_text=display_text or name, cpu_number=cpu_number,
                        cpu_speed=cpu_speed, memory=memory, storage_type=storage_type,
                        root_disk_size=root_disk_size, offer_ha=bool(offer_ha), host_tags=host_tags,
                        storage_tags=storage_tags, is_customized=bool(customized), min_cpu_number=bounds[0],
                        max_cpu_number=bounds[1], min_memory=bounds[2], max_memory=bounds[3])
    db.session.add(o)
    offering_domains.set_domains(o, domains)
    offering_domains.set_zones(caller, o, in_zones, creating=True)
    if ext_values:  # sent to the extension of an External VM made with this offering
        db.session.flush()
        extension_details.replace("ServiceOffering", o.id, ext_values)
    events.record("SERVICE.OFFERING.CREATE", f"Service offering {name} created", user=caller,
                  resource_type="ServiceOffering", resource_id=o.uuid)
    db.session.commit()
    return o


def get(uuid: str) -> ServiceOffering:
    o = db.session.scalar(select(ServiceOffering).where(ServiceOffering.uuid == uuid,
                                                        ServiceOffering.removed.is_(None)))
    if o is None:
        raise NotFound("Unable to find service offering with the specified id", field="id")
    return o


def rename(o, *, name: str | None, display_text: str | None, sort_key: int | None) -> None:
    """The name, display text and sort key an update of an offering (service or disk) gives, checked."""
    if name is not None:
        name = zones._name(name)
        unique_name(type(o), name, exclude_id=o.id)
        o.name = name
    if display_text is not None:
        if len(display_text) > 4096 or any(ord(c) < 32 for c in display_text):
            raise InvalidParameter("Invalid displaytext", field="displaytext")
        o.display_text = display_text
    if sort_key is not None:
        o.sort_key = sort_key


def update(caller, uuid: str, *, name: str | None = None, display_text: str | None = None,
           sort_key: int | None = None, host_tags=None, storage_tags=None, domain_ids=None,
           zone_ids=None) -> ServiceOffering:
    """updateServiceOffering: name, display text, sort key, (CloudStack 4.16+) host and storage tags,
    and the domains (domainid; "public": none). The tags rule where the offering's VMs go from their
    next start on; running VMs stay put. A domain admin edits only offerings of their subtree."""
    from app.services import offering_domains
    o = get(uuid)
    domains = offering_domains.parse(domain_ids, allow_public=True)
    offering_domains.check_caller(caller, o, domains, creating=False)
    if not offering_domains.is_root(caller) and (host_tags or storage_tags):
        raise InvalidParameter(f"Unable to update service offering with storage tags or host tags by admin: "
                               f"{caller.username} because it is domain-admin", field="hosttags")
    offering_domains.set_domains(o, domains)
    offering_domains.set_zones(caller, o, offering_domains.parse_zones(zone_ids, allow_all=True))
    rename(o, name=name, display_text=display_text, sort_key=sort_key)
    if host_tags is not None:
        o.host_tags = placement_tags.normalize(host_tags, "hosttags")
    if storage_tags is not None:
        o.storage_tags = placement_tags.normalize(storage_tags, "storagetags")
    events.record("SERVICE.OFFERING.EDIT", f"Service offering {o.name} updated", user=caller,
                  resource_type="ServiceOffering", resource_id=o.uuid)
    db.session.commit()
    return o


def delete(caller, uuid: str) -> None:
    from app.services import offering_domains
    o = get(uuid)
    if not offering_domains.may_manage(caller, o):
        raise InvalidParameter(f"Unable to delete service offering: {o.uuid} by admin: {caller.username}: a "
                               "domain admin deletes only offerings of their own domains", field="id")
    if db.session.scalar(select(func.count()).select_from(VirtualMachine).where(
            VirtualMachine.service_offering_id == o.id, VirtualMachine.removed.is_(None))):
        raise ResourceInUse(f"Service offering {o.name} is still used by VMs")
    o.removed = utcnow()
    events.record("SERVICE.OFFERING.DELETE", f"Service offering {o.name} deleted", user=caller,
                  resource_type="ServiceOffering", resource_id=o.uuid)
    db.session.commit()


def list_offerings(caller=None, *, id=None, name=None, keyword=None, page=None, domainid=None, recursive=False,
                   owner=None, zone=None):
    """listServiceOfferings: what the caller may see (offering_domains.visible; no caller: every one),
    or with owner what that account may use (the deploy wizard's choice for it)."""
    from app.services import offering_domains
    return page_of(offering_domains.listed(ServiceOffering, caller, id=id, name=name, keyword=keyword,
                                           domainid=domainid, recursive=recursive, owner=owner, zone=zone), page)


@dataclass(frozen=True)
class Size:
    """What one VM gets: the offering's, or for a customized one the values chosen at deploy."""
    cpu_number: int
    cpu_speed: int
    memory: int  # MiB


def size_for(offering: ServiceOffering, details: dict | None = None) -> Size:
    """deployVirtualMachine's size: a fixed offering's own (details ignored, as CloudStack); a
    customized one's from details cpuNumber and memory, each within the offering's bounds."""
    if not offering.is_customized:
        return Size(offering.cpu_number, offering.cpu_speed, offering.memory)
    details = {k.lower(): v for k, v in (details or {}).items()}
    try:
        cpu, memory = int(details["cpunumber"]), int(details["memory"])
    except (KeyError, TypeError, ValueError):
        raise InvalidParameter("Need to specify custom parameter values cpu and memory when using custom offering",
                               field="details") from None
    if not offering.min_cpu_number <= cpu <= offering.max_cpu_number:
        raise InvalidParameter(f"Invalid cpu cores value, specify a value between {offering.min_cpu_number} and "
                               f"{offering.max_cpu_number}", field="details")
    if not offering.min_memory <= memory <= offering.max_memory:
        raise InvalidParameter(f"Invalid memory value, specify a value between {offering.min_memory} and "
                               f"{offering.max_memory}", field="details")
    return Size(cpu, offering.cpu_speed, memory)
