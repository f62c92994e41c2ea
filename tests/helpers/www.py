"""A local HTTP server over a directory, for tests and benchmarks that register
templates from a URL (loopback only; stopped by the context manager)."""
from __future__ import annotations

import contextlib
import http.server
import subprocess
import threading
from pathlib import Path
from typing import Iterator


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(root: Path, handler: type[http.server.SimpleHTTPRequestHandler] = QuietHandler) -> Iterator[str]:
    """Serve `root`; yields the base URL (http://127.0.0.1:PORT)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **kw: handler(*a, directory=str(root), **kw))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serve_files(root: Path, files: dict[str, Path]) -> Iterator[str]:
    """Serve `files` (name in the URL -> file on disk, linked, not copied) from a new
    directory `root`; yields the base URL."""
    root.mkdir()
    for name, target in files.items():
        (root / name).symlink_to(target)
    with serve(root) as url:
        yield url


def built_guest(module, tmp: Path) -> Path:
    """A test guest module's image (tests/guests/*: missing() and build()), or the test fails
    with what is missing (scripts/sysdeps.sh test installs it): never a silent skip."""
    import pytest
    reason = module.missing()
    if reason:
        pytest.fail(f"the test guest {module.__name__} cannot be built: {reason} "
                    "(scripts/sysdeps.sh test installs it)")
    return module.build(tmp)


@contextlib.contextmanager
def trickling_server(body: bytes | None = None, chunk: int = 8192,
                     every: float = 0.25) -> Iterator[tuple[str, threading.Event]]:
    """A server that sends `chunk` bytes every `every` seconds (32 KiB/s by default: slow,
    yet above a sane minimum rate) of `body` (default: 1 GiB of zeros announced) until
    `fast` is set (the rest at once) or the context ends (every open transfer is cut).
    Yields (base URL, fast)."""
    stop, fast = threading.Event(), threading.Event()
    length = len(body) if body is not None else 1 << 30

    class Trickle(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            sent = 0
            try:
                while sent < length:
                    if not fast.is_set() and stop.wait(every):
                        return  # the test is over: cut the transfer
                    n = min(1 << 20 if fast.is_set() else chunk, length - sent)
                    self.wfile.write(body[sent:sent + n] if body is not None else b"\0" * n)
                    self.wfile.flush()
                    sent += n
            except OSError:
                return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", fast
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def raw_image(path: Path, size: str = "16M", stamp: bytes | None = b"NUBO" * 4096) -> Path:
    """A real RAW disk image made with qemu-img, with some non-zero bytes at the start."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), size], check=True)
    if stamp:
        with open(path, "r+b") as f:
            f.write(stamp)
    return path
