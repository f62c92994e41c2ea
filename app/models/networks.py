"""Guest networking in CloudStack's model: physical networks with their traffic types and
service providers, network offerings, guest networks and their address allocations, public IP
ranges and addresses, the rules on public IPs (firewall, port forwarding, static NAT, egress),
virtual routers, and security groups. docs/networking.md says how they become real on hosts."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import PublicIdMixin, RemovableMixin


class GuestType(StrEnum):
    ISOLATED = "Isolated"
    SHARED = "Shared"
    L2 = "L2"


class NetworkState(StrEnum):
    """CloudStack's Network.State: Allocated until the first VM needs it on a host."""
    ALLOCATED = "Allocated"
    IMPLEMENTING = "Implementing"
    IMPLEMENTED = "Implemented"
    SHUTDOWN = "Shutdown"
    DESTROY = "Destroy"


class TrafficType(StrEnum):
    GUEST = "Guest"
    PUBLIC = "Public"
    MANAGEMENT = "Management"
    STORAGE = "Storage"


class Service(StrEnum):
    DHCP = "Dhcp"
    DNS = "Dns"
    USER_DATA = "UserData"
    SOURCE_NAT = "SourceNat"
    STATIC_NAT = "StaticNat"
    PORT_FORWARDING = "PortForwarding"
    FIREWALL = "Firewall"
    SECURITY_GROUP = "SecurityGroup"


class Provider(StrEnum):
    VIRTUAL_ROUTER = "VirtualRouter"
    SECURITY_GROUP = "SecurityGroupProvider"


class RouterState(StrEnum):
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    ALERT = "Alert"  # differs from the database and could not be re-applied
    DESTROYED = "Destroyed"


class IpState(StrEnum):
    FREE = "Free"
    ALLOCATING = "Allocating"
    ALLOCATED = "Allocated"
    RELEASING = "Releasing"


class RulePurpose(StrEnum):
    FIREWALL = "Firewall"
    PORT_FORWARDING = "PortForwarding"
    STATIC_NAT = "StaticNat"  # createIpForwardingRule: a protocol/port range of a static-NAT IP


class RuleState(StrEnum):
    ADD = "Add"  # written, not yet on the router
    ACTIVE = "Active"
    REVOKE = "Revoke"  # being removed from the router


# --- Zone side: physical networks, traffic types, providers ------------------------

class PhysicalNetwork(PublicIdMixin, RemovableMixin, db.Model):
    """A zone's physical network: how guest networks are isolated on it (VLAN or VXLAN)
    and the range of VLAN ids / VNIs they take."""

    __tablename__ = "physical_networks"

    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    # "VLAN" or "VXLAN" (CloudStack's isolationmethods; one per physical network in Nubo)
    isolation_method: Mapped[str] = mapped_column(String(16), default="VLAN")
    vlan_range: Mapped[str | None] = mapped_column(String(255))  # "100-199,300-310": VLAN ids or VNIs
    tags: Mapped[str | None] = mapped_column(String(255))
    broadcast_domain_range: Mapped[str] = mapped_column(String(16), default="ZONE")
    # Legacy: JSON {hypervisor type: label} of the Guest traffic type, kept in step with it
    # by the service (read by code that predates the traffic type rows).
    traffic_labels: Mapped[str] = mapped_column(Text, default="{}")
    state: Mapped[str] = mapped_column(String(16), default="Enabled")

    zone = relationship("Zone")


class PhysicalNetworkTrafficType(PublicIdMixin, db.Model):
    """addTrafficType: a traffic type carried by a physical network, with the host-side label
    (bridge or device) each hypervisor type uses for it."""

    __tablename__ = "physical_network_traffic_types"
    __table_args__ = (UniqueConstraint("physical_network_id", "traffic_type"),)

    physical_network_id: Mapped[int] = mapped_column(ForeignKey("physical_networks.id", ondelete="CASCADE"),
                                                     index=True)
    traffic_type: Mapped[str] = mapped_column(String(16))  # TrafficType
    # JSON {hypervisor type (internal name): label}, e.g. {"KVM": "cloudbr0", "Hyperv": "vSwitch0"}
    labels: Mapped[str] = mapped_column(Text, default="{}")
    vlan: Mapped[str | None] = mapped_column(String(32))  # e.g. the storage/management VLAN

    physical_network = relationship("PhysicalNetwork")


class NetworkServiceProvider(PublicIdMixin, db.Model):
    """A provider (VirtualRouter, SecurityGroupProvider) on a physical network. The
    VirtualRouter provider's element (listVirtualRouterElements) is part of this row."""

    __tablename__ = "network_service_providers"
    __table_args__ = (UniqueConstraint("physical_network_id", "name"),)

    physical_network_id: Mapped[int] = mapped_column(ForeignKey("physical_networks.id", ondelete="CASCADE"),
                                                     index=True)
    name: Mapped[str] = mapped_column(String(64))  # Provider
    state: Mapped[str] = mapped_column(String(16), default="Disabled")  # Enabled | Disabled | Shutdown
    # JSON list of Service values this provider can give
    services: Mapped[str] = mapped_column(Text, default="[]")
    element_uuid: Mapped[str | None] = mapped_column(String(36), unique=True)  # VirtualRouter only
    element_enabled: Mapped[bool] = mapped_column(Boolean, default=False)

    physical_network = relationship("PhysicalNetwork")


class NetworkOffering(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "network_offerings"

    name: Mapped[str] = mapped_column(String(255), index=True)
    display_text: Mapped[str] = mapped_column(String(1024))
    guest_ip_type: Mapped[str] = mapped_column(String(16))  # GuestType
    traffic_type: Mapped[str] = mapped_column(String(16), default="Guest")
    # JSON {Service: Provider}, e.g. {"Dhcp": "VirtualRouter", "SecurityGroup": "SecurityGroupProvider"}
    services: Mapped[str] = mapped_column(Text, default="{}")
    specify_vlan: Mapped[bool] = mapped_column(Boolean, default=False)
    specify_ip_ranges: Mapped[bool] = mapped_column(Boolean, default=False)
    conserve_mode: Mapped[bool] = mapped_column(Boolean, default=True)
    # True: egress allowed unless an egress rule... CloudStack's egressdefaultpolicy (true = allow)
    egress_default_policy: Mapped[bool] = mapped_column(Boolean, default=True)
    availability: Mapped[str] = mapped_column(String(16), default="Optional")  # Optional | Required
    state: Mapped[str] = mapped_column(String(16), default="Enabled")  # Enabled | Disabled
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)  # one of CloudStack's defaults
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    tags: Mapped[str | None] = mapped_column(String(4096))
    network_rate: Mapped[int | None] = mapped_column(Integer)  # Mbit/s
    max_connections: Mapped[int | None] = mapped_column(Integer)


# --- Guest networks ----------------------------------------------------------------

class Network(PublicIdMixin, RemovableMixin, db.Model):
    __tablename__ = "networks"

    name: Mapped[str] = mapped_column(String(255))
    display_text: Mapped[str | None] = mapped_column(String(1024))
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"), index=True)
    physical_network_id: Mapped[int | None] = mapped_column(ForeignKey("physical_networks.id"), index=True)
    network_offering_id: Mapped[int | None] = mapped_column(ForeignKey("network_offerings.id"), index=True)
    guest_type: Mapped[str] = mapped_column(String(16), default=GuestType.SHARED)
    # None: shared by every account of the zone (acltype Domain).
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    # L2 networks have no addresses.
    cidr: Mapped[str | None] = mapped_column(String(64))
    gateway: Mapped[str | None] = mapped_column(String(64))
    netmask: Mapped[str | None] = mapped_column(String(64))
    start_ip: Mapped[str | None] = mapped_column(String(64))
    end_ip: Mapped[str | None] = mapped_column(String(64))
    # The segment: a VLAN id or a VNI (see physical network's isolation_method); None = untagged.
    vlan: Mapped[int | None] = mapped_column(Integer)
    # CloudStack's broadcasturi: "vlan://100", "vxlan://5001", "vlan://untagged"; None until implemented
    broadcast_uri: Mapped[str | None] = mapped_column(String(255))
    network_domain: Mapped[str | None] = mapped_column(String(255))
    dns1: Mapped[str | None] = mapped_column(String(64))
    dns2: Mapped[str | None] = mapped_column(String(64))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default=NetworkState.IMPLEMENTED)
    restart_required: Mapped[bool] = mapped_column(Boolean, default=False)
    # Shared networks only: a security-group network (Basic zones and SG-enabled Advanced)
    security_groups: Mapped[bool] = mapped_column(Boolean, default=False)
    # True while its account is charged for it (quota type 6), changed with the count
    quota_counted: Mapped[bool] = mapped_column(Boolean, default=False)

    zone = relationship("Zone")
    offering = relationship("NetworkOffering")
    physical_network = relationship("PhysicalNetwork")


class GuestVnet(db.Model):
    """One VLAN id or VNI of a physical network taken by a network (CloudStack's
    op_dc_vnet_alloc): the unique constraint makes taking one atomic."""

    __tablename__ = "guest_vnets"
    __table_args__ = (UniqueConstraint("physical_network_id", "vnet"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    physical_network_id: Mapped[int] = mapped_column(ForeignKey("physical_networks.id", ondelete="CASCADE"))
    vnet: Mapped[int] = mapped_column(Integer)
    network_id: Mapped[int | None] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"), index=True)
    taken: Mapped[datetime | None] = mapped_column(DateTime)


class IpCursor(db.Model):
    """Where a network's next guest address is tried: one atomic upsert hands each new NIC its own
    offset, so concurrent deploys try different addresses instead of racing for one (the unique
    key of ip_addresses still decides). A row of its own, not a column of networks: taking an
    address never queues behind the network's other writers (its VXLAN sync locks the network's
    row while the hosts answer), nor they behind it."""

    __tablename__ = "ip_cursors"

    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"), primary_key=True,
                                            autoincrement=False)
    next_offset: Mapped[int] = mapped_column(Integer, default=0)


class IpAddress(db.Model):
    """One allocated guest IP; the unique constraint makes allocation atomic. Held by a VM's
    NIC or by the network's router (a shared network's router takes one of its addresses)."""

    __tablename__ = "ip_addresses"
    __table_args__ = (UniqueConstraint("network_id", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(64))
    nic_id: Mapped[int | None] = mapped_column(ForeignKey("nics.id", ondelete="SET NULL"), index=True)
    router_id: Mapped[int | None] = mapped_column(ForeignKey("routers.id", ondelete="SET NULL"), index=True)
    allocated: Mapped[datetime | None] = mapped_column(DateTime)


# --- Public side ---------------------------------------------------------------------

class VlanIpRange(PublicIdMixin, RemovableMixin, db.Model):
    """createVlanIpRange (CloudStack's `vlan` table): a public range of a zone
    (forvirtualnetwork=true) or an address range of a shared network."""

    __tablename__ = "vlan_ip_ranges"

    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"), index=True)
    physical_network_id: Mapped[int | None] = mapped_column(ForeignKey("physical_networks.id"), index=True)
    network_id: Mapped[int | None] = mapped_column(ForeignKey("networks.id"), index=True)  # shared ranges
    vlan: Mapped[str] = mapped_column(String(32), default="untagged")  # "untagged" or the VLAN id
    gateway: Mapped[str] = mapped_column(String(64))
    netmask: Mapped[str] = mapped_column(String(64))
    start_ip: Mapped[str] = mapped_column(String(64))
    end_ip: Mapped[str] = mapped_column(String(64))
    for_virtual_network: Mapped[bool] = mapped_column(Boolean, default=True)  # True: public range
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)  # dedicated to

    zone = relationship("Zone")


class PublicIpAddress(PublicIdMixin, db.Model):
    """One public address (CloudStack's user_ip_address); made Free with its range, taken by
    a guarded UPDATE (state Free -> Allocated), so two callers never get the same one."""

    __tablename__ = "public_ip_addresses"
    __table_args__ = (UniqueConstraint("zone_id", "address"),
                      Index("ix_public_ips_free", "vlan_range_id", "state"))

    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"))
    vlan_range_id: Mapped[int] = mapped_column(ForeignKey("vlan_ip_ranges.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=IpState.FREE)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    network_id: Mapped[int | None] = mapped_column(ForeignKey("networks.id"), index=True)  # associated with
    is_source_nat: Mapped[bool] = mapped_column(Boolean, default=False)
    # Static NAT: the VM and the NIC address the whole IP maps to
    vm_id: Mapped[int | None] = mapped_column(ForeignKey("vm_instances.id"), index=True)
    vm_ip: Mapped[str | None] = mapped_column(String(64))
    allocated: Mapped[datetime | None] = mapped_column(DateTime)
    # True while the account is charged for it (quota type 1), changed with the count
    quota_counted: Mapped[bool] = mapped_column(Boolean, default=False)

    vlan_range = relationship("VlanIpRange")


class FirewallRule(PublicIdMixin, db.Model):
    """CloudStack's firewall_rules: ingress firewall rules, port forwarding and static-NAT
    (ip forwarding) rules on a public IP, and egress rules of a network."""

    __tablename__ = "firewall_rules"

    purpose: Mapped[str] = mapped_column(String(32))  # RulePurpose
    traffic_type: Mapped[str] = mapped_column(String(16), default="Ingress")  # Ingress | Egress
    public_ip_id: Mapped[int | None] = mapped_column(ForeignKey("public_ip_addresses.id", ondelete="CASCADE"),
                                                     index=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    protocol: Mapped[str] = mapped_column(String(16))  # tcp | udp | icmp | all
    start_port: Mapped[int | None] = mapped_column(Integer)
    end_port: Mapped[int | None] = mapped_column(Integer)
    icmp_type: Mapped[int | None] = mapped_column(Integer)
    icmp_code: Mapped[int | None] = mapped_column(Integer)
    source_cidrs: Mapped[str | None] = mapped_column(Text)  # comma-separated
    dest_cidrs: Mapped[str | None] = mapped_column(Text)  # egress only
    # Port forwarding: where the public port range goes
    vm_id: Mapped[int | None] = mapped_column(ForeignKey("vm_instances.id"), index=True)
    vm_ip: Mapped[str | None] = mapped_column(String(64))
    private_start_port: Mapped[int | None] = mapped_column(Integer)
    private_end_port: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=RuleState.ADD)
    # The firewall rule createPortForwardingRule(openfirewall=true) made with it, if any
    related_rule_id: Mapped[int | None] = mapped_column(ForeignKey("firewall_rules.id", ondelete="SET NULL"))

    public_ip = relationship("PublicIpAddress")


# --- Virtual routers -------------------------------------------------------------------

class Router(PublicIdMixin, RemovableMixin, db.Model):
    """A network's virtual router: on KVM a network namespace on a host of the zone
    (docs/networking.md); the database is its desired state."""

    __tablename__ = "routers"

    name: Mapped[str] = mapped_column(String(255))  # r-<id>-VM, as CloudStack names routers
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"), index=True)
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=RouterState.STARTING)
    guest_ip: Mapped[str | None] = mapped_column(String(64))  # its address on the guest network
    public_ip_id: Mapped[int | None] = mapped_column(ForeignKey("public_ip_addresses.id", ondelete="SET NULL"))
    guest_mac: Mapped[str | None] = mapped_column(String(17))
    public_mac: Mapped[str | None] = mapped_column(String(17))
    # sha256 of the configuration last applied (compared with the host's by the monitor)
    applied_hash: Mapped[str | None] = mapped_column(String(64))
    state_reason: Mapped[str | None] = mapped_column(String(1024))
    last_checked: Mapped[datetime | None] = mapped_column(DateTime)

    network = relationship("Network")
    host = relationship("Host")
    zone = relationship("Zone")


# --- Security groups -------------------------------------------------------------------

class SecurityGroup(PublicIdMixin, db.Model):
    __tablename__ = "security_groups"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(4096))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)


class SecurityGroupRule(PublicIdMixin, db.Model):
    __tablename__ = "security_group_rules"

    security_group_id: Mapped[int] = mapped_column(ForeignKey("security_groups.id", ondelete="CASCADE"),
                                                   index=True)
    type: Mapped[str] = mapped_column(String(16))  # ingress | egress
    protocol: Mapped[str] = mapped_column(String(16))  # tcp | udp | icmp | all (or a number)
    start_port: Mapped[int | None] = mapped_column(Integer)
    end_port: Mapped[int | None] = mapped_column(Integer)
    icmp_type: Mapped[int | None] = mapped_column(Integer)
    icmp_code: Mapped[int | None] = mapped_column(Integer)
    cidr: Mapped[str | None] = mapped_column(String(64))
    # usersecuritygrouplist: the members of another group (any account's)
    allowed_group_id: Mapped[int | None] = mapped_column(ForeignKey("security_groups.id", ondelete="CASCADE"))


class VmSecurityGroup(db.Model):
    """security_group_vm_map: the groups a VM was deployed with (its NICs on SG networks)."""

    __tablename__ = "vm_security_groups"
    __table_args__ = (UniqueConstraint("vm_id", "security_group_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vm_instances.id", ondelete="CASCADE"), index=True)
    security_group_id: Mapped[int] = mapped_column(ForeignKey("security_groups.id"), index=True)
