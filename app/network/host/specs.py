"""Value objects between the network services (which read the database) and the host-side
executor (which only runs commands). Everything a host needs is in them; they are plain
data, JSON-serialisable with dataclasses.asdict."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SegmentSpec:
    """A guest network's layer-2 segment on one host: a Linux bridge, joined to the traffic
    label's device by a VXLAN or VLAN interface (none: the label's bridge itself, untagged).

    Names follow CloudStack's KVM agent scripts: VXLAN `vxlan<vni>` + bridge `brvx-<vni>`
    (modifyvxlan.sh), VLAN `<pif>.<vlan>` + bridge `br<pif>-<vlan>` (modifyvlan.sh)."""
    isolation: str  # "VXLAN" | "VLAN" | "untagged"
    label: str  # the traffic label: a device or bridge on the host (e.g. "cloudbr0")
    vnet: int | None = None  # the VNI or VLAN id; None when untagged
    # VXLAN head-end replication: underlay addresses of the other hosts carrying this VNI
    peers: tuple[str, ...] = ()
    mtu: int | None = None


@dataclass(frozen=True)
class DhcpEntry:
    """A static lease (and a DNS name) for one VM NIC on the router's guest network."""
    mac: str
    ip: str
    hostname: str
    default: bool = True  # the NIC carrying the default route (only the default NIC gets a gateway)


@dataclass(frozen=True)
class VmMetadata:
    """What the metadata server answers to requests from `ip` (CloudStack's paths:
    /latest/user-data, /latest/meta-data/<item>)."""
    ip: str
    instance_id: str  # the VM's uuid
    local_hostname: str
    user_data: str | None = None  # decoded text (CloudStack stores base64)
    public_keys: tuple[str, ...] = ()
    # any other meta-data items: service-offering, availability-zone, local-ipv4,
    # public-ipv4, vm-id, public-hostname, instance-id ... (name -> value)
    items: tuple[tuple[str, str], ...] = ()
    # the password its password server hands out once (password-enabled templates), or None
    password: str | None = None


@dataclass(frozen=True)
class NatRule:
    """Port forwarding (public ip:port range -> guest ip:port range) or, with protocol
    "all" and no ports, static NAT of the whole public IP to one guest address."""
    public_ip: str
    guest_ip: str
    protocol: str  # tcp | udp | all
    public_start: int | None = None
    public_end: int | None = None
    private_start: int | None = None
    private_end: int | None = None


@dataclass(frozen=True)
class FirewallSpec:
    """One allow rule. Ingress: traffic to `public_ip` from `cidrs`. Egress: from the guest
    network to `cidrs` (dest). protocol tcp|udp|icmp|all; ports for tcp/udp; type/code for icmp
    (None: any)."""
    protocol: str
    cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    start_port: int | None = None
    end_port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    public_ip: str | None = None  # ingress only


@dataclass(frozen=True)
class RouterSpec:
    """Everything one virtual router is. Applying it twice changes nothing; applying a new
    one replaces the old configuration (nftables in one transaction)."""
    # Names the namespace nr-<key>, its veths vr<key>g / vr<key>p and the directory
    # /var/lib/nubo/routers/<key>: the first 10 hex digits of the router's uuid, so two Nubo
    # installations (or two test databases) sharing a host never collide.
    key: str
    name: str  # r-<id>-VM
    guest: SegmentSpec
    guest_ip: str  # the router's address on the guest network (the gateway of Isolated networks)
    guest_cidr: str  # e.g. 10.1.1.0/24
    guest_mac: str
    dhcp_range: tuple[str, str]  # first and last guest address: DHCP gives only the static leases
    gateway: str | None  # what DHCP gives as router (Isolated: guest_ip; Shared: the network's gateway)
    domain: str  # the network domain, e.g. cs1cloud.internal
    dns_upstream: tuple[str, ...] = ()  # the zone's DNS servers
    leases: tuple[DhcpEntry, ...] = ()
    metadata: tuple[VmMetadata, ...] = ()
    # Public side (Isolated networks with source NAT); None: no public side
    public: SegmentSpec | None = None
    public_mac: str | None = None
    public_ips: tuple[str, ...] = ()  # each as "a.b.c.d/prefix"; the first is the source-NAT IP
    public_gateway: str | None = None
    source_nat_ip: str | None = None
    nat: tuple[NatRule, ...] = ()
    ingress: tuple[FirewallSpec, ...] = ()  # deny unless allowed
    egress: tuple[FirewallSpec, ...] = ()
    egress_default_allow: bool = True  # the offering's egressdefaultpolicy; rules are then denies
    mtu: int | None = None


@dataclass(frozen=True)
class RouterFacts:
    """What the host says about a router."""
    exists: bool  # the namespace exists
    dnsmasq: bool  # running
    metadata: bool  # running
    config_hash: str | None = None  # of the configuration applied (compared with the database's)
    detail: str = ""

    @property
    def healthy(self) -> bool:
        return self.exists and self.dnsmasq and self.metadata


@dataclass(frozen=True)
class SgRule:
    """An allow rule of a security group, with other groups already expanded to addresses."""
    direction: str  # ingress | egress
    protocol: str  # tcp | udp | icmp | all
    cidrs: tuple[str, ...]
    start_port: int | None = None
    end_port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None


@dataclass(frozen=True)
class VmRuleset:
    """A NIC on a security-group network: anti-spoofing (its MAC and addresses only) and the
    union of its groups' rules; default deny for ingress, and for egress once any egress rule
    exists (CloudStack's behaviour). On a host it is one nftables table of its own
    (`bridge nubo_sg_<tap>`), replaced whole, so NICs never share state."""
    tap: str  # the NIC's device on the host (NicSpec.target_dev: "vn" + 10 hex digits of the NIC's uuid)
    mac: str
    ips: tuple[str, ...]
    rules: tuple[SgRule, ...] = ()


def router_key(uuid: str) -> str:
    return uuid.replace("-", "")[:10]


def nic_device(uuid: str) -> str:
    """The host device name of a NIC (libvirt <target dev>): stable across hosts and starts."""
    return "vn" + uuid.replace("-", "")[:10]
