"""Service offerings (CPU, memory, storage type) — what a VM is sized by."""
from __future__ import annotations

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


def create(caller, *, name: str, display_text: str | None, cpu_number: int, cpu_speed: int, memory: int,
           storage_type: str = "shared", root_disk_size: int | None = None, offer_ha: bool = False,
           host_tags=None, storage_tags=None) -> ServiceOffering:
    name = zones._name(name)
    unique_name(ServiceOffering, name)
    host_tags = placement_tags.normalize(host_tags, "hosttags")
    storage_tags = placement_tags.normalize(storage_tags, "tags")
    for field, value, low, high in (("cpunumber", cpu_number, 1, 256), ("cpuspeed", cpu_speed, 100, 100000),
                                    ("memory", memory, 32, 16 * 1024 * 1024)):
        if value is None or not low <= value <= high:
            raise InvalidParameter(f"{field} must be between {low} and {high}", field=field)
    if storage_type not in ("shared", "local"):
        raise InvalidParameter("storagetype must be shared or local", field="storagetype")
    if root_disk_size is not None and not 1 <= root_disk_size <= 65536:
        raise InvalidParameter("rootdisksize must be between 1 and 65536 GiB", field="rootdisksize")
    o = ServiceOffering(uuid=new_uuid(), name=name, display_text=display_text or name, cpu_number=cpu_number,
                        cpu_speed=cpu_speed, memory=memory, storage_type=storage_type,
                        root_disk_size=root_disk_size, offer_ha=bool(offer_ha), host_tags=host_tags,
                        storage_tags=storage_tags)
    db.session.add(o)
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
           sort_key: int | None = None, host_tags=None, storage_tags=None) -> ServiceOffering:
    """updateServiceOffering: name, display text, sort key, and (CloudStack 4.16+) host and storage tags.
    The tags rule where the offering's VMs go from their next start on; running VMs stay put."""
    o = get(uuid)
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
    o = get(uuid)
    if db.session.scalar(select(func.count()).select_from(VirtualMachine).where(
            VirtualMachine.service_offering_id == o.id, VirtualMachine.removed.is_(None))):
        raise ResourceInUse(f"Service offering {o.name} is still used by VMs")
    o.removed = utcnow()
    events.record("SERVICE.OFFERING.DELETE", f"Service offering {o.name} deleted", user=caller,
                  resource_type="ServiceOffering", resource_id=o.uuid)
    db.session.commit()


def list_offerings(*, id=None, name=None, keyword=None, page=None):
    q = select(ServiceOffering).where(ServiceOffering.removed.is_(None)).order_by(ServiceOffering.sort_key,
                                                                                 ServiceOffering.id)
    if id:
        q = q.where(ServiceOffering.uuid == id)
    if name:
        q = q.where(ServiceOffering.name == name)
    if keyword:
        q = q.where(ServiceOffering.name.contains(keyword, autoescape=True))
    return page_of(q, page)
