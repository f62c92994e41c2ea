#!/bin/sh
# nubo-heartbeat.sh: this host's heartbeat on its shared primary storage, for Nubo's VM HA.
#
# Every INTERVAL seconds it writes the time into <mount>/nubo-ha/hb-<NAME> on each shared
# primary storage mount (as CloudStack's kvmheartbeat.sh writes KVMHA/hb-<host ip>). When a
# host stops answering Nubo, Nubo asks a neighbour host's libvirtd how old that file is
# (app/services/ha/investigation.py): fresh, the host is alive and only cut off from Nubo;
# older than ha.heartbeat.timeout, it is dead and its HA VMs restart elsewhere.
#
#   nubo-heartbeat.sh -n NAME [-d DIR]... [-i SECONDS] [-f SECONDS] [-c URI] [-1]
#
#   -n NAME     this host's address as Nubo knows it (the address in the host's URI)
#   -d DIR      a shared primary storage mount; repeat for several. Without -d: the target of
#               every active libvirt pool of type netfs or dir (virsh, see -c)
#   -i SECONDS  between two beats (default 10); keep ha.heartbeat.timeout several times larger
#   -f SECONDS  fence: when no beat could be written on a mount for this long, kill the QEMU
#               processes whose command line names that mount (their disks are there), before
#               Nubo restarts them elsewhere; keep it below ha.heartbeat.timeout. 0: off (default)
#   -c URI      libvirt URI for the discovery (default qemu:///system)
#   -1          one beat, then exit
#
# Runs as root (systemd unit: contrib/nubo-heartbeat.service). Exits 2 on bad arguments.
set -u

NAME="" INTERVAL=10 FENCE=0 URI="qemu:///system" ONCE=0 DIRS=""
usage() { sed -n '10,21p' "$0" >&2; exit 2; }
while getopts "n:d:i:f:c:1h" opt; do
  case "$opt" in
    n) NAME=$OPTARG ;;
    d) DIRS="$DIRS
$OPTARG" ;;
    i) INTERVAL=$OPTARG ;;
    f) FENCE=$OPTARG ;;
    c) URI=$OPTARG ;;
    1) ONCE=1 ;;
    *) usage ;;
  esac
done
[ -n "$NAME" ] || { echo "nubo-heartbeat: -n NAME is required" >&2; usage; }
case "$INTERVAL$FENCE" in *[!0-9]*) echo "nubo-heartbeat: -i and -f take whole seconds" >&2; usage ;; esac
[ "$INTERVAL" -ge 1 ] || usage
# The same file name Nubo reads (app/hypervisors/libvirt/driver.py heartbeat_file).
FILE="hb-$(printf '%s' "$NAME" | tr -c 'A-Za-z0-9._:-' '_')"
STATE=$(mktemp -d "${TMPDIR:-/tmp}/nubo-heartbeat.XXXXXX") || exit 1
trap 'rm -rf "$STATE"' EXIT
trap 'exit 0' INT TERM

mounts() {
  if [ -n "$DIRS" ]; then printf '%s\n' "$DIRS" | sed '/^$/d'; return; fi
  virsh -q -c "$URI" pool-list --name 2>/dev/null | while read -r pool; do
    case "$pool" in ""|nubo-ha-*) continue ;; esac  # nubo-ha-*: a neighbour's check, passing through
    virsh -q -c "$URI" pool-dumpxml "$pool" 2>/dev/null |
      awk '/<pool type=.(netfs|dir)./ {ok=1} ok && /<path>/ {gsub(/.*<path>|<\/path>.*/, ""); print; exit}'
  done
}

beat() {  # $1: mount; 0 when the beat is on the storage
  timeout "$INTERVAL" sh -c 'mkdir -p "$1/nubo-ha" && date +%s > "$1/nubo-ha/$2"' sh "$1" "$FILE" 2>/dev/null
}

fence() {  # $1: mount whose beats fail: its guests must not run on while others restart them
  for pid in $(pgrep -f "qemu.*$1" 2>/dev/null); do
    kill -9 "$pid" 2>/dev/null && echo "nubo-heartbeat: no heartbeat on $1 for ${FENCE}s: killed guest process $pid" >&2
  done
}

while :; do
  now=$(date +%s)
  for dir in $(mounts); do
    key=$(printf '%s' "$dir" | cksum | cut -d' ' -f1)
    if beat "$dir"; then
      echo "$now" > "$STATE/$key"
    else
      last=$(cat "$STATE/$key" 2>/dev/null || echo "$now")
      [ -f "$STATE/$key" ] || echo "$now" > "$STATE/$key"
      echo "nubo-heartbeat: cannot write the heartbeat on $dir" >&2
      if [ "$FENCE" -gt 0 ] && [ $((now - last)) -ge "$FENCE" ]; then fence "$dir"; fi
    fi
  done
  [ "$ONCE" = 1 ] && exit 0
  sleep "$INTERVAL"
done
