"""Namespaces, bridges and veths for real-packet network tests, and small probes run inside
the namespaces (DHCP, DNS, HTTP, TCP).

Every name carries a random suffix; a Lab remembers what it made and removes it, newest
first, in close() (use it from a fixture). Addresses used inside are the test's own
(10.x / 172.16.x guest ranges, 198.18.0.0/15 "public"): traffic never leaves the namespaces
and bridges the test made."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

PY = sys.executable

# A TCP server that answers every connection with the address it came from, then closes.
_ECHO_SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
print("listening", flush=True)
while True:
    c, a = s.accept()
    try:
        c.sendall((a[0] + "\n").encode())
    finally:
        c.close()
"""

# Connect, print what the server says (its view of our address) or FAIL <error>.
_TCP_CLIENT = r"""
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    c.settimeout(float(sys.argv[3]))
    print(c.recv(200).decode().strip())
except OSError as e:
    print("FAIL", e)
"""

_HTTP_GET = r"""
import http.client, sys
try:
    c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=5)
    c.request("GET", sys.argv[3])
    r = c.getresponse()
    sys.stdout.write("%d\n" % r.status)
    sys.stdout.write(r.read().decode())
except OSError as e:
    print("000"); print(e)
"""

# One DNS A query over UDP; prints the addresses of the answer, one per line, or RCODE <n>.
_DNS_A = r"""
import random, socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
qid = random.randrange(65536)
q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
q += struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(q, (server, 53))
d, _ = s.recvfrom(4096)
rid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", d[:12])
if flags & 0xF:
    print("RCODE", flags & 0xF); sys.exit()
i = 12
for _ in range(qd):
    while d[i]: i += d[i] + 1
    i += 5
for _ in range(an):
    if d[i] & 0xC0 == 0xC0: i += 2
    else:
        while d[i]: i += d[i] + 1
        i += 1
    t, c, ttl, ln = struct.unpack(">HHIH", d[i:i + 10]); i += 10
    if t == 1: print(socket.inet_ntoa(d[i:i + ln]))
    i += ln
"""

# udhcpc's script: write what the lease says, and configure the interface with it.
_UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew)
    echo "ip=$ip mask=$mask router=$router dns=$dns domain=$domain serverid=$serverid" > "$LEASE_OUT"
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    ;;
esac
exit 0
"""


def suffix(n: int = 3) -> str:
    return secrets.token_hex(n)


def random_mac() -> str:
    b = bytearray(secrets.token_bytes(6))
    b[0] = (b[0] & 0xFE) | 0x02  # unicast, locally administered
    return ":".join(f"{x:02x}" for x in b)


def sh(argv: list[str], check: bool = True, timeout: float = 30, input: str | None = None):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {p.returncode}: {p.stderr.strip() or p.stdout.strip()}")
    return p


def wait_until(what: str, probe, timeout: float = 15, interval: float = 0.05):
    """Poll `probe` until it returns something true; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
        time.sleep(interval)


@dataclass
class Netns:
    name: str
    lab: "Lab"

    def argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], check: bool = True, timeout: float = 30):
        return sh(self.argv(argv), check=check, timeout=timeout)

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(self.argv(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True, **kw)
        self.lab._procs.append(p)
        return p

    # --- probes ---
    def serve_echo(self, ip: str, port: int) -> subprocess.Popen:
        """A TCP server on ip:port answering each connection with the client's address."""
        p = self.popen([PY, "-c", _ECHO_SERVER, ip, str(port)])
        line = p.stdout.readline()
        assert line.strip() == "listening", f"echo server in {self.name}: {line!r} {p.stderr.read() if p.poll() is not None else ''}"
        return p

    def tcp(self, ip: str, port: int, timeout: float = 5) -> str:
        """What a server at ip:port says (our address as it sees it), or 'FAIL ...'."""
        return self.run([PY, "-c", _TCP_CLIENT, ip, str(port), str(timeout)], timeout=timeout + 20).stdout.strip()

    def http_get(self, ip: str, port: int, path: str) -> tuple[int, str]:
        out = self.run([PY, "-c", _HTTP_GET, ip, str(port), path]).stdout
        status, _, body = out.partition("\n")
        return int(status), body

    def dns_a(self, server: str, name: str) -> list[str]:
        return self.run([PY, "-c", _DNS_A, server, name]).stdout.split()

    def dhcp(self, dev: str = "eth0", tries: int = 3) -> dict | None:
        """busybox udhcpc on `dev`: the lease's fields, or None when no server answered."""
        d = tempfile.mkdtemp(prefix="nubo-dhcp-")
        self.lab._undo.append(lambda: shutil.rmtree(d, ignore_errors=True))
        script, out = os.path.join(d, "script"), os.path.join(d, "lease")
        with open(script, "w") as f:
            f.write(_UDHCPC_SCRIPT)
        os.chmod(script, 0o755)
        env = dict(os.environ, LEASE_OUT=out)
        p = subprocess.run(self.argv(["busybox", "udhcpc", "-i", dev, "-f", "-q", "-n", "-t", str(tries),
                                      "-T", "1", "-A", "1", "-s", script]),
                           capture_output=True, text=True, timeout=60, env=env)
        if p.returncode != 0 or not os.path.exists(out):
            return None
        with open(out) as f:
            return dict(kv.split("=", 1) for kv in f.read().split() if "=" in kv)


class Lab:
    """What one test made on the host; close() removes it all, newest first."""

    def __init__(self):
        self._undo: list = []
        self._procs: list[subprocess.Popen] = []

    def bridge(self) -> str:
        name = f"tbr{suffix()}"
        sh(["ip", "link", "add", "name", name, "type", "bridge"])
        self._undo.append(lambda: sh(["ip", "link", "del", "dev", name], check=False))
        sh(["ip", "link", "set", "dev", name, "up"])
        return name

    def netns(self, bridge: str | None = None, mac: str | None = None, addr: str | None = None,
              gateway: str | None = None, dev: str = "eth0") -> Netns:
        """A namespace; with `bridge`, a veth `dev` in it (MAC `mac`, address `addr`,
        default route via `gateway`) whose peer joins the bridge."""
        ns = Netns(f"tns-{suffix()}", self)
        sh(["ip", "netns", "add", ns.name])
        self._undo.append(lambda: sh(["ip", "netns", "delete", ns.name], check=False))
        sh(["ip", "-n", ns.name, "link", "set", "dev", "lo", "up"])
        if bridge:
            self.attach(ns, bridge, mac=mac, addr=addr, gateway=gateway, dev=dev)
        return ns

    def attach(self, ns: Netns, bridge: str, mac: str | None = None, addr: str | None = None,
               gateway: str | None = None, dev: str = "eth0") -> str:
        peer = f"tv{suffix()}"
        sh(["ip", "link", "add", "dev", peer, "type", "veth", "peer", "name", dev, "netns", ns.name])
        self._undo.append(lambda: sh(["ip", "link", "del", "dev", peer], check=False))
        if mac:
            sh(["ip", "-n", ns.name, "link", "set", "dev", dev, "address", mac])
        sh(["ip", "link", "set", "dev", peer, "master", bridge])
        sh(["ip", "link", "set", "dev", peer, "up"])
        sh(["ip", "-n", ns.name, "link", "set", "dev", dev, "up"])
        if addr:
            sh(["ip", "-n", ns.name, "addr", "add", addr, "dev", dev])
        if gateway:
            sh(["ip", "-n", ns.name, "route", "add", "default", "via", gateway, "dev", dev])
        return peer

    def on_close(self, fn) -> None:
        self._undo.append(fn)

    def close(self) -> None:
        for p in reversed(self._procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.wait(timeout=10)
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()
        self._procs.clear()
        errors = []
        for fn in reversed(self._undo):
            try:
                fn()
            except Exception as e:  # keep removing the rest
                errors.append(e)
        self._undo.clear()
        if errors:
            raise errors[0]


def link_exists(dev: str) -> bool:
    return sh(["ip", "link", "show", "dev", dev], check=False).returncode == 0


def netns_exists(name: str) -> bool:
    return any(line.split()[0] == name for line in sh(["ip", "netns", "list"]).stdout.splitlines() if line.strip())


def pids_matching(text: str) -> list[int]:
    """Processes whose command line contains `text` (a router directory: unique per test)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        out.append(int(d))
            except OSError:
                pass
    return out
