"""Read-only catalogues CloudStack clients ask for: storage providers and the guest OS names
each hypervisor type is given (regions: app/services/regions.py).

Nubo has its own storage providers: the primary pools
it makes (CloudStack's DefaultPrimary) and the image stores addImageStore takes. Every driver
gets a guest OS by its description (VMSpec.os_type), so each type's mapping is the identity,
as CloudStack's own KVM mappings are; mappings have stable ids (derived from the OS type and
the hypervisor), since they are not rows.
"""
from __future__ import annotations

import uuid as uuidlib

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from app.extensions import db
from app.hypervisors import registry
from app.models import OsType
from app.services import hypervisors as hv
from app.services import storage
from app.services.errors import InvalidParameter

PRIMARY_PROVIDERS = ("DefaultPrimary",)
_MAPPING_NS = uuidlib.UUID("6f1c1f0e-3c44-4f43-9a8e-6d1b3c9a2e51")


def list_storage_providers(type: str) -> list[dict]:
    kind = (type or "").strip().lower()
    if kind == "primary":
        names, wire = PRIMARY_PROVIDERS, "PRIMARY"
    elif kind == "image":
        names, wire = tuple(storage.IMAGE_STORE_PROVIDERS.values()), "IMAGE"
    else:
        raise InvalidParameter(f"Invalid parameter: {type}", field="type")
    return [{"name": n, "type": wire} for n in names]


def _wire_name(type_name: str) -> str:
    """A type's name on the wire: its own, except Custom's display name (as the API's serializers)."""
    return hv.display_name(type_name) if type_name == hv.CUSTOM else type_name


def mapping_id(os_type_uuid: str, type_name: str) -> str:
    return str(uuidlib.uuid5(_MAPPING_NS, f"{os_type_uuid}/{type_name}"))


def list_guest_os_mappings(*, id: str | None = None, os_type_uuid: str | None = None,
                           os_display_name: str | None = None, hypervisor: str | None = None,
                           hypervisor_version: str | None = None, os_name_for_hypervisor: str | None = None,
                           keyword: str | None = None, page: tuple[int, int] | None = None) -> tuple[list[dict], int]:
    types = registry.all_types()
    if hypervisor:
        wanted = hv.resolve(hypervisor).name
        types = [t for t in types if t.name == wanted]
    if hypervisor_version and hypervisor_version != "default":
        types = []  # one mapping per type, for every version ("default"), as CloudStack's fallback
    q = select(OsType).options(joinedload(OsType.category)).order_by(OsType.id)
    if os_type_uuid:
        q = q.where(OsType.uuid == os_type_uuid)
    rows = []
    for os_type in db.session.scalars(q):
        for t in types:
            m = {"id": mapping_id(os_type.uuid, t.name), "hypervisor": _wire_name(t.name),
                 "hypervisorversion": "default", "ostypeid": os_type.uuid, "osdisplayname": os_type.description,
                 "osnameforhypervisor": os_type.description, "isuserdefined": False}
            if id and m["id"] != id:
                continue
            if os_display_name and os_display_name.lower() not in os_type.description.lower():
                continue
            if os_name_for_hypervisor and os_name_for_hypervisor.lower() not in m["osnameforhypervisor"].lower():
                continue
            if keyword and keyword.lower() not in os_type.description.lower():
                continue
            rows.append(m)
    total = len(rows)
    if page:
        number, size = page
        rows = rows[(number - 1) * size:number * size]
    return rows, total
