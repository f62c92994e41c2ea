"""A tiny guest that honours ACPI power-off, built by the test suite from Debian
packages (no download at test time): Debian's cloud kernel, a busybox initramfs
whose init powers off on the first power-button event, on a bootable RAW disk
(FAT with syslinux, written with mtools: no loop mounts). It boots in seconds
under KVM and answers a graceful shutdown like a real OS.

    path = build(tmp_dir)   # a RAW image; cached per kernel version
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
insmod /evdev.ko
insmod /button.ko
echo "nubo-acpi-guest: ready" > /dev/console
for e in /dev/input/event*; do
  ( head -c 1 "$e" > /dev/null; echo "nubo-acpi-guest: power button, powering off" > /dev/console; poweroff -f ) &
done
while true; do sleep 60; done
"""
SYSLINUX_CFG = "DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL vmlinuz\n  APPEND initrd=initrd.gz console=ttyS0 quiet\n"


def missing() -> str | None:
    """Why the guest cannot be built here (scripts/sysdeps.sh test installs what it needs)."""
    for tool in ("mkfs.vfat", "syslinux", "mcopy", "cpio", "gzip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists("/bin/busybox") or not _static("/bin/busybox"):
        return "a static busybox (busybox-static) is not installed"
    if not _kernel():
        return "no Debian kernel in /boot (linux-image-cloud-amd64)"
    return None


def _static(path: str) -> bool:
    out = subprocess.run(["ldd", path], capture_output=True, text=True)
    return "not a dynamic executable" in (out.stdout + out.stderr)


def _kernel() -> tuple[str, str] | None:
    for vmlinuz in sorted(glob.glob("/boot/vmlinuz-*"), reverse=True):
        version = vmlinuz.split("vmlinuz-", 1)[1]
        mods = f"/lib/modules/{version}/kernel/drivers"
        if os.path.exists(f"{mods}/acpi/button.ko") and os.path.exists(f"{mods}/input/evdev.ko"):
            return vmlinuz, version
    return None


def boot_disk(part: Path, vmlinuz: str, root: Path, syslinux_cfg: str, label: str, work: Path) -> None:
    """A bootable FAT disk image at `part`: the kernel, `root` packed as a gzipped newc
    initramfs, and syslinux with `syslinux_cfg` (the test guests' common last step; `work`
    holds the intermediate files)."""
    initrd = work / "initrd.gz"
    files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=files, capture_output=True,
                          check=True).stdout
    initrd.write_bytes(subprocess.run(["gzip", "-9"], input=cpio, capture_output=True, check=True).stdout)
    size_mib = max(32, (os.path.getsize(vmlinuz) + initrd.stat().st_size) // (1 << 20) + 8)
    with open(part, "wb") as f:
        f.truncate(size_mib << 20)
    subprocess.run(["mkfs.vfat", "-n", label, str(part)], check=True, capture_output=True)
    subprocess.run(["syslinux", "--install", str(part)], check=True, capture_output=True)
    cfg = work / "syslinux.cfg"
    cfg.write_text(syslinux_cfg)
    for src, name in ((vmlinuz, "vmlinuz"), (str(initrd), "initrd.gz"), (str(cfg), "syslinux.cfg")):
        subprocess.run(["mcopy", "-i", str(part), src, f"::{name}"], check=True, capture_output=True)


def build(dest: Path) -> Path:
    vmlinuz, version = _kernel()
    image = dest / f"acpi-guest-{version}.raw"
    if image.exists():
        return image
    dest.mkdir(parents=True, exist_ok=True)
    root = dest / "initramfs"
    (root / "bin").mkdir(parents=True, exist_ok=True)
    for d in ("dev", "proc", "sys"):
        (root / d).mkdir(exist_ok=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    mods = f"/lib/modules/{version}/kernel/drivers"
    shutil.copy(f"{mods}/acpi/button.ko", root / "button.ko")
    shutil.copy(f"{mods}/input/evdev.ko", root / "evdev.ko")
    part = dest / (image.name + ".part")
    boot_disk(part, vmlinuz, root, SYSLINUX_CFG, "NUBOGUEST", dest)
    part.rename(image)
    return image
