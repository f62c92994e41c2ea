"""A VNC password answered by the console proxy, never by the browser.

Some consoles ask for a password (an extension's `getconsole` hands one out, as CloudStack's
Proxmox extension does). Nubo's rule is that VNC passwords never reach a browser, so, as
CloudStack's console proxy does, the proxy does the RFB security handshake itself:

- with the VNC server: RFB 3.8, security type 2 (VNC authentication: the 16-byte challenge
  encrypted with DES, the password's bytes bit-reversed as the key), then its SecurityResult;
- with the viewer (noVNC, through the websocket): the same version, and security type 1
  (None) as the only choice.

After that the two sides are joined as they are: the viewer's ClientInit goes to the server,
the server's ServerInit to the viewer, and the proxy only relays (RFC 6143 §7.1-7.3)."""
from __future__ import annotations

import select
import socket
import struct
import time

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

VERSION = b"RFB 003.008\n"
NONE, VNC_AUTH = 1, 2


class HandshakeFailed(Exception):
    """The VNC server refused the password, or a side broke the handshake."""


def _reverse_bits(b: int) -> int:
    return int(f"{b:08b}"[::-1], 2)


def des_response(password: str, challenge: bytes) -> bytes:
    """VNC authentication's answer: the challenge encrypted with DES under the password
    (its first 8 bytes, zero-padded, each byte's bits reversed: RFB's quirk)."""
    key = bytes(_reverse_bits(b) for b in password.encode("latin-1", "replace")[:8].ljust(8, b"\0"))
    enc = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # 3 equal keys: single DES
    return enc.update(challenge) + enc.finalize()


def _recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    out = b""
    while len(out) < n:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(n - len(out))
        except socket.timeout:
            raise HandshakeFailed("the VNC server did not answer in time") from None
        if not chunk:
            raise HandshakeFailed("the VNC server closed the connection during the handshake")
        out += chunk
    return out


def _reason(sock: socket.socket, deadline: float) -> str:
    (length,) = struct.unpack(">I", _recv_exact(sock, 4, deadline))
    return _recv_exact(sock, min(length, 4096), deadline).decode("utf-8", "replace")


def authenticate(sock: socket.socket, password: str, timeout: float = 10) -> None:
    """The server side: after this, `sock` waits for the viewer's ClientInit."""
    deadline = time.monotonic() + timeout
    version = _recv_exact(sock, 12, deadline)
    if not version.startswith(b"RFB 003."):
        raise HandshakeFailed("the console is not a VNC server")
    sock.sendall(VERSION)
    (count,) = _recv_exact(sock, 1, deadline)
    if count == 0:
        raise HandshakeFailed(f"the VNC server refused the connection: {_reason(sock, deadline)}")
    offered = _recv_exact(sock, count, deadline)
    if VNC_AUTH in offered:
        sock.sendall(bytes([VNC_AUTH]))
        sock.sendall(des_response(password, _recv_exact(sock, 16, deadline)))
    elif NONE in offered:
        sock.sendall(bytes([NONE]))  # it asks for nothing after all
    else:
        raise HandshakeFailed(f"the VNC server offers no security type the proxy speaks ({list(offered)})")
    (result,) = struct.unpack(">I", _recv_exact(sock, 4, deadline))
    if result != 0:
        raise HandshakeFailed(f"the VNC server refused the password: {_reason(sock, deadline)}")
    sock.settimeout(None)


class _Viewer:
    """Exact reads from the websocket of a websockify handler."""

    def __init__(self, handler, deadline: float):
        self.handler, self.deadline, self.buf = handler, deadline, b""

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise HandshakeFailed("the viewer did not answer in time")
            if not self.handler.request.pending():
                ready, _, _ = select.select([self.handler.request], [], [], left)
                if not ready:
                    continue
            bufs, closed = self.handler.recv_frames()
            self.buf += b"".join(bufs)
            if closed and len(self.buf) < n:
                raise HandshakeFailed("the viewer closed the connection during the handshake")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, data: bytes) -> None:
        pending = self.handler.send_frames([data])
        while pending:
            select.select([], [self.handler.request], [], 1)
            pending = self.handler.send_frames()


def greet_viewer(handler, timeout: float = 30) -> bytes:
    """The viewer side: offer it no authentication. Returns what it sent beyond the
    handshake (its ClientInit, if it came already), for the server."""
    viewer = _Viewer(handler, time.monotonic() + timeout)
    viewer.send(VERSION)
    version = viewer.read(12)
    if not version.startswith(b"RFB 003."):
        raise HandshakeFailed("the viewer does not speak RFB")
    minor = int(version[8:11] or b"0")
    if minor >= 7:
        viewer.send(bytes([1, NONE]))
        if viewer.read(1) != bytes([NONE]):
            raise HandshakeFailed("the viewer chose a security type that was not offered")
        if minor >= 8:
            viewer.send(struct.pack(">I", 0))
    else:  # RFB 3.3: the server decides
        viewer.send(struct.pack(">I", NONE))
    return viewer.buf
