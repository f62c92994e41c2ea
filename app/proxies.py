"""Which address a request really comes from, behind trusted reverse proxies.

`NUBO_TRUSTED_PROXIES` lists the proxies' addresses or networks (CIDR), space or
comma separated; empty (the default) trusts no X-Forwarded-* header at all.
X-Forwarded-* is read only when the direct peer is one of them; the client is
then the right-most X-Forwarded-For entry that is not itself a trusted proxy
(so a chain of trusted proxies works, and whatever a client wrote into the
header to the left of that is ignored). The web app applies this through
werkzeug's ProxyFix; the console proxy (websockify) calls `client_address`.
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache

from werkzeug.http import parse_list_header
from werkzeug.middleware.proxy_fix import ProxyFix

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted(value) -> tuple[Network, ...]:
    """The setting's networks; a bad entry is a configuration error (ValueError)."""
    if value is None or value == "":
        return ()
    entries = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
    entries = [str(e).strip() for e in entries if str(e).strip()]
    for e in entries:
        if e.isdigit():  # "2" would be read as the address 0.0.0.2
            raise ValueError(f"{e!r}: give the proxies' addresses or networks, not a count")
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _trusted(addr: str | None, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address((addr or "").strip())
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in n for n in networks if n.version == ip.version)


def forwarded_hops(peer: str | None, forwarded_for: str | None, networks: tuple[Network, ...]) -> int:
    """How many X-Forwarded-For entries (from the right) to trust: 0 when the peer is
    not a trusted proxy, else 1 + the trusted proxies the request passed before it."""
    if not networks or not forwarded_for or not _trusted(peer, networks):
        return 0
    values = parse_list_header(forwarded_for)
    hops = 1
    while hops < len(values) and _trusted(values[-hops], networks):
        hops += 1
    return min(hops, len(values))


def client_address(peer: str | None, forwarded_for: str | None, networks: tuple[Network, ...]) -> str | None:
    """The client's address: the peer itself unless it is a trusted proxy."""
    hops = forwarded_hops(peer, forwarded_for, networks)
    if not hops:
        return peer
    value = parse_list_header(forwarded_for)[-hops].strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:  # garbage from a proxy: keep the peer
        return peer


class TrustedProxyFix:
    """werkzeug's ProxyFix, applied only to requests whose peer is a trusted proxy,
    with as many X-Forwarded-For hops as trusted proxies the request came through.
    X-Forwarded-Proto/Host/Port/Prefix are taken from the nearest proxy only."""

    def __init__(self, wsgi_app, networks: tuple[Network, ...]):
        self.wsgi_app = wsgi_app
        self.networks = networks

    @lru_cache(maxsize=8)
    def _fix(self, hops: int) -> ProxyFix:
        return ProxyFix(self.wsgi_app, x_for=hops, x_proto=1, x_host=1, x_port=1, x_prefix=1)

    def __call__(self, environ, start_response):
        peer = environ.get("REMOTE_ADDR")
        if not self.networks or not _trusted(peer, self.networks):
            return self.wsgi_app(environ, start_response)
        hops = forwarded_hops(peer, environ.get("HTTP_X_FORWARDED_FOR"), self.networks)
        return self._fix(hops)(environ, start_response)
