"""The one check every arriving disk image passes before anything uses it:
`qemu-img info --output=json` must read the declared format and show no backing
file and no external data file (either would make the hypervisor open a file of
the image author's choosing). Used on secondary-storage downloads and uploads
(the whole file) and on direct downloads into a pool (`HeaderProbe`: the image's
first bytes, where QCOW2 keeps its header and the names of those files, are
checked before the import is accepted). No Flask, no database."""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

# What `qemu-img info` calls each disk format.
QEMU_FORMATS = {"RAW": "raw", "QCOW2": "qcow2", "VHD": "vpc", "VHDX": "vhdx"}
# A QCOW2 header and its extensions (backing and data file names) sit in the first cluster,
# and a cluster is at most 2 MiB.
PROBE_BYTES = 2 << 20


class ImageRefused(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def qemu_img_info(path: str | Path) -> dict:
    try:
        out = subprocess.run(["qemu-img", "info", "--output=json", "-U", str(path)], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        return json.loads(out)
    except subprocess.CalledProcessError as e:
        raise ImageRefused(f"qemu-img could not read the image: {(e.stderr or '').strip()[:300]}") from None
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        raise ImageRefused(f"qemu-img could not read the image: {e}") from None


def check_disk_image(path: str | Path, declared: str) -> dict:
    """qemu-img's facts about the file if it really is `declared` (RAW, QCOW2, VHD, VHDX) and
    refers to no other file; ImageRefused otherwise."""
    declared = declared.upper()
    if declared not in QEMU_FORMATS:
        raise ImageRefused(f"Nubo cannot check {declared} disk images")
    info = qemu_img_info(path)
    found = info.get("format")
    if found != QEMU_FORMATS[declared]:
        name = {v: k for k, v in QEMU_FORMATS.items()}.get(found, found)
        raise ImageRefused(f"The file is {name}, not {declared}")
    data = (info.get("format-specific") or {}).get("data") or {}
    if info.get("backing-filename") or info.get("full-backing-filename") or data.get("data-file"):
        raise ImageRefused("The image refers to another file (backing or data file); that is refused")
    return info


class HeaderProbe:
    """Keeps a stream's first PROBE_BYTES; `check()` runs check_disk_image on them.
    Only for RAW and QCOW2 (their format shows at the start; a fixed VHD's does not)."""

    FORMATS = ("RAW", "QCOW2")

    def __init__(self, declared: str):
        self.declared = declared.upper()
        self.head = bytearray()

    def update(self, chunk: bytes) -> None:
        if self.declared in self.FORMATS and len(self.head) < PROBE_BYTES:
            self.head += chunk[:PROBE_BYTES - len(self.head)]

    def check(self) -> None:
        if self.declared not in self.FORMATS:
            return
        with tempfile.NamedTemporaryFile(prefix="nubo-probe-", suffix=".img") as f:
            f.write(self.head)
            f.flush()
            check_disk_image(f.name, self.declared)
