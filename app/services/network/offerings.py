"""Network offerings (createNetworkOffering, listNetworkOfferings, ...) and CloudStack's default
ones, made by ensure_defaults() at every start and wherever a schema is created.

Nubo supports the services Dhcp, Dns, UserData, SourceNat, StaticNat, PortForwarding, Firewall (by
the VirtualRouter provider) and SecurityGroup (by SecurityGroupProvider). CloudStack's default
isolated offering also lists Gateway, Lb and Vpn: Nubo has none of them, so its copy lists the
services it really gives.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import func, select

from app.extensions import db
from app.models import GuestType, Network, NetworkOffering, Provider, Service, Zone, utcnow
from app.services import events
from app.services.errors import InvalidParameter, NotFound, ResourceInUse
from app.services.pagination import page_of

VR = Provider.VIRTUAL_ROUTER.value
SGP = Provider.SECURITY_GROUP.value
BASIC_SERVICES = {Service.DHCP.value: VR, Service.DNS.value: VR, Service.USER_DATA.value: VR}
ISOLATED_ONLY = (Service.SOURCE_NAT.value, Service.STATIC_NAT.value, Service.PORT_FORWARDING.value,
                 Service.FIREWALL.value)
# Services CloudStack knows that Nubo does not give (a clear refusal rather than "invalid service").
UNSUPPORTED = ("Lb", "Vpn", "Gateway", "NetworkACL", "Connectivity", "BaremetalPxeService")


@dataclass(frozen=True)
class Default:
    uuid: str
    name: str
    display_text: str
    guest_ip_type: str
    services: dict
    specify_vlan: bool
    specify_ip_ranges: bool
    availability: str = "Optional"
    egress_default_policy: bool = False  # NetworkOfferingVO's default, as CloudStack persists its defaults
    conserve_mode: bool = True


# The uuids of the first two are those Nubo's answers used before offerings were rows.
DEFAULTS = (
    Default("00000000-0000-0000-0000-00000000000a", "DefaultSharedNetworkOffering", "Offering for Shared networks",
            GuestType.SHARED, dict(BASIC_SERVICES), True, True),
    Default("00000000-0000-0000-0000-00000000000b", "DefaultIsolatedNetworkOffering",
            "Offering for Isolated networks with no Source Nat service", GuestType.ISOLATED, dict(BASIC_SERVICES),
            True, True),
    Default("00000000-0000-0000-0000-00000000000c", "DefaultIsolatedNetworkOfferingWithSourceNatService",
            "Offering for Isolated networks with Source Nat service enabled", GuestType.ISOLATED,
            {**BASIC_SERVICES, **{s: VR for s in ISOLATED_ONLY}}, False, False, availability="Required"),
    Default("00000000-0000-0000-0000-00000000000d", "DefaultSharedNetworkOfferingWithSGService",
            "Offering for Shared Security group enabled networks", GuestType.SHARED,
            {**BASIC_SERVICES, Service.SECURITY_GROUP.value: SGP}, True, True),
    Default("00000000-0000-0000-0000-00000000000e", "DefaultL2NetworkOffering", "Offering for L2 networks",
            GuestType.L2, {}, False, False),
    Default("00000000-0000-0000-0000-00000000000f", "DefaultL2NetworkOfferingVlan", "Offering for L2 networks VLAN",
            GuestType.L2, {}, True, False),
)


def ensure_defaults(commit: bool = True) -> None:
    """Make CloudStack's default offerings that are missing (idempotent, by fixed uuid)."""
    have = set(db.session.scalars(select(NetworkOffering.uuid).where(
        NetworkOffering.uuid.in_([d.uuid for d in DEFAULTS]))))
    for d in DEFAULTS:
        if d.uuid in have:
            continue
        db.session.add(NetworkOffering(
            uuid=d.uuid, name=d.name, display_text=d.display_text, guest_ip_type=d.guest_ip_type,
            traffic_type="Guest", services=json.dumps(d.services), specify_vlan=d.specify_vlan,
            specify_ip_ranges=d.specify_ip_ranges, conserve_mode=d.conserve_mode,
            egress_default_policy=d.egress_default_policy, availability=d.availability, state="Enabled",
            is_default=True))
    if commit:
        db.session.commit()
    else:
        db.session.flush()


def services_of(offering: NetworkOffering) -> dict[str, str]:
    """{service: provider} of the offering."""
    return json.loads(offering.services or "{}")


def get_offering(uuid: str, field: str = "networkofferingid") -> NetworkOffering:
    o = db.session.scalar(select(NetworkOffering).where(NetworkOffering.uuid == uuid,
                                                        NetworkOffering.removed.is_(None)))
    if o is None:
        raise NotFound("Unable to find network offering with the specified id", field=field)
    return o


def by_name(name: str) -> NetworkOffering | None:
    return db.session.scalar(select(NetworkOffering).where(NetworkOffering.name == name,
                                                           NetworkOffering.removed.is_(None)))


def default_for(guest_type: str, security_groups: bool = False, source_nat: bool = True) -> NetworkOffering:
    """The default offering for a guest type: Isolated -> with source NAT (or without when
    source_nat=False), Shared -> plain or with security groups, L2 -> DefaultL2NetworkOffering."""
    if guest_type == GuestType.ISOLATED:
        name = "DefaultIsolatedNetworkOfferingWithSourceNatService" if source_nat else "DefaultIsolatedNetworkOffering"
    elif guest_type == GuestType.SHARED:
        name = "DefaultSharedNetworkOfferingWithSGService" if security_groups else "DefaultSharedNetworkOffering"
    else:
        name = "DefaultL2NetworkOffering"
    o = db.session.scalar(select(NetworkOffering).where(NetworkOffering.name == name, NetworkOffering.is_default,
                                                        NetworkOffering.removed.is_(None)))
    if o is None:
        ensure_defaults()
        o = by_name(name)
    return o


# --- Validation ---------------------------------------------------------------------

def _guest_type(value: str | None) -> str:
    for t in GuestType:
        if t.value.lower() == (value or "").strip().lower():
            return t.value
    raise InvalidParameter(f"Invalid guest type {value}; use Isolated, Shared or L2", field="guestiptype")


def _service_name(value: str) -> str:
    v = value.strip()
    for s in Service:
        if s.value.lower() == v.lower():
            return s.value
    if any(u.lower() == v.lower() for u in UNSUPPORTED):
        raise InvalidParameter(f"Service {v} is not supported by Nubo's network offerings", field="supportedservices")
    raise InvalidParameter(f"Invalid service {v}", field="supportedservices")


def _provider_name(value: str) -> str:
    for p in Provider:
        if p.value.lower() == value.strip().lower():
            return p.value
    raise InvalidParameter(f"Invalid service provider: {value}", field="serviceproviderlist")


def check_services(guest_type: str, services: list[str], provider_map: list[dict] | None,
                   specify_ip_ranges: bool = False) -> dict[str, str]:
    """{service: provider} from supportedservices and serviceproviderlist, with CloudStack's rules."""
    names = [_service_name(s) for s in services if s.strip()]
    chosen: dict[str, str] = {}
    for entry in provider_map or []:
        svc = _service_name(entry.get("service", ""))
        if svc not in names:
            raise InvalidParameter(f"Service {svc} is not in the supportedservices list", field="serviceproviderlist")
        chosen[svc] = _provider_name(entry.get("provider", ""))
    out = {}
    for svc in names:
        provider = chosen.get(svc) or (SGP if svc == Service.SECURITY_GROUP else VR)
        from app.services.network.physical import PROVIDER_SERVICES
        if svc not in [s.value for s in PROVIDER_SERVICES[provider]]:
            raise InvalidParameter(f"Provider {provider} doesn't support service {svc}", field="serviceproviderlist")
        out[svc] = provider
    if guest_type == GuestType.L2 and out:
        raise InvalidParameter("L2 network offerings give no services; supportedservices must be empty",
                               field="supportedservices")
    if guest_type != GuestType.ISOLATED:
        bad = [s for s in ISOLATED_ONLY if s in out]
        if bad:
            raise InvalidParameter(f"Service {bad[0]} is supported only for network offerings with guest ip type "
                                   "Isolated", field="supportedservices")
    if Service.SECURITY_GROUP in out and guest_type != GuestType.SHARED:
        raise InvalidParameter("Security Group service is supported only for network offerings with guest ip "
                               "type Shared", field="supportedservices")
    if (Service.STATIC_NAT in out or Service.PORT_FORWARDING in out) and Service.SOURCE_NAT not in out:
        raise InvalidParameter("StaticNat and PortForwarding need the SourceNat service (the public side of the "
                               "virtual router)", field="supportedservices")
    if specify_ip_ranges and Service.SOURCE_NAT in out:
        raise InvalidParameter("specifyipranges can be true only for networks without the SourceNat service",
                               field="specifyipranges")
    return out


def _availability(value: str | None, default: str = "Optional") -> str:
    v = (value or default).strip().lower()
    if v not in ("optional", "required"):
        raise InvalidParameter("availability must be Optional or Required", field="availability")
    return v.capitalize()


def create_offering(caller, *, name: str, display_text: str | None, guest_ip_type: str, traffic_type: str = "Guest",
                    supported_services: list[str] | None = None, service_provider_list: list[dict] | None = None,
                    specify_vlan: bool = False, specify_ip_ranges: bool | None = None,
                    egress_default_policy: bool = True, conserve_mode: bool = True,
                    availability: str | None = None, network_rate: int | None = None, tags: str | None = None,
                    for_vpc: bool = False, is_persistent: bool = False, max_connections: int | None = None
                    ) -> NetworkOffering:
    from app.services import zones
    name = zones._name(name)
    if (traffic_type or "Guest").lower() != "guest":
        raise InvalidParameter("Only guest traffic type is supported by network offerings", field="traffictype")
    if for_vpc:
        raise InvalidParameter("Nubo has no VPCs; forvpc must be false", field="forvpc")
    if is_persistent:
        raise InvalidParameter("Persistent network offerings are not supported by Nubo", field="ispersistent")
    gt = _guest_type(guest_ip_type)
    sir = bool(specify_ip_ranges) if specify_ip_ranges is not None else gt == GuestType.SHARED
    if gt == GuestType.SHARED and not specify_vlan:
        raise InvalidParameter("specifyVlan should be true if network offering's type is Shared", field="specifyvlan")
    if gt == GuestType.SHARED and not sir:
        raise InvalidParameter("Specify IP ranges should be true if network offering's type is Shared",
                               field="specifyipranges")
    services = check_services(gt, supported_services or [], service_provider_list, sir)
    if network_rate is not None and network_rate < 0:
        raise InvalidParameter("networkrate must not be negative", field="networkrate")
    if by_name(name) is not None:
        raise InvalidParameter(f"Network offering with name {name} already exists", field="name")
    o = NetworkOffering(name=name, display_text=(display_text or name)[:1024], guest_ip_type=gt, traffic_type="Guest",
                        services=json.dumps(services), specify_vlan=bool(specify_vlan), specify_ip_ranges=sir,
                        conserve_mode=bool(conserve_mode), egress_default_policy=bool(egress_default_policy),
                        availability=_availability(availability), state="Disabled",  # as CloudStack: enable later
                        is_default=False, tags=(tags or "").strip() or None, network_rate=network_rate,
                        max_connections=max_connections)
    db.session.add(o)
    db.session.flush()
    events.record("NETWORK.OFFERING.CREATE", f"Network offering {name} ({gt}) created", user=caller,
                  resource_type="NetworkOffering", resource_id=o.uuid)
    db.session.commit()
    return o


def update_offering(caller, uuid: str, *, name: str | None = None, display_text: str | None = None,
                    state: str | None = None, availability: str | None = None, tags: str | None = None,
                    max_connections: int | None = None) -> NetworkOffering:
    from app.services import zones
    o = get_offering(uuid, "id")
    if name is not None and name != o.name:
        name = zones._name(name)
        if by_name(name) is not None:
            raise InvalidParameter(f"Network offering with name {name} already exists", field="name")
        o.name = name
    if display_text is not None:
        o.display_text = display_text[:1024]
    if state is not None:
        wanted = {"enabled": "Enabled", "disabled": "Disabled"}.get(state.strip().lower())
        if wanted is None:
            raise InvalidParameter(f"Incorrect state value: {state}", field="state")
        o.state = wanted
    if availability is not None:
        o.availability = _availability(availability)
    if tags is not None:
        o.tags = tags.strip() or None
    if max_connections is not None:
        o.max_connections = max_connections
    events.record("NETWORK.OFFERING.EDIT", f"Network offering {o.name} updated", user=caller,
                  resource_type="NetworkOffering", resource_id=o.uuid)
    db.session.commit()
    return o


def delete_offering(caller, uuid: str) -> None:
    o = get_offering(uuid, "id")
    if o.is_default:
        raise InvalidParameter("Default network offering can't be deleted", field="id")
    in_use = db.session.scalar(select(func.count()).select_from(Network).where(
        Network.network_offering_id == o.id, Network.removed.is_(None)))
    if in_use:
        raise ResourceInUse(f"Can't delete network offering {o.uuid} as its used by {in_use} networks. To make the "
                            "network offering unavailable, disable it")
    o.removed = utcnow()
    events.record("NETWORK.OFFERING.DELETE", f"Network offering {o.name} deleted", user=caller,
                  resource_type="NetworkOffering", resource_id=o.uuid)
    db.session.commit()


def list_offerings(caller=None, *, id=None, name=None, guest_ip_type=None, traffic_type=None, zone_uuid=None,
                   state=None, for_vpc=None, is_default=None, specify_vlan=None, specify_ip_ranges=None,
                   supported_services=None, source_nat_supported=None, network_uuid=None, availability=None,
                   display_text=None, tags=None, keyword=None, page=None):
    q = select(NetworkOffering).where(NetworkOffering.removed.is_(None), NetworkOffering.is_system.is_(False))
    if for_vpc:
        return [], 0  # no VPC offerings
    if id:
        q = q.where(NetworkOffering.uuid == id)
    if name:
        q = q.where(NetworkOffering.name == name)
    if display_text:
        q = q.where(NetworkOffering.display_text == display_text)
    if guest_ip_type:
        q = q.where(NetworkOffering.guest_ip_type == _guest_type(guest_ip_type))
    if traffic_type:
        q = q.where(func.lower(NetworkOffering.traffic_type) == traffic_type.lower())
    if state:
        q = q.where(func.lower(NetworkOffering.state) == state.lower())
    if is_default is not None:
        q = q.where(NetworkOffering.is_default.is_(bool(is_default)))
    if specify_vlan is not None:
        q = q.where(NetworkOffering.specify_vlan.is_(bool(specify_vlan)))
    if specify_ip_ranges is not None:
        q = q.where(NetworkOffering.specify_ip_ranges.is_(bool(specify_ip_ranges)))
    if availability:
        q = q.where(func.lower(NetworkOffering.availability) == availability.lower())
    if tags:
        q = q.where(NetworkOffering.tags == tags)
    if keyword:
        q = q.where(NetworkOffering.name.contains(keyword, autoescape=True)
                    | NetworkOffering.display_text.contains(keyword, autoescape=True))
    rows = list(db.session.scalars(q.order_by(NetworkOffering.id)))
    wanted = [_service_name(s) for s in supported_services or [] if s.strip()]
    if wanted:
        rows = [o for o in rows if all(s in services_of(o) for s in wanted)]
    if source_nat_supported is not None:
        rows = [o for o in rows if (Service.SOURCE_NAT in services_of(o)) == bool(source_nat_supported)]
    if zone_uuid:
        from app.services import zones
        zone: Zone = zones.get_zone(zone_uuid)
        if zone.network_type == "Basic":  # Basic zones take security-group shared networks only
            rows = [o for o in rows if Service.SECURITY_GROUP in services_of(o)]
    if network_uuid:
        q_net = select(Network).where(Network.uuid == network_uuid, Network.removed.is_(None))
        if caller is not None and not caller.is_admin:  # a user names only networks it can see
            from app.services import access
            q_net = q_net.where(Network.account_id.is_(None) | access.owned(caller, Network.account_id))
        net = db.session.scalar(q_net)
        if net is None:
            raise NotFound("Unable to find network with the specified id", field="networkid")
        rows = [o for o in rows if o.guest_ip_type == net.guest_type and o.id != net.network_offering_id
                and o.state == "Enabled"]
    total = len(rows)
    if page is not None:  # (page number, page size)
        start = (page[0] - 1) * page[1]
        rows = rows[start:start + page[1]]
    return rows, total
