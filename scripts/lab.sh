#!/usr/bin/env bash
# A lab of real libvirt hosts on this one machine (README: "Lab: several real hosts on one
# machine"). Each host is its own network, mount and UTS namespace with its own /run,
# /etc/libvirt (own host_uuid), /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt and
# hostname, running its own virtlogd, libvirtd (QEMU driver) and sshd. The hosts sit on the
# bridge nubolab0 (198.18.200.0/24, the "datacenter network"; this machine is .1, host N is
# .(10+N)); nothing is routed off the machine. In each host, cloudbr0 (with eth0 as its port)
# holds the address: the traffic label for guests and VXLAN, as on a CloudStack KVM host.
# Nubo reaches a host as it reaches a real one: qemu+ssh://root@ADDR/system with the lab's
# SSH key, the host's SSH key pinned.
#
#   scripts/lab.sh up [N]        N hosts (default 2), named lab1..labN; idempotent
#   scripts/lab.sh list          "NAME URI STATE" per host, then "storage URL"
#   scripts/lab.sh json          everything a test needs (addresses, keys, storage) as JSON
#   scripts/lab.sh fail HOST     power cut: every process of the host killed, its link down
#   scripts/lab.sh recover HOST  boots it again: fresh namespaces, link up, daemons started;
#                                its guests are still defined (on disk), none is running
#   scripts/lab.sh exec HOST CMD...  run a command inside a host (all its namespaces)
#   scripts/lab.sh down          removes everything the lab made; idempotent
#
# A Hyper-V lab host: `up` also starts the WS-Management test double (tests/hyperv/wsman_double.py;
# no Windows can run here), a process of this machine listening on the lab bridge's address (where
# Nubo runs: 198.18.200.1) on port $NUBO_LAB_HYPERV_PORT (default 5986, WinRM's HTTPS port), user
# hvadmin, password hv-pass, with a self-signed certificate made at its first start and kept in
# $LAB/hyperv; `list` shows it as "hyperv URL STATE FINGERPRINT", `json` under "hyperv". Add it as a
# Hyper-V host: that address, transport ssl, that SHA-256 fingerprint.
#
# Shared primary storage: this kernel has no NFS (neither nfs nor nfsd in /proc/filesystems,
# no loadable modules), but it has FUSE: a GlusterFS volume served by a storage node of the
# lab ("labstore", .2), mounted by every host at the same path, /mnt/nubo-lab/primary — the
# SharedMountPoint way: `file:///mnt/nubo-lab/primary`. libvirt counts it as shared storage
# (live migration with disks in place). Without GlusterFS installed, a plain directory
# ($LAB/primary) is bind-mounted there instead, and libvirt refuses live migration on it.
#
# Per-host daemons of other features (e.g. an HA heartbeat writer): every executable in
# scripts/lab.d/ and in the directories of $NUBO_LAB_HOOKS (colon separated) is run inside
# each host after its libvirtd answers, at `up` and at `recover`, with LAB_HOST, LAB_INDEX,
# LAB_ADDR, LAB_DIR, LAB_HOST_DIR, LAB_STORAGE_PATH and LAB_BRIDGE_ADDR set. A hook must
# return promptly (daemonise what it starts); what it leaves running belongs to the host and
# dies with it at `fail`.
#
# Several labs at once (test runs side by side on one machine): NUBO_LAB_ID=K (1..250) makes
# lab K, with its own bridge nubolabK, network 198.19.K.0/24, namespaces nubolabK-labN and
# state under /var/lib/nubo-lab-K; unset, the lab is the one described above.
#
# State lives under $NUBO_LAB_DIR (default /var/lib/nubo-lab). Needs root, iproute2,
# util-linux (unshare, nsenter), openssh-server, libvirt-daemon-driver-qemu (scripts/sysdeps.sh test).
set -euo pipefail

ID=${NUBO_LAB_ID:-}
if [ -z "$ID" ]; then
  LAB=${NUBO_LAB_DIR:-/var/lib/nubo-lab} BRIDGE=nubolab0 NET=198.18.200 NS_PREFIX=nubolab- LINK_PREFIX=nlab
else
  [[ $ID =~ ^[1-9][0-9]{0,2}$ ]] && [ "$ID" -le 250 ] || { echo "lab: NUBO_LAB_ID is 1..250" >&2; exit 2; }
  LAB=${NUBO_LAB_DIR:-/var/lib/nubo-lab-$ID} BRIDGE=nubolab$ID NET=198.19.$ID NS_PREFIX=nubolab$ID- LINK_PREFIX=nl${ID}x
fi
ROOT_ADDR=$NET.1
STORE_ADDR=$NET.2
STORAGE_PATH=/mnt/nubo-lab/primary
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HYPERV_PORT=${NUBO_LAB_HYPERV_PORT:-5986}
PYTHON=${NUBO_LAB_PYTHON:-$HERE/../.venv/bin/python}

die() { echo "lab: $*" >&2; exit 1; }
log() { echo "lab: $*" >&2; }

[ "$(id -u)" -eq 0 ] || die "needs root (namespaces, bridges, libvirtd)"

netns_of() { echo "$NS_PREFIX$1"; }
veth_of() { echo "$LINK_PREFIX${1#lab}"; }  # the host's link on the bridge, root side
index_of() { echo "${1#lab}"; }
addr_of() { echo "$NET.$((10 + $(index_of "$1")))"; }
hostdir() { echo "$LAB/hosts/$1"; }
uri_of() { echo "qemu+ssh://root@$(addr_of "$1")/system"; }

# A host name: "lab2" or "2".
host_name() {
  local h=$1
  [[ $h =~ ^[0-9]+$ ]] && h="lab$h"
  [[ $h =~ ^lab[0-9]+$ ]] || die "no such host: $1 (hosts are lab1, lab2, ...)"
  [ -d "$(hostdir "$h")" ] || die "no such host: $h (scripts/lab.sh up N makes lab1..labN)"
  echo "$h"
}

hosts() {
  [ -d "$LAB/hosts" ] || return 0
  local d
  for d in "$LAB"/hosts/lab*; do
    [ -d "$d" ] && basename "$d"
  done | sort -V
}

# Run a command inside a host: its network, mount and UTS namespaces.
in_host() {
  local h=$1; shift
  # 9>&-: the lab's lock is not handed down to the host's daemons.
  nsenter --net="/run/netns/$(netns_of "$h")" --mount="$LAB/ns/$h.mnt" --uts="$LAB/ns/$h.uts" -- "$@" 9>&-
}

ns_alive() {  # the host's namespaces exist (persisted by bind mounts)
  local h=$1
  [ -e "/run/netns/$(netns_of "$h")" ] && mountpoint -q "$LAB/ns/$h.mnt" 2>/dev/null \
    && mountpoint -q "$LAB/ns/$h.uts" 2>/dev/null
}

libvirtd_answers() {
  ns_alive "$1" && in_host "$1" virsh -q -c qemu:///system version >/dev/null 2>&1
}

state_of() {
  local h=$1
  if [ -e "$(hostdir "$h")/failed" ]; then echo failed
  elif libvirtd_answers "$h"; then echo up
  else echo down
  fi
}

# --- set-up ------------------------------------------------------------------

# Commands that change the lab run under $LAB/.lock, held by flock(1) itself (-o): the
# daemons this script starts never inherit it.
lock() { :; }

ensure_base() {
  # This machine's mount of the shared storage, dropped (its client gave up on the brick, or
  # died): stat fails with ENOTCONN and nothing can be made in or mounted over it; it goes,
  # and boot_store mounts it again.
  if [ -d "$LAB" ] && ! stat "$LAB/primary" >/dev/null 2>&1 && grep -qF " $LAB/primary " /proc/mounts; then
    log "the mount of the shared storage at $LAB/primary was dead: mounted again"
    umount -l "$LAB/primary" 2>/dev/null || true
  fi
  mkdir -p "$LAB/ns" "$LAB/hosts" "$LAB/primary" "$LAB/ssh"
  chmod 700 "$LAB/ssh"
  # Namespace files are bind mounts: they must sit on a private mount (as /run/netns does).
  if ! mountpoint -q "$LAB/ns"; then mount --bind "$LAB/ns" "$LAB/ns"; fi
  mount --make-private "$LAB/ns"
  # The lab's SSH key: Nubo's credential for every host, and each host's own key for
  # peer-to-peer migration to the others (their /root/.ssh is $LAB/ssh).
  [ -f "$LAB/ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C nubo-lab -f "$LAB/ssh/id_ed25519"
  cp "$LAB/ssh/id_ed25519.pub" "$LAB/ssh/authorized_keys"
  chmod 600 "$LAB/ssh/authorized_keys"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add name "$BRIDGE" type bridge
  fi
  ip addr replace "$ROOT_ADDR/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

write_configs() {
  local h=$1 d; d=$(hostdir "$h")
  mkdir -p "$d/etc-libvirt" "$d/var-lib-libvirt" "$d/log" "$d/cache"
  [ -f "$d/host_uuid" ] || cat /proc/sys/kernel/random/uuid >"$d/host_uuid"
  # QEMU's capabilities as this machine's libvirtd cached them (same binaries, same
  # cache key): the host's libvirtd starts without probing QEMU again. libvirt
  # re-probes by itself when the key does not match.
  if [ -d /var/cache/libvirt/qemu/capabilities ] && [ ! -d "$d/cache/qemu/capabilities" ]; then
    mkdir -p "$d/cache/qemu/capabilities"
    cp -p /var/cache/libvirt/qemu/capabilities/*.xml "$d/cache/qemu/capabilities/" 2>/dev/null || true
  fi
  # libvirtd.conf: its own host UUID (libvirt refuses to migrate between hosts with one UUID).
  cat >"$d/etc-libvirt/libvirtd.conf" <<EOF
# nubo lab host $h (scripts/lab.sh)
host_uuid = "$(cat "$d/host_uuid")"
listen_tls = 0
listen_tcp = 0
unix_sock_group = "root"
unix_sock_rw_perms = "0770"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  # qemu.conf as scripts/libvirtd.sh has it (root, no security driver). No cgroups: the
  # hosts share this machine's cgroup tree, where two daemons would make the same
  # machine/qemu-ID-NAME group for one guest during a migration.
  cat >"$d/etc-libvirt/qemu.conf" <<EOF
# nubo lab host $h (scripts/lab.sh)
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
vnc_listen = "$(addr_of "$h")"
migration_address = "$(addr_of "$h")"
EOF
  : >"$d/etc-libvirt/virtlogd.conf"
  [ -f "$d/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N "" -C "$h" -f "$d/ssh_host_ed25519_key"
  cat >"$d/sshd_config" <<EOF
# nubo lab host $h (scripts/lab.sh): key-only, on the host's own address
ListenAddress $(addr_of "$h"):22
HostKey $d/ssh_host_ed25519_key
PidFile /run/sshd.pid
AuthorizedKeysFile /root/.ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
EOF
}

write_known_hosts() {
  local h
  # Names of the lab's machines, the /etc/hosts of every host.
  { echo "127.0.0.1 localhost"; echo "$ROOT_ADDR nubo"; echo "$STORE_ADDR labstore"
    for h in $(hosts); do echo "$(addr_of "$h") $h"; done; } >"$LAB/etc-hosts"  # in place: bind-mounted
  for h in $(hosts); do
    echo "$(addr_of "$h") $(cut -d' ' -f1,2 "$(hostdir "$h")/ssh_host_ed25519_key.pub")"
  done >"$LAB/ssh/known_hosts.new"
  mv "$LAB/ssh/known_hosts.new" "$LAB/ssh/known_hosts"
}

# A network namespace with its eth0 cabled to the lab bridge (a veth pair: $link on this
# side), lo up; kept as it is when it already exists.
plug_netns() {
  local ns=$1 link=$2
  [ -e "/run/netns/$ns" ] || ip netns add "$ns"
  if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
    ip link del "$link" 2>/dev/null || true
    ip link add "$link" type veth peer name eth0 netns "$ns"
  fi
  ip link set "$link" master "$BRIDGE"
  ip link set "$link" up
  ip -n "$ns" link set lo up
}

# The host's network: eth0 (its link to the bridge) is a port of cloudbr0, which holds the
# host's address, as on a CloudStack KVM host; cloudbr0 is the traffic label guests' NICs
# and VXLAN segments use.
make_netns() {
  local h=$1 ns; ns=$(netns_of "$h")
  plug_netns "$ns" "$(veth_of "$h")"
  ip -n "$ns" link show cloudbr0 >/dev/null 2>&1 || ip -n "$ns" link add cloudbr0 type bridge
  # A fixed MAC, as a real host's NIC keeps across reboots: after `recover` this machine's ARP
  # entry for the host is still right (a new random MAC left it pointing nowhere for ~30 s).
  ip -n "$ns" link set cloudbr0 address "$(printf '02:4e:4c:%02x:00:%02x' "${ID:-0}" "$(index_of "$h")")"
  ip -n "$ns" link set eth0 master cloudbr0
  ip -n "$ns" addr replace "$(addr_of "$h")/24" dev cloudbr0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set cloudbr0 up
}

# The host's mount and UTS namespaces, persisted as bind mounts of their nsfs files in
# $LAB/ns. Inside: its own /run (a tmpfs: gone at each boot, as on a real host), /sys
# remounted for its network namespace (cgroups kept), its libvirt directories, /root/.ssh
# and the shared primary storage.
make_mountns() {
  local h=$1 d; d=$(hostdir "$h")
  mountpoint -q "$LAB/ns/$h.mnt" && mountpoint -q "$LAB/ns/$h.uts" && return 0
  umount "$LAB/ns/$h.mnt" 2>/dev/null || true
  umount "$LAB/ns/$h.uts" 2>/dev/null || true
  touch "$LAB/ns/$h.mnt" "$LAB/ns/$h.uts"
  mkdir -p /root/.ssh
  nsenter --net="/run/netns/$(netns_of "$h")" -- \
    unshare --mount="$LAB/ns/$h.mnt" --uts="$LAB/ns/$h.uts" --propagation private -- \
    /bin/sh -euc '
      h=$1 d=$2 lab=$3 storage=$4 gluster=$5
      hostname "$h"
      # Not the lab machinery seen from this machine: the namespace files of the other hosts
      # (they would keep those namespaces alive) and the storage mount of this machine.
      umount -l "$lab/ns" 2>/dev/null || true
      ! mountpoint -q "$lab/primary" || umount -l "$lab/primary"
      mount -t tmpfs -o mode=0755 lab-run /run
      mkdir -p /run/libvirt /run/sshd /run/lock /run/.cgroup
      mount --rbind /sys/fs/cgroup /run/.cgroup
      umount -l /sys
      mount -t sysfs sysfs /sys
      mount --move /run/.cgroup /sys/fs/cgroup
      rmdir /run/.cgroup
      mount --bind "$d/etc-libvirt" /etc/libvirt
      mount --bind "$d/var-lib-libvirt" /var/lib/libvirt
      mount --bind "$d/log" /var/log/libvirt
      mount --bind "$d/cache" /var/cache/libvirt
      mount --bind "$lab/ssh" /root/.ssh
      mount --bind "$lab/etc-hosts" /etc/hosts
      mount -t tmpfs -o mode=0755 lab-mnt /mnt
      mkdir -p "$storage"
      # Without GlusterFS: the shared directory itself (boot mounts the volume otherwise).
      [ "$gluster" = 1 ] || mount --bind "$lab/primary" "$storage"
    ' sh "$h" "$d" "$LAB" "$STORAGE_PATH" "$(have_gluster && echo 1 || echo 0)" 9>&-
}

wait_libvirtd() {
  local h=$1 i
  for i in $(seq 1 300); do  # up to 60 s on a busy machine; returns as soon as it answers
    libvirtd_answers "$h" && return 0
    sleep 0.2
  done
  return 1
}

run_hooks() {
  local h=$1 dir f
  local dirs=("$HERE/lab.d")
  IFS=: read -r -a extra <<<"${NUBO_LAB_HOOKS:-}"
  dirs+=("${extra[@]}")
  for dir in "${dirs[@]}"; do
    [ -n "$dir" ] && [ -d "$dir" ] || continue
    for f in "$dir"/*; do
      [ -f "$f" ] && [ -x "$f" ] || continue
      LAB_HOST=$h LAB_INDEX=$(index_of "$h") LAB_ADDR=$(addr_of "$h") LAB_DIR=$LAB \
        LAB_HOST_DIR=$(hostdir "$h") LAB_STORAGE_PATH=$STORAGE_PATH LAB_BRIDGE_ADDR=$ROOT_ADDR \
        in_host "$h" "$f" || log "hook $f failed on $h"
    done
  done
}

# --- the storage node ----------------------------------------------------------
# A GlusterFS server (glusterd, one volume "primary" on one brick) in namespaces of its own
# at $STORE_ADDR, the lab's "storage box". Each host mounts the volume with its own FUSE
# client at $STORAGE_PATH; libvirt counts fuse.glusterfs as shared storage, so a live
# migration with the disks left in place is allowed (on a plain directory libvirt refuses
# it: "Migration without shared storage is unsafe"). This machine mounts it too, at
# $LAB/primary, to look inside.

have_gluster() { [ -x /usr/sbin/glusterd ] && [ -x /usr/sbin/gluster ] && command -v mount.glusterfs >/dev/null; }

in_store() {
  nsenter --net="/run/netns/$(netns_of store)" --mount="$LAB/ns/store.mnt" --uts="$LAB/ns/store.uts" -- "$@" 9>&-
}

boot_store() {
  have_gluster || return 0
  local d=$LAB/store ns link i; ns=$(netns_of store); link=$(veth_of store)
  mkdir -p "$d/glusterd" "$d/log" "$d/brick"
  if [ ! -e "$d/glusterd/.seeded" ]; then  # the package's hook scripts and option groups
    cp -a /var/lib/glusterd/. "$d/glusterd/" 2>/dev/null || true
    touch "$d/glusterd/.seeded"
  fi
  plug_netns "$ns" "$link"
  ip -n "$ns" addr replace "$STORE_ADDR/24" dev eth0
  ip -n "$ns" link set eth0 up
  if ! { mountpoint -q "$LAB/ns/store.mnt" && mountpoint -q "$LAB/ns/store.uts"; }; then
    umount "$LAB/ns/store.mnt" "$LAB/ns/store.uts" 2>/dev/null || true
    touch "$LAB/ns/store.mnt" "$LAB/ns/store.uts"
    nsenter --net="/run/netns/$ns" -- \
      unshare --mount="$LAB/ns/store.mnt" --uts="$LAB/ns/store.uts" --propagation private -- \
      /bin/sh -euc '
        hostname labstore
        umount -l "$2/ns" 2>/dev/null || true
        mount -t tmpfs -o mode=0755 lab-run /run
        mkdir -p /run/lock /var/log/glusterfs
        mount --bind "$1/glusterd" /var/lib/glusterd
        mount --bind "$1/log" /var/log/glusterfs
        mount --bind "$2/etc-hosts" /etc/hosts
      ' sh "$d" "$LAB" 9>&-
  fi
  in_store sh -c '[ -e /run/glusterd.pid ] && kill -0 "$(cat /run/glusterd.pid)" 2>/dev/null' \
    || in_store /usr/sbin/glusterd -p /run/glusterd.pid
  for i in $(seq 1 150); do  # glusterd answers within a few seconds
    in_store gluster --mode=script volume list >/dev/null 2>&1 && break
    sleep 0.2
  done
  if ! in_store gluster --mode=script volume info primary >/dev/null 2>&1; then
    in_store gluster --mode=script volume create primary "$STORE_ADDR:$d/brick" force >/dev/null \
      || die "cannot create the GlusterFS volume (see $d/log)"
    # A client that vanishes (a host's power cut: no FIN, no RST) is noticed by the brick
    # within seconds, not GlusterFS's default 42 s, and its locks (QEMU's image locks) are
    # released: a lease as short as NFS's could be made, so HA can restart the host's guests
    # elsewhere soon. Those are the server.* options. network.ping-timeout is the other way:
    # how long a client waits for a brick's answer before it drops the connection (every call
    # then fails with ENOTCONN until it reconnects). At 5 s a brick starved of CPU by the
    # emulated guests and a parallel test run was dropped by this machine's mount (CI: the
    # HA test, then "Transport endpoint is not connected"); 20 s rides that out.
    local kv
    for kv in "network.ping-timeout 20" "server.keepalive-time 2" "server.keepalive-interval 1" \
              "server.keepalive-count 3" "server.tcp-user-timeout 5"; do
      # shellcheck disable=SC2086
      in_store gluster --mode=script volume set primary $kv >/dev/null || die "cannot set $kv on the volume"
    done
    in_store gluster --mode=script volume start primary >/dev/null || die "cannot start the GlusterFS volume"
  fi
  for i in $(seq 1 150); do  # the brick comes up a moment after glusterd
    mountpoint -q "$LAB/primary" && return 0
    mount -t glusterfs -o log-file="$d/log/client-root.log" "$STORE_ADDR:/primary" "$LAB/primary" 2>/dev/null 9>&- \
      && mountpoint -q "$LAB/primary" && return 0
    sleep 0.2
  done
  die "cannot mount the GlusterFS volume $STORE_ADDR:/primary (see $d/log)"
}

boot() {
  local h=$1
  make_netns "$h"
  make_mountns "$h"
  if have_gluster; then
    in_host "$h" sh -c 'mountpoint -q "$1" || mount -t glusterfs -o log-file=/var/log/libvirt/glusterfs-primary.log "$2:/primary" "$1"' \
      sh "$STORAGE_PATH" "$STORE_ADDR" || die "$h: cannot mount the shared primary storage $STORE_ADDR:/primary"
  fi
  in_host "$h" sh -c '[ -e /run/virtlogd.pid ] && kill -0 "$(cat /run/virtlogd.pid)" 2>/dev/null \
    || /usr/sbin/virtlogd -d'
  libvirtd_answers "$h" || in_host "$h" /usr/sbin/libvirtd -d
  wait_libvirtd "$h" || die "$h: libvirtd did not answer; see $(hostdir "$h")/log/libvirtd.log"
  if ! in_host "$h" sh -c '[ -e /run/sshd.pid ] && kill -0 "$(cat /run/sshd.pid)" 2>/dev/null'; then
    in_host "$h" /usr/sbin/sshd -f "$(hostdir "$h")/sshd_config"
  fi
  run_hooks "$h"
}

# The Hyper-V lab host: the WS-Management double over HTTPS, a process of this machine on the
# lab bridge's address (each lab its own), speaking WinRM; it runs no guests.
hyperv_url() { echo "https://$ROOT_ADDR:$HYPERV_PORT/wsman"; }
hyperv_alive() {
  local pid
  pid=$(cat "$LAB/hyperv/pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null
}

start_hyperv() {
  local d=$LAB/hyperv i
  hyperv_alive && return 0
  if [ ! -x "$PYTHON" ]; then  # the libvirt hosts do not need it: say so and go on
    log "no $PYTHON: the Hyper-V lab host is not started (make setup, or set NUBO_LAB_PYTHON)"
    return 0
  fi
  mkdir -p "$d"
  (cd "$HERE/.." && exec setsid "$PYTHON" -m tests.hyperv.wsman_double --dir "$d" --listen "$ROOT_ADDR" --port "$HYPERV_PORT" \
     >"$d/double.log" 2>&1 </dev/null 9>&-) &
  echo $! >"$d/pid"
  for i in $(seq 1 300); do  # until it says it listens (or has died)
    grep -q '^READY ' "$d/double.log" 2>/dev/null && return 0
    hyperv_alive || break
    sleep 0.2
  done
  die "the Hyper-V lab host did not start: $(tail -3 "$d/double.log" 2>/dev/null)"
}

stop_hyperv() {
  local pid i
  pid=$(cat "$LAB/hyperv/pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$LAB/hyperv/pid"
}

# --- tear-down ---------------------------------------------------------------

ns_inode() { stat -L -c %i "$1" 2>/dev/null || true; }

# Every process in one of the host's namespaces (network, mount or UTS: a router
# namespace the host made still shares its UTS namespace).
host_pids() {
  local h=$1 net mnt uts
  net=$(ns_inode "/run/netns/$(netns_of "$h")")
  mnt=$(mountpoint -q "$LAB/ns/$h.mnt" 2>/dev/null && ns_inode "$LAB/ns/$h.mnt" || true)
  uts=$(mountpoint -q "$LAB/ns/$h.uts" 2>/dev/null && ns_inode "$LAB/ns/$h.uts" || true)
  # One stat over every process's namespace links (zombies have none and are skipped).
  { stat -L -c '%n %i' /proc/[0-9]*/ns/net /proc/[0-9]*/ns/mnt /proc/[0-9]*/ns/uts 2>/dev/null || true; } \
    | awk -v self=$$ -v net="${net:--}" -v mnt="${mnt:--}" -v uts="${uts:--}" '{
        split($1, p, "/"); kind = p[5]
        if (p[3] != self && ((kind == "net" && $2 == net) || (kind == "mnt" && $2 == mnt) || (kind == "uts" && $2 == uts)))
          print p[3]
      }' | sort -u
}

kill_host() {
  local h=$1 i pids
  for i in $(seq 1 50); do
    pids=$(host_pids "$h")
    [ -z "$pids" ] && return 0
    kill -9 $pids 2>/dev/null || true
    sleep 0.1
  done
  log "$h: processes still alive: $(host_pids "$h" | tr '\n' ' ')"
}

drop_ns() {
  local h=$1
  umount "$LAB/ns/$h.mnt" 2>/dev/null || true
  umount "$LAB/ns/$h.uts" 2>/dev/null || true
  rm -f "$LAB/ns/$h.mnt" "$LAB/ns/$h.uts"
  ip link del "$(veth_of "$h")" 2>/dev/null || true
  ip netns del "$(netns_of "$h")" 2>/dev/null || true
}

# --- commands ----------------------------------------------------------------

cmd_up() {
  local n=${1:-2} i h
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up N: N is 1..200"
  lock
  ensure_base
  for i in $(seq 1 "$n"); do
    h=lab$i
    mkdir -p "$(hostdir "$h")"
    write_configs "$h"
  done
  write_known_hosts
  boot_store
  # The hosts boot side by side, as real ones would.
  local pids=() failed=0 p
  for h in $(hosts); do
    if [ -e "$(hostdir "$h")/failed" ]; then
      log "$h is failed (scripts/lab.sh recover $h brings it back)"; continue
    fi
    boot "$h" &
    pids+=("$!")
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  start_hyperv
  cmd_list
  [ $failed = 0 ] || die "a host did not boot (see above)"
}

cmd_list() {
  local h
  for h in $(hosts); do
    echo "$h $(uri_of "$h") $(state_of "$h")"
  done
  if [ -f "$LAB/hyperv/fingerprint" ]; then
    echo "hyperv $(hyperv_url) $(hyperv_alive && echo up || echo down) $(cat "$LAB/hyperv/fingerprint")"
  fi
  [ -d "$LAB/hosts" ] && echo "storage file://$STORAGE_PATH"
  return 0
}

json_str() { python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))'; }

cmd_json() {
  local h first=1
  [ -d "$LAB/hosts" ] || die "no lab (scripts/lab.sh up N)"
  printf '{"dir": "%s", "bridge": "%s", "bridge_address": "%s", "storage_url": "file://%s",\n' \
    "$LAB" "$BRIDGE" "$ROOT_ADDR" "$STORAGE_PATH"
  printf ' "storage_path": "%s", "storage_dir": "%s/primary", "storage_kind": "%s", "storage_address": "%s",\n' \
    "$STORAGE_PATH" "$LAB" "$(have_gluster && echo glusterfs || echo directory)" "$STORE_ADDR"
  printf ' "ssh_private_key_file": "%s/ssh/id_ed25519", "ssh_private_key": %s,\n' "$LAB" \
    "$(json_str <"$LAB/ssh/id_ed25519")"
  printf ' "hosts": ['
  for h in $(hosts); do
    [ $first = 1 ] || printf ','
    first=0
    printf '\n  {"name": "%s", "address": "%s", "uri": "%s", "state": "%s", "netns": "%s", "link": "%s",' \
      "$h" "$(addr_of "$h")" "$(uri_of "$h")" "$(state_of "$h")" "$(netns_of "$h")" "$(veth_of "$h")"
    printf ' "host_uuid": "%s", "ssh_host_key": %s}' "$(cat "$(hostdir "$h")/host_uuid")" \
      "$(printf %s "$(cut -d' ' -f1,2 "$(hostdir "$h")/ssh_host_ed25519_key.pub")" | json_str)"
  done
  printf '\n]'
  if [ -f "$LAB/hyperv/fingerprint" ]; then
    printf ',\n "hyperv": {"url": "%s", "address": "%s", "port": %s, "state": "%s", "username": "hvadmin",' \
      "$(hyperv_url)" "$ROOT_ADDR" "$HYPERV_PORT" "$(hyperv_alive && echo up || echo down)"
    printf ' "password": "hv-pass", "transport": "ssl", "fingerprint": "%s"}' "$(cat "$LAB/hyperv/fingerprint")"
  fi
  printf '}\n'
}

cmd_fail() {
  local h; h=$(host_name "$1")
  lock
  touch "$(hostdir "$h")/failed"
  # Link first: from this instant nobody reaches the host; then every process dies at once.
  ip link set "$(veth_of "$h")" down 2>/dev/null || true
  kill_host "$h"
  log "$h failed (power cut): link down, every process killed"
}

cmd_recover() {
  local h; h=$(host_name "$1")
  lock
  # A reboot: whatever still runs dies, the volatile namespaces (its /run, its network
  # devices) are made anew; /etc/libvirt and /var/lib/libvirt are its disk and stay.
  kill_host "$h"
  drop_ns "$h"
  rm -f "$(hostdir "$h")/failed"
  ensure_base
  boot_store
  boot "$h"
  log "$h recovered"
}

cmd_exec() {
  local h; h=$(host_name "$1"); shift
  [ $# -gt 0 ] || die "exec HOST COMMAND..."
  ns_alive "$h" || die "$h is not running"
  exec nsenter --net="/run/netns/$(netns_of "$h")" --mount="$LAB/ns/$h.mnt" --uts="$LAB/ns/$h.uts" -- "$@"
}

cmd_down() {
  local h ns
  if [ -d "$LAB" ]; then
    lock
    stop_hyperv
    umount "$LAB/primary" 2>/dev/null || umount -l "$LAB/primary" 2>/dev/null || true
    for h in $(hosts) store; do
      kill_host "$h"
      drop_ns "$h"
    done
  fi
  # Leftovers of a lab whose state directory went away.
  for ns in $(ip netns list 2>/dev/null | awk -v p="$NS_PREFIX" 'index($1, p) == 1 && substr($1, length(p) + 1) ~ /^(lab[0-9]+|store)$/ {print $1}'); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  if [ -d "$LAB" ]; then
    umount "$LAB"/ns/* 2>/dev/null || true
    umount "$LAB/ns" 2>/dev/null || true
    # Never delete through a mount that is still there.
    if findmnt -rn -o TARGET | grep -q "^$LAB/"; then
      die "mounts remain under $LAB: $(findmnt -rn -o TARGET | grep "^$LAB/" | tr '\n' ' ')"
    fi
    rm -rf "$LAB"
  fi
}

case "${1:-}" in
  up|fail|recover|down)
    if [ -z "${NUBO_LAB_LOCKED:-}" ]; then
      mkdir -p "$LAB"
      NUBO_LAB_LOCKED=1 exec flock -o "$LAB/.lock" "$0" "$@"
    fi ;;
esac
case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  list) cmd_list ;;
  json) cmd_json ;;
  fail) [ $# -eq 2 ] || die "usage: lab.sh fail HOST"; cmd_fail "$2" ;;
  recover) [ $# -eq 2 ] || die "usage: lab.sh recover HOST"; cmd_recover "$2" ;;
  exec) shift; [ $# -ge 1 ] || die "usage: lab.sh exec HOST COMMAND..."; cmd_exec "$@" ;;
  down) cmd_down ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
