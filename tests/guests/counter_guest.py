"""A guest that counts, for live migration tests: built by the test suite from Debian
packages like tests/guests/acpi_guest.py (Debian's kernel, a static busybox initramfs, a
bootable RAW disk), its init prints one line a half second on its serial console:

    nubo-counter: <boot id> <n>

with the kernel's random boot id (a new one at every boot) and n counting up from 1. A
guest that migrated live goes on counting with the same boot id; one that restarted
begins again with a new id. It also powers off on the ACPI power button (graceful stop).

The console is read through libvirt (virDomainOpenConsole on the host's connection,
remote URIs too), so a test reads the guest wherever it runs:

    path = build(tmp_dir)                            # a RAW image; cached per kernel and script
    boot, n = last_count(conn, domain_name)          # reads until a count line arrives
"""
from __future__ import annotations

import hashlib
import queue
import re
import shutil
import threading
import time
import uuid
from pathlib import Path

import libvirt

from tests.guests.acpi_guest import _kernel, boot_disk, missing  # noqa: F401 - the same needs

PREFIX = "nubo-counter: "
LINE = re.compile(r"nubo-counter: ([0-9a-f-]{36}) (\d+)")

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
dmesg -n 1
insmod /evdev.ko
insmod /button.ko
for e in /dev/input/event*; do ( head -c 1 "$e" > /dev/null; poweroff -f ) & done
boot=$(cat /proc/sys/kernel/random/boot_id)
n=0
while true; do
  n=$((n+1))
  echo "nubo-counter: $boot $n" > /dev/console
  sleep 0.5
done
"""
SYSLINUX_CFG = ("DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL vmlinuz\n"
                "  APPEND initrd=initrd.gz console=ttyS0 quiet loglevel=1\n")


def build(dest: Path) -> Path:
    """The guest's RAW image in `dest`, built once per kernel version and version of the script."""
    vmlinuz, version = _kernel()
    digest = hashlib.sha256((INIT + SYSLINUX_CFG).encode()).hexdigest()[:10]
    image = dest / f"counter-guest-{version}-{digest}.raw"
    if image.exists():
        return image
    dest.mkdir(parents=True, exist_ok=True)
    work = dest / f"counter-guest-build-{uuid.uuid4().hex[:8]}"
    root = work / "initramfs"
    for d in ("bin", "dev", "proc", "sys"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    mods = f"/lib/modules/{version}/kernel/drivers"
    shutil.copy(f"{mods}/acpi/button.ko", root / "button.ko")
    shutil.copy(f"{mods}/input/evdev.ko", root / "evdev.ko")
    part = work / image.name
    boot_disk(part, vmlinuz, root, SYSLINUX_CFG, "NUBOCOUNT", work)
    part.rename(image)  # atomic: a parallel build of the same image ends with one whole file
    shutil.rmtree(work, ignore_errors=True)
    return image


def read_counts(conn: libvirt.virConnect, domain_name: str, want: int = 2,
                deadline_s: float = 120.0) -> list[tuple[str, int]]:
    """Open the domain's serial console through libvirt and read until `want` count lines
    came (the guest may still be booting); (boot id, n) each, in order. The stream is read
    by a blocking recv on a helper thread (a non-blocking one needs an event loop)."""
    dom = conn.lookupByName(domain_name)
    stream = conn.newStream(0)
    dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
    chunks: queue.Queue = queue.Queue()

    def pump() -> None:
        try:
            while True:
                data = stream.recv(4096)
                chunks.put(data)
                if not data:
                    return
        except libvirt.libvirtError as e:
            chunks.put(e)

    threading.Thread(target=pump, name=f"console-{domain_name}", daemon=True).start()
    buf, found = b"", []
    end = time.monotonic() + deadline_s
    try:
        while len(found) < want:
            try:
                data = chunks.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{domain_name} printed {len(found)} of {want} counts within {deadline_s:.0f} s; "
                                   f"its console said: {buf[-300:]!r}") from None
            if isinstance(data, Exception) or not data:
                raise EOFError(f"the console of {domain_name} closed: {data!r}")
            buf += data
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                m = LINE.search(raw.decode(errors="replace"))
                if m:
                    found.append((m.group(1), int(m.group(2))))
    finally:
        try:
            stream.abort()
        except libvirt.libvirtError:
            pass
    return found


def last_count(conn: libvirt.virConnect, domain_name: str, deadline_s: float = 120.0) -> tuple[str, int]:
    """The guest's current count (the first line may be cut: the second is whole)."""
    return read_counts(conn, domain_name, want=2, deadline_s=deadline_s)[-1]
