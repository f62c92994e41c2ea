"""dnsmasq's files for one virtual router, rendered from a RouterSpec (pure functions).

dnsmasq runs with `--conf-file=<dir>/dnsmasq.conf` only (never /etc/dnsmasq.conf). What changes
with the network's VMs lives in three files that dnsmasq rereads on SIGHUP, so a new VM or a
removed one needs no restart:

- `dhcp-hosts`  (--dhcp-hostsfile): `mac,[set:nodefault,]ip,hostname` — the static leases; with
  `--dhcp-range=<first>,static,...` only these MACs get an address (CloudStack's VR does the same).
- `dhcp-opts`   (--dhcp-optsfile): option 3 (router, unless the spec has no gateway; none for a
  VM's non-default NIC) and option 6 (DNS = the router's guest address).
- `addn-hosts`  (--addn-hosts): each VM's name (short and in the network domain) and
  `data-server` (cloud-init's CloudStack datasource looks that name up) -> the router.

The main file (interface, range, domain, upstream servers) changes only with the network
itself; the router restarts dnsmasq when it does.
"""
from __future__ import annotations

import ipaddress

from . import checks
from .specs import RouterSpec

LEASE_TIME = "infinite"  # CloudStack's VR gives static leases without expiry
CONF = "dnsmasq.conf"
HOSTS = "dhcp-hosts"
OPTS = "dhcp-opts"
ADDN_HOSTS = "addn-hosts"
PID = "dnsmasq.pid"
LEASES = "dnsmasq.leases"
LOG = "dnsmasq.log"
NODEFAULT_TAG = "nodefault"


def _path(d: str, name: str) -> str:
    return d.rstrip("/") + "/" + name


def render_conf(spec: RouterSpec, router_dir: str, guest_dev: str) -> str:
    dev = checks.device(guest_dev)
    net = checks.network(spec.guest_cidr, "guest CIDR")
    first = checks.ipv4(spec.dhcp_range[0], "DHCP range start")
    last = checks.ipv4(spec.dhcp_range[1], "DHCP range end")
    for a in (first, last):
        if ipaddress.IPv4Address(a) not in net:
            raise ValueError(f"DHCP range address {a} is outside {net}")
    dom = checks.domain(spec.domain)
    checks.key(spec.key)
    checks.label(spec.name, "router name")
    if not router_dir.startswith("/") or any(c in router_dir for c in "\n\r\0"):
        raise ValueError(f"invalid router directory {router_dir!r}")
    lines = [
        f"# Virtual router {spec.key} ({spec.name}): rendered by Nubo.",
        f"interface={dev}",
        "bind-interfaces",
        "except-interface=lo",
        f"dhcp-range={first},static,{net.netmask},{LEASE_TIME}",
        f"dhcp-hostsfile={_path(router_dir, HOSTS)}",
        f"dhcp-optsfile={_path(router_dir, OPTS)}",
        f"addn-hosts={_path(router_dir, ADDN_HOSTS)}",
        f"dhcp-leasefile={_path(router_dir, LEASES)}",
        f"pid-file={_path(router_dir, PID)}",
        "dhcp-authoritative",
        f"domain={dom}",
        f"local=/{dom}/",  # the network's names are answered here, never asked upstream
        "expand-hosts",
        "domain-needed",
        "bogus-priv",
        "no-resolv",
        "no-hosts",
        "no-poll",
        # Privileges dropped after start-up; the router directory is 0755, the files it
        # rereads on SIGHUP 0644 (router.apply).
        "user=nobody",
        "group=nogroup",
        f"log-facility={_path(router_dir, LOG)}",
    ]
    for s in spec.dns_upstream:
        lines.append(f"server={checks.ipv4(s, 'upstream DNS server')}")
    return "\n".join(lines) + "\n"


def render_hosts(spec: RouterSpec) -> str:
    """The static leases: one line per NIC; the same MAC or IP twice is refused."""
    net = checks.network(spec.guest_cidr, "guest CIDR")
    seen_mac: set[str] = set()
    seen_ip: set[str] = set()
    lines = []
    for e in spec.leases:
        mac = checks.mac(e.mac)
        ip = checks.ipv4(e.ip, "lease IP")
        name = checks.label(e.hostname)
        if ipaddress.IPv4Address(ip) not in net:
            raise ValueError(f"lease IP {ip} is outside {net}")
        if mac in seen_mac or ip in seen_ip:
            raise ValueError(f"duplicate lease for {mac} / {ip}")
        seen_mac.add(mac)
        seen_ip.add(ip)
        tag = "" if e.default else f"set:{NODEFAULT_TAG},"
        lines.append(f"{mac},{tag}{ip},{name}")
    return "\n".join(lines) + ("\n" if lines else "")


def render_opts(spec: RouterSpec) -> str:
    guest_ip = checks.ipv4(spec.guest_ip, "guest IP")
    lines = []
    if spec.gateway is not None:
        lines.append(f"option:router,{checks.ipv4(spec.gateway, 'gateway')}")
        # A VM's other NICs get no default route (a tagged option overrides the untagged one).
        lines.append(f"tag:{NODEFAULT_TAG},option:router")
    lines.append(f"option:dns-server,{guest_ip}")
    return "\n".join(lines) + "\n"


def render_addn_hosts(spec: RouterSpec) -> str:
    dom = checks.domain(spec.domain)
    guest_ip = checks.ipv4(spec.guest_ip, "guest IP")
    lines = [f"{guest_ip} data-server.{dom} data-server"]
    for e in spec.leases:
        ip = checks.ipv4(e.ip, "lease IP")
        name = checks.label(e.hostname)
        lines.append(f"{ip} {name}.{dom} {name}")
    return "\n".join(lines) + "\n"
