"""Reading a TemplateSource's bytes for drivers that stream images into a pool
(libvirt's virStorageVolUpload): from a file on the management server or, for
direct download, from the URL; the checksum is computed as the bytes pass."""
from __future__ import annotations

import hashlib
import re
from typing import Iterator

from app.hypervisors.base import OperationFailed, TemplateSource

CHUNK = 1 << 20
_ALGOS = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


class Verifier:
    """Hashes what passes through; `check()` raises OperationFailed on a mismatch."""

    def __init__(self, checksum: str | None):
        m = re.fullmatch(r"\{([A-Za-z0-9-]+)\}([0-9A-Fa-f]+)", (checksum or "").strip())
        if m:
            self.algo, self.expected = _ALGOS[m.group(1).upper()], m.group(2).lower()
        elif checksum:
            self.algo, self.expected = "md5", checksum.strip().lower()
        else:
            self.algo, self.expected = None, None
        self.digest = hashlib.new(self.algo) if self.algo else None

    def update(self, chunk: bytes) -> None:
        if self.digest:
            self.digest.update(chunk)

    def check(self) -> None:
        if self.digest and self.digest.hexdigest() != self.expected:
            raise OperationFailed(f"Checksum mismatch: expected {self.algo.upper()} {self.expected}, "
                                  f"got {self.digest.hexdigest()}")


def open_source(source: TemplateSource) -> tuple[Iterator[bytes], int]:
    """(chunks, size in bytes). A URL must announce its size (Content-Length)."""
    if source.local_path:
        import os
        try:
            size = os.path.getsize(source.local_path)
        except OSError as e:
            raise OperationFailed(f"Cannot read the image {source.local_path}: {e.strerror}") from None

        def read():
            with open(source.local_path, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk
        return read(), size
    if source.url:
        import requests
        try:
            resp = requests.get(source.url, stream=True, timeout=(10, 60))
        except requests.RequestException as e:
            raise OperationFailed(f"Cannot fetch {source.url}: {e}") from None
        if resp.status_code != 200:
            raise OperationFailed(f"The server answered HTTP {resp.status_code} for {source.url}")
        length = resp.headers.get("Content-Length", "")
        if not length.isdigit():
            resp.close()
            raise OperationFailed(f"{source.url} does not announce its size (no Content-Length)")
        return resp.iter_content(CHUNK), int(length)
    where = f" ({source.share_path})" if source.share_path else ""
    raise OperationFailed(f"The image on secondary storage{where} is not reachable from the management server, "
                          "which streams it to this host: mount the image store there (see README)")
