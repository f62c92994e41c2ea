"""Physical networks, their traffic types (labels) and network service providers, as CloudStack
models them (createPhysicalNetwork, addTrafficType, listNetworkServiceProviders, ...).

Traffic labels: CloudStack's addTrafficType takes one label per hypervisor family; Nubo stores
them under its own type names: kvmnetworklabel -> KVM (and LXC, OpenVZ, Custom while they have no
label of their own), xennetworklabel -> Xen, hypervnetworklabel -> Hyperv, vmwarenetworklabel ->
VMware (kept, unused), plus Nubo's simulatornetworklabel, lxcnetworklabel, openvznetworklabel and
customnetworklabel. `label_for` is the one function that answers "which bridge/switch carries
traffic type T for hypervisor type H in zone Z".
"""
from __future__ import annotations

import json
import re

from sqlalchemy import func, or_, select

from app.extensions import db
from app.models import (GuestVnet, Network, NetworkServiceProvider, PhysicalNetwork, PhysicalNetworkTrafficType,
                        Provider, Service, TrafficType, VlanIpRange, Zone, new_uuid, utcnow)
from app.services import events
from app.services.errors import InvalidParameter, NotFound, ResourceInUse
from app.services.pagination import page_of

ISOLATION_METHODS = ("VLAN", "VXLAN")
MAX_VNET = {"VLAN": 4094, "VXLAN": 16777214}
PROVIDER_STATES = ("Enabled", "Disabled", "Shutdown")
PROVIDER_SERVICES = {
    Provider.VIRTUAL_ROUTER.value: [Service.DHCP, Service.DNS, Service.USER_DATA, Service.SOURCE_NAT,
                                    Service.STATIC_NAT, Service.PORT_FORWARDING, Service.FIREWALL],
    Provider.SECURITY_GROUP.value: [Service.SECURITY_GROUP],
}
# addTrafficType's label parameters -> the Nubo hypervisor types they set.
LABEL_PARAMS = {"kvmnetworklabel": "KVM", "xennetworklabel": "Xen", "hypervnetworklabel": "Hyperv",
                "vmwarenetworklabel": "VMware", "simulatornetworklabel": "Simulator",
                "lxcnetworklabel": "LXC", "openvznetworklabel": "OpenVZ", "customnetworklabel": "Custom"}
# Types that use the KVM label when they have none of their own (same Linux bridges).
KVM_FAMILY = ("LXC", "OpenVZ", "Custom")


# --- Validation helpers -------------------------------------------------------------

def parse_vnet_range(value: str | None, method: str = "VLAN", field: str = "vlan") -> list[tuple[int, int]]:
    """"100-199,300" -> [(100, 199), (300, 300)] within the method's limits, no overlaps."""
    value = (value or "").replace(" ", "")
    if not value:
        return []
    top = MAX_VNET.get(method, 4094)
    spans = []
    for part in value.split(","):
        m = re.fullmatch(r"(\d{1,8})(?:-(\d{1,8}))?", part)
        lo, hi = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, 0)
        if not m or not 1 <= lo <= hi <= top:
            raise InvalidParameter(f"{part!r} is not a {method} range within 1-{top} (e.g. 100-199)", field=field)
        spans.append((lo, hi))
    spans.sort()
    for (_, hi), (lo, _) in zip(spans, spans[1:]):
        if lo <= hi:
            raise InvalidParameter("The VLAN ranges overlap", field=field)
    return spans


def format_spans(spans: list[tuple[int, int]]) -> str | None:
    return ",".join(f"{lo}-{hi}" if hi != lo else str(lo) for lo, hi in spans) or None


def in_spans(vnet: int, spans: list[tuple[int, int]]) -> bool:
    return any(lo <= vnet <= hi for lo, hi in spans)


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> bool:
    return any(lo1 <= hi2 and lo2 <= hi1 for lo1, hi1 in a for lo2, hi2 in b)


def _isolation(value) -> str:
    if isinstance(value, (list, tuple)):
        value = [v for v in value if v]
        if len(value) > 1:
            raise InvalidParameter("Only one isolation method can be specified for a physical network",
                                   field="isolationmethods")
        value = value[0] if value else None
    method = (value or "VLAN").strip().upper()
    if method not in ISOLATION_METHODS:
        raise InvalidParameter(f"Isolation method {value} is not supported; use VLAN or VXLAN",
                               field="isolationmethods")
    return method


# --- Physical networks -------------------------------------------------------------

def get_physical_network(uuid: str, field: str = "physicalnetworkid") -> PhysicalNetwork:
    phys = db.session.scalar(select(PhysicalNetwork).where(PhysicalNetwork.uuid == uuid,
                                                           PhysicalNetwork.removed.is_(None)))
    if phys is None:
        raise NotFound("Unable to find physical network with the specified id", field=field)
    return phys


def zone_physical_networks(zone_id: int) -> list[PhysicalNetwork]:
    return list(db.session.scalars(select(PhysicalNetwork).where(
        PhysicalNetwork.zone_id == zone_id, PhysicalNetwork.removed.is_(None)).order_by(PhysicalNetwork.id)))


def create_physical_network(caller, *, zone: Zone | None = None, zone_uuid: str | None = None,
                            name: str = "Physical Network 1", isolation_method=None, vlan: str | None = None,
                            tags: str | None = None, broadcast_domain_range: str | None = None,
                            state: str = "Enabled", commit: bool = True) -> PhysicalNetwork:
    """A physical network with its two providers (VirtualRouter, SecurityGroupProvider), both
    Disabled as in CloudStack (the admin, or the zone wizard, enables them)."""
    from app.services import zones
    if zone is None:
        zone = zones.get_zone(zone_uuid)
    name = zones._name(name)
    method = _isolation(isolation_method)
    spans = parse_vnet_range(vlan, method)
    bdr = (broadcast_domain_range or ("POD" if zone.network_type == "Basic" else "ZONE")).upper()
    if bdr not in ("ZONE", "POD"):
        raise InvalidParameter("broadcastdomainrange must be ZONE or POD", field="broadcastdomainrange")
    if zone.network_type == "Advanced" and bdr != "ZONE":
        raise InvalidParameter("Advanced zones support only ZONE broadcast domain range", field="broadcastdomainrange")
    existing = zone_physical_networks(zone.id)
    if zone.network_type == "Basic" and existing:
        raise InvalidParameter(f"Cannot add the physical network to basic zone id: {zone.uuid}, there is a physical "
                               "network already existing in this basic Zone", field="zoneid")
    for other in existing:
        if other.isolation_method == method and _overlap(spans, parse_vnet_range(other.vlan_range, method)):
            raise InvalidParameter(f"The VLAN range {vlan} overlaps with the range of physical network "
                                   f"{other.name} in zone {zone.name}", field="vlan")
    if tags and "," in tags:
        raise InvalidParameter("Only one tag can be specified for a physical network", field="tags")
    if state not in ("Enabled", "Disabled"):
        raise InvalidParameter("state must be Enabled or Disabled", field="state")
    phys = PhysicalNetwork(uuid=new_uuid(), zone_id=zone.id, name=name, isolation_method=method,
                           vlan_range=format_spans(spans), tags=(tags or "").strip() or None,
                           broadcast_domain_range=bdr, traffic_labels="{}", state=state)
    db.session.add(phys)
    db.session.flush()
    for provider, services in PROVIDER_SERVICES.items():
        db.session.add(NetworkServiceProvider(
            uuid=new_uuid(), physical_network_id=phys.id, name=provider, state="Disabled",
            services=json.dumps([s.value for s in services]),
            element_uuid=new_uuid() if provider == Provider.VIRTUAL_ROUTER else None, element_enabled=False))
    events.record("PHYSICAL.NETWORK.CREATE", f"Physical network {name} created in zone {zone.name}", user=caller,
                  resource_type="PhysicalNetwork", resource_id=phys.uuid)
    if commit:
        db.session.commit()
    return phys


def list_physical_networks(*, id=None, zone_uuid=None, name=None, keyword=None, page=None):
    from app.services import zones
    q = select(PhysicalNetwork).where(PhysicalNetwork.removed.is_(None)).order_by(PhysicalNetwork.id)
    if id:
        q = q.where(PhysicalNetwork.uuid == id)
    if zone_uuid:
        q = q.where(PhysicalNetwork.zone_id == zones.get_zone(zone_uuid).id)
    if name:
        q = q.where(PhysicalNetwork.name == name)
    if keyword:
        q = q.where(PhysicalNetwork.name.contains(keyword, autoescape=True))
    return page_of(q, page)


def _vnets_in_use(phys: PhysicalNetwork) -> set[int]:
    """VLAN ids / VNIs taken on this physical network: GuestVnet rows held by a network, and
    the vlan of live networks on it (rows made before GuestVnet existed)."""
    used = set(db.session.scalars(select(GuestVnet.vnet).where(
        GuestVnet.physical_network_id == phys.id,
        or_(GuestVnet.network_id.is_not(None), GuestVnet.taken.is_not(None)))))
    used |= {v for v in db.session.scalars(select(Network.vlan).where(
        Network.removed.is_(None), Network.vlan.is_not(None),
        or_(Network.physical_network_id == phys.id,
            (Network.physical_network_id.is_(None)) & (Network.zone_id == phys.zone_id))))}
    return used


def update_physical_network(caller, uuid: str, *, vlan: str | None = None, state: str | None = None,
                            tags: str | None = None) -> PhysicalNetwork:
    """vlan is the whole new range: it may grow freely; a part may go only while none of its
    VLANs/VNIs is taken by a network."""
    phys = get_physical_network(uuid, "id")
    if vlan is not None:
        spans = parse_vnet_range(vlan, phys.isolation_method)
        removed = [v for v in _vnets_in_use(phys) if not in_spans(v, spans)]
        if removed:
            raise ResourceInUse(f"Some of the vnets from this range are allocated ({', '.join(map(str, sorted(removed)[:10]))}"
                                "), can only remove a range which has no allocated vnets")
        for other in zone_physical_networks(phys.zone_id):
            if other.id != phys.id and other.isolation_method == phys.isolation_method and _overlap(
                    spans, parse_vnet_range(other.vlan_range, other.isolation_method)):
                raise InvalidParameter(f"The VLAN range {vlan} overlaps with the range of physical network "
                                       f"{other.name}", field="vlan")
        # Free GuestVnet rows outside the new range go with it.
        for row in db.session.scalars(select(GuestVnet).where(GuestVnet.physical_network_id == phys.id,
                                                              GuestVnet.network_id.is_(None),
                                                              GuestVnet.taken.is_(None))):
            if not in_spans(row.vnet, spans):
                db.session.delete(row)
        phys.vlan_range = format_spans(spans)
    if state is not None:
        wanted = {"enabled": "Enabled", "disabled": "Disabled"}.get(state.lower())
        if wanted is None:
            raise InvalidParameter("state must be Enabled or Disabled", field="state")
        phys.state = wanted
    if tags is not None:
        if "," in tags:
            raise InvalidParameter("Only one tag can be specified for a physical network", field="tags")
        phys.tags = tags.strip() or None
    events.record("PHYSICAL.NETWORK.UPDATE", f"Physical network {phys.name} updated", user=caller,
                  resource_type="PhysicalNetwork", resource_id=phys.uuid)
    db.session.commit()
    return phys


def delete_physical_network(caller, uuid: str) -> None:
    phys = get_physical_network(uuid, "id")
    networks = db.session.scalar(select(func.count()).select_from(Network).where(
        Network.removed.is_(None), Network.physical_network_id == phys.id))
    if networks:
        raise ResourceInUse(f"The Physical Network is not deletable because there exist {networks} network(s) "
                            "using it")
    ranges = db.session.scalar(select(func.count()).select_from(VlanIpRange).where(
        VlanIpRange.removed.is_(None), VlanIpRange.physical_network_id == phys.id))
    if ranges:
        raise ResourceInUse("The Physical Network is not deletable because there exist IP ranges on it; "
                            "delete them first")
    for row in db.session.scalars(select(PhysicalNetworkTrafficType).where(
            PhysicalNetworkTrafficType.physical_network_id == phys.id)):
        db.session.delete(row)
    for row in db.session.scalars(select(NetworkServiceProvider).where(
            NetworkServiceProvider.physical_network_id == phys.id)):
        db.session.delete(row)
    for row in db.session.scalars(select(GuestVnet).where(GuestVnet.physical_network_id == phys.id)):
        db.session.delete(row)
    phys.removed = utcnow()
    events.record("PHYSICAL.NETWORK.DELETE", f"Physical network {phys.name} deleted", user=caller,
                  resource_type="PhysicalNetwork", resource_id=phys.uuid)
    db.session.commit()


# --- Traffic types ------------------------------------------------------------------

def _traffic_type(value: str | None) -> str:
    for t in TrafficType:
        if t.value.lower() == (value or "").strip().lower():
            return t.value
    raise InvalidParameter(f"Invalid traffic type {value}; use Guest, Public, Management or Storage",
                           field="traffictype")


def labels_of(row: PhysicalNetworkTrafficType) -> dict[str, str]:
    return json.loads(row.labels or "{}")


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    from app.services import zones
    out = {}
    for type_name, label in labels.items():
        if label is None:
            continue
        if label == "":
            out[type_name] = ""  # clears it
            continue
        out[type_name] = zones.validate_traffic_label(label, type_name)
    return out


def _sync_legacy(phys: PhysicalNetwork) -> None:
    """PhysicalNetwork.traffic_labels mirrors the Guest traffic type's labels."""
    guest = db.session.scalar(select(PhysicalNetworkTrafficType).where(
        PhysicalNetworkTrafficType.physical_network_id == phys.id,
        PhysicalNetworkTrafficType.traffic_type == TrafficType.GUEST))
    phys.traffic_labels = json.dumps(labels_of(guest) if guest else {})


def get_traffic_type(uuid: str, field: str = "id") -> PhysicalNetworkTrafficType:
    row = db.session.scalar(select(PhysicalNetworkTrafficType).where(PhysicalNetworkTrafficType.uuid == uuid))
    if row is None or row.physical_network.removed is not None:
        raise NotFound("Unable to find traffic type with the specified id", field=field)
    return row


def add_traffic_type(caller, physical_network_uuid: str, traffic_type: str, labels: dict[str, str] | None = None,
                     vlan: str | None = None, commit: bool = True) -> PhysicalNetworkTrafficType:
    phys = get_physical_network(physical_network_uuid)
    tt = _traffic_type(traffic_type)
    if db.session.scalar(select(PhysicalNetworkTrafficType.id).where(
            PhysicalNetworkTrafficType.physical_network_id == phys.id,
            PhysicalNetworkTrafficType.traffic_type == tt)):
        raise InvalidParameter(f"This physical network already supports the traffic type: {tt}", field="traffictype")
    if tt != TrafficType.GUEST:
        other = db.session.scalar(select(PhysicalNetwork).join(
            PhysicalNetworkTrafficType, PhysicalNetworkTrafficType.physical_network_id == PhysicalNetwork.id).where(
            PhysicalNetwork.zone_id == phys.zone_id, PhysicalNetwork.removed.is_(None),
            PhysicalNetworkTrafficType.traffic_type == tt))
        if other is not None:
            raise InvalidParameter(f"{tt} traffic type is already added to physical network {other.name} of this "
                                   "zone; a zone carries it on one physical network", field="traffictype")
    clean = {k: v for k, v in _check_labels(labels or {}).items() if v}
    row = PhysicalNetworkTrafficType(uuid=new_uuid(), physical_network_id=phys.id, traffic_type=tt,
                                     labels=json.dumps(clean), vlan=(vlan or "").strip() or None)
    db.session.add(row)
    db.session.flush()
    if tt == TrafficType.GUEST:
        _sync_legacy(phys)
    events.record("TRAFFIC.TYPE.CREATE", f"{tt} traffic added to physical network {phys.name}", user=caller,
                  resource_type="TrafficType", resource_id=row.uuid)
    if commit:
        db.session.commit()
    return row


def update_traffic_type(caller, uuid: str, labels: dict[str, str]) -> PhysicalNetworkTrafficType:
    row = get_traffic_type(uuid)
    current = labels_of(row)
    for type_name, label in _check_labels(labels).items():
        if label:
            current[type_name] = label
        else:
            current.pop(type_name, None)
    row.labels = json.dumps(current)
    if row.traffic_type == TrafficType.GUEST:
        _sync_legacy(row.physical_network)
    events.record("TRAFFIC.TYPE.UPDATE", f"{row.traffic_type} traffic labels of {row.physical_network.name} "
                  "updated", user=caller, resource_type="TrafficType", resource_id=row.uuid)
    db.session.commit()
    return row


def delete_traffic_type(caller, uuid: str) -> None:
    row = get_traffic_type(uuid)
    phys = row.physical_network
    if row.traffic_type == TrafficType.GUEST and db.session.scalar(select(func.count()).select_from(Network).where(
            Network.removed.is_(None), or_(Network.physical_network_id == phys.id,
                                           (Network.physical_network_id.is_(None))
                                           & (Network.zone_id == phys.zone_id)))):
        raise ResourceInUse("The Traffic Type is not deletable because there are existing networks with this "
                            "traffic type:Guest")
    if row.traffic_type == TrafficType.PUBLIC and db.session.scalar(select(func.count()).select_from(
            VlanIpRange).where(VlanIpRange.removed.is_(None), VlanIpRange.for_virtual_network.is_(True),
                               VlanIpRange.zone_id == phys.zone_id)):
        raise ResourceInUse("The Traffic Type is not deletable because there are existing public IP ranges "
                            "with this traffic type:Public")
    tt = row.traffic_type
    db.session.delete(row)
    db.session.flush()
    if tt == TrafficType.GUEST:
        _sync_legacy(phys)
    events.record("TRAFFIC.TYPE.DELETE", f"{tt} traffic removed from physical network {phys.name}", user=caller,
                  resource_type="TrafficType", resource_id=uuid)
    db.session.commit()


def list_traffic_types(physical_network_uuid: str, page=None):
    phys = get_physical_network(physical_network_uuid)
    return page_of(select(PhysicalNetworkTrafficType).where(
        PhysicalNetworkTrafficType.physical_network_id == phys.id).order_by(PhysicalNetworkTrafficType.id), page)


def default_label(type_name: str | None) -> str:
    """The bridge or virtual switch a type's hosts usually give guests (the type declares it)."""
    from app.services import hypervisors as hv
    try:
        t = hv.resolve(type_name) if type_name else None
    except InvalidParameter:
        t = None
    return getattr(t, "default_traffic_label", None) or "cloudbr0"


def _pick(labels: dict[str, str], hypervisor_type: str | None) -> str | None:
    if not hypervisor_type:
        return None
    if labels.get(hypervisor_type):
        return labels[hypervisor_type]
    if hypervisor_type in KVM_FAMILY and labels.get("KVM"):
        return labels["KVM"]
    return None


def label_for(zone_id: int, traffic_type: str, hypervisor_type: str | None) -> str:
    """The host-side bridge (or Hyper-V virtual switch) carrying `traffic_type` for hosts of
    `hypervisor_type` in the zone: the traffic type's label, else (Guest) the legacy labels,
    else the type's default label."""
    label = explicit_label(zone_id, traffic_type, hypervisor_type)
    return label or default_label(hypervisor_type)


def explicit_label(zone_id: int, traffic_type: str, hypervisor_type: str | None) -> str | None:
    """The label set for this traffic type and hypervisor type in the zone, or None."""
    # The zone's physical networks with their rows of this traffic type (if any), in one query:
    # every VM start asks (its NICs' bridge).
    rows = db.session.execute(select(PhysicalNetwork, PhysicalNetworkTrafficType).outerjoin(
        PhysicalNetworkTrafficType, (PhysicalNetworkTrafficType.physical_network_id == PhysicalNetwork.id)
        & (PhysicalNetworkTrafficType.traffic_type == traffic_type)).where(
        PhysicalNetwork.zone_id == zone_id, PhysicalNetwork.removed.is_(None)).order_by(PhysicalNetwork.id)).all()
    for _, row in rows:
        label = _pick(labels_of(row), hypervisor_type) if row is not None else None
        if label:
            return label
    if traffic_type == TrafficType.GUEST:
        for phys, _ in rows:
            label = _pick(json.loads(phys.traffic_labels or "{}"), hypervisor_type)
            if label:
                return label
    return None


def labels_for_host(zone_id: int, hypervisor_type: str) -> list[tuple[str, str]]:
    """(traffic type, label) for every traffic type of the zone that has a label for this
    hypervisor type (what addHost checks on the host)."""
    out = []
    seen = set()
    rows = db.session.scalars(select(PhysicalNetworkTrafficType).join(
        PhysicalNetwork, PhysicalNetworkTrafficType.physical_network_id == PhysicalNetwork.id).where(
        PhysicalNetwork.zone_id == zone_id, PhysicalNetwork.removed.is_(None)).order_by(
        PhysicalNetworkTrafficType.id))
    for row in rows:
        label = _pick(labels_of(row), hypervisor_type)
        if label and row.traffic_type not in seen:
            seen.add(row.traffic_type)
            out.append((row.traffic_type, label))
    if TrafficType.GUEST.value not in seen:
        label = explicit_label(zone_id, TrafficType.GUEST, hypervisor_type)
        if label:
            out.insert(0, (TrafficType.GUEST.value, label))
    return out


# --- Providers and the virtual router element ----------------------------------------

def get_provider(uuid: str, field: str = "id") -> NetworkServiceProvider:
    nsp = db.session.scalar(select(NetworkServiceProvider).where(NetworkServiceProvider.uuid == uuid))
    if nsp is None or nsp.physical_network.removed is not None:
        raise NotFound("Unable to find network service provider with the specified id", field=field)
    return nsp


def list_providers(*, physical_network_uuid=None, name=None, state=None, page=None):
    q = select(NetworkServiceProvider).join(
        PhysicalNetwork, NetworkServiceProvider.physical_network_id == PhysicalNetwork.id).where(
        PhysicalNetwork.removed.is_(None)).order_by(NetworkServiceProvider.id)
    if physical_network_uuid:
        q = q.where(NetworkServiceProvider.physical_network_id == get_physical_network(physical_network_uuid).id)
    if name:
        q = q.where(NetworkServiceProvider.name == name)
    if state:
        q = q.where(NetworkServiceProvider.state == state)
    return page_of(q, page)


def update_provider(caller, uuid: str, *, state: str | None = None) -> NetworkServiceProvider:
    nsp = get_provider(uuid)
    if state is not None:
        wanted = next((s for s in PROVIDER_STATES if s.lower() == state.lower()), None)
        if wanted is None:
            raise InvalidParameter(f"Unable to find the state {state}; use Enabled, Disabled or Shutdown",
                                   field="state")
        if wanted == "Enabled" and nsp.name == Provider.VIRTUAL_ROUTER and not nsp.element_enabled:
            raise InvalidParameter("Provider is not ready, cannot Enable the provider, please configure the "
                                   "provider first", field="state")
        nsp.state = wanted
    events.record("SERVICE.PROVIDER.UPDATE", f"Provider {nsp.name} of {nsp.physical_network.name} is {nsp.state}",
                  user=caller, resource_type="NetworkServiceProvider", resource_id=nsp.uuid)
    db.session.commit()
    return nsp


def enable_providers(caller, phys: PhysicalNetwork, commit: bool = True) -> None:
    """What the zone wizard does: enable the router element and every provider."""
    for nsp in db.session.scalars(select(NetworkServiceProvider).where(
            NetworkServiceProvider.physical_network_id == phys.id)):
        if nsp.name == Provider.VIRTUAL_ROUTER:
            nsp.element_enabled = True
        nsp.state = "Enabled"
    if commit:
        db.session.commit()


def provider_enabled(zone_id: int, provider: str) -> bool:
    return bool(db.session.scalar(select(NetworkServiceProvider.id).join(
        PhysicalNetwork, NetworkServiceProvider.physical_network_id == PhysicalNetwork.id).where(
        PhysicalNetwork.zone_id == zone_id, PhysicalNetwork.removed.is_(None),
        NetworkServiceProvider.name == provider, NetworkServiceProvider.state == "Enabled")))


def get_vr_element(uuid: str, field: str = "id") -> NetworkServiceProvider:
    nsp = db.session.scalar(select(NetworkServiceProvider).where(NetworkServiceProvider.element_uuid == uuid))
    if nsp is None or nsp.physical_network.removed is not None:
        raise NotFound("Unable to find virtual router element with the specified id", field=field)
    return nsp


def list_vr_elements(*, id=None, nsp_uuid=None, enabled=None, page=None):
    q = select(NetworkServiceProvider).join(
        PhysicalNetwork, NetworkServiceProvider.physical_network_id == PhysicalNetwork.id).where(
        PhysicalNetwork.removed.is_(None), NetworkServiceProvider.element_uuid.is_not(None)).order_by(
        NetworkServiceProvider.id)
    if id:
        q = q.where(NetworkServiceProvider.element_uuid == id)
    if nsp_uuid:
        q = q.where(NetworkServiceProvider.uuid == nsp_uuid)
    if enabled is not None:
        q = q.where(NetworkServiceProvider.element_enabled.is_(bool(enabled)))
    return page_of(q, page)


def configure_vr_element(caller, uuid: str, enabled: bool) -> NetworkServiceProvider:
    nsp = get_vr_element(uuid)
    nsp.element_enabled = bool(enabled)
    events.record("NETWORK.ELEMENT.CONFIGURE", f"Virtual router element of {nsp.physical_network.name} "
                  f"{'enabled' if enabled else 'disabled'}", user=caller, resource_type="VirtualRouterElement",
                  resource_id=nsp.element_uuid)
    db.session.commit()
    return nsp


def check_host_labels(zone_id: int, hypervisor_type: str, driver, host_name: str) -> None:
    """addHost: every traffic label of the zone for this type must exist on the host; the
    first missing one refuses the host. Drivers that cannot check yet are skipped (logged)."""
    import logging

    from app.services.errors import ServiceError
    wanted = labels_for_host(zone_id, hypervisor_type)
    if not wanted:
        return
    try:
        missing = set(driver.check_labels(sorted({label for _, label in wanted})))
    except NotImplementedError:
        logging.getLogger("nubo.network").info("%s hosts cannot check traffic labels yet; %s not checked",
                                               hypervisor_type, host_name)
        return
    for traffic_type, label in wanted:
        if label in missing:
            raise ServiceError(f"Unable to add the host: the traffic label {label} of {traffic_type} traffic does "
                               f"not exist on host {host_name}", field="url")
