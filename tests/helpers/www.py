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


def raw_image(path: Path, size: str = "16M", stamp: bytes | None = b"NUBO" * 4096) -> Path:
    """A real RAW disk image made with qemu-img, with some non-zero bytes at the start."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), size], check=True)
    if stamp:
        with open(path, "r+b") as f:
            f.write(stamp)
    return path
