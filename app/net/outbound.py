"""The one way Nubo fetches a URL from outside (template and ISO downloads,
direct download into a pool): `open_url(url, policy)`.

What it guarantees, in order:
- the URL has one meaning: http(s) only, printable ASCII only, no backslash,
  no user:password@, no dot segments, a plain host name or IP literal, and the
  host and port that urllib.parse and urllib3 read agree (`parse_url`);
- the host is resolved once; every address it resolves to must be public
  (`is_public`: `ipaddress.is_global`, minus multicast and addresses that embed
  a private IPv4 one) or inside one of the policy's allowed networks
  (CloudStack's `secstorage.allowed.internal.sites`); unresolvable is refused;
- the connection goes to the address that was checked (never resolved again:
  no DNS rebinding), with the name kept in the Host header and in TLS (SNI and
  certificate check);
- redirects are followed by hand, each hop through the same checks;
- the body is read with a size limit, an overall deadline and a minimum rate
  (a server that trickles cannot hold a worker for long).

No Flask and no database here: callers pass the settings' values in a FetchPolicy.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator
from urllib.parse import unquote, urljoin, urlsplit

log = logging.getLogger("nubo.outbound")

CHUNK = 1 << 20
REDIRECTS = (301, 302, 303, 307, 308)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# is_global is True for these, but they do not lead to one ordinary public host.
_NOT_PUBLIC = tuple(ipaddress.ip_network(n) for n in (
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # embeds an IPv4 address
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


class FetchError(Exception):
    """Base: the message is safe to show to the user who gave the URL."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class FetchRefused(FetchError):
    """The URL or the address it leads to is not allowed (nothing was fetched)."""


class FetchFailed(FetchError):
    """The transfer itself failed (connection, HTTP status, limits)."""


@dataclass(frozen=True)
class FetchPolicy:
    """What a fetch may do. Defaults are the strict ones."""
    allow_internal: bool = False  # any address at all (admins; template.url.allow.internal)
    allowed_sites: tuple[Network, ...] = ()  # secstorage.allowed.internal.sites
    max_bytes: int | None = None
    max_bytes_name: str = "the size limit"  # how errors name max_bytes (the setting behind it)
    deadline: float = 6 * 3600  # seconds for the whole download, redirects included
    min_rate: int = 0  # bytes per second, averaged over each `window` (0: no minimum)
    window: float = 60.0  # seconds: the rate's averaging window, and the longest wait for any byte
    connect_timeout: float = 10.0
    max_redirects: int = 5
    user_agent: str = "Nubo"
    # CA certificates for https; None: REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE as requests reads them,
    # else certifi's bundle.
    ca_bundle: str | None = None

    def permits(self, ip: Address) -> bool:
        return self.allow_internal or is_public(ip) or any(_within(ip, n) for n in self.allowed_sites)


@dataclass(frozen=True)
class Target:
    """One URL in the single form Nubo uses: what it checks is what it connects to."""
    url: str
    scheme: str
    host: str  # lower case; an IPv6 literal without brackets
    port: int
    path: str  # request target: path and query

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


# --- Addresses -------------------------------------------------------------------

def _within(ip: Address, net: Network) -> bool:
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.version == net.version and ip in net


def is_public(ip: Address | str) -> bool:
    """True for an address on the public Internet: `is_global` (which already excludes
    private, loopback, link-local, shared 100.64.0.0/10, benchmarking, documentation,
    reserved...), not multicast, and for IPv6 forms that embed an IPv4 address
    (mapped, 6to4, NAT64) the embedded address must be public too; Teredo never is."""
    ip = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return is_public(ip.ipv4_mapped)
        if ip.teredo is not None:
            return False
        if ip.sixtofour is not None:
            return is_public(ip.sixtofour)
        if ip in _NAT64:
            return is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if not ip.is_global or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return False
    return not any(ip in n for n in _NOT_PUBLIC if n.version == ip.version)


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) from a setting; ValueError names the bad one."""
    nets = []
    for v in values:
        v = v.strip()
        if not v:
            continue
        try:
            nets.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            raise ValueError(f"{v} is not a CIDR (e.g. 10.1.2.0/24)") from None
    return tuple(nets)


# --- The URL ---------------------------------------------------------------------

def parse(url: str) -> Target:
    """The URL's single meaning, or FetchRefused saying what is ambiguous in it."""
    if not isinstance(url, str) or not url:
        raise FetchRefused("No URL given")
    if len(url) > 4096:
        raise FetchRefused("The URL is too long")
    if any(c <= " " or c >= "\x7f" for c in url):
        raise FetchRefused("The URL contains spaces, control or non-ASCII characters (percent-encode them)")
    if "\\" in url:
        raise FetchRefused("The URL contains a backslash")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise FetchRefused("The URL's host is not a valid IPv6 address") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchRefused("The URL must be http:// or https://")
    netloc = parts.netloc
    if "@" in netloc:
        raise FetchRefused("The URL must not contain a user name or password")
    if "%" in netloc:
        raise FetchRefused("The URL's host must not be percent-encoded")
    host = (parts.hostname or "").lower()
    if not host:
        raise FetchRefused("The URL has no host")
    if netloc.startswith("["):
        try:
            ip6 = ipaddress.IPv6Address(host)
        except ValueError:
            raise FetchRefused("The URL's host is not a valid IPv6 address") from None
        host = str(ip6)
    elif not _HOSTNAME.fullmatch(host):
        raise FetchRefused("The URL's host is not a valid host name")
    elif all(re.fullmatch(r"0x[0-9a-f]*|[0-9]+", label) for label in host.rstrip(".").split(".")) and \
            not _dotted_quad(host):
        # Only the plain a.b.c.d form: resolvers also read 127.1, 0x7f.1 or 2130706433 as addresses.
        raise FetchRefused("The URL's host is not a valid IPv4 address (use the a.b.c.d form)")
    try:
        port = parts.port
    except ValueError:
        raise FetchRefused("The URL's port is not a number from 1 to 65535") from None
    if port == 0 or (port is None and netloc.endswith(":")):
        raise FetchRefused("The URL's port is not a number from 1 to 65535")
    port = port or (443 if scheme == "https" else 80)
    path = parts.path or "/"
    if not path.startswith("/"):
        raise FetchRefused("The URL's path must start with /")
    if any(unquote(seg) in (".", "..") for seg in path.split("/")):
        raise FetchRefused("The URL's path must not contain . or .. segments")
    _same_in_urllib3(url, scheme, host, port)
    return Target(url=url, scheme=scheme, host=host, port=port,
                  path=path + (f"?{parts.query}" if parts.query else ""))


def _dotted_quad(host: str) -> bool:
    try:
        return ipaddress.IPv4Address(host) is not None
    except ValueError:
        return False


def _same_in_urllib3(url: str, scheme: str, host: str, port: int) -> None:
    """urllib3 (what requests uses) must read the same scheme, host and port."""
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url
    try:
        u = parse_url(url)
    except LocationParseError:
        raise FetchRefused("The URL cannot be parsed") from None
    u_host = (u.host or "").lower().strip("[]")
    if ":" in u_host:
        try:
            u_host = str(ipaddress.IPv6Address(u_host))
        except ValueError:
            pass
    u_port = u.port or (443 if (u.scheme or "").lower() == "https" else 80)
    if ((u.scheme or "").lower(), u_host, u_port) != (scheme, host, port) or u.auth:
        raise FetchRefused("The URL reads differently to different parsers")


def resolve(target: Target, policy: FetchPolicy) -> str:
    """Resolve once; every address must be allowed. The first one is where Nubo connects."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise FetchRefused(f"Cannot resolve {target.host}") from None
    addrs: list[Address] = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if ip not in addrs:
            addrs.append(ip)
    if not addrs:
        raise FetchRefused(f"Cannot resolve {target.host}")
    bad = [ip for ip in addrs if not policy.permits(ip)]
    if bad:
        log.warning("refused %s: %s resolves to %s", target.url, target.host, ", ".join(map(str, bad)))
        raise FetchRefused("The URL points at an internal address")
    return str(addrs[0])


def check(url: str, policy: FetchPolicy, *, resolve_host: bool = True) -> Target:
    """What registration calls: the URL's form and (unless told not to) where it leads."""
    target = parse(url)
    if resolve_host and not policy.allow_internal:
        resolve(target, policy)
    return target


# --- The transfer ----------------------------------------------------------------

@dataclass
class Download:
    """An open response: iterate for the body's chunks; `length` is Content-Length or None."""
    url: str  # after redirects
    address: str  # the address connected to
    length: int | None
    _resp: object = field(repr=False)
    _policy: FetchPolicy = field(repr=False)
    _started: float = field(repr=False)
    _pool: object = field(repr=False, default=None)

    def __iter__(self) -> Iterator[bytes]:
        from urllib3.exceptions import HTTPError, ReadTimeoutError
        p, resp = self._policy, self._resp
        done, mark_t, mark_n = 0, time.monotonic(), 0
        try:
            while True:
                try:
                    chunk = resp.read1(CHUNK)
                except ReadTimeoutError:
                    raise FetchFailed(f"The server sent nothing for {p.window:g} s") from None
                except (HTTPError, OSError) as e:
                    raise FetchFailed(f"The transfer failed: {e.__class__.__name__}") from None
                now = time.monotonic()
                if not chunk:
                    return
                done += len(chunk)
                if p.max_bytes is not None and done > p.max_bytes:
                    raise FetchFailed(f"The file passed {p.max_bytes_name} ({p.max_bytes} bytes)")
                if now - self._started > p.deadline:
                    raise FetchFailed(f"The download did not finish within {p.deadline:g} s")
                if now - mark_t >= p.window:
                    rate = (done - mark_n) / (now - mark_t)
                    if rate < p.min_rate:
                        raise FetchFailed(f"The server sent {rate:.0f} bytes/s over {now - mark_t:.0f} s, "
                                          f"under the minimum of {p.min_rate} bytes/s")
                    mark_t, mark_n = now, done
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        _close(self._resp, self._pool)


def _close(resp, pool) -> None:
    """Close the socket itself: connections are never reused."""
    resp.close()
    if pool is not None:
        pool.close()


def open_url(url: str, policy: FetchPolicy, *, method: str = "GET", body: bytes | None = None,
             content_type: str | None = None) -> Download:
    """Connect (to the checked address), follow redirects through the same checks and
    return the open 200 response. FetchRefused / FetchFailed otherwise.

    method="POST" with a body (an alert webhook): any 2xx answer is the open response; a
    redirect is followed only if the policy allows redirects (the body is sent again)."""
    import certifi
    import urllib3
    from urllib3.exceptions import HTTPError

    started = time.monotonic()
    target = parse(url)
    for hop in range(policy.max_redirects + 1):
        try:
            address = resolve(target, policy)
        except FetchRefused as e:
            if hop:
                raise FetchRefused(f"Refused a redirect to {target.url}: {e.message}") from None
            raise
        timeout = urllib3.Timeout(connect=policy.connect_timeout, read=min(policy.window, policy.deadline))
        if target.scheme == "https":
            is_literal = _is_ip(target.host)
            pool = urllib3.HTTPSConnectionPool(
                address, target.port, timeout=timeout, retries=False, maxsize=1, cert_reqs="CERT_REQUIRED",
                ca_certs=(policy.ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE")
                          or os.environ.get("CURL_CA_BUNDLE") or certifi.where()),
                server_hostname=None if is_literal else target.host,
                assert_hostname=target.host)
        else:
            pool = urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False, maxsize=1)
        try:
            headers = {"Host": target.host_header, "User-Agent": policy.user_agent, "Accept-Encoding": "identity"}
            if content_type:
                headers["Content-Type"] = content_type
            resp = pool.urlopen(method, target.path, body=body, headers=headers, redirect=False, retries=False,
                                preload_content=False, decode_content=False, assert_same_host=False)
        except HTTPError as e:
            pool.close()
            reason = getattr(e, "reason", None) or e
            raise FetchFailed(f"Cannot fetch {target.url}: {_short(reason)}") from None
        if resp.status in REDIRECTS:
            location = resp.headers.get("Location")
            _close(resp, pool)
            if not location:
                raise FetchFailed(f"The server answered HTTP {resp.status} without a Location")
            if time.monotonic() - started > policy.deadline:
                raise FetchFailed(f"The download did not finish within {policy.deadline:g} s")
            try:
                target = parse(urljoin(target.url, location))
            except FetchRefused as e:
                raise FetchRefused(f"Refused a redirect: {e.message}") from None
            continue
        if resp.status != 200 and not (method != "GET" and 200 <= resp.status < 300):
            _close(resp, pool)
            raise FetchFailed(f"The server answered HTTP {resp.status} for {target.url}")
        length = resp.headers.get("Content-Length", "")
        length = int(length) if length.isdigit() else None
        if length is not None and policy.max_bytes is not None and length > policy.max_bytes:
            _close(resp, pool)
            raise FetchFailed(f"The file is {length} bytes, over {policy.max_bytes_name} ({policy.max_bytes} bytes)")
        return Download(url=target.url, address=address, length=length, _resp=resp, _policy=policy,
                        _started=started, _pool=pool)
    raise FetchFailed("Too many redirects")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _short(reason) -> str:
    """'Connection refused' rather than urllib3's long repr."""
    text = str(reason)
    m = re.search(r"\[Errno -?\d+\] ([^')\"]+)", text)
    if m:
        return m.group(1)
    return f"{reason.__class__.__name__}" if len(text) > 200 else text
