"""libvirt events at work: how long after a domain changes behind Nubo's back
(`virsh destroy`, `virsh start` on the real local libvirtd) Nubo's record of the VM
— what listVirtualMachines answers — shows it. Target: within 1 s.

Needs the local libvirtd (scripts/libvirtd.sh, as `make test` starts it) and root
(a bridge for the guest's NIC). One VM with an empty 64 MiB disk is deployed through
Nubo; the monitor's EventListener listens; each round destroys the domain, waits
for the record to say Stopped, starts it again and waits for Running.

    .venv/bin/python bench/event_bench.py [--rounds 20] [--database-url URL]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def wait_for(state: str, vm_id: int, timeout: float = 10.0) -> float:
    """Seconds until the record says `state` (fresh reads every 5 ms)."""
    from app.extensions import db
    from app.models import VirtualMachine
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        db.session.rollback()  # the listener commits in its own thread
        if db.session.get(VirtualMachine, vm_id).state == state:
            return time.monotonic() - t0
        time.sleep(0.005)
    raise SystemExit(f"the record did not say {state} within {timeout} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--database-url", default="")
    args = ap.parse_args()
    import libvirt

    from app import create_app
    from app.extensions import db
    from app.monitor.vms import EventListener
    from app.services import accounts, bootstrap, hosts, settings, vms
    from tests.helpers import kvm_zone
    from tests.helpers.www import raw_image, serve
    tmp = Path(tempfile.mkdtemp(prefix="nubo-eventbench-"))
    os.environ.setdefault("NUBO_INSTANCE_PATH", str(tmp / "instance"))
    app = create_app({"INSTANCE_PATH": str(tmp / "instance"), "DATABASE_URL": args.database_url, "TESTING": True,
                      "SEED_DEMO": False, "JOBS_IMMEDIATE": True})
    suffix = "E" + uuid.uuid4().hex[:8]
    (tmp / "www").mkdir()
    raw_image(tmp / "www" / "empty.raw", "64M", stamp=None)
    kvm_zone.ensure_bridge()
    conn = libvirt.open(kvm_zone.URI)
    made: dict = {}
    with serve(tmp / "www") as www, app.app_context():
        db.drop_all()
        db.create_all()
        settings.sync_definitions()
        bootstrap.seed_reference_data()
        listener = None
        try:
            made = kvm_zone.make_zone(tmp, www, {"empty": "empty.raw"}, suffix)
            alice = accounts.user_by_uuid(made["alice"])
            vm, job = vms.deploy(alice, zone_uuid=made["zone"], service_offering_uuid=made["so"],
                                 template_uuid=made["empty"], name="events")
            db.session.refresh(job)
            assert job.status == 1, job.result
            vm = vms.get_vm(alice, vm.uuid)
            listener = EventListener(app)
            listener.sync([hosts.get_host(made["host"])])
            stopped, started = [], []
            for _ in range(args.rounds):
                dom = conn.lookupByName(vm.instance_name)
                dom.destroy()  # `virsh destroy`: returns once QEMU is gone
                stopped.append(wait_for("Stopped", vm.id))
                dom.create()  # `virsh start`: returns once the domain runs
                started.append(wait_for("Running", vm.id))
            dialect = (args.database_url or "sqlite").split("+")[0].split(":")[0]
            print(f"{args.rounds} rounds on the local libvirtd ({conn.getLibVersion()}), {dialect}")
            print("| change behind Nubo's back | p50 | p95 | max |\n|---|---|---|---|")
            for label, xs in (("virsh destroy → record Stopped", stopped), ("virsh start → record Running", started)):
                xs = sorted(xs)
                p95 = xs[max(0, int(len(xs) * 0.95) - 1)]
                print(f"| {label} | {statistics.median(xs) * 1000:.0f} ms | {p95 * 1000:.0f} ms | "
                      f"{xs[-1] * 1000:.0f} ms |")
        finally:
            if listener is not None:
                listener.close()
            kvm_zone.clean_up(made, suffix)
            conn.close()


if __name__ == "__main__":
    main()
