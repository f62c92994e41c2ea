"""What a user may choose at each step of the deploy wizard, and why an option is
not offered: zones (Enabled ones for users), templates and ISOs they may use that
are ready in the zone and whose hypervisor has an Up, Enabled host there,
service offerings against the account's remaining quota, networks, key pairs.

The wizard only helps: vms.deploy checks everything again (and atomically).
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select

from app.extensions import db
from app.models import (AllocationState, DownloadState, Host, HostState, ResourceState, ServiceOffering, Template,
                        TemplateStoreRef, Zone)
from app.services import hypervisors as hv
from app.services import keypairs, limits, offerings, zones
from app.services.network import networks
from app.services.errors import NotFound
from app.services.units import filesize

GIB = 1 << 30


@dataclass(frozen=True)
class Option:
    value: str
    title: str
    detail: str = ""
    refusal: str | None = None  # shown instead of offering it

    @property
    def offered(self) -> bool:
        return self.refusal is None


def zones_for(caller) -> list[Zone]:
    """Users deploy in Enabled zones; admins in any."""
    rows = zones.list_zones(sort="name")[0]
    return rows if caller.is_admin else [z for z in rows if z.allocation_state == AllocationState.ENABLED]


def zone_options(caller) -> list[Option]:
    """The zones, each with its network type and the hypervisors that have a host up there."""
    out = []
    for z in zones_for(caller):
        types = sorted(hv.display_name(t) for t in up_types(z))
        out.append(Option(z.uuid, z.name, f"{z.network_type} · " + (", ".join(types) or "no host up"),
                          None if types else "No host is up in this zone"))
    return out


def zone_for(caller, uuid: str | None) -> Zone:
    zone = next((z for z in zones_for(caller) if z.uuid == uuid), None)
    if zone is None:
        raise NotFound("Choose one of the zones offered", field="zoneid")
    return zone


def up_types(zone: Zone) -> set[str]:
    """Hypervisor types with at least one Up, Enabled host in the zone."""
    return set(db.session.scalars(select(Host.hypervisor_type).distinct().where(
        Host.zone_id == zone.id, Host.removed.is_(None), Host.state == HostState.UP,
        Host.resource_state == ResourceState.ENABLED)))


def iso_types(zone: Zone) -> list[str]:
    """The types with an Up host in the zone that boot ISOs, by display name."""
    return sorted((t for t in up_types(zone) if hv.resolve(t).capabilities.iso), key=hv.display_name)


def images_for(caller, zone: Zone) -> list[Template]:
    """Templates, then bootable ISOs, the caller may use (own and public) that are ready
    in the zone and that a host of the zone can run now."""
    types = up_types(zone)
    ready = select(TemplateStoreRef.template_id).where(
        TemplateStoreRef.zone_id == zone.id, TemplateStoreRef.state.in_([DownloadState.DOWNLOADED,
                                                                         DownloadState.BYPASSED]))
    q = select(Template).where(Template.removed.is_(None), Template.id.in_(ready),
                               or_(Template.is_iso.is_(False), Template.bootable.is_(True)))
    if not caller.is_admin:
        from app.services import access
        q = q.where(or_(access.owned(caller, Template.account_id), Template.is_public.is_(True)))
    rows = db.session.scalars(q.order_by(Template.is_iso, Template.featured.desc(), Template.name)).all()
    isos_boot = bool(iso_types(zone))
    return [t for t in rows if (isos_boot if t.is_iso else t.hypervisor_type in types)]


def image_options(caller, zone: Zone) -> list[Option]:
    out = []
    for t in images_for(caller, zone):
        kind = "ISO" if t.is_iso else f"{hv.display_name(t.hypervisor_type)} · {t.format}"
        out.append(Option(t.uuid, t.name, f"{kind} · {filesize(t.size or 0)}" + (" · featured" if t.featured else "")
                          + ("" if t.is_public else " · yours")))
    return out


def image_for(caller, zone: Zone, uuid: str | None) -> Template:
    image = next((t for t in images_for(caller, zone) if t.uuid == uuid), None)
    if image is None:
        raise NotFound("Choose one of the templates or ISOs offered", field="templateid")
    return image


def root_bytes(image: Template, root_disk_gib: int | None) -> int:
    """The root disk a VM from this image gets (as vms.deploy sizes it)."""
    size = 0 if image.is_iso else (image.size or 0)
    return max(size, (root_disk_gib or 0) * GIB)


def owner_options(caller) -> list[Option]:
    """An admin deploys for any account they may act in: "" is their own, then the others by
    domain and name (projects are chosen with the project switcher, as elsewhere)."""
    from app.services import accounts, domains
    rows = accounts.list_accounts(caller, listall=True, state="enabled", page=(1, 1000))[0]
    out = [Option("", f"Your own account ({caller.account.name})")]
    for a in sorted(rows, key=lambda a: (a.domain.path, a.name)):
        if a.id != caller.account_id and not a.is_project:
            out.append(Option(a.uuid, a.name, f"domain {domains.display_path(a.domain)}"))
    return out


def owner_of(caller, account_uuid: str | None):
    """The account a deploy is for: the caller's, or (admins) the one chosen, checked by the
    rule every create follows (access.owner_for)."""
    from app.models import Account
    from app.services import access
    if not account_uuid:
        return caller.account
    acct = db.session.scalar(select(Account).where(Account.uuid == account_uuid, Account.removed.is_(None),
                                                   access.accounts_visible(caller)))
    if acct is None:
        raise NotFound("Choose one of the accounts offered", field="owner")
    return access.owner_for(caller, acct.name, acct.domain.uuid)


def offerings_for(caller, need_root_bytes: int, owner=None, zone: Zone | None = None) -> list[Option]:
    """Every service offering; those that would pass one of the account's limits say which
    (the owner's account: the caller's unless an admin deploys for another)."""
    account_limits = limits.of_account(owner or caller.account)
    out = []
    for o in offerings.list_offerings(owner=owner or caller.account, zone=zone)[0]:  # the owner's, the zone's
        why = limits.refusal(account_limits, limits.vm_needs(o, need_root_bytes))  # a custom one: its least
        detail = (f"custom size: {o.min_cpu_number}–{o.max_cpu_number} vCPU · {o.cpu_speed} MHz · "
                  f"{o.min_memory}–{o.max_memory} MiB" if o.is_customized
                  else f"{o.cpu_number} vCPU · {o.cpu_speed} MHz · {o.memory} MiB")
        out.append(Option(o.uuid, o.name, detail, why))
    return out


def offering_for(caller, uuid: str | None, need_root_bytes: int, owner=None, zone: Zone | None = None) -> ServiceOffering:
    option = next((o for o in offerings_for(caller, need_root_bytes, owner, zone) if o.value == uuid), None)
    if option is None or not option.offered:
        raise NotFound(option.refusal if option else "Choose one of the offerings offered", field="serviceofferingid")
    return db.session.scalar(select(ServiceOffering).where(ServiceOffering.uuid == uuid))


def size_for(caller, offering: ServiceOffering, cpu_number: int | None, memory: int | None, need_root_bytes: int,
             owner=None) -> offerings.Size:
    """The size a VM of this offering gets (a customized one: the vCPUs and memory chosen, within its
    bounds and the account's limits)."""
    from app.services.errors import InvalidParameter
    try:
        size = offerings.size_for(offering, {"cpuNumber": cpu_number, "memory": memory})
    except InvalidParameter as e:
        raise NotFound(e.message, field="cpunumber") from None
    why = limits.refusal(limits.of_account(owner or caller.account), limits.vm_needs(size, need_root_bytes))
    if why:
        raise NotFound(why, field="cpunumber")
    return size


def networks_for(caller, zone: Zone, owner=None) -> list[Option]:
    """The zone's guest networks the caller (or the account an admin deploys for) may use;
    "" is the zone's default."""
    if owner is not None and owner.id != caller.account_id:
        rows = [n for n in networks.list_networks(caller, zone_uuid=zone.uuid, list_all=True)[0]
                if n.account_id in (None, owner.id)]
    else:
        rows = networks.list_networks(caller, zone_uuid=zone.uuid)[0]
    default = [Option("", "The zone's default network", "made at the first deploy" if not rows else "")]
    return default + [Option(n.uuid, n.name, f"{n.cidr}" + (" · default" if n.is_default else "")) for n in rows
                      if not n.is_default]


def keypairs_for(caller, owner=None) -> list[Option]:
    if owner is not None and owner.id != caller.account_id:
        rows = keypairs.list_keypairs(caller, account=owner.name, domainid=owner.domain.uuid)[0]
    else:
        rows = keypairs.list_keypairs(caller)[0]
    return [Option("", "No SSH key")] + [Option(k.name, k.name, k.fingerprint) for k in rows]
