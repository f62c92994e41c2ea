"""The host-side executor (docs/networking.md): value objects in (specs), commands out through a
Channel (LocalChannel here, ssh.SSHChannel for a remote host). Modules: segments (bridges and
their VXLAN/VLAN devices), secgroups (nftables tables per NIC), router (namespaces, dnsmasq,
nft, metadata). ssh is imported by whoever needs it (it pulls in paramiko)."""
from app.network.host.channel import Channel, ChannelError, LocalChannel, Result
from app.network.host.specs import (DhcpEntry, FirewallSpec, NatRule, RouterFacts, RouterSpec, SegmentSpec, SgRule,
                                    VmMetadata, VmRuleset, nic_device, router_key)

__all__ = ["Channel", "ChannelError", "LocalChannel", "Result", "DhcpEntry", "FirewallSpec", "NatRule", "RouterFacts",
           "RouterSpec", "SegmentSpec", "SgRule", "VmMetadata", "VmRuleset", "nic_device", "router_key"]
