#!/usr/bin/env bash
# Start a real libvirtd (and virtlogd) on this machine if none answers, the way
# ../shared/docs/test-machines.md describes (no systemd here). Idempotent.
set -euo pipefail
if virsh -c qemu:///system version >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "libvirtd is not running and starting it needs root" >&2; exit 1
fi
mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt/images
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -s /usr/sbin/nologin libvirt-qemu
conf=/etc/libvirt/qemu.conf
if ! grep -q '^# nubo-test' "$conf" 2>/dev/null; then
  printf '# nubo-test\nuser = "root"\ngroup = "root"\nsecurity_driver = "none"\n' >> "$conf"
fi
pgrep -x virtlogd >/dev/null || /usr/sbin/virtlogd -d
pgrep -x libvirtd >/dev/null || /usr/sbin/libvirtd -d
for _ in $(seq 1 50); do
  virsh -c qemu:///system version >/dev/null 2>&1 && exit 0
  sleep 0.2
done
echo "libvirtd did not come up" >&2; exit 1
