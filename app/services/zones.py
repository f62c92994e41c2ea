"""Zones, pods and clusters: the physical layout, with CloudStack's rules.

- names are unique where CloudStack makes them unique (zone; pod in zone; cluster in pod);
- a cluster holds hosts of one hypervisor type; Hyper-V zones are pure Hyper-V;
- nothing is deleted while something still lives in it.
"""
from __future__ import annotations

import ipaddress
import re

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from app.extensions import db
from app.models import AllocationState, Cluster, Host, NetworkType, PhysicalNetwork, Pod, Zone, new_uuid, utcnow
from app.services import events, settings
from app.services import hypervisors as hv
from app.services.errors import InvalidParameter, NotFound, ResourceInUse
from app.services.pagination import name_of, page_of, sorted_by

HYPERV = "Hyperv"


def _ipv4(value: str | None, field: str, required: bool = False) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            raise InvalidParameter(f"{field} is required", field=field)
        return None
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise InvalidParameter(f"{field} must be an IPv4 address, not {value!r}", field=field) from None


def _cidr(value: str | None, field: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return str(ipaddress.IPv4Network(value, strict=False))
    except ValueError:
        raise InvalidParameter(f"{field} must be a CIDR such as 10.1.1.0/24", field=field) from None


def _name(value: str | None, field: str = "name") -> str:
    value = (value or "").strip()
    if not value or len(value) > 255:
        raise InvalidParameter(f"{field} is required (at most 255 characters)", field=field)
    return value


def _state(value: str | None, default: str) -> str:
    if value is None:
        return default
    for s in AllocationState:
        if s.value.lower() == value.lower():
            return s.value
    raise InvalidParameter("allocationstate must be Enabled or Disabled", field="allocationstate")


# --- Zones ------------------------------------------------------------------------

def get_zone(uuid: str, field: str = "zoneid") -> Zone:
    zone = db.session.scalar(select(Zone).where(Zone.uuid == uuid, Zone.removed.is_(None)))
    if zone is None:
        raise NotFound("Unable to find zone with the specified id", field=field)
    return zone


def validate_zone(*, name: str, description: str | None = None, network_type: str = "Advanced",
                  dns1: str | None = None, dns2: str | None = None, internal_dns1: str | None = None,
                  internal_dns2: str | None = None, guest_cidr: str | None = None, local_storage: bool = False,
                  hypervisor: str | None = None) -> dict:
    """Check a new zone's values (the API and the wizard's first step); the normalized values."""
    name = _name(name)
    if network_type not in (NetworkType.BASIC, NetworkType.ADVANCED):
        raise InvalidParameter("networktype must be Basic or Advanced", field="networktype")
    if db.session.scalar(select(Zone.id).where(func.lower(Zone.name) == name.lower(), Zone.removed.is_(None))):
        raise InvalidParameter(f"A zone named {name} already exists", field="name")
    return dict(name=name, description=(description or "").strip() or None, network_type=network_type,
                dns1=_ipv4(dns1, "dns1", required=True), dns2=_ipv4(dns2, "dns2"),
                internal_dns1=_ipv4(internal_dns1, "internaldns1", required=True),
                internal_dns2=_ipv4(internal_dns2, "internaldns2"),
                guest_cidr=_cidr(guest_cidr, "guestcidraddress"), local_storage_enabled=bool(local_storage),
                hypervisor_type=hv.resolve(hypervisor).name if hypervisor else None)


def create_zone(caller, *, allocation_state: str | None = None, commit: bool = True, default_network: bool = True,
                **values) -> Zone:
    """values: those of validate_zone. With a guest CIDR the zone gets its default guest network
    (the wizard makes it later, after the physical network that gives its VLAN)."""
    zone = Zone(uuid=new_uuid(), allocation_state=_state(allocation_state, AllocationState.ENABLED),
                **validate_zone(**values))
    db.session.add(zone)
    events.record("ZONE.CREATE", f"Zone {zone.name} created", user=caller, resource_type="Zone",
                  resource_id=zone.uuid)
    if commit:
        db.session.commit()
        if default_network and zone.guest_cidr:
            from app.services.network import networks
            networks.ensure_default_network(caller, zone)
    return zone


def update_zone(caller, uuid: str, *, name: str | None = None, description: str | None = None,
                allocation_state: str | None = None, dns1: str | None = None, dns2: str | None = None,
                local_storage: bool | None = None) -> Zone:
    zone = get_zone(uuid, "id")
    if name is not None and name.strip() != zone.name:
        name = _name(name)
        if db.session.scalar(select(Zone.id).where(func.lower(Zone.name) == name.lower(),
                                                   Zone.removed.is_(None), Zone.id != zone.id)):
            raise InvalidParameter(f"A zone named {name} already exists", field="name")
        zone.name = name
    if description is not None:
        zone.description = description
    if dns1 is not None:
        zone.dns1 = _ipv4(dns1, "dns1", required=True)
    if dns2 is not None:
        zone.dns2 = _ipv4(dns2, "dns2")
    if local_storage is not None:
        zone.local_storage_enabled = local_storage
    zone.allocation_state = _state(allocation_state, zone.allocation_state)
    events.record("ZONE.EDIT", f"Zone {zone.name} updated ({zone.allocation_state})", user=caller, resource_type="Zone", resource_id=zone.uuid)
    db.session.commit()
    return zone


def delete_zone(caller, uuid: str) -> None:
    zone = get_zone(uuid, "id")
    pods = db.session.scalar(select(func.count()).select_from(Pod).where(Pod.zone_id == zone.id, Pod.removed.is_(None)))
    clusters = db.session.scalar(select(func.count()).select_from(Cluster).where(
        Cluster.zone_id == zone.id, Cluster.removed.is_(None)))
    if pods or clusters:
        raise ResourceInUse(f"Zone {zone.name} still has {clusters} cluster(s) in {pods} pod(s); "
                            "delete them first")
    zone.removed = utcnow()
    settings.forget("zone", zone.id)
    events.record("ZONE.DELETE", f"Zone {zone.name} deleted", user=caller, resource_type="Zone", resource_id=zone.uuid)
    db.session.commit()


# Sort keys the admin lists accept (a whitelist: the key comes from the query string).
ZONE_SORTS = {"name": Zone.name, "networktype": Zone.network_type, "allocationstate": Zone.allocation_state}


def list_zones(*, id: str | None = None, name: str | None = None, keyword: str | None = None, page=None,
               sort: str | None = None):
    q = sorted_by(select(Zone).where(Zone.removed.is_(None)), sort, ZONE_SORTS, Zone.id)
    if id:
        q = q.where(Zone.uuid == id)
    if name:
        q = q.where(Zone.name == name)
    if keyword:
        q = q.where(Zone.name.contains(keyword, autoescape=True))
    return page_of(q, page)


# --- Physical networks --------------------------------------------------------

# A Linux bridge name (IFNAMSIZ: 15 characters) or a Hyper-V virtual switch name.
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:-]{0,63}$")


def validate_vlan_range(value: str | None, required: bool) -> str | None:
    """"100-199,300" style ranges within 1..4094, without overlaps."""
    value = (value or "").replace(" ", "")
    if not value:
        if required:
            raise InvalidParameter("An Advanced zone needs a guest VLAN range, e.g. 100-199", field="vlan")
        return None
    spans = []
    for part in value.split(","):
        m = re.fullmatch(r"(\d{1,4})(?:-(\d{1,4}))?", part)
        lo, hi = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, 0)
        if not m or not 1 <= lo <= hi <= 4094:
            raise InvalidParameter(f"{part!r} is not a VLAN range within 1-4094 (e.g. 100-199)", field="vlan")
        spans.append((lo, hi))
    spans.sort()
    for (_, hi), (lo, _) in zip(spans, spans[1:]):
        if lo <= hi:
            raise InvalidParameter("The VLAN ranges overlap", field="vlan")
    return value


def validate_traffic_label(value: str | None, type_name: str) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidParameter(f"The {hv.display_name(type_name)} hosts' bridge or virtual switch name is required",
                               field="trafficlabel")
    limit = 255 if type_name == HYPERV else 15  # Linux bridge names are at most 15 characters
    if len(value) > limit or not _LABEL.match(value) or (" " in value and type_name != HYPERV):
        raise InvalidParameter(f"{value!r} is not a valid {'virtual switch' if type_name == HYPERV else 'bridge'} "
                               f"name (letters, digits, . _ : -, at most {limit} characters)", field="trafficlabel")
    return value


def create_physical_network(caller, zone: Zone, *, vlan_range: str | None, traffic_labels: dict[str, str],
                            name: str = "Physical Network 1", isolation_method: str = "VLAN",
                            commit: bool = True) -> PhysicalNetwork:
    """A physical network carrying Guest traffic with these labels (network/physical.py has the rules)."""
    from app.services.network import physical
    phys = physical.create_physical_network(caller, zone=zone, name=name, vlan=vlan_range,
                                            isolation_method=isolation_method, commit=False)
    physical.add_traffic_type(caller, phys.uuid, "Guest", traffic_labels, commit=False)
    if commit:
        db.session.commit()
    return phys


# --- Pods -------------------------------------------------------------------------

def get_pod(uuid: str, field: str = "podid") -> Pod:
    pod = db.session.scalar(select(Pod).where(Pod.uuid == uuid, Pod.removed.is_(None)))
    if pod is None:
        raise NotFound("Unable to find pod with the specified id", field=field)
    return pod


def validate_pod_network(gateway: str, netmask: str, start_ip: str, end_ip: str | None = None) -> dict:
    """Gateway, netmask and the host IP range inside that subnet; the normalized values."""
    gw = _ipv4(gateway, "gateway", required=True)
    mask = _ipv4(netmask, "netmask", required=True)
    try:
        net = ipaddress.IPv4Network(f"{gw}/{mask}", strict=False)
    except ValueError:
        raise InvalidParameter(f"{mask} is not a valid netmask", field="netmask") from None
    start = _ipv4(start_ip, "startip", required=True)
    end = _ipv4(end_ip, "endip") or start
    check_range(net, start, end, "startip", "endip")
    return dict(gateway=gw, netmask=mask, start_ip=start, end_ip=end)


def check_range(net: ipaddress.IPv4Network, start: str, end: str, start_field: str, end_field: str) -> None:
    for field, ip in ((start_field, start), (end_field, end)):
        if ipaddress.IPv4Address(ip) not in net:
            raise InvalidParameter(f"{ip} is not in the subnet {net}", field=field)
    if ipaddress.IPv4Address(start) > ipaddress.IPv4Address(end):
        raise InvalidParameter(f"The range must not start after it ends ({start} > {end})", field=end_field)


def create_pod(caller, *, zone_uuid: str, name: str, gateway: str, netmask: str, start_ip: str,
               end_ip: str | None = None, allocation_state: str | None = None, commit: bool = True) -> Pod:
    zone = get_zone(zone_uuid)
    name = _name(name)
    network = validate_pod_network(gateway, netmask, start_ip, end_ip)
    if db.session.scalar(select(Pod.id).where(Pod.zone_id == zone.id, func.lower(Pod.name) == name.lower(),
                                              Pod.removed.is_(None))):
        raise InvalidParameter(f"Zone {zone.name} already has a pod named {name}", field="name")
    pod = Pod(uuid=new_uuid(), zone_id=zone.id, name=name, allocation_state=_state(allocation_state, AllocationState.ENABLED),
              **network)
    db.session.add(pod)
    events.record("POD.CREATE", f"Pod {name} created in zone {zone.name}", user=caller, resource_type="Pod",
                  resource_id=pod.uuid)
    if commit:
        db.session.commit()
    return pod


def update_pod(caller, uuid: str, *, name: str | None = None, allocation_state: str | None = None) -> Pod:
    pod = get_pod(uuid, "id")
    if name is not None:
        pod.name = _name(name)
    pod.allocation_state = _state(allocation_state, pod.allocation_state)
    events.record("POD.EDIT", f"Pod {pod.name} updated ({pod.allocation_state})", user=caller, resource_type="Pod",
                  resource_id=pod.uuid)
    db.session.commit()
    return pod


def delete_pod(caller, uuid: str) -> None:
    pod = get_pod(uuid, "id")
    if db.session.scalar(select(func.count()).select_from(Cluster).where(Cluster.pod_id == pod.id,
                                                                         Cluster.removed.is_(None))):
        raise ResourceInUse(f"Pod {pod.name} still has clusters; delete them first")
    pod.removed = utcnow()
    events.record("POD.DELETE", f"Pod {pod.name} deleted", user=caller, resource_type="Pod", resource_id=pod.uuid)
    db.session.commit()


POD_SORTS = {"name": Pod.name, "zone": name_of(Zone, Pod.zone_id), "gateway": Pod.gateway,
             "allocationstate": Pod.allocation_state}


def list_pods(*, id=None, zone_uuid=None, name=None, keyword=None, page=None, sort: str | None = None):
    q = sorted_by(select(Pod).where(Pod.removed.is_(None)), sort, POD_SORTS, Pod.id).options(joinedload(Pod.zone))
    if id:
        q = q.where(Pod.uuid == id)
    if zone_uuid:
        q = q.where(Pod.zone_id == get_zone(zone_uuid).id)
    if name:
        q = q.where(Pod.name == name)
    if keyword:
        q = q.where(Pod.name.contains(keyword, autoescape=True))
    return page_of(q, page)


# --- Clusters -------------------------------------------------------------------

def get_cluster(uuid: str, field: str = "clusterid") -> Cluster:
    c = db.session.scalar(select(Cluster).where(Cluster.uuid == uuid, Cluster.removed.is_(None)))
    if c is None:
        raise NotFound("Unable to find cluster with the specified id", field=field)
    return c


def add_cluster(caller, *, pod_uuid: str, name: str, hypervisor: str, zone_uuid: str | None = None,
                cluster_type: str = "CloudManaged", allocation_state: str | None = None,
                commit: bool = True, extension_uuid: str | None = None) -> Cluster:
    pod = get_pod(pod_uuid)
    if zone_uuid and get_zone(zone_uuid).id != pod.zone_id:
        raise InvalidParameter("The pod is not in that zone", field="podid")
    t = hv.resolve(hypervisor)
    name = _name(name, "clustername")
    types_in_zone = set(db.session.scalars(select(Cluster.hypervisor_type).where(
        Cluster.zone_id == pod.zone_id, Cluster.removed.is_(None)).distinct()))
    if t.name == HYPERV and types_in_zone - {HYPERV}:
        raise InvalidParameter("Hyper-V clusters go only in pure Hyper-V zones; this zone has "
                               + ", ".join(sorted(hv.display_name(x) for x in types_in_zone)), field="hypervisor")
    if t.name != HYPERV and HYPERV in types_in_zone:
        raise InvalidParameter(f"This zone is a Hyper-V zone; a {hv.display_name(t.name)} cluster cannot join it",
                               field="hypervisor")
    if db.session.scalar(select(Cluster.id).where(Cluster.pod_id == pod.id, func.lower(Cluster.name) == name.lower(),
                                                  Cluster.removed.is_(None))):
        raise InvalidParameter(f"Pod {pod.name} already has a cluster named {name}", field="clustername")
    c = Cluster(uuid=new_uuid(), zone_id=pod.zone_id, pod_id=pod.id, name=name, hypervisor_type=t.name,
                cluster_type=cluster_type, allocation_state=_state(allocation_state, AllocationState.ENABLED))
    db.session.add(c)
    if extension_uuid:  # CloudStack: addCluster with extensionid registers the extension with it
        from app.services.extensions import registry as extensions
        db.session.flush()
        extensions.register_with_cluster(caller, extensions.get(extension_uuid, "extensionid"), c, {}, commit=False)
    events.record("CLUSTER.CREATE", f"Cluster {name} ({hv.display_name(t.name)}) added", user=caller,
                  resource_type="Cluster", resource_id=c.uuid)
    if commit:
        db.session.commit()
    return c


def update_cluster(caller, uuid: str, *, name: str | None = None, allocation_state: str | None = None) -> Cluster:
    c = get_cluster(uuid, "id")
    if name is not None:
        c.name = _name(name, "clustername")
    c.allocation_state = _state(allocation_state, c.allocation_state)
    events.record("CLUSTER.EDIT", f"Cluster {c.name} updated ({c.allocation_state})", user=caller,
                  resource_type="Cluster", resource_id=c.uuid)
    db.session.commit()
    return c


def delete_cluster(caller, uuid: str) -> None:
    c = get_cluster(uuid, "id")
    if db.session.scalar(select(func.count()).select_from(Host).where(Host.cluster_id == c.id, Host.removed.is_(None))):
        raise ResourceInUse(f"Cluster {c.name} still has hosts; remove them first")
    c.removed = utcnow()
    settings.forget("cluster", c.id)
    events.record("CLUSTER.DELETE", f"Cluster {c.name} deleted", user=caller, resource_type="Cluster",
                  resource_id=c.uuid)
    db.session.commit()


CLUSTER_SORTS = {"name": Cluster.name, "zone": name_of(Zone, Cluster.zone_id), "pod": name_of(Pod, Cluster.pod_id),
                 "hypervisor": Cluster.hypervisor_type, "allocationstate": Cluster.allocation_state}


def list_clusters(*, id=None, zone_uuid=None, pod_uuid=None, hypervisor=None, name=None, keyword=None, page=None,
                  sort: str | None = None):
    q = (sorted_by(select(Cluster).where(Cluster.removed.is_(None)), sort, CLUSTER_SORTS, Cluster.id)
         .options(joinedload(Cluster.pod), joinedload(Cluster.zone)))
    if id:
        q = q.where(Cluster.uuid == id)
    if zone_uuid:
        q = q.where(Cluster.zone_id == get_zone(zone_uuid).id)
    if pod_uuid:
        q = q.where(Cluster.pod_id == get_pod(pod_uuid).id)
    if hypervisor:
        q = q.where(Cluster.hypervisor_type == hv.resolve(hypervisor).name)
    if name:
        q = q.where(Cluster.name == name)
    if keyword:
        q = q.where(Cluster.name.contains(keyword, autoescape=True))
    return page_of(q, page)
