"""Hypervisor types as users see them: display names, the `hypervisor.list`
setting, the Custom type's renaming rule, and the admin-tunable limits.

Internal names ("KVM", "Custom", ...) are what rows store. Everything shown to
people or returned by the API goes through display_name(); everything typed by
people or API clients goes through resolve(), which accepts the display name
as well as the internal name.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from app.extensions import db
from app.hypervisors import registry
from app.hypervisors.base import Capabilities, DriverContext, HostConnection, HypervisorType
from app.models import Cluster, Host, HypervisorCapability, Zone
from app.services import settings
from app.services.errors import InvalidParameter, NotFound
from app.services.settings import Definition, define

CUSTOM = "Custom"
LIST_SETTING = "hypervisor.list"
CUSTOM_NAME_SETTING = "hypervisor.custom.display.name"


def display_name(type_name: str | None) -> str:
    """The name people see for a type (Custom's comes from a setting)."""
    if not type_name:
        return ""
    if type_name == CUSTOM:
        return settings.get(CUSTOM_NAME_SETTING)
    t = registry.get(type_name)
    return (t.default_display_name or t.name) if t else type_name


def _names_of(t: HypervisorType) -> set[str]:
    return {t.name.lower(), display_name(t.name).lower()}


def resolve(name: str | None, *, field: str = "hypervisor") -> HypervisorType:
    """A type from what a user typed: display name or internal name, any case."""
    wanted = (name or "").strip().lower()
    if wanted:
        for t in registry.all_types():
            if wanted in _names_of(t):
                return t
    raise InvalidParameter(f"Unknown hypervisor type: {name!r}", field=field)


def enabled_types() -> list[HypervisorType]:
    """The types in `hypervisor.list`, in its order (what the wizards offer)."""
    out: list[HypervisorType] = []
    for entry in settings.get(LIST_SETTING):
        try:
            t = resolve(entry)
        except InvalidParameter:
            continue  # a plugin that is no longer installed
        if t not in out:
            out.append(t)
    return out


def is_enabled(type_name: str) -> bool:
    return any(t.name == type_name for t in enabled_types())


def set_enabled(type_name: str, enabled: bool) -> list[str]:
    """Add the type to, or take it out of, `hypervisor.list` (by display name)."""
    t = resolve(type_name)
    entries = settings.get(LIST_SETTING)
    kept = [e for e in entries if e.lower() not in _names_of(t)]
    if enabled:
        kept.append(display_name(t.name))
    settings.update(LIST_SETTING, ",".join(kept))
    return kept


def _validate_list(entries: list[str]) -> None:
    seen: set[str] = set()
    # An entry already in the list whose plugin was uninstalled may stay; new names must resolve.
    current = {e.lower() for e in settings.get(LIST_SETTING)}
    for entry in entries:
        try:
            t = resolve(entry, field="value")
        except InvalidParameter:
            if entry.lower() in current:
                continue
            raise
        if t.name in seen:
            raise InvalidParameter(f"{entry} is listed twice in hypervisor.list", field="value")
        seen.add(t.name)


def _validate_custom_name(new: str) -> None:
    new = new.strip()
    if not new:
        raise InvalidParameter("The display name of the Custom type cannot be empty", field="value")
    if "," in new or len(new) > 64:
        raise InvalidParameter("The display name cannot contain commas and is at most 64 characters",
                               field="value")
    for t in registry.all_types():
        if t.name != CUSTOM and new.lower() in _names_of(t):
            raise InvalidParameter(f"{new} is already the name of the {t.name} type", field="value")


def _custom_renamed(old: str, new: str) -> None:
    """Replace the old display name where it is a *whole entry* of hypervisor.list.
    (CloudStack does a plain substring replace, which also rewrites other entries
    containing the old name; Nubo never does.)"""
    raw = db.session.get(settings.Setting, LIST_SETTING)
    current = settings.get(LIST_SETTING) if raw is None else [
        e.strip() for e in (raw.value or "").split(",") if e.strip()]
    replaced = [new if e.lower() == old.lower() else e for e in current]
    if replaced != current:
        settings.set_raw(LIST_SETTING, ",".join(replaced))


define(Definition(LIST_SETTING, "KVM,Xen,LXC,OpenVZ,Hyperv,Simulator,External",  # External: as 4.21's default
                  "The hypervisor types the wizards offer, by display name, comma separated.",
                  category="Hypervisor", type="list", validate=_validate_list))
define(Definition(CUSTOM_NAME_SETTING, CUSTOM,
                  "The name users see for the Custom hypervisor type, everywhere.",
                  category="Hypervisor", validate=_validate_custom_name, on_change=_custom_renamed))
define(Definition("xen.guest.boot.mode", "pv", "How Xen guests boot: pv (paravirtualised) or hvm.",
                  category="Hypervisor", choices=("pv", "hvm")))


# --- Limits (listHypervisorCapabilities / updateHypervisorCapabilities) -------

def ensure_capability_rows() -> None:
    """One limits row per registered type (bootstrap; new plugins get theirs at next start)."""
    have = set(db.session.scalars(select(HypervisorCapability.hypervisor_type)))
    for t in registry.all_types():
        if t.name not in have:
            c: Capabilities = t.capabilities
            db.session.add(HypervisorCapability(
                hypervisor_type=t.name, hypervisor_version="default",
                max_guests_limit=c.max_guests_per_host, max_data_volumes_limit=c.max_data_volumes,
                max_hosts_per_cluster=c.max_hosts_per_cluster,
                storage_motion_enabled=c.storage_migration, vm_snapshot_enabled=c.vm_snapshots))
    db.session.flush()


def list_capabilities(hypervisor: str | None = None, id: str | None = None) -> list[HypervisorCapability]:
    q = select(HypervisorCapability).order_by(HypervisorCapability.hypervisor_type)
    if hypervisor:
        q = q.where(HypervisorCapability.hypervisor_type == resolve(hypervisor).name)
    if id:
        q = q.where(HypervisorCapability.uuid == id)
    return [c for c in db.session.scalars(q) if registry.get(c.hypervisor_type)]


def update_capabilities(id: str, *, max_guests_limit: int | None = None,
                        max_data_volumes_limit: int | None = None,
                        max_hosts_per_cluster: int | None = None,
                        vm_snapshot_enabled: bool | None = None) -> HypervisorCapability:
    row = db.session.scalar(select(HypervisorCapability).where(HypervisorCapability.uuid == id))
    if row is None:
        raise NotFound("Unable to find hypervisor capabilities with the specified id", field="id")
    if vm_snapshot_enabled is not None:
        # The table can turn off what a type declares, never give it what it cannot do.
        if vm_snapshot_enabled and not resolve(row.hypervisor_type).capabilities.vm_snapshots:
            raise InvalidParameter(f"{display_name(row.hypervisor_type)} does not support VM snapshots",
                                   field="vmsnapshotenabled")
        row.vm_snapshot_enabled = bool(vm_snapshot_enabled)
    for name, value in (("max_guests_limit", max_guests_limit),
                        ("max_data_volumes_limit", max_data_volumes_limit),
                        ("max_hosts_per_cluster", max_hosts_per_cluster)):
        if value is not None:
            if value < 1:
                raise InvalidParameter(f"{name.replace('_', '')} must be at least 1", field=name)
            setattr(row, name, value)
    db.session.commit()
    return row


def limits(type_name: str) -> HypervisorCapability:
    """The admin-tuned limits of a type, or its declared defaults before bootstrap made a row."""
    row = db.session.scalar(select(HypervisorCapability).where(
        HypervisorCapability.hypervisor_type == type_name,
        HypervisorCapability.hypervisor_version == "default"))
    if row is None:
        c = resolve(type_name).capabilities
        row = HypervisorCapability(hypervisor_type=type_name, max_guests_limit=c.max_guests_per_host,
                                   max_data_volumes_limit=c.max_data_volumes,
                                   max_hosts_per_cluster=c.max_hosts_per_cluster,
                                   storage_motion_enabled=c.storage_migration, vm_snapshot_enabled=c.vm_snapshots)
    return row


# --- Views of the registry ----------------------------------------------------

@dataclass
class TypeSummary:
    type: HypervisorType
    display_name: str
    enabled: bool
    clusters: int
    hosts: int


def summaries() -> list[TypeSummary]:
    """Every registered type with its usage: two grouped queries, whatever the size."""
    clusters = dict(db.session.execute(
        select(Cluster.hypervisor_type, func.count()).where(Cluster.removed.is_(None))
        .group_by(Cluster.hypervisor_type)).all())
    hosts = dict(db.session.execute(
        select(Host.hypervisor_type, func.count()).where(Host.removed.is_(None))
        .group_by(Host.hypervisor_type)).all())
    enabled = {t.name for t in enabled_types()}
    return [TypeSummary(t, display_name(t.name), t.name in enabled, clusters.get(t.name, 0),
                        hosts.get(t.name, 0)) for t in registry.all_types()]


def list_hypervisors(zone_uuid: str | None = None) -> list[str]:
    """listHypervisors: hypervisor.list's types by display name; with a zone, the
    types that have a cluster there."""
    if zone_uuid is None:
        return [display_name(t.name) for t in enabled_types()]
    zone = db.session.scalar(select(Zone).where(Zone.uuid == zone_uuid, Zone.removed.is_(None)))
    if zone is None:
        raise NotFound("Unable to find zone with the specified id", field="zoneid")
    present = set(db.session.scalars(select(Cluster.hypervisor_type).where(
        Cluster.zone_id == zone.id, Cluster.removed.is_(None)).distinct()))
    return [display_name(t.name) for t in registry.all_types() if t.name in present]


# Capability rows shown in the support matrix, in order: (attribute, label).
MATRIX_ROWS = (
    ("direct_download", "Direct download"),
    ("local_storage", "Local storage"),
    ("storage_kinds", "Shared storage"),
    ("template_formats", "Template formats"),
    ("iso", "ISO"),
    ("live_migration", "Live migration"),
    ("storage_migration", "Storage migration"),
    ("vm_snapshots", "VM snapshots"),
    ("volume_snapshots", "Volume snapshots"),
    ("scale_stopped_vm", "Scale stopped VM"),
    ("console", "Console"),
    ("lifecycle_events", "Lifecycle events"),
    ("config_drive", "Config drive"),
    ("storage_heartbeat", "HA storage heartbeat"),
    ("max_guests_per_host", "Max guests per host"),
    ("max_hosts_per_cluster", "Max hosts per cluster"),
    ("max_data_volumes", "Max data volumes"),
)


def driver_context() -> DriverContext:
    """The plain values a driver may know (no Flask objects)."""
    from flask import current_app
    return DriverContext(instance_path=current_app.instance_path,
                         settings={"xen.guest.boot.mode": settings.get("xen.guest.boot.mode")},
                         database_url=current_app.config["SQLALCHEMY_DATABASE_URI"],
                         testing=bool(current_app.config.get("TESTING")))


def driver_for(type_name: str, conn: HostConnection):
    t = registry.get(type_name)
    if t is None:
        raise InvalidParameter(f"Hypervisor type {type_name} is not installed")
    return t.make_driver(conn, driver_context())
