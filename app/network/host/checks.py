"""Validation of every value the host-side executor puts into a file or a command.

The services validate their input already; this is defence in depth: a value that reaches a
dnsmasq file, an nft script or an `ip` argv must have the exact shape expected, or ValueError."""
from __future__ import annotations

import ipaddress
import re

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_KEY = re.compile(r"^[0-9a-z]{1,12}$")
_DEV = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

PROTOCOLS = ("tcp", "udp", "icmp", "all")


def key(value: str) -> str:
    """A router key: names nr-<key>, vr<key>g/p, vh<key>g/p (<= 15 characters)."""
    if not isinstance(value, str) or not _KEY.match(value):
        raise ValueError(f"invalid router key {value!r}: 1-12 characters a-z, 0-9")
    return value


def ipv4(value: str, what: str = "IP address") -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise ValueError(f"invalid {what} {value!r}") from None


def interface(value: str, what: str = "address with prefix") -> ipaddress.IPv4Interface:
    """'a.b.c.d/prefix' (a host address in its network)."""
    if not isinstance(value, str) or "/" not in value:
        raise ValueError(f"invalid {what} {value!r}: expected a.b.c.d/prefix")
    try:
        return ipaddress.IPv4Interface(value)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError):
        raise ValueError(f"invalid {what} {value!r}") from None


def network(value: str, what: str = "CIDR") -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(value, strict=False)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError, TypeError):
        raise ValueError(f"invalid {what} {value!r}") from None


def mac(value: str) -> str:
    v = value.lower() if isinstance(value, str) else value
    if not isinstance(v, str) or not _MAC.match(v):
        raise ValueError(f"invalid MAC address {value!r}")
    return v


def label(value: str, what: str = "host name") -> str:
    """One DNS label (a VM's host name)."""
    if not isinstance(value, str) or not _LABEL.match(value):
        raise ValueError(f"invalid {what} {value!r}: letters, digits and '-', 1-63 characters")
    return value


def domain(value: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 253:
        raise ValueError(f"invalid domain {value!r}")
    for part in value.rstrip(".").split("."):
        label(part, "domain")
    return value.rstrip(".")


def port(value: int, what: str = "port") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"invalid {what} {value!r}: an integer 1-65535")
    return value


def port_range(start: int | None, end: int | None, what: str = "port range") -> tuple[int, int] | None:
    """(start, end) or None when both are None; a missing end is the start."""
    if start is None and end is None:
        return None
    if start is None:
        raise ValueError(f"invalid {what}: end without start")
    s = port(start, what)
    e = port(end if end is not None else start, what)
    if e < s:
        raise ValueError(f"invalid {what} {s}-{e}: end before start")
    return s, e


def icmp_value(value: int | None, what: str) -> int | None:
    if value is None or value == -1:  # CloudStack's -1: any
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise ValueError(f"invalid {what} {value!r}: 0-255 or -1")
    return value


def protocol(value: str) -> str:
    v = value.lower() if isinstance(value, str) else value
    if v not in PROTOCOLS:
        raise ValueError(f"invalid protocol {value!r}: one of {', '.join(PROTOCOLS)}")
    return v


def device(value: str, what: str = "device") -> str:
    if not isinstance(value, str) or not _DEV.match(value):
        raise ValueError(f"invalid {what} name {value!r}")
    return value


def token(value: str, what: str) -> str:
    """A plain identifier (a uuid, a meta-data item name)."""
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise ValueError(f"invalid {what} {value!r}")
    return value


def mtu(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 576 <= value <= 65535:
        raise ValueError(f"invalid MTU {value!r}")
    return value
