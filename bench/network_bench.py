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
daemons (dnsmasq, metadata server) run detached and are not counted. Guests are the
networked test guest (tests/guests/net_guest.py) under QEMU emulation; their boot is
not part of "Running".

    .venv/bin/python bench/network_bench.py shared --runs 10
    .venv/bin/python bench/network_bench.py isolated --runs 10
    .venv/bin/python bench/network_bench.py router --runs 20

Needs root and the local libvirtd (scripts/libvirtd.sh). Every name it makes on the host
has a random suffix; everything is removed at the end.
"""
from __future__ import annotations

import argparse
import base64
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
    from tests.guests import net_guest
    reason = net_guest.missing()
    if reason:
        raise SystemExit(f"the networked test guest cannot be built: {reason}")
    return net_guest.build(Path(tempfile.gettempdir()) / "nubo-net-guest")


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("shared", "isolated", "router"))
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (bridges, namespaces)")
    tmp = Path(tempfile.mkdtemp(prefix="nubo-netbench-"))
    {"shared": bench_shared}[args.mode](args, tmp)


if __name__ == "__main__":
    main()
