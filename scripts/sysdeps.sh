#!/usr/bin/env bash
# Install the Debian packages Nubo needs, only those missing. As root it runs
# apt-get; otherwise it stops and names the exact command to run.
#   scripts/sysdeps.sh run    build deps for libvirt-python, Python venv, Node
#   scripts/sysdeps.sh test   + libvirtd/QEMU/LXC, Chromium, ISO tools, qemu-img, a kernel + busybox for the test guest
set -euo pipefail
mode=${1:-run}

pkgs=(libvirt-dev pkg-config gcc python3-dev python3-venv qemu-utils xorriso)
pkgs+=(dnsmasq-base nftables iproute2)  # virtual routers on this host (app/network/host/router.py)
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
if [ "$mode" = test ]; then
  pkgs+=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-driver-lxc libvirt-clients libxml2-utils
         qemu-system-x86 chromium chromium-driver
         # the test guest that honours ACPI power-off (tests/guests/acpi_guest.py)
         linux-image-cloud-amd64 busybox-static cpio syslinux mtools dosfstools
         # a Linux bridge for the real guests' NICs (ip link)
         iproute2
         # the networked test guest's stand-in router (tests/network/test_real_net_guest.py)
         dnsmasq-base
         # guest networks on hosts (tests/network): security-group tables, pings, the SSH channel's sshd
         nftables iputils-ping openssh-server
         # the lab of real hosts (scripts/lab.sh): an sshd per host, libvirt's ssh transport, unshare/nsenter
         # and its shared primary storage, a GlusterFS volume (no NFS in these kernels)
         openssh-client util-linux glusterfs-server glusterfs-client)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "Nubo needs these Debian packages. Run as root:" >&2
  echo "  apt-get update && $line" >&2
  exit 1
fi
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when they are missing or stale (a day).
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  apt-get update -qq
fi
$line -qq || { apt-get update -qq && $line -qq; }
