"""Reading a TemplateSource's bytes for drivers that stream images into a pool
(libvirt's virStorageVolUpload): from a file on the management server or, for
direct download, from the URL through app.net.outbound (the address checks, the
size limit, deadline and minimum rate of the source's FetchPolicy). A direct
download's first bytes pass app.hypervisors.images' check (format, no backing or
data file) before any byte is handed to the driver; the checksum is computed as
the bytes pass."""
from __future__ import annotations

import hashlib
import logging
import re
from typing import Iterator

from app.hypervisors.base import OperationFailed, TemplateSource
from app.hypervisors.images import PROBE_BYTES, HeaderProbe, ImageRefused
from app.net import outbound

log = logging.getLogger("nubo.sources")

CHUNK = 1 << 20
_ALGOS = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


class Verifier:
    """Hashes what passes through; `check()` raises OperationFailed on a mismatch (the real
    digest goes to the log, not into the message)."""

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
            log.warning("checksum mismatch: expected %s %s, got %s", self.algo, self.expected,
                        self.digest.hexdigest())
            raise OperationFailed(f"Checksum mismatch: the image does not match the {self.algo.upper()} "
                                  "checksum given")


def _checked(download: outbound.Download, fmt: str) -> Iterator[bytes]:
    """The download's chunks, held back until its first PROBE_BYTES passed the image check;
    fetch errors as OperationFailed."""
    probe = HeaderProbe(fmt)
    held: list[bytes] = []
    try:
        it = iter(download)
        for chunk in it:
            probe.update(chunk)
            held.append(chunk)
            if sum(map(len, held)) >= PROBE_BYTES:
                break
        try:
            probe.check()
        except ImageRefused as e:
            raise OperationFailed(e.message) from None
        yield from held
        held.clear()
        yield from it
    except outbound.FetchError as e:
        raise OperationFailed(f"Cannot fetch {download.url}: {e.message}") from None
    finally:
        download.close()


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
        try:
            download = outbound.open_url(source.url, source.fetch or outbound.FetchPolicy())
        except outbound.FetchError as e:
            raise OperationFailed(e.message) from None
        if download.length is None:
            download.close()
            raise OperationFailed(f"{source.url} does not announce its size (no Content-Length)")
        return _checked(download, source.format), download.length
    where = f" ({source.share_path})" if source.share_path else ""
    raise OperationFailed(f"The image on secondary storage{where} is not reachable from the management server, "
                          "which streams it to this host: mount the image store there (see README)")
