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
JSON) and config-hash (its sha256, written last: a failed apply never claims the new hash;
"pending" while an apply changes the files, so the next one knows to restart the processes),
nft-hash (sha256 of the live `nft list ruleset` after the load: status() reports no
config_hash when the live rules differ, so the monitor re-applies).

Processes: dnsmasq (it daemonizes itself; pid file dnsmasq.pid) and the metadata server
(`python3 metadata.py --daemon`, pid file metadata.pid), both started with `ip netns exec`,
detached from Nubo: restarting Nubo leaves them running. They are found by `pgrep -f` on
this router's directory and count as ours only when their command line names this router's
files, so a stale pid file or a reused pid is never signalled.

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
PASSWORD_PORT = 8080  # CloudStack's VR password server, asked by cloud-init at boot
STOP_WAIT = 5.0  # seconds a process gets to end on SIGTERM before SIGKILL
START_WAIT = 10.0

NFT_FILE = "rules.nft"
META_JSON = "metadata.json"
META_PY = "metadata.py"
META_PID = "metadata.pid"
META_LOG = "metadata.log"
SPEC_JSON = "spec.json"
HASH_FILE = "config-hash"
PENDING = "pending\n"  # in HASH_FILE while an apply changes the files
NFT_HASH = "nft-hash"  # sha256 of `nft list ruleset` right after the load: status compares


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
        if m.password is not None:
            if not isinstance(m.password, str) or not m.password.isprintable() or not m.password:
                raise ValueError("invalid password")
            out[ip]["password"] = m.password
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
# Few round trips (a remote host is one SSH command each): the namespace's links and
# addresses come from one `ip -j addr show`, changes go in two `ip -batch -` runs (host side,
# namespace side), the files are compared by one `sha256sum`, the processes found by one
# `pgrep`.

def _ns_exists(ch: Channel, ns: str) -> bool:
    out = ch.run(["ip", "netns", "list"]).stdout
    return any(line.split()[0] == ns for line in out.splitlines() if line.strip())


def _ns_links(ch: Channel, ns: str) -> dict[str, dict]:
    """The namespace's links by name, each with its addr_info."""
    r = ch.run(["ip", "-j", "-n", ns, "addr", "show"])
    return {link["ifname"]: link for link in json.loads(r.stdout or "[]")}


def _inet(link: dict | None) -> list[str]:
    return [f"{a['local']}/{a['prefixlen']}" for a in (link or {}).get("addr_info", [])
            if a.get("family") == "inet"]


def _batch(ch: Channel, lines: list[str], ns: str | None = None) -> None:
    """Several `ip` commands in one process (each line: validated names and addresses only)."""
    if lines:
        ch.run(["ip"] + (["-n", ns] if ns else []) + ["-batch", "-"], input="\n".join(lines) + "\n")


@dataclass(frozen=True)
class _Procs:
    dnsmasq: int | None
    metadata: int | None
    metadata_bind: str | None = None  # the address the metadata server listens on


def _procs(ch: Channel, n: Names) -> _Procs:
    """This router's processes, recognised by their command lines (which name this router's
    files), so a stale pid file or a reused pid is never mistaken for them."""
    r = ch.run(["pgrep", "-a", "-f", "--", n.dir + "/"], check=False)
    dns = meta = bind = None
    for line in r.stdout.splitlines():
        pid_s, _, cmd = line.strip().partition(" ")
        argv = cmd.split()
        if not pid_s.isdigit() or not argv:
            continue
        prog = argv[0].rsplit("/", 1)[-1]
        if prog == "dnsmasq" and f"--conf-file={n.path(dnsmasq.CONF)}" in argv:
            dns = int(pid_s)
        elif prog.startswith("python") and n.path(META_PY) in argv and "--dir" in argv:
            meta = int(pid_s)
            bind = argv[argv.index("--bind") + 1] if "--bind" in argv[:-1] else None
    return _Procs(dns, meta, bind)


def _stop(ch: Channel, n: Names, which: str) -> None:
    """SIGTERM this router's `which` process, wait for it to end (polling), then SIGKILL."""
    pid = getattr(_procs(ch, n), which)
    if pid is None:
        return
    for sig in ("-TERM", "-KILL"):
        ch.run(["kill", sig, str(pid)], check=False)
        deadline = time.monotonic() + STOP_WAIT
        while time.monotonic() < deadline:
            if getattr(_procs(ch, n), which) != pid:
                return
            time.sleep(0.02)


def _wait_started(ch: Channel, n: Names, which: str) -> int:
    deadline = time.monotonic() + START_WAIT
    while True:
        pid = getattr(_procs(ch, n), which)
        if pid is not None:
            return pid
        if time.monotonic() > deadline:
            raise ChannelError(f"router {n.key}: {which} did not start")
        time.sleep(0.02)


def _start_dnsmasq(ch: Channel, n: Names) -> int:
    # dnsmasq checks its configuration, binds its sockets, writes its pid file and then
    # detaches (the foreground process exits): an error is reported here, as the exit code.
    ch.run(["ip", "netns", "exec", n.ns, "dnsmasq", f"--conf-file={n.path(dnsmasq.CONF)}"])
    return _wait_started(ch, n, "dnsmasq")


def _start_metadata(ch: Channel, n: Names, guest_ip: str) -> int:
    # The agent daemonizes itself and returns once it listens (or with the bind error).
    ch.run(["ip", "netns", "exec", n.ns, PYTHON, n.path(META_PY), "--dir", n.dir,
            "--bind", checks.ipv4(guest_ip), "--port", str(METADATA_PORT),
            "--password-port", str(PASSWORD_PORT), "--daemon",
            "--pidfile", n.path(META_PID), "--log", n.path(META_LOG)])
    return _wait_started(ch, n, "metadata")


def _sysctl(ch: Channel, n: Names) -> None:
    ch.run(["ip", "netns", "exec", n.ns, "sysctl", "-q", "-w",
            "net.ipv4.ip_forward=1",
            # removing the first address of a subnet keeps the others (public IPs)
            "net.ipv4.conf.all.promote_secondaries=1",
            "net.ipv4.conf.default.promote_secondaries=1",
            # the router is IPv4 only: no IPv6 addresses, so nothing to filter for IPv6
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1"])


@dataclass(frozen=True)
class _Veth:
    dev: str  # in the namespace
    peer: str  # on the host
    bridge: str
    mac: str
    mtu: int | None
    addrs: list[str]  # exactly these on dev


def _veth_plan(ch: Channel, n: Names, links: dict[str, dict], v: _Veth, host: list[str],
               inside: list[str]) -> None:
    """The `ip` lines that make `v` true: `host` runs on the host, `inside` in the namespace."""
    link = links.get(v.dev)
    if link is None:
        ch.run(["ip", "link", "del", "dev", v.peer], check=False)  # a leftover half, if any
        host.append(f"link add dev {v.peer} type veth peer name {v.dev} netns {n.ns}")
    if v.mtu is not None:
        host.append(f"link set dev {v.peer} mtu {v.mtu}")
        inside.append(f"link set dev {v.dev} mtu {v.mtu}")
    host.append(f"link set dev {v.peer} master {v.bridge}")
    host.append(f"link set dev {v.peer} up")
    if link is None or link.get("address", "").lower() != v.mac:
        inside.append(f"link set dev {v.dev} address {v.mac}")
    inside.append(f"link set dev {v.dev} up")
    have = _inet(link)
    # The missing addresses first, then the others removed (promote_secondaries keeps the
    # rest of a subnet when its first address goes).
    inside += [f"addr add {a} dev {v.dev}" for a in v.addrs if a not in have]
    inside += [f"addr del {a} dev {v.dev}" for a in have if a not in v.addrs]


def _file_hashes(ch: Channel, n: Names, names_: list[str]) -> dict[str, str]:
    r = ch.run(["sha256sum", "--"] + [n.path(x) for x in names_], check=False)
    out = {}
    for line in r.stdout.splitlines():
        h, _, path = line.partition("  ")
        out[path.rsplit("/", 1)[-1]] = h
    return out


def _ruleset_hash(ch: Channel, n: Names) -> str:
    """sha256 of the namespace's live ruleset as nft lists it (a flushed or edited table
    changes it)."""
    return _sha(ch.run(["ip", "netns", "exec", n.ns, "nft", "list", "ruleset"]).stdout)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write_changed(ch: Channel, n: Names, files: dict[str, str], have: dict[str, str]) -> set[str]:
    """Write the files whose text differs from the host's (`have`: name -> sha256); the names
    written."""
    changed = set()
    for name, text in files.items():
        if have.get(name) != _sha(text):
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
            _sysctl(ch, n)
            # dnsmasq runs as nobody and rereads its files on SIGHUP: whatever Nubo's umask,
            # the way to them must be open (the files with user data are 0600, root's).
            ch.run(["install", "-d", "-m", "0755", ROOT.rsplit("/", 1)[0], ROOT, n.dir])
        links = _ns_links(ch, n.ns)
        host: list[str] = []
        inside = ["link set dev lo up"]
        prefix = checks.network(spec.guest_cidr).prefixlen
        _veth_plan(ch, n, links, _Veth(n.guest_dev, n.guest_peer, guest_bridge, checks.mac(spec.guest_mac),
                                   spec.mtu, [f"{checks.ipv4(spec.guest_ip)}/{prefix}"]), host, inside)
        if spec.public is not None:
            _veth_plan(ch, n, links, _Veth(n.public_dev, n.public_peer, public_bridge, checks.mac(spec.public_mac),
                                       spec.public.mtu, [str(checks.interface(a)) for a in spec.public_ips]),
                       host, inside)
            gw, gw_dev = spec.public_gateway, n.public_dev
        else:
            if n.public_dev in links:
                inside.append(f"link del dev {n.public_dev}")
            # A Shared network's router reaches the upstream DNS through the network's gateway.
            gw = spec.gateway if spec.gateway and spec.gateway != spec.guest_ip else None
            gw_dev = n.guest_dev
        if gw:
            inside.append(f"route replace default via {checks.ipv4(gw)} dev {gw_dev}")
        else:
            inside.append("route flush exact 0.0.0.0/0")
        _batch(ch, host)
        _batch(ch, inside, n.ns)

        h = config_hash(spec)
        have = _file_hashes(ch, n, sorted(files) + [HASH_FILE, NFT_HASH])
        # An earlier apply that stopped half way (hash file "pending" or missing) may have left
        # new files with old processes: this one restarts them whatever the files say.
        unfinished = have.get(HASH_FILE) in (None, _sha(PENDING))
        if not unfinished and any(have.get(k) != _sha(v) for k, v in files.items()):
            ch.write_file(n.path(HASH_FILE), PENDING)
        changed = _write_changed(ch, n, files, have)
        # The whole ruleset in one transaction, every time (it also repairs a flushed table).
        ch.run(["ip", "netns", "exec", n.ns, "nft", "-f", n.path(NFT_FILE)])
        live = _ruleset_hash(ch, n) + "\n"
        if have.get(NFT_HASH) != _sha(live):
            ch.write_file(n.path(NFT_HASH), live)

        procs = _procs(ch, n)
        dns_pid, meta_pid = procs.dnsmasq, procs.metadata
        if dns_pid is None:
            dns_pid = _start_dnsmasq(ch, n)
        elif dnsmasq.CONF in changed or unfinished:
            _stop(ch, n, "dnsmasq")
            dns_pid = _start_dnsmasq(ch, n)
        elif changed & {dnsmasq.HOSTS, dnsmasq.OPTS, dnsmasq.ADDN_HOSTS}:
            ch.run(["kill", "-HUP", str(procs.dnsmasq)])  # rereads hosts, options and addn-hosts
        if meta_pid is None:
            meta_pid = _start_metadata(ch, n, spec.guest_ip)
        elif META_PY in changed or unfinished or procs.metadata_bind != spec.guest_ip:
            _stop(ch, n, "metadata")
            meta_pid = _start_metadata(ch, n, spec.guest_ip)
        # metadata.json needs nothing: the agent rereads it when its mtime changes.

        if have.get(HASH_FILE) != _sha(h + "\n"):
            ch.write_file(n.path(HASH_FILE), h + "\n")
    except BaseException:
        if created:
            try:
                destroy(ch, spec.key)
            except Exception:  # the original error is the one to report
                pass
        raise
    # What this call saw and did: the namespace, both processes (found or started), the hash.
    return RouterFacts(exists=True, dnsmasq=dns_pid is not None, metadata=meta_pid is not None,
                       config_hash=h, detail="")


def destroy(ch: Channel, key: str) -> None:
    """Remove the router: its processes, namespace (and so its veths), directory. Idempotent."""
    n = names(key)
    _stop(ch, n, "metadata")
    _stop(ch, n, "dnsmasq")
    if _ns_exists(ch, n.ns):
        # Anything else still running in the namespace (a process whose pid file was lost).
        pids = [p for p in ch.run(["ip", "netns", "pids", n.ns], check=False).stdout.split() if p.isdigit()]
        if pids:
            ch.run(["kill", "-KILL", *pids], check=False)
    # The host-side peers take both ends with them at once (a namespace's own devices go with
    # it too, but asynchronously). -force: on past the one that does not exist.
    ch.run(["ip", "-force", "-batch", "-"], check=False,
           input=f"link del dev {n.guest_peer}\nlink del dev {n.public_peer}\n")
    if _ns_exists(ch, n.ns):
        ch.run(["ip", "netns", "delete", n.ns])
    ch.run(["rm", "-rf", "--", n.dir])


def status(ch: Channel, key: str) -> RouterFacts:
    n = names(key)
    exists = _ns_exists(ch, n.ns)
    procs = _procs(ch, n)
    h = (ch.read_file(n.path(HASH_FILE)) or "").strip()
    h = h if len(h) == 64 else None  # None: never applied, or an apply stopped half way
    problems = []
    if exists and h is not None:
        applied = (ch.read_file(n.path(NFT_HASH)) or "").strip()
        if _ruleset_hash(ch, n) != applied:
            # Not the configuration that was applied: no hash, so the monitor re-applies.
            h = None
            problems.append("nftables rules differ from the applied ones")
    if not exists:
        problems.append(f"namespace {n.ns} missing")
    if procs.dnsmasq is None:
        problems.append("dnsmasq not running")
    if procs.metadata is None:
        problems.append("metadata server not running")
    return RouterFacts(exists=exists, dnsmasq=procs.dnsmasq is not None, metadata=procs.metadata is not None,
                       config_hash=h, detail="; ".join(problems))


def restart(ch: Channel, key: str) -> RouterFacts:
    """Restart dnsmasq and the metadata server from the files of the last apply (rebootRouter),
    and reload the nftables rules."""
    n = names(key)
    text = ch.read_file(n.path(SPEC_JSON))
    if not _ns_exists(ch, n.ns) or text is None:
        raise ChannelError(f"router {key} is not on this host (namespace {n.ns} or {n.path(SPEC_JSON)} missing)")
    guest_ip = checks.ipv4(json.loads(text)["guest_ip"], "guest IP")
    _stop(ch, n, "metadata")
    _stop(ch, n, "dnsmasq")
    ch.run(["ip", "netns", "exec", n.ns, "nft", "-f", n.path(NFT_FILE)])
    _start_dnsmasq(ch, n)
    _start_metadata(ch, n, guest_ip)
    return status(ch, key)
