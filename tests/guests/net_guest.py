"""A networked test guest built by the test suite from Debian packages (no download
at test time), like tests/guests/acpi_guest.py: Debian's cloud kernel with its
virtio-net modules, a static busybox initramfs, on a bootable RAW disk (FAT with
syslinux, written with mtools).

What the guest does when it boots (under QEMU emulation it is ready in ~10-20 s):
- loads the virtio-net modules, brings eth0 up and asks for a DHCP lease with
  `udhcpc`; the lease script sets the address, the default route and resolv.conf
  and records the lease's server (the DHCP server identifier: the virtual router,
  where cloud-init's CloudStack datasource looks for meta-data) and router;
- serves HTTP on port 80 (busybox httpd): `/` is a one-line identity
  ("nubo-net-guest mac=.. ip=.. instance-id=.."), so a client knows which guest answered;
- fetches its user-data and meta-data from the DHCP server like the CloudStack
  datasource (`http://<server>/latest/user-data`, `/latest/meta-data/instance-id`,
  `/latest/meta-data/public-keys`) with busybox `nc` (busybox `wget` crashes when
  static) and prints them on its console;
- if its user-data has a line `nubo-connect=IP:PORT`, connects there once and sends
  its identity (the test sees which source address arrives outside; `report` says
  whether it connected);
- then reads commands on its serial console (ttyS0), one a line, each with a token
  the test chose, and answers with lines carrying that token:
      report TOKEN                  everything below again (ip, lease, metadata)
      send TOKEN IP PORT            a TCP connection sending the identity line
      get TOKEN IP PORT PATH        an HTTP GET; the status and base64 of the body
      meta TOKEN                    fetch the metadata again and print it
  each answer ends with "nubo-net-guest: TOKEN done".

Every line the guest prints starts with "nubo-net-guest: ". Values that may hold
anything (user data, keys, bodies) are printed in base64 on one line.

The console is libvirt's `<serial type='pty'>`: `Console` (below) opens the pty of a
running domain and speaks that protocol. Nothing is printed while nobody has the pty
open (QEMU drops it), so tests ask with `report` rather than read the boot output.

    path = build(tmp_dir)                     # a RAW image; cached per kernel version and scripts
    with Console.of(conn, domain_name) as c:  # the serial console of a running domain
        state = c.report(deadline_s=120)      # {'ip': ..., 'server': ..., 'user-data': b'...', ...}
        c.send("198.18.3.1", 9000)            # True when the connection was made
"""
from __future__ import annotations

import base64
import glob
import hashlib
import lzma
import os
import select
import shutil
import subprocess
import threading
import time
import tty
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.guests.acpi_guest import _static, boot_disk  # the same busybox check and disk

PREFIX = "nubo-net-guest: "
# The order the modules depend on each other (no modprobe in the guest).
MODULES = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "failover",
           "net_failover", "virtio_net")

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mkdir -p /run /tmp /www /etc
dmesg -n 1
say() { echo "nubo-net-guest: $*" > /dev/console; }
for m in $(cat /modules/order); do insmod /modules/$m.ko || say "insmod $m failed"; done
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
ip link set lo up
ip link set eth0 up
MAC=$(cat /sys/class/net/eth0/address)
echo "$MAC" > /run/mac
say "booted mac $MAC"
/boot.sh &
exec /cmdloop.sh
"""

# Common shell functions: identity, an HTTP GET with nc, printing the state.
LIB = r"""
say() { echo "nubo-net-guest: $*" > /dev/console; }
b64() { base64 | tr -d '\n'; }
state() { cat /run/$1 2>/dev/null; }
identity() { echo "nubo-net-guest mac=$(state mac) ip=$(state ip) instance-id=$(state instance-id)"; }
# http_get HOST PORT PATH OUTFILE: prints the status code (000 when no answer).
http_get() {
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: nubo-net-guest\r\n\r\n' "$3" "$1" \
    | timeout 8 nc -w 4 "$1" "$2" > /tmp/resp 2>/dev/null
  code=$(head -n 1 /tmp/resp | cut -d ' ' -f 2)
  sed '1,/^\r*$/d' /tmp/resp > "$4"
  echo "${code:-000}"
}
# fetch_meta: the CloudStack datasource's three reads from the DHCP server.
fetch_meta() {
  server=$(state server)
  for item in user-data:/latest/user-data instance-id:/latest/meta-data/instance-id \
              public-keys:/latest/meta-data/public-keys; do
    name=${item%%:*}; path=${item#*:}
    code=$(http_get "$server" 80 "$path" /tmp/body)
    echo "$code" > /run/$name.code
    cp /tmp/body /run/$name
  done
  identity > /www/index.html
}
print_meta() {
  for name in user-data instance-id public-keys; do
    say "$1meta $name $(state $name.code) $(b64 < /run/$name 2>/dev/null)"
  done
}
print_state() {
  say "$1ip $(state ip)"
  say "$1lease server=$(state server) router=$(state router) mask=$(state mask) dns=$(state dns | tr ' ' ',')"
  say "$1mac $(state mac)"
  if [ -e /run/ready ]; then
    print_meta "$1"
    [ -e /run/boot-send ] && say "$1boot-send $(state boot-send)"
    say "$1ready"
  else
    say "$1booting"
  fi
}
send_identity() {  # send_identity IP PORT
  if identity | timeout 8 nc -w 4 "$1" "$2" > /dev/null 2>&1; then echo ok; else echo fail; fi
}
"""

BOOT = r"""#!/bin/sh
. /lib.sh
identity > /www/index.html
udhcpc -i eth0 -s /udhcpc.sh -t 60 -T 2 -A 2 -b -p /run/udhcpc.pid > /dev/null 2>&1
while [ ! -e /run/ip ]; do sleep 0.2; done
httpd -p 80 -h /www
n=0
while :; do  # the router's metadata server may come up after the lease: retry a while
  fetch_meta
  [ "$(state user-data.code)" != 000 ] && break
  n=$((n+1)); [ $n -ge 30 ] && break
  sleep 1
done
target=$(sed -n 's/^nubo-connect=//p' /run/user-data | head -n 1 | tr -d '\r')
if [ -n "$target" ]; then
  echo "$target $(send_identity ${target%:*} ${target#*:})" > /run/boot-send
fi
touch /run/ready
print_state ""
"""

UDHCPC = r"""#!/bin/sh
# busybox udhcpc's script: $1 is the event; the lease is in the environment.
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    m=${mask:-$(ipcalc -p "$ip" "$subnet" | cut -d= -f2)}
    ip addr flush dev "$interface"
    ip addr add "$ip/$m" dev "$interface"
    ip route del default 2>/dev/null
    for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    : > /etc/resolv.conf
    [ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "$serverid" > /run/server
    echo "${router%% *}" > /run/router
    echo "$m" > /run/mask
    echo "$dns" > /run/dns
    echo "$ip" > /run/ip
    echo "nubo-net-guest: lease $ip from $serverid router $router" > /dev/console
    ;;
esac
exit 0
"""

CMDLOOP = r"""#!/bin/sh
. /lib.sh
stty -F /dev/ttyS0 -echo 2>/dev/null
while :; do
  while read -r cmd tok a b c rest; do
    case "$cmd" in
      report) print_state "$tok " ;;
      send) say "$tok send $a $b $(send_identity $a $b)" ;;
      get) code=$(http_get "$a" "$b" "${c:-/}" /tmp/getbody); say "$tok get $code $(b64 < /tmp/getbody)" ;;
      meta) fetch_meta; print_meta "$tok " ;;
      *) continue ;;
    esac
    say "$tok done"
  done < /dev/ttyS0
  sleep 1
done
"""

SYSLINUX_CFG = ("DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL vmlinuz\n"
                "  APPEND initrd=initrd.gz console=ttyS0 quiet loglevel=1\n")


def missing() -> str | None:
    """Why the guest cannot be built here (scripts/sysdeps.sh test installs what it needs)."""
    for tool in ("mkfs.vfat", "syslinux", "mcopy", "cpio", "gzip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists("/bin/busybox") or not _static("/bin/busybox"):
        return "a static busybox (busybox-static) is not installed"
    if not _kernel():
        return "no Debian kernel with virtio-net modules in /boot and /lib/modules (linux-image-cloud-amd64)"
    return None




def _module_paths(version: str) -> dict[str, str] | None:
    """Each needed module's file (.ko, or compressed .ko.xz/.ko.zst) under /lib/modules/<version>."""
    found: dict[str, str] = {}
    for path in glob.glob(f"/lib/modules/{version}/kernel/**/*.ko*", recursive=True):
        name = os.path.basename(path).split(".ko", 1)[0].replace("-", "_")
        if name in MODULES:
            found[name] = path
    return found if set(found) == set(MODULES) else None


def _kernel() -> tuple[str, str] | None:
    for vmlinuz in sorted(glob.glob("/boot/vmlinuz-*"), reverse=True):
        version = vmlinuz.split("vmlinuz-", 1)[1]
        if _module_paths(version):
            return vmlinuz, version
    return None


def _module_bytes(path: str) -> bytes:
    if path.endswith(".xz"):
        return lzma.decompress(Path(path).read_bytes())
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], capture_output=True, check=True).stdout
    return Path(path).read_bytes()


def _scripts() -> dict[str, str]:
    return {"init": INIT, "lib.sh": LIB, "boot.sh": BOOT, "udhcpc.sh": UDHCPC, "cmdloop.sh": CMDLOOP}


def build(dest: Path) -> Path:
    """The guest's RAW image in `dest`, built once per kernel version and version of the scripts."""
    vmlinuz, version = _kernel()
    digest = hashlib.sha256(("".join(_scripts().values()) + SYSLINUX_CFG).encode()).hexdigest()[:10]
    image = dest / f"net-guest-{version}-{digest}.raw"
    if image.exists():
        return image
    dest.mkdir(parents=True, exist_ok=True)
    work = dest / f"net-guest-build-{uuid.uuid4().hex[:8]}"
    root = work / "initramfs"
    for d in ("bin", "dev", "proc", "sys", "modules"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for name, text in _scripts().items():
        (root / name).write_text(text)
        (root / name).chmod(0o755)
    for name, path in _module_paths(version).items():
        (root / "modules" / f"{name}.ko").write_bytes(_module_bytes(path))
    (root / "modules" / "order").write_text(" ".join(MODULES) + "\n")
    part = work / image.name
    boot_disk(part, vmlinuz, root, SYSLINUX_CFG, "NUBONET", work)
    part.rename(image)  # atomic: a parallel build of the same image ends with one whole file
    shutil.rmtree(work, ignore_errors=True)
    return image


# --- the test's side ------------------------------------------------------------------------------------------


def serial_pty(conn, domain_name: str) -> str:
    """The host pty of a running domain's serial console (libvirt's <serial type='pty'>)."""
    xml = ET.fromstring(conn.lookupByName(domain_name).XMLDesc(0))
    for serial in xml.findall("devices/serial"):
        source = serial.find("source")
        if serial.get("type") == "pty" and source is not None and source.get("path"):
            return source.get("path")
    raise LookupError(f"domain {domain_name} has no serial pty")


class Console:
    """The guest's serial console: a reader thread collects its lines; commands carry a
    fresh token and wait (with a deadline) for that token's "done" line."""

    def __init__(self, pty: str):
        self.fd = os.open(pty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)  # no echo: the guest's output must not come back to it as input
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._buf = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def of(cls, conn, domain_name: str) -> "Console":
        return cls(serial_pty(conn, domain_name))

    def __enter__(self) -> "Console":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._reader.join(timeout=5)
        os.close(self.fd)

    def _read(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return  # the domain went away
            self._buf += chunk
            *whole, self._buf = self._buf.split(b"\n")
            if whole:
                with self._cond:
                    for raw in whole:
                        line = raw.decode(errors="replace").strip("\r")
                        if PREFIX in line:
                            self.lines.append(line[line.index(PREFIX) + len(PREFIX):])
                    self._cond.notify_all()

    def _write(self, text: str) -> None:
        data = text.encode()
        while data:
            try:
                data = data[os.write(self.fd, data):]
            except BlockingIOError:
                select.select([], [self.fd], [], 1)

    def command(self, *words: str, deadline_s: float = 60.0, resend_s: float = 3.0) -> list[str]:
        """Send "CMD TOKEN args..." until the guest answers (it may still be booting: input
        sent before its command loop runs is lost); returns the answer's lines without
        the token, "done" excluded."""
        token = "t" + uuid.uuid4().hex[:10]
        line = " ".join([words[0], token, *words[1:]]) + "\n"
        end = time.monotonic() + deadline_s
        next_send = 0.0
        with self._cond:
            while True:
                now = time.monotonic()
                if f"{token} done" in self.lines:
                    break
                if now >= end:
                    raise TimeoutError(f"the guest did not answer {line.strip()!r} within {deadline_s:.0f} s; "
                                       f"its last lines: {self.lines[-10:]}")
                if now >= next_send:
                    self._write(line)
                    next_send = now + resend_s
                self._cond.wait(timeout=min(0.5, end - now))
            return [ln[len(token) + 1:] for ln in self.lines if ln.startswith(token + " ") and ln != f"{token} done"]

    def report(self, deadline_s: float = 120.0, ready: bool = True) -> dict:
        """The guest's state: ip, server, router, mac, and (when ready) its metadata
        as fetched: '<name>' -> body bytes, '<name>.code' -> HTTP status. With ready=True,
        asks again until the guest has finished its boot tasks."""
        end = time.monotonic() + deadline_s
        while True:
            lines = self.command("report", deadline_s=max(1.0, end - time.monotonic()))
            state = parse_report(lines)
            if state.get("ready") or not ready:
                return state
            if time.monotonic() >= end:
                raise TimeoutError(f"the guest was not ready within {deadline_s:.0f} s: {lines}")
            with self._cond:
                self._cond.wait(timeout=1.0)

    def send(self, ip: str, port: int, deadline_s: float = 60.0) -> bool:
        """The guest connects to ip:port and sends its identity line; True when connected."""
        (answer,) = [ln for ln in self.command("send", ip, str(port), deadline_s=deadline_s) if ln.startswith("send ")]
        return answer.split()[-1] == "ok"

    def get(self, ip: str, port: int = 80, path: str = "/", deadline_s: float = 60.0) -> tuple[str, bytes]:
        """An HTTP GET from the guest: (status code, "000" when nothing answered; body)."""
        (answer,) = [ln for ln in self.command("get", ip, str(port), path, deadline_s=deadline_s)
                     if ln.startswith("get ")]
        parts = answer.split()
        return parts[1], base64.b64decode(parts[2]) if len(parts) > 2 else b""

    def meta(self, deadline_s: float = 60.0) -> dict:
        """Fetch the metadata again now; {'user-data': bytes, 'user-data.code': '200', ...}."""
        return parse_report(self.command("meta", deadline_s=deadline_s))


def parse_report(lines: list[str]) -> dict:
    state: dict = {}
    for line in lines:
        words = line.split()
        if not words:
            continue
        if words[0] == "ip":
            state["ip"] = words[1] if len(words) > 1 else ""
        elif words[0] == "mac":
            state["mac"] = words[1] if len(words) > 1 else ""
        elif words[0] == "lease":
            kv = dict(w.split("=", 1) for w in words[1:] if "=" in w)  # lease server=S router=R mask=M dns=D,..
            state.update(server=kv.get("server", ""), router=kv.get("router", ""), mask=kv.get("mask", ""),
                         dns=[d for d in kv.get("dns", "").split(",") if d])
        elif words[0] == "meta" and len(words) >= 3:
            state[f"{words[1]}.code"] = words[2]
            state[words[1]] = base64.b64decode(words[3]) if len(words) > 3 else b""
        elif words[0] == "boot-send" and len(words) >= 3:
            state["boot-send"] = (words[1], words[2] == "ok")  # (target, connected)
        elif words[0] in ("ready", "booting"):
            state["ready"] = words[0] == "ready"
    return state


def identity_of(body: bytes) -> dict:
    """The fields of the identity line ("nubo-net-guest mac=.. ip=.. instance-id=..")."""
    words = body.decode(errors="replace").split()
    if not words or words[0] != "nubo-net-guest":
        return {}
    return dict(w.split("=", 1) for w in words[1:] if "=" in w)


# --- the outside world: a namespace on a bridge -----------------------------------------------------------------

LISTENER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    c.settimeout(3)
    data = b""
    try:
        while b"\n" not in data and len(data) < 4096:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    c.close()
    print(peer[0], data.decode(errors="replace").strip().replace("\n", " "), flush=True)
"""

CLIENT = r"""
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    c.settimeout(float(sys.argv[3]))
    c.sendall(sys.stdin.buffer.read())
    data = b""
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    sys.stdout.buffer.write(data)
except OSError as e:
    print(e, file=sys.stderr)
    sys.exit(3)
"""


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


class Outside:
    """A network namespace joined to a bridge by a veth pair, with one address: "the
    outside world" (or a stand-in host). Its listeners record the source address of
    every connection they accept; `connect` is a TCP client from inside it.
    Everything it makes has the random `name` in it and goes at close()."""

    def __init__(self, name: str, bridge: str, cidr: str, gateway: str | None = None):
        self.name, self.bridge, self.cidr = name, bridge, cidr
        self.address = cidr.split("/")[0]
        self.veth = f"{name[:12]}o"  # the host's end (15 characters at most)
        self._procs: list[subprocess.Popen] = []
        self.accepted: list[tuple[str, str]] = []  # (source address, first line sent)
        self._cond = threading.Condition()
        try:
            _sh("ip", "netns", "add", name)
            _sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", name)
            _sh("ip", "link", "set", self.veth, "master", bridge, "up")
            self.run("ip", "link", "set", "lo", "up")
            self.run("ip", "link", "set", "eth0", "up")
            self.run("ip", "addr", "add", cidr, "dev", "eth0")
            if gateway:
                self.run("ip", "route", "add", "default", "via", gateway)
        except BaseException:
            self.close()
            raise

    def run(self, *cmd: str, check: bool = True, input: bytes | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *cmd], capture_output=True, check=check,
                              input=input, timeout=timeout)

    def spawn(self, *cmd: str, **kw) -> subprocess.Popen:
        """A long-running process in the namespace, ended at close()."""
        p = subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], start_new_session=True, **kw)
        self._procs.append(p)
        return p

    def listen(self, port: int) -> None:
        """A TCP listener on our address: each accepted connection lands in `accepted`."""
        p = self.spawn(_python(), "-u", "-c", LISTENER, self.address, str(port), stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
        first = p.stdout.readline()
        if first.strip() != "listening":
            raise RuntimeError(f"the listener on {self.address}:{port} did not start")

        def collect():
            for line in p.stdout:
                src, _, data = line.rstrip("\n").partition(" ")
                with self._cond:
                    self.accepted.append((src, data))
                    self._cond.notify_all()
        threading.Thread(target=collect, daemon=True).start()

    def wait_accepted(self, contains: str, deadline_s: float = 30.0) -> tuple[str, str] | None:
        """The first accepted connection whose data contains `contains` (None at the deadline)."""
        end = time.monotonic() + deadline_s
        with self._cond:
            while True:
                for item in self.accepted:
                    if contains in item[1]:
                        return item
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(timeout=left)

    def accepted_from(self, src: str, at_least: int, deadline_s: float = 30.0) -> int:
        """How many connections came from `src`, once there are `at_least` (or at the deadline):
        a connection the guest says it made is collected here a moment later."""
        end = time.monotonic() + deadline_s
        with self._cond:
            while True:
                n = sum(1 for a in self.accepted if a[0] == src)
                left = end - time.monotonic()
                if n >= at_least or left <= 0:
                    return n
                self._cond.wait(timeout=left)

    def connect(self, ip: str, port: int, data: bytes | None = None, timeout: float = 3.0) -> bytes | None:
        """A TCP client from the namespace: the bytes the peer sent back before closing,
        or None when the connection could not be made (refused, timed out)."""
        if data is None:
            data = f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode()
        out = self.run(_python(), "-c", CLIENT, ip, str(port), str(timeout), check=False, input=data,
                       timeout=timeout * 3 + 10)
        return out.stdout if out.returncode == 0 else None

    def http_body(self, ip: str, port: int = 80, timeout: float = 3.0) -> bytes | None:
        """GET / from the namespace: the body, or None when nothing answered."""
        resp = self.connect(ip, port, timeout=timeout)
        if not resp or b"\r\n\r\n" not in resp:
            return None
        return resp.split(b"\r\n\r\n", 1)[1]

    def close(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 15)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, 9)
                    p.wait()
        self._procs.clear()
        _sh("ip", "link", "del", self.veth, check=False)
        _sh("ip", "netns", "del", self.name, check=False)


def _python() -> str:
    import sys
    return sys.executable
