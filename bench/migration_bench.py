"""Live migration time of a real guest with 256 MiB of RAM between two lab hosts
(scripts/lab.sh: each a libvirtd in its own namespaces, qemu+ssh, a shared directory as
primary storage), on shared storage (migrateVirtualMachine: memory only) and without it
(migrateVirtualMachineWithVolume from one host's local storage to the other's: the disk
is copied while the guest runs, then its memory).

The guest is tests/guests/counter_guest.py (busybox; its disk is the template's 32 MiB RAW
image under a QCOW2 root) under QEMU emulation; after every migration its counter is read
on the new host and must have gone on (same boot id, higher count). Each round moves the
guest back and forth; the job time is what the API caller waits for (reservation,
segments, storage preparation, the migration, the records), the libvirt time is
migrateToURI3 alone.

    .venv/bin/python bench/migration_bench.py [--rounds 5] [--memory 256] [--lab-id 9]

It makes its own lab (scripts/lab.sh with NUBO_LAB_ID, two hosts) and removes it at the end.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="migrations of each kind")
    ap.add_argument("--memory", type=int, default=256, help="the guest's RAM, MiB")
    ap.add_argument("--lab-id", type=int, default=9, help="NUBO_LAB_ID of the lab this makes (one no test run uses)")
    args = ap.parse_args()
    from tests.lab.conftest import LAB_SH, Lab
    env = {**os.environ, "NUBO_LAB_ID": str(args.lab_id)}
    env.pop("NUBO_LAB_DIR", None)
    subprocess.run([LAB_SH, "up", "2"], env=env, check=True, capture_output=True, timeout=300)
    try:
        run(args, Lab(args.lab_id))
    finally:
        subprocess.run([LAB_SH, "down"], env=env, capture_output=True, timeout=300)


def run(args, lab) -> None:

    from app import create_app
    from app.extensions import db
    from app.hypervisors.libvirt.driver import LibvirtDriver
    from app.services import bootstrap, settings, vms
    from tests.guests import counter_guest
    from tests.lab.migration_zone import MigrationZone

    tmp = Path(tempfile.mkdtemp(prefix="nubo-migbench-"))
    os.environ.setdefault("NUBO_INSTANCE_PATH", str(tmp / "instance"))
    app = create_app({"INSTANCE_PATH": str(tmp / "instance"), "TESTING": True, "SEED_DEMO": False,
                      "JOBS_IMMEDIATE": True})
    libvirt_times: list[float] = []
    real_migrate = LibvirtDriver.migrate_vm

    def timed(self, *a, **kw):
        t0 = time.monotonic()
        try:
            return real_migrate(self, *a, **kw)
        finally:
            libvirt_times.append(time.monotonic() - t0)
    LibvirtDriver.migrate_vm = timed

    with app.app_context():
        db.drop_all()
        db.create_all()
        settings.sync_definitions()
        bootstrap.seed_reference_data()
        mz = MigrationZone(lab, tmp, "B" + uuid.uuid4().hex[:7], memory_mib=args.memory)
        try:
            a, b = mz.hosts
            results = {}
            for kind, offering, call in (
                    ("shared storage (migrateVirtualMachine)", mz.shared_offering, vms.migrate),
                    ("local storage, disk copied (migrateVirtualMachineWithVolume)", mz.local_offering,
                     vms.migrate_with_volume)):
                vm = mz.deploy(f"bench-{offering[:4]}", offering, a)
                boot, n = counter_guest.last_count(mz.conn(a), vm.instance_name)  # booted and counting
                jobs_s, lv_s = [], []
                where = a
                for i in range(args.rounds):
                    dest = b if where is a else a
                    libvirt_times.clear()
                    t0 = time.monotonic()
                    job = call(mz.admin(), vm.uuid, dest.uuid)
                    db.session.refresh(job)
                    jobs_s.append(time.monotonic() - t0)
                    assert job.status == 1, job.result
                    lv_s.append(libvirt_times[-1])
                    boot2, n2 = counter_guest.last_count(mz.conn(dest), vm.instance_name)
                    assert boot2 == boot and n2 > n, (boot, n, boot2, n2)
                    n, where = n2, dest
                root = mz.root_of(vms.get_vm(mz.admin(), vm.uuid))
                results[kind] = (jobs_s, lv_s, root.size)
                vms.destroy(mz.admin(), vm.uuid, True)
        finally:
            mz.clean_up()
    print(f"guest: {args.memory} MiB RAM, 1 vCPU, QEMU emulation; {args.rounds} migrations of each kind, alternating between the two hosts")
    for kind, (jobs_s, lv_s, size) in results.items():
        print(f"{kind}: job median {statistics.median(jobs_s):.2f} s (min {min(jobs_s):.2f}, max {max(jobs_s):.2f}); "
              f"libvirt migrateToURI3 median {statistics.median(lv_s):.2f} s (min {min(lv_s):.2f}, "
              f"max {max(lv_s):.2f}); root volume {size >> 20} MiB virtual")


if __name__ == "__main__":
    main()
