"""The virtual router on a Linux host: a dumb executor that turns a RouterSpec into a running
router through a Channel (docs/networking.md). No database, no Flask.

One router = one network namespace and what runs in it:

| thing | name |
|---|---|
| namespace | `nr-<key>` |
| guest veth (in the namespace; holds guest_ip, guest_mac) | `vr<key>g` |
| its peer on the host, joined to the guest segment's bridge | `vh<key>g` |
| public veth (in the namespace; holds every public IP, public_mac) | `vr<key>p` |
| its peer on the host, joined to the public segment's bridge | `vh<key>p` |
| directory (files below, pid files, logs) | `/var/lib/nubo/routers/<key>/` |

The key is 1-12 characters [0-9a-z] (specs.router_key gives 10 hex digits), so every device
name fits Linux's 15 characters; `vr`/`vh` never collide with the VMs' `vn<10 hex>` taps.

Files in the directory: dnsmasq.conf, dhcp-hosts, dhcp-opts, addn-hosts (dnsmasq.py), rules.nft
(nft.py), metadata.json and metadata.py (the agent), spec.json (the applied spec, canonical
JSON) and config-hash (its sha256, written last: a failed apply never claims the new hash).

Processes: dnsmasq (it daemonizes itself; pid file dnsmasq.pid) and the metadata server
(`python3 metadata.py --daemon`, pid file metadata.pid), both started with `ip netns exec`,
detached from Nubo: restarting Nubo leaves them running. A pid counts as ours only when
/proc/<pid>/cmdline names this router's files, so a reused pid is never signalled.

Every command is an argv list; every value that reaches a file or a command is validated
first (checks.py) and bad input raises ValueError before anything is touched on the host.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import ipaddress
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import checks, dnsmasq, nft
from .channel import Channel, ChannelError
from .specs import RouterFacts, RouterSpec, SegmentSpec

ROOT = "/var/lib/nubo/routers"
PYTHON = "/usr/bin/python3"  # the host's system Python runs the metadata agent
METADATA_PORT = 80
STOP_WAIT = 5.0  # seconds a process gets to end on SIGTERM before SIGKILL
START_WAIT = 10.0

NFT_FILE = "rules.nft"
META_JSON = "metadata.json"
META_PY = "metadata.py"
META_PID = "metadata.pid"
META_LOG = "metadata.log"
SPEC_JSON = "spec.json"
HASH_FILE = "config-hash"


@dataclass(frozen=True)
class Names:
    key: str
    ns: str
    guest_dev: str
    guest_peer: str
    public_dev: str
    public_peer: str
    dir: str

    def path(self, name: str) -> str:
        return f"{self.dir}/{name}"


def names(key: str) -> Names:
    k = checks.key(key)
    return Names(k, f"nr-{k}", f"vr{k}g", f"vh{k}g", f"vr{k}p", f"vh{k}p", f"{ROOT}/{k}")


def canonical(spec: RouterSpec) -> str:
    return json.dumps(dataclasses.asdict(spec), sort_keys=True, separators=(",", ":"))


def config_hash(spec: RouterSpec) -> str:
    """sha256 of the spec's canonical JSON: what status() reports after apply(spec)."""
    return hashlib.sha256(canonical(spec).encode()).hexdigest()


def _agent_source() -> str:
    return importlib.resources.files("app.network.agent").joinpath("metadata.py").read_text()


# --- rendering and validation (nothing touches the host) ---------------------------------

def _metadata_json(spec: RouterSpec) -> str:
    out: dict[str, dict] = {}
    for m in spec.metadata:
        ip = checks.ipv4(m.ip, "metadata IP")
        if ip in out:
            raise ValueError(f"duplicate metadata for {ip}")
        items = {}
        for k, v in m.items:
            checks.token(k, "meta-data item name")
            if not isinstance(v, str):
                raise ValueError(f"invalid meta-data value for {k!r}")
            items[k.lower()] = v
        keys = []
        for pk in m.public_keys:
            if not isinstance(pk, str) or "\n" in pk.strip() or not pk.strip():
                raise ValueError("invalid public key: one non-empty line each")
            keys.append(pk.strip())
        if m.user_data is not None and not isinstance(m.user_data, str):
            raise ValueError("invalid user data: text expected")
        out[ip] = {
            "instance-id": checks.token(m.instance_id, "instance id"),
            "local-hostname": checks.label(m.local_hostname),
            "user-data": m.user_data,
            "public-keys": keys,
            "items": items,
        }
    return json.dumps(out, sort_keys=True, indent=1) + "\n"


def _validate(spec: RouterSpec) -> None:
    """Everything not already checked by the renderers."""
    net = checks.network(spec.guest_cidr, "guest CIDR")
    gip = ipaddress.IPv4Address(checks.ipv4(spec.guest_ip, "guest IP"))
    if gip not in net:
        raise ValueError(f"guest IP {gip} is outside {net}")
    checks.mac(spec.guest_mac)
    checks.mtu(spec.mtu)
    if spec.public is not None:
        if not spec.public_ips:
            raise ValueError("a public side needs at least one public IP")
        checks.mac(spec.public_mac or "")
        checks.mtu(spec.public.mtu)
        addrs = [checks.interface(a, "public IP") for a in spec.public_ips]
        if len({a.ip for a in addrs}) != len(addrs):
            raise ValueError("duplicate public IP")
        if spec.public_gateway is not None:
            checks.ipv4(spec.public_gateway, "public gateway")
        if spec.source_nat_ip is not None:
            s = ipaddress.IPv4Address(checks.ipv4(spec.source_nat_ip, "source NAT IP"))
            if s not in {a.ip for a in addrs}:
                raise ValueError(f"source NAT IP {s} is not one of the public IPs")
        for r in spec.nat:
            if ipaddress.IPv4Address(checks.ipv4(r.public_ip)) not in {a.ip for a in addrs}:
                raise ValueError(f"NAT rule on {r.public_ip}, which is not one of the public IPs")
    elif spec.public_ips or spec.nat or spec.source_nat_ip:
        raise ValueError("public IPs and NAT need a public side")


def render(spec: RouterSpec) -> dict[str, str]:
    """Every file of the router directory (name -> text); raises ValueError on bad input."""
    n = names(spec.key)
    _validate(spec)
    files = {
        dnsmasq.CONF: dnsmasq.render_conf(spec, n.dir, n.guest_dev),
        dnsmasq.HOSTS: dnsmasq.render_hosts(spec),
        dnsmasq.OPTS: dnsmasq.render_opts(spec),
        dnsmasq.ADDN_HOSTS: dnsmasq.render_addn_hosts(spec),
        NFT_FILE: nft.render(spec, n.guest_dev, n.public_dev if spec.public else None),
        META_JSON: _metadata_json(spec),
        META_PY: _agent_source(),
        SPEC_JSON: canonical(spec) + "\n",
    }
    return files


# --- host state ------------------------------------------------------------------------

def _ns_exists(ch: Channel, ns: str) -> bool:
    out = ch.run(["ip", "netns", "list"]).stdout
    return any(line.split()[0] == ns for line in out.splitlines() if line.strip())


def _link(ch: Channel, dev: str, ns: str | None = None) -> dict | None:
    argv = ["ip", "-j"] + (["-n", ns] if ns else []) + ["link", "show", "dev", dev]
    r = ch.run(argv, check=False)
    if r.returncode != 0:
        return None
    data = json.loads(r.stdout or "[]")
    return data[0] if data else None


def _addrs(ch: Channel, ns: str, dev: str) -> list[str]:
    r = ch.run(["ip", "-j", "-n", ns, "-4", "addr", "show", "dev", dev])
    out = []
    for link in json.loads(r.stdout or "[]"):
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                out.append(f"{a['local']}/{a['prefixlen']}")
    return out


def _cmdline(ch: Channel, pid: int) -> list[str]:
    try:
        raw = ch.read_file(f"/proc/{pid}/cmdline")
    except (OSError, ChannelError):
        return []
    return [p for p in (raw or "").split("\0") if p]


def _pid(ch: Channel, path: str) -> int | None:
    try:
        text = ch.read_file(path)
    except (OSError, ChannelError):
        return None
    try:
        pid = int((text or "").strip())
    except ValueError:
        return None
    return pid if pid > 1 else None


def _dnsmasq_pid(ch: Channel, n: Names) -> int | None:
    """The pid of this router's dnsmasq if it runs (its cmdline names this router's conf)."""
    pid = _pid(ch, n.path(dnsmasq.PID))
    if pid is None:
        return None
    argv = _cmdline(ch, pid)
    if argv and argv[0].rsplit("/", 1)[-1] == "dnsmasq" and f"--conf-file={n.path(dnsmasq.CONF)}" in argv:
        return pid
    return None


def _metadata_pid(ch: Channel, n: Names) -> int | None:
    pid = _pid(ch, n.path(META_PID))
    if pid is None:
        return None
    argv = _cmdline(ch, pid)
    if n.path(META_PY) in argv and "--dir" in argv:
        return pid
    return None


def _stop(ch: Channel, pid: int | None, still_ours: Callable[[], int | None]) -> None:
    """SIGTERM, wait for it to end (polling), then SIGKILL."""
    if pid is None:
        return
    ch.run(["kill", "-TERM", str(pid)], check=False)
    deadline = time.monotonic() + STOP_WAIT
    while time.monotonic() < deadline:
        if still_ours() != pid:
            return
        time.sleep(0.02)
    ch.run(["kill", "-KILL", str(pid)], check=False)
    deadline = time.monotonic() + STOP_WAIT
    while time.monotonic() < deadline and still_ours() == pid:
        time.sleep(0.02)


def _wait_for(what: str, probe: Callable[[], int | None]) -> int:
    deadline = time.monotonic() + START_WAIT
    while True:
        pid = probe()
        if pid is not None:
            return pid
        if time.monotonic() > deadline:
            raise ChannelError(f"{what} did not start")
        time.sleep(0.02)


def _start_dnsmasq(ch: Channel, n: Names) -> int:
    ch.run(["rm", "-f", "--", n.path(dnsmasq.PID)])
    # dnsmasq checks its configuration, binds its sockets, writes its pid file and then
    # detaches (the foreground process exits): an error is reported here, as the exit code.
    ch.run(["ip", "netns", "exec", n.ns, "dnsmasq", f"--conf-file={n.path(dnsmasq.CONF)}"])
    return _wait_for("dnsmasq", lambda: _dnsmasq_pid(ch, n))


def _start_metadata(ch: Channel, n: Names, guest_ip: str) -> int:
    ch.run(["rm", "-f", "--", n.path(META_PID)])
    # The agent daemonizes itself and returns once it listens (or with the bind error).
    ch.run(["ip", "netns", "exec", n.ns, PYTHON, n.path(META_PY), "--dir", n.dir,
            "--bind", checks.ipv4(guest_ip), "--port", str(METADATA_PORT), "--daemon",
            "--pidfile", n.path(META_PID), "--log", n.path(META_LOG)])
    return _wait_for("metadata server", lambda: _metadata_pid(ch, n))


def _sysctl(ch: Channel, n: Names) -> None:
    ch.run(["ip", "netns", "exec", n.ns, "sysctl", "-q", "-w",
            "net.ipv4.ip_forward=1",
            # removing the first address of a subnet keeps the others (public IPs)
            "net.ipv4.conf.all.promote_secondaries=1",
            "net.ipv4.conf.default.promote_secondaries=1",
            # the router is IPv4 only: no IPv6 addresses, so nothing to filter for IPv6
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1"])


def _ensure_veth(ch: Channel, n: Names, dev: str, peer: str, bridge: str, mac: str, mtu: int | None) -> None:
    """A veth pair: `dev` in the namespace with `mac`, `peer` on the host in `bridge`, both up."""
    checks.device(bridge, "bridge")
    if _link(ch, dev, n.ns) is None:
        if _link(ch, peer) is not None:  # a leftover half: start again
            ch.run(["ip", "link", "del", "dev", peer])
        ch.run(["ip", "link", "add", "dev", peer, "type", "veth", "peer", "name", dev, "netns", n.ns])
    link = _link(ch, dev, n.ns) or {}
    if link.get("address", "").lower() != mac:
        ch.run(["ip", "-n", n.ns, "link", "set", "dev", dev, "address", mac])
    if mtu is not None:
        ch.run(["ip", "-n", n.ns, "link", "set", "dev", dev, "mtu", str(mtu)])
        ch.run(["ip", "link", "set", "dev", peer, "mtu", str(mtu)])
    host = _link(ch, peer) or {}
    if host.get("master") != bridge:
        ch.run(["ip", "link", "set", "dev", peer, "master", bridge])
    ch.run(["ip", "link", "set", "dev", peer, "up"])
    ch.run(["ip", "-n", n.ns, "link", "set", "dev", dev, "up"])


def _sync_addrs(ch: Channel, n: Names, dev: str, want: list[str]) -> None:
    """Exactly `want` on `dev`: the missing ones added first, then the others removed."""
    have = _addrs(ch, n.ns, dev)
    for a in want:
        if a not in have:
            ch.run(["ip", "-n", n.ns, "addr", "add", a, "dev", dev])
    for a in have:
        if a not in want:
            ch.run(["ip", "-n", n.ns, "addr", "del", a, "dev", dev])


def _remove_veth(ch: Channel, n: Names, dev: str, peer: str) -> None:
    if _link(ch, peer) is not None:
        ch.run(["ip", "link", "del", "dev", peer], check=False)
    if _ns_exists(ch, n.ns) and _link(ch, dev, n.ns) is not None:
        ch.run(["ip", "-n", n.ns, "link", "del", "dev", dev], check=False)


def _write_changed(ch: Channel, n: Names, files: dict[str, str]) -> set[str]:
    """Write the files whose text differs from what is on the host; the names written."""
    changed = set()
    for name, text in files.items():
        if ch.read_file(n.path(name)) != text:
            mode = 0o600 if name in (META_JSON, SPEC_JSON) else 0o644  # user data stays root's
            ch.write_file(n.path(name), text, mode)
            changed.add(name)
    return changed


# --- the steps -------------------------------------------------------------------------

def apply(ch: Channel, spec: RouterSpec, bridge_of: Callable[[SegmentSpec], str]) -> RouterFacts:
    """Make the router exactly `spec` (idempotent). A router built by this call is removed
    again if a step fails; a router that existed is left as far as it got (the monitor
    re-applies it)."""
    files = render(spec)  # ValueError here: nothing was touched
    n = names(spec.key)
    guest_bridge = checks.device(bridge_of(spec.guest), "guest bridge")
    public_bridge = checks.device(bridge_of(spec.public), "public bridge") if spec.public else None
    created = not _ns_exists(ch, n.ns)
    try:
        if created:
            ch.run(["ip", "netns", "add", n.ns])
        ch.run(["ip", "-n", n.ns, "link", "set", "dev", "lo", "up"])
        _sysctl(ch, n)

        prefix = checks.network(spec.guest_cidr).prefixlen
        _ensure_veth(ch, n, n.guest_dev, n.guest_peer, guest_bridge, checks.mac(spec.guest_mac), spec.mtu)
        _sync_addrs(ch, n, n.guest_dev, [f"{spec.guest_ip}/{prefix}"])
        if spec.public is not None:
            _ensure_veth(ch, n, n.public_dev, n.public_peer, public_bridge,
                         checks.mac(spec.public_mac), spec.public.mtu)
            _sync_addrs(ch, n, n.public_dev, [str(checks.interface(a)) for a in spec.public_ips])
            if spec.public_gateway:
                ch.run(["ip", "-n", n.ns, "route", "replace", "default", "via", spec.public_gateway,
                        "dev", n.public_dev])
            else:
                ch.run(["ip", "-n", n.ns, "route", "del", "default"], check=False)
        else:
            _remove_veth(ch, n, n.public_dev, n.public_peer)
            if spec.gateway and spec.gateway != spec.guest_ip:
                # A Shared network's router reaches the upstream DNS through the network's gateway.
                ch.run(["ip", "-n", n.ns, "route", "replace", "default", "via", spec.gateway,
                        "dev", n.guest_dev])
            else:
                ch.run(["ip", "-n", n.ns, "route", "del", "default"], check=False)

        changed = _write_changed(ch, n, files)
        # The whole ruleset in one transaction, every time (it also repairs a flushed table).
        ch.run(["ip", "netns", "exec", n.ns, "nft", "-f", n.path(NFT_FILE)])

        pid = _dnsmasq_pid(ch, n)
        if pid is None:
            _start_dnsmasq(ch, n)
        elif dnsmasq.CONF in changed:
            _stop(ch, pid, lambda: _dnsmasq_pid(ch, n))
            _start_dnsmasq(ch, n)
        elif changed & {dnsmasq.HOSTS, dnsmasq.OPTS, dnsmasq.ADDN_HOSTS}:
            ch.run(["kill", "-HUP", str(pid)])  # rereads the hosts, options and addn-hosts files

        mpid = _metadata_pid(ch, n)
        running_on = _cmdline(ch, mpid) if mpid else []
        if mpid is None:
            _start_metadata(ch, n, spec.guest_ip)
        elif META_PY in changed or spec.guest_ip not in running_on:
            _stop(ch, mpid, lambda: _metadata_pid(ch, n))
            _start_metadata(ch, n, spec.guest_ip)
        # metadata.json needs nothing: the agent rereads it when its mtime changes.

        h = config_hash(spec)
        ch.write_file(n.path(HASH_FILE), h + "\n")
    except BaseException:
        if created:
            try:
                destroy(ch, spec.key)
            except Exception:  # the original error is the one to report
                pass
        raise
    return status(ch, spec.key)


def destroy(ch: Channel, key: str) -> None:
    """Remove the router: its processes, namespace (and so its veths), directory. Idempotent."""
    n = names(key)
    _stop(ch, _metadata_pid(ch, n), lambda: _metadata_pid(ch, n))
    _stop(ch, _dnsmasq_pid(ch, n), lambda: _dnsmasq_pid(ch, n))
    if _ns_exists(ch, n.ns):
        # Anything else still running in the namespace (a process whose pid file was lost).
        pids = [int(p) for p in ch.run(["ip", "netns", "pids", n.ns], check=False).stdout.split() if p.isdigit()]
        for pid in pids:
            ch.run(["kill", "-KILL", str(pid)], check=False)
    # Deleting the host-side peers removes both ends at once; a namespace's own devices go
    # with it, but asynchronously.
    for peer in (n.guest_peer, n.public_peer):
        if _link(ch, peer) is not None:
            ch.run(["ip", "link", "del", "dev", peer], check=False)
    if _ns_exists(ch, n.ns):
        ch.run(["ip", "netns", "delete", n.ns])
    ch.run(["rm", "-rf", "--", n.dir])


def status(ch: Channel, key: str) -> RouterFacts:
    n = names(key)
    exists = _ns_exists(ch, n.ns)
    dns = _dnsmasq_pid(ch, n) is not None
    meta = _metadata_pid(ch, n) is not None
    h = (ch.read_file(n.path(HASH_FILE)) or "").strip() or None
    problems = []
    if not exists:
        problems.append(f"namespace {n.ns} missing")
    if not dns:
        problems.append("dnsmasq not running")
    if not meta:
        problems.append("metadata server not running")
    return RouterFacts(exists=exists, dnsmasq=dns, metadata=meta, config_hash=h,
                       detail="; ".join(problems))


def restart(ch: Channel, key: str) -> RouterFacts:
    """Restart dnsmasq and the metadata server from the files of the last apply (rebootRouter),
    and reload the nftables rules."""
    n = names(key)
    text = ch.read_file(n.path(SPEC_JSON))
    if not _ns_exists(ch, n.ns) or text is None:
        raise ChannelError(f"router {key} is not on this host (namespace {n.ns} or {n.path(SPEC_JSON)} missing)")
    guest_ip = checks.ipv4(json.loads(text)["guest_ip"], "guest IP")
    _stop(ch, _metadata_pid(ch, n), lambda: _metadata_pid(ch, n))
    _stop(ch, _dnsmasq_pid(ch, n), lambda: _dnsmasq_pid(ch, n))
    ch.run(["ip", "netns", "exec", n.ns, "nft", "-f", n.path(NFT_FILE)])
    _start_dnsmasq(ch, n)
    _start_metadata(ch, n, guest_ip)
    return status(ch, key)
