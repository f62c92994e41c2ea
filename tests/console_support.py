"""What the console tests and bench/console_bench.py share: a small VNC server
(RFB 3.8, no authentication, Raw framebuffer updates of a test pattern), a
minimal websocket client (RFC 6455: masked client frames, Origin and Cookie
headers, ws and wss; websockify's own client drops the query string, so it
cannot send a token), an RFB client that runs over a plain socket or a
websocket, the console proxy as a real `python -m app.console` process, and a
VM row whose console points at a given address.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from tests.e2e.conftest import IN_USE, free_port, wait_bound

ROOT = Path(__file__).resolve().parents[1]
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PIXEL_FORMAT = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)  # 32 bpp true colour


def pattern(width: int, height: int) -> bytes:
    """A Raw update's pixels: a gradient, so no two rows are alike."""
    x = np.arange(width, dtype=np.uint32)
    y = np.arange(height, dtype=np.uint32)[:, None]
    return ((x * 4 % 256) | ((y * 4 % 256) << 8) | (((x + y) % 256) << 16)).astype("<u4").tobytes()


# --- The VNC server -------------------------------------------------------------------

class FakeVNC:
    """An RFB 3.8 server on 127.0.0.1 (security type None). Each
    FramebufferUpdateRequest gets one Raw update of the requested rectangle;
    ClientCutText bytes are counted, and every `ack_every` of them answered with
    a Bell (the bench's browser-to-server measure)."""

    def __init__(self, width: int = 64, height: int = 48, name: str = "fake-vnc", ack_every: int = 0):
        self.width, self.height, self.name, self.ack_every = width, height, name, ack_every
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.cut_bytes = 0
        self.errors: list[str] = []
        self._updates: dict[tuple[int, int], bytes] = {}
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop = True
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _update(self, w: int, h: int) -> bytes:
        if (w, h) not in self._updates:
            self._updates[(w, h)] = struct.pack(">BxHHHHHi", 0, 1, 0, 0, w, h, 0) + pattern(w, h)
        return self._updates[(w, h)]

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = conn.makefile("rb")
        try:
            conn.sendall(b"RFB 003.008\n")
            f.read(12)
            conn.sendall(b"\x01\x01")  # one security type: None
            f.read(1)
            conn.sendall(struct.pack(">I", 0))
            f.read(1)  # ClientInit
            name = self.name.encode()
            conn.sendall(struct.pack(">HH", self.width, self.height) + PIXEL_FORMAT + struct.pack(">I", len(name)) + name)
            since_ack = 0
            while True:
                t = f.read(1)
                if not t:
                    return
                t = t[0]
                if t == 0:
                    f.read(19)
                elif t == 2:
                    _, n = struct.unpack(">BH", f.read(3))
                    f.read(4 * n)
                elif t == 3:
                    _, _, _, w, h = struct.unpack(">BHHHH", f.read(9))
                    conn.sendall(self._update(w, h))
                elif t == 4:
                    f.read(7)
                elif t == 5:
                    f.read(5)
                elif t == 6:
                    (n,) = struct.unpack(">3xI", f.read(7))
                    while n:
                        chunk = f.read1(min(n, 1 << 20))
                        n -= len(chunk)
                        self.cut_bytes += len(chunk)
                        since_ack += len(chunk)
                    if self.ack_every and since_ack >= self.ack_every:
                        since_ack = 0
                        conn.sendall(b"\x02")  # Bell
                else:
                    self.errors.append(f"unknown client message {t}")
                    return
        except (OSError, struct.error) as e:
            self.errors.append(str(e))
        finally:
            conn.close()


# --- Transports: plain TCP and websocket -------------------------------------------------

class TCP:
    """A plain TCP connection with recv_exact (the direct path to the VNC server)."""

    def __init__(self, host: str, port: int, timeout: float = 10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Refused(Exception):
    """The proxy answered the websocket handshake with an HTTP error."""

    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status


class Closed(Exception):
    """The proxy closed the websocket (code, reason)."""

    def __init__(self, code: int | None, reason: str):
        super().__init__(f"closed {code}: {reason}")
        self.code, self.reason = code, reason


class WS(TCP):
    """A websocket client: binary messages in, a byte stream out (RFB over it)."""

    def __init__(self, url: str, origin: str | None = None, cookie: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, timeout: float = 10, zero_mask: bool = False,
                 headers: dict[str, str] | None = None):
        u = urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if u.scheme == "wss":
            self.sock = (ssl_context or ssl.create_default_context()).wrap_socket(self.sock, server_hostname=u.hostname)
        self.buf, self.raw = bytearray(), bytearray()
        # A zero masking key is valid and makes masking free for the client (the bench).
        self.zero_mask = zero_mask
        key = base64.b64encode(os.urandom(16))
        lines = [f"GET {u.path or '/'}{'?' + u.query if u.query else ''} HTTP/1.1", f"Host: {u.netloc}",
                 "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key.decode()}",
                 "Sec-WebSocket-Version: 13"]
        lines += [f"Origin: {origin}"] * bool(origin) + [f"Cookie: {cookie}"] * bool(cookie)
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.raw:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Refused(0)  # closed without an answer
            self.raw += chunk
        head, _, rest = bytes(self.raw).partition(b"\r\n\r\n")
        self.raw = bytearray(rest)
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            raise Refused(status)
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        assert accept in head, "bad Sec-WebSocket-Accept"

    def send(self, data: bytes, opcode: int = 2) -> None:
        n = len(data)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        if self.zero_mask:
            self.sock.sendall(head + b"\0\0\0\0" + data)
            return
        mask = os.urandom(4)
        padded = np.frombuffer(data + b"\0" * (-n % 4), dtype="<u4")
        masked = (padded ^ np.frombuffer(mask, dtype="<u4")[0]).tobytes()[:n]
        self.sock.sendall(head + mask + masked)

    def _raw_exact(self, n: int) -> bytes:
        while len(self.raw) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise Closed(None, "connection closed without a close frame")
            self.raw += chunk
        out = bytes(self.raw[:n])
        del self.raw[:n]
        return out

    def _more(self) -> None:
        """Read one frame: data goes to the stream; pings are answered; a close raises."""
        b0, b1 = self._raw_exact(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", self._raw_exact(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", self._raw_exact(8))
        payload = self._raw_exact(n)
        opcode = b0 & 0x0F
        if opcode == 8:
            code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
            raise Closed(code, payload[2:].decode(errors="replace"))
        if opcode == 9:
            self.send(payload, opcode=10)
        elif opcode in (0, 1, 2):
            self.buf += payload

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send(struct.pack(">H", 1000), opcode=8)
        super().close()


# --- RFB over either transport ------------------------------------------------------------

def rfb_handshake(t: TCP) -> tuple[int, int, str]:
    """Version, security None, ClientInit (shared): the server's (width, height, name)."""
    assert t.recv_exact(12) == b"RFB 003.008\n"
    t.send(b"RFB 003.008\n")
    n = t.recv_exact(1)[0]
    assert 1 in t.recv_exact(n)
    t.send(b"\x01")
    assert t.recv_exact(4) == b"\0\0\0\0"
    t.send(b"\x01")
    w, h = struct.unpack(">HH", t.recv_exact(4))
    t.recv_exact(16)
    (n,) = struct.unpack(">I", t.recv_exact(4))
    return w, h, t.recv_exact(n).decode()


def request_update(t: TCP, w: int, h: int, count: int = 1) -> None:
    t.send(struct.pack(">BBHHHH", 3, 0, 0, 0, w, h) * count)


def read_update(t: TCP) -> bytes:
    """One Raw FramebufferUpdate of one rectangle: its pixels."""
    kind, rects = struct.unpack(">BxH", t.recv_exact(4))
    assert (kind, rects) == (0, 1)
    _, _, w, h, enc = struct.unpack(">HHHHi", t.recv_exact(12))
    assert enc == 0
    return t.recv_exact(w * h * 4)


def key_event(t: TCP, keysym: int = 0x61) -> None:
    t.send(struct.pack(">BBxxI", 4, 1, keysym) + struct.pack(">BBxxI", 4, 0, keysym))


def cut_text(t: TCP, data: bytes) -> None:
    t.send(struct.pack(">B3xI", 6, len(data)) + data)


# --- The console proxy process ---------------------------------------------------------------

def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@contextlib.contextmanager
def console_proxy(config, log: Path, **env):
    """`python -m app.console` on a free port for the app whose config is given
    (same instance directory and database). Yields (port, log path)."""
    def stop(proc):
        if proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    for _ in range(5):
        port = free_port()
        full = {**os.environ, "NUBO_INSTANCE_PATH": config["INSTANCE_PATH"],
                "NUBO_DATABASE_URL": config["DATABASE_URL"], "NUBO_BIND": "127.0.0.1",
                "NUBO_CONSOLE_PORT": str(port), "NUBO_SEED_DEMO": "0",
                **{f"NUBO_{k}": str(v) for k, v in env.items()}}
        offset = log.stat().st_size if log.exists() else 0
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "app.console"], cwd=ROOT, env=full, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        # Ours only once the proxy says it holds the port (free_port() races).
        exited = wait_bound(proc, log, offset, [f"proxying from 127.0.0.1:{port}"])
        if exited is None:
            break
        stop(proc)
        if not any(m in exited for m in IN_USE):
            raise RuntimeError(f"the console proxy stopped:\n{exited[-3000:]}")
    else:
        raise RuntimeError("no free port after 5 attempts")
    try:
        wait_port(port)
        yield port
    finally:
        stop(proc)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 (the wss tests)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "console.crt", directory / "console.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# --- A VM whose console is a given address ------------------------------------------------------

def make_vm(owner: str, *, port: int | None, host: str = "127.0.0.1", hypervisor: str = "KVM", state: str = "Running",
            name: str | None = None, **values):
    """A VM row as a driver would have left it (console host/port recorded at
    start), in the current app context: zone and offering are made once."""
    from app.extensions import db
    from app.models import ServiceOffering, VirtualMachine, Zone, new_uuid
    from app.services import accounts, zones

    user = accounts.get_user(owner)
    zone = db.session.scalar(db.select(Zone).where(Zone.name == "console")) or zones.create_zone(
        None, name="console", dns1="8.8.8.8", internal_dns1="10.0.0.2", guest_cidr="10.99.0.0/24")
    so = db.session.scalar(db.select(ServiceOffering).where(ServiceOffering.name == "console")) or ServiceOffering(
        uuid=new_uuid(), name="console", cpu_number=1, cpu_speed=500, memory=128)
    n = db.session.scalar(db.select(db.func.count()).select_from(VirtualMachine)) + 1
    vm = VirtualMachine(name=name or f"vm{n}", instance_name=f"i-console-{n}-{new_uuid()[:8]}", state=state,
                        account_id=user.account_id, user_id=user.id, zone=zone, service_offering=so,
                        hypervisor_type=hypervisor, cpu_number=1, cpu_speed=500, memory=128,
                        console_host=host, console_port=port, **values)
    db.session.add(vm)
    db.session.commit()
    return vm
