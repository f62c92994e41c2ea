"""Test helpers of helper B (segments, security groups): a network namespace standing for a
hypervisor host, and a Channel that runs commands inside it (`ip netns exec`). Every name is
random per run; `Lab` removes every namespace it made."""
from __future__ import annotations

import subprocess
import time
import uuid

from app.network.host.channel import LocalChannel, Result


def suffix() -> str:
    return uuid.uuid4().hex[:6]


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True)


class NetnsChannel(LocalChannel):
    """A LocalChannel whose commands run in namespace `ns`; it records the argv it ran."""

    def __init__(self, ns: str):
        self.ns = ns
        self.ran: list[list[str]] = []

    def run(self, argv, *, input=None, check=True, timeout=30) -> Result:
        self.ran.append(list(argv))
        return super().run(["ip", "netns", "exec", self.ns, *argv], input=input, check=check, timeout=timeout)


class Lab:
    """Namespaces made by one test; `close()` removes them all (their devices go with them)."""

    def __init__(self):
        self.made: list[str] = []

    def ns(self, prefix: str) -> str:
        name = f"{prefix}{suffix()}"
        sh("ip", "netns", "add", name)
        self.made.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
        sh("ip", "-n", ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b)
        sh("ip", "-n", ns_a, "link", "set", name_a, "up")
        sh("ip", "-n", ns_b, "link", "set", name_b, "up")

    def guest(self, host_ns: str, bridge: str, cidr: str, mac: str | None = None) -> tuple[str, str]:
        """A namespace standing for a VM: eth0 with `cidr`, its peer (the "tap") on `bridge`."""
        g = self.ns("g")
        tap = "vn" + suffix()
        self.veth(host_ns, tap, g, "eth0")
        if mac:
            sh("ip", "-n", g, "link", "set", "eth0", "address", mac)
        sh("ip", "-n", g, "addr", "add", cidr, "dev", "eth0")
        sh("ip", "-n", host_ns, "link", "set", tap, "master", bridge)
        return g, tap

    def close(self) -> None:
        for name in reversed(self.made):
            sh("ip", "netns", "del", name, check=False)
        self.made.clear()


def ping(ns: str, address: str, timeout: float = 5.0) -> bool:
    """True as soon as one echo is answered within `timeout` seconds (polled, no fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        if sh("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", address, check=False).returncode == 0:
            return True
        if time.monotonic() > deadline:
            return False


def never_pings(ns: str, address: str, tries: int = 3) -> bool:
    """True when `tries` echoes (1 s each) all go unanswered."""
    r = sh("ip", "netns", "exec", ns, "ping", "-c", str(tries), "-W", "1", "-i", "0.2", address, check=False)
    return r.returncode != 0
