"""Guest networks on the real local libvirtd: what a virtual router costs.

    shared:    today's deploy: a VM into a zone's shared network with no router (a Basic
               zone on a test-made bridge, tests/helpers/kvm_zone.py), through the API.
    isolated:  a deploy into a new isolated network (createNetwork with the source-NAT
               offering; the first deploy implements it: VNI, bridge, router namespace with
               dnsmasq, nftables and the metadata server), then a second deploy into the
               same (already implemented) network; then the VMs and the network are deleted.
    router:    implementing a network on the host: from the driver's router_apply (segment
               and router made from nothing) to the first DHCP answer a client on the guest
               segment gets (a DHCP DISCOVER every 20 ms from a namespace with a VM's MAC).

For each run: wall time of the API call until the VM is Running (deployVirtualMachine's
job done), and CPU seconds of the Nubo process (API, services and the job run in this
process: JOBS_IMMEDIATE) plus its waited-for children (ip, nft, ...); the router's own
daemons (dnsmasq, metadata server) run detached and are not counted. The VMs boot an
empty disk (they idle in their BIOS): a guest's own boot is not part of "Running", and a
booting guest under QEMU emulation would take a core from the next deploy.

    .venv/bin/python bench/network_bench.py shared --runs 10
    .venv/bin/python bench/network_bench.py isolated --runs 10
    .venv/bin/python bench/network_bench.py router --runs 20

Needs root and the local libvirtd (scripts/libvirtd.sh). Every name it makes on the host
has a random suffix; everything is removed at the end.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# A DHCP client that only asks, run in the client namespace.
PROBE = r'''
import os, select, socket, struct, sys, time
# A DHCP client that only asks: a DISCOVER (broadcast flag set) every EVERY seconds from the
# MAC given, on a raw packet socket (no address needed on the interface); prints the monotonic
# time of the first OFFER and the address offered, then exits.
ifname, mac, every, deadline = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), float(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((ifname, 0))
xid = os.urandom(4)
bootp = (struct.pack("!BBBB4sHH4s4s4s4s", 1, 1, 6, 0, xid, 0, 0x8000, bytes(4), bytes(4), bytes(4), bytes(4))
         + mac + bytes(10) + bytes(192) + b"\x63\x82\x53\x63" + b"\x35\x01\x01" + b"\x37\x03\x01\x03\x06" + b"\xff")
udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xFFFF); t += t >> 16
    return ~t & 0xFFFF
iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4), b"\xff" * 4)
iph = iph[:10] + struct.pack("!H", csum(iph)) + iph[12:]
frame = b"\xff" * 6 + mac + b"\x08\x00" + iph + udp
print("ready", flush=True)
end = time.monotonic() + deadline
nxt = 0.0
while time.monotonic() < end:
    now = time.monotonic()
    if now >= nxt:
        try:
            s.send(frame)
        except OSError:
            pass  # the interface is not up yet
        nxt = now + every
    r, _, _ = select.select([s], [], [], max(0.0, min(nxt, end) - time.monotonic()))
    if not r:
        continue
    pkt = s.recv(2048)
    if len(pkt) < 14 + 20 + 8 + 240 or pkt[12:14] != b"\x08\x00" or pkt[23] != 17:
        continue
    ihl = (pkt[14] & 0x0F) * 4
    u = 14 + ihl
    if struct.unpack("!H", pkt[u + 2:u + 4])[0] != 68:
        continue
    b = pkt[u + 8:]
    if b[0] != 2 or b[4:8] != xid:
        continue
    print("offer", repr(time.monotonic()), socket.inet_ntoa(b[16:20]), socket.inet_ntoa(pkt[26:30]), flush=True)
    sys.exit(0)
print("timeout", flush=True)
sys.exit(1)
'''


def cpu_now() -> float:
    """CPU seconds of this process (all threads) and of its waited-for children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def p90(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(0.9 * len(xs) + 0.5)) - 1))]


def row(label: str, times: list[float], cpus: list[float] | None = None) -> str:
    out = f"| {label} | {len(times)} | {statistics.median(times):.2f} s | {p90(times):.2f} s |"
    if cpus is not None:
        out += f" {statistics.median(cpus):.2f} s | {p90(cpus):.2f} s |"
    else:
        out += " | |"
    return out


@contextlib.contextmanager
def live_app(tmp: Path):
    """Nubo in this process: the app (jobs run inline) behind a werkzeug server on loopback."""
    from werkzeug.serving import make_server

    from app import create_app
    from app.extensions import db
    from app.services import bootstrap, settings
    instance = tmp / "instance"
    os.environ.setdefault("NUBO_INSTANCE_PATH", str(instance))
    app = create_app({"INSTANCE_PATH": str(instance), "TESTING": True, "SEED_DEMO": False, "JOBS_IMMEDIATE": True})
    with app.app_context():
        db.create_all()
        settings.clear_cache()
        bootstrap.seed_reference_data()
        settings.sync_definitions()
    import logging
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger().setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield app, f"http://127.0.0.1:{server.port}/client/api"
    finally:
        server.shutdown()


def client(app, url: str, username: str):
    from cs import CloudStack

    from app.services import accounts
    with app.app_context():
        key, secret = accounts.ensure_keys(accounts.get_user(username))
    return CloudStack(endpoint=url, key=key, secret=secret, timeout=600, poll_interval=0.05)


def guest_image(tmp: Path) -> Path:
    """An empty 64 MiB RAW disk: the VM stays in its BIOS, idle, so a running guest's boot
    under QEMU emulation (a whole core for seconds) does not slow the next deploy."""
    from tests.helpers.www import raw_image
    path = tmp / "empty.raw"
    raw_image(path, "64M", stamp=None)
    return path


def deploy_timed(api, **kw) -> tuple[dict, float, float]:
    c0, t0 = cpu_now(), time.monotonic()
    vm = api.deployVirtualMachine(fetch_result=True, **kw)["virtualmachine"]
    t, c = time.monotonic() - t0, cpu_now() - c0
    if vm["state"] != "Running":
        raise SystemExit(f"deploy ended {vm['state']}")
    return vm, t, c


def bench_shared(args, tmp: Path) -> None:
    """Today's deploy: a Basic zone's shared network, no router, on a test-made bridge."""
    import libvirt

    from tests.helpers import kvm_zone
    from tests.helpers.www import serve
    suffix = "B" + uuid.uuid4().hex[:8]
    (tmp / "www").mkdir()
    (tmp / "www" / "guest.raw").symlink_to(guest_image(tmp))
    kvm_zone.ensure_bridge()
    made: dict = {}
    with live_app(tmp) as (app, url), serve(tmp / "www") as www:
        try:
            with app.app_context():
                made = kvm_zone.make_zone(tmp, www, {"guest": "guest.raw"}, suffix)
            alice = client(app, url, "alice")
            wait_template(alice, made["guest"])
            times, cpus = [], []
            for i in range(args.runs + 1):  # the first deploy copies the template to the pool: not counted
                vm, t, c = deploy_timed(alice, zoneid=made["zone"], templateid=made["guest"],
                                        serviceofferingid=made["so"], name=f"sh{i}")
                if i:
                    times.append(t)
                    cpus.append(c)
                alice.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)
            report(f"today's deploy into a shared network without router ({args.runs} runs)",
                   [("deploy → Running (shared, no router)", times, cpus)])
        finally:
            kvm_zone.clean_up(made, suffix)
            with contextlib.suppress(libvirt.libvirtError):
                pass


def wait_template(api, template_id: str, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        t = api.listTemplates(templatefilter="executable", id=template_id)["template"][0]
        if t.get("isready"):
            return
        time.sleep(0.2)
    raise SystemExit("the template was not ready in time")


def report(title: str, rows: list[tuple[str, list[float], list[float] | None]]) -> None:
    print(f"\n{title}; {machine()}")
    print("| what | runs | time p50 | time p90 | CPU p50 | CPU p90 |\n|---|---|---|---|---|---|")
    for label, times, cpus in rows:
        print(row(label, times, cpus))


def machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    return f"{os.cpu_count()} cores, {model}"


def bench_isolated(args, tmp: Path) -> None:
    """A deploy into a new isolated network (implements it), a second one into it; then
    everything is deleted (the delete is timed too)."""
    from tests.network.test_real_guest import build_zone, clean_zone, lab_made, offering_id
    from tests.helpers.www import serve
    (tmp / "www").mkdir()
    (tmp / "www" / "net-guest.raw").symlink_to(guest_image(tmp))
    first, second, cpu1, cpu2, gone = [], [], [], [], []
    with lab_made() as lab, live_app(tmp) as (app, url), serve(tmp / "www") as www:
        from tests.helpers.users import existing_user
        with app.app_context():
            existing_user("admin", "adminpass", role="admin", account="admin")
            existing_user("alice", "alicepass")
        admin, alice = client(app, url, "admin"), client(app, url, "alice")
        made: dict = {}
        try:
            made.update(build_zone(admin, lab, www, tmp))
            offering = offering_id(alice, "DefaultIsolatedNetworkOfferingWithSourceNatService")
            common = dict(zoneid=made["zone"]["id"], templateid=made["template"]["id"],
                          serviceofferingid=made["offering"]["id"])
            # A first deploy outside the measure: copies the template into the pool.
            for i in range(args.runs + 1):
                net = alice.createNetwork(name=f"n{i}", displaytext="bench", zoneid=made["zone"]["id"],
                                          networkofferingid=offering)["network"]
                vm1, t1, c1 = deploy_timed(alice, networkids=net["id"], name=f"a{i}", **common)
                vm2, t2, c2 = deploy_timed(alice, networkids=net["id"], name=f"b{i}", **common)
                t0 = time.monotonic()
                for vm in (vm1, vm2):
                    alice.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)
                alice.deleteNetwork(id=net["id"], fetch_result=True)
                if i:
                    first.append(t1)
                    cpu1.append(c1)
                    second.append(t2)
                    cpu2.append(c2)
                    gone.append(time.monotonic() - t0)
            report(f"deploys into an isolated network with a virtual router ({args.runs} runs)",
                   [("first deploy → Running (implements the network: VNI, bridge, router)", first, cpu1),
                    ("second deploy into the implemented network → Running", second, cpu2),
                    ("expunge both VMs + deleteNetwork (router and segment removed)", gone, None)])
        finally:
            clean_zone(admin, made, lab)


def bench_router(args, tmp: Path) -> None:
    """The host step alone: segment + router from nothing (router.apply on the local
    channel, what the driver's router_apply runs) to the first DHCP OFFER seen by a client
    namespace on the segment carrying a MAC of the router's static leases."""
    from app.network.host import router, segments
    from app.network.host.channel import LocalChannel
    from app.network.host.specs import DhcpEntry, RouterSpec, SegmentSpec, VmMetadata
    ch = LocalChannel()
    tag = uuid.uuid4().hex[:6]
    guest_br, public_br = f"nbu{tag}", f"nbp{tag}"
    vni_base = random.randrange(100000, 16000000 - args.runs - 1)
    applied, offered, cpus, destroyed = [], [], [], []
    for br in (guest_br, public_br):
        subprocess.run(["ip", "link", "add", br, "type", "bridge"], check=True)
        subprocess.run(["ip", "link", "set", br, "up"], check=True)
    (tmp / "probe.py").write_text(PROBE)
    try:
        for i in range(args.runs):
            key = uuid.uuid4().hex[:10]
            g, p = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}", f"198.18.{random.randint(0, 255)}"
            mac = "52:54:00:%02x:%02x:%02x" % tuple(random.randbytes(3))
            seg = SegmentSpec(isolation="VXLAN", label=guest_br, vnet=vni_base + i)
            spec = RouterSpec(key=key, name=f"r-{i}-VM", guest=seg, guest_ip=f"{g}.1", guest_cidr=f"{g}.0/24",
                              guest_mac="1e:00:%02x:%02x:%02x:%02x" % tuple(random.randbytes(4)),
                              dhcp_range=(f"{g}.2", f"{g}.254"), gateway=f"{g}.1", domain="bench.internal",
                              leases=(DhcpEntry(mac=mac, ip=f"{g}.50", hostname="client"),),
                              metadata=(VmMetadata(ip=f"{g}.50", instance_id=str(uuid.uuid4()),
                                                   local_hostname="client"),),
                              public=SegmentSpec(isolation="untagged", label=public_br),
                              public_mac="1e:00:%02x:%02x:%02x:%02x" % tuple(random.randbytes(4)),
                              public_ips=(f"{p}.10/24",), public_gateway=f"{p}.1", source_nat_ip=f"{p}.10")
            ns, host_end = f"nbc{tag}{i}", f"nbc{tag}{i}h"
            subprocess.run(["ip", "netns", "add", ns], check=True)
            try:
                subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns,
                                "address", mac], check=True)
                subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "up"], check=True)
                probe = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(tmp / "probe.py"), "eth0",
                                          mac, "0.02", "60"], stdout=subprocess.PIPE, text=True)
                assert probe.stdout.readline().strip() == "ready"
                c0, t0 = cpu_now(), time.monotonic()
                bridge = segments.ensure(ch, seg)
                subprocess.run(["ip", "link", "set", host_end, "master", bridge, "up"], check=True)
                facts = router.apply(ch, spec, lambda s: segments.ensure(ch, s))
                t_apply, c_apply = time.monotonic() - t0, cpu_now() - c0
                assert facts.healthy, facts
                answer = probe.stdout.readline().split()
                probe.wait(timeout=10)
                if not answer or answer[0] != "offer" or answer[2] != f"{g}.50":
                    raise SystemExit(f"no DHCP offer for the client: {answer}")
                applied.append(t_apply)
                cpus.append(c_apply)
                offered.append(float(answer[1]) - t0)
                t1 = time.monotonic()
                subprocess.run(["ip", "link", "del", host_end], check=True)
                router.destroy(ch, key)
                segments.release(ch, seg)
                destroyed.append(time.monotonic() - t1)
            finally:
                subprocess.run(["ip", "link", "del", host_end], capture_output=True)
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
                with contextlib.suppress(Exception):
                    router.destroy(ch, key)
                with contextlib.suppress(Exception):
                    segments.release(ch, seg)
        report(f"a router made on the host from nothing ({args.runs} runs)",
               [("segment + router_apply (namespace, veths, nftables, dnsmasq, metadata server)", applied, cpus),
                ("start → first DHCP OFFER to a client on the segment", offered, None),
                ("router_destroy + segment release", destroyed, None)])
    finally:
        for br in (guest_br, public_br):
            subprocess.run(["ip", "link", "del", br], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("shared", "isolated", "router"))
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (bridges, namespaces)")
    tmp = Path(tempfile.mkdtemp(prefix="nubo-netbench-"))
    {"shared": bench_shared, "isolated": bench_isolated, "router": bench_router}[args.mode](args, tmp)


if __name__ == "__main__":
    main()
