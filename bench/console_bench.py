"""Benchmark: the console proxy against a direct TCP connection to the same
VNC-like server (tests/console_support.FakeVNC), all on loopback.

The VNC server runs in a process of its own; the client ("browser") is this one.

- server-to-browser throughput: full-screen Raw updates (1280×800), pipelined,
  and one at a time as noVNC asks for them;
- browser-to-server throughput: ClientCutText messages (one websocket frame
  each, masked with a zero key so the client spends nothing on masking; the
  proxy unmasks as it would any browser's frames);
- time from connect to the first framebuffer update (through the proxy: TCP,
  websocket upgrade, Origin check, token consumed in the database, the
  per-connection process, RFB handshake);
- SESSIONS concurrent sessions held HOLD seconds, each asking for a small update
  every 0.5 s: errors counted.

The proxy is the real `python -m app.console` on a fresh SQLite instance.

    .venv/bin/python bench/console_bench.py                  # defaults: 1000 MiB, 20 connects, 100 x 60 s
    .venv/bin/python bench/console_bench.py --sessions 10 --hold 5 --megabytes 50
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from app import create_app  # noqa: E402
from app.extensions import db  # noqa: E402
from app.services import accounts, bootstrap, consoles, settings  # noqa: E402
from tests.console_support import (TCP, WS, FakeVNC, console_proxy, cut_text, make_vm, read_update,  # noqa: E402
                                   request_update, rfb_handshake, wait_port)
from tests.e2e.conftest import free_port  # noqa: E402

ORIGIN = "http://bench.example"
MIB = 1 << 20


def drain(t: TCP, total: int, framed: bool) -> None:
    """Receive `total` bytes of the RFB stream into a scratch buffer (websocket
    frames: their headers parsed, their payloads not copied again): a client that
    costs as little as a browser's network stack, so that the paths are compared
    rather than this script's parsing."""
    assert not t.buf and not getattr(t, "raw", b"")
    scratch = memoryview(bytearray(1 << 20))

    def skip(n: int) -> None:
        while n:
            got = t.sock.recv_into(scratch[:min(n, len(scratch))])
            if not got:
                raise ConnectionError("closed")
            n -= got

    def exact(n: int) -> bytes:
        got = 0
        while got < n:
            got += t.sock.recv_into(scratch[got:n])
        return bytes(scratch[:n])

    if not framed:
        return skip(total)
    while total:
        n = exact(2)[1] & 0x7F
        if n >= 126:
            n = int.from_bytes(exact(2 if n == 126 else 8), "big")
        skip(n)
        total -= n


def socat_row(vnc_port: int, args, direct: float, measure) -> str:
    """For scale: the same stream through socat, a plain TCP relay written in C
    (with the proxy's 256 KiB buffer)."""
    port = free_port()
    relay = subprocess.Popen(["socat", "-b262144", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
                              f"TCP:127.0.0.1:{vnc_port}"])
    try:
        wait_port(port)
        r = statistics.median(measure(lambda: TCP("127.0.0.1", port), args.megabytes) for _ in range(args.runs))
    finally:
        relay.terminate()
        relay.wait()
    return f"| … the same through socat (a C TCP relay, no websocket), for scale | {direct:,.0f} MiB/s | " \
           f"{r:,.0f} MiB/s | {r / direct:.2f} |"


def vnc_process(ack_every: int) -> tuple[int, multiprocessing.Process]:
    """The VNC server in its own process (its own GIL, as a real one would be)."""
    parent, child = multiprocessing.Pipe()

    def serve():
        server = FakeVNC(width=1280, height=800, name="bench", ack_every=ack_every)
        child.send(server.port)
        threading.Event().wait()

    proc = multiprocessing.Process(target=serve, daemon=True)
    proc.start()
    return parent.recv(), proc


class Bench:
    def __init__(self, app, proxy_port: int, vnc_port: int, vm_uuid: str):
        self.app, self.vnc_port, self.vm = app, vnc_port, vm_uuid
        self.url = f"ws://127.0.0.1:{proxy_port}/"

    def token(self) -> str:
        with self.app.app_context():
            return consoles.create_console(accounts.get_user("bench"), self.vm)[0]

    def direct(self) -> TCP:
        return TCP("127.0.0.1", self.vnc_port)

    def proxied(self) -> WS:
        return WS(f"{self.url}?token={self.token()}", origin=ORIGIN, zero_mask=True)

    def server_to_browser(self, connect, megabytes: int, lockstep: bool = False) -> float:
        """Pipelined: every update asked for at once; lockstep: one outstanding
        request at a time, as noVNC asks."""
        t = connect()
        w, h, _ = rfb_handshake(t)
        count = max(1, megabytes * MIB // (w * h * 4))
        size = 16 + w * h * 4  # FramebufferUpdate header + one Raw rectangle
        t0 = time.perf_counter()
        for batch in ([1] * count if lockstep else [count]):
            request_update(t, w, h, batch)
            drain(t, batch * size, framed=isinstance(t, WS))
        elapsed = time.perf_counter() - t0
        t.close()
        return count * size / elapsed / MIB

    def browser_to_server(self, connect, megabytes: int) -> float:
        t = connect()
        rfb_handshake(t)
        chunk = os.urandom(MIB)
        t0 = time.perf_counter()
        for _ in range(megabytes):
            cut_text(t, chunk)
        assert t.recv_exact(1) == b"\x02"  # the server's Bell: it has every byte
        elapsed = time.perf_counter() - t0
        t.close()
        return megabytes / elapsed

    def first_update_ms(self, proxied: bool, tries: int) -> list[float]:
        out = []
        for _ in range(tries):
            url = f"{self.url}?token={self.token()}" if proxied else ""  # the token is made before the clock starts
            t0 = time.perf_counter()
            t = WS(url, origin=ORIGIN) if proxied else self.direct()
            rfb_handshake(t)
            request_update(t, 64, 48)
            read_update(t)
            out.append((time.perf_counter() - t0) * 1000)
            t.close()
        return out

    def hold(self, sessions: int, seconds: float) -> dict:
        tokens = [self.token() for _ in range(sessions)]
        errors, updates, lock = [], [0], threading.Lock()
        start = threading.Barrier(sessions + 1)

        def session(tok):
            try:
                ws = WS(f"{self.url}?token={tok}", origin=ORIGIN, timeout=30)
                rfb_handshake(ws)
            except Exception as e:  # noqa: BLE001
                errors.append(f"connect: {e}")
                start.wait()
                return
            start.wait()
            deadline = time.monotonic() + seconds
            try:
                while time.monotonic() < deadline:
                    request_update(ws, 64, 48)
                    read_update(ws)
                    with lock:
                        updates[0] += 1
                    time.sleep(0.5)
            except Exception as e:  # noqa: BLE001
                errors.append(f"session: {e}")
            ws.close()

        threads = [threading.Thread(target=session, args=(tok,)) for tok in tokens]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.monotonic()
        for t in threads:
            t.join()
        return {"sessions": sessions, "held_s": round(time.monotonic() - t0, 1), "updates": updates[0],
                "errors": errors}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return f"{os.cpu_count()} CPUs ({cpu}), {mem / (1 << 20):.1f} GiB RAM, Python {sys.version.split()[0]}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--megabytes", type=int, default=1000, help="MiB per throughput run")
    ap.add_argument("--runs", type=int, default=3, help="throughput runs per path (median)")
    ap.add_argument("--connects", type=int, default=20, help="connects for the first-update time")
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--hold", type=float, default=60)
    args = ap.parse_args()

    instance = Path(tempfile.mkdtemp(prefix="nubo-console-bench-"))
    app = create_app({"INSTANCE_PATH": str(instance), "SEED_DEMO": False})
    with app.app_context():
        db.create_all()
        settings.sync_definitions()
        bootstrap.seed_reference_data()
        accounts.create_user("bench", "quiet-harbor-lamp-41")
    vnc_port, vnc = vnc_process(args.megabytes * MIB)
    try:
        with app.app_context():
            vm = make_vm("bench", port=vnc_port).uuid
        with console_proxy(app.config, instance / "proxy.log", PUBLIC_ORIGINS=ORIGIN) as port:
            b = Bench(app, port, vnc_port, vm)
            rows = []
            for label, measure in (
                    ("server → browser throughput, pipelined", b.server_to_browser),
                    ("server → browser throughput, one update at a time (noVNC)",
                     lambda c, mb: b.server_to_browser(c, mb, lockstep=True)),
                    ("browser → server throughput", b.browser_to_server)):
                d = statistics.median(measure(b.direct, args.megabytes) for _ in range(args.runs))
                p = statistics.median(measure(b.proxied, args.megabytes) for _ in range(args.runs))
                rows.append(f"| {label} | {d:,.0f} MiB/s | {p:,.0f} MiB/s | {p / d:.2f} |")
                if measure == b.server_to_browser and shutil.which("socat"):
                    rows.append(socat_row(vnc_port, args, d, b.server_to_browser))
            d, p = b.first_update_ms(False, args.connects), b.first_update_ms(True, args.connects)
            q = statistics.quantiles
            rows.append(f"| connect → first update, median | {statistics.median(d):.1f} ms | "
                        f"{statistics.median(p):.1f} ms | +{statistics.median(p) - statistics.median(d):.1f} ms |")
            rows.append(f"| connect → first update, p95 | {q(d, n=20)[-1]:.1f} ms | {q(p, n=20)[-1]:.1f} ms | "
                        f"+{q(p, n=20)[-1] - q(d, n=20)[-1]:.1f} ms |")
            held = b.hold(args.sessions, args.hold)
    finally:
        vnc.terminate()
        shutil.rmtree(instance, ignore_errors=True)
    print(f"machine: {machine()}")
    print(f"command: .venv/bin/python bench/console_bench.py {' '.join(sys.argv[1:])}".rstrip())
    print("| measure | direct TCP | through the proxy | proxy / direct |\n|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{held['sessions']} concurrent sessions held {held['held_s']} s: {held['updates']:,} updates, "
          f"{len(held['errors'])} errors {held['errors'][:5]}")


if __name__ == "__main__":
    main()
