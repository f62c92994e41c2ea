"""Micro-benchmark: the monitor's record reconciliation (app/monitor reconcile_records:
orphaned VM locks and deploys, cut-off uploads, host capacity check) over a large data
centre: HOSTS Simulator hosts with VMS running VMs each, in a fresh database.

    .venv/bin/python bench/reconcile_bench.py                         # SQLite in a temp dir
    .venv/bin/python bench/reconcile_bench.py --hosts 2000 --vms 25
    .venv/bin/python bench/reconcile_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1/nubo_bench

The database must be empty or disposable (tables are dropped and recreated).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sqlalchemy as sa  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=2000)
    ap.add_argument("--vms", type=int, default=25)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="nubo-reconcile-")
    from app import create_app
    from app.extensions import db
    app = create_app({"INSTANCE_PATH": tmp, "DATABASE_URL": a.database_url, "SEED_DEMO": False,
                      "JOBS_IMMEDIATE": True, "TESTING": True})
    with app.app_context():
        db.drop_all()
        db.create_all()
        from app.services import accounts, bootstrap, settings
        settings.sync_definitions()
        bootstrap.seed_reference_data()
        from app.models import Cluster, Host, Pod, ServiceOffering, VirtualMachine, Zone, new_uuid
        from app.services import zones
        admin = accounts.create_user("root", "Bench-secret-77", role="admin", account="admin")
        z = zones.create_zone(admin, name="bz", dns1="8.8.8.8", internal_dns1="10.0.0.2", guest_cidr="10.3.0.0/16")
        p = zones.create_pod(admin, zone_uuid=z.uuid, name="p", gateway="10.0.0.1", netmask="255.255.0.0",
                             start_ip="10.0.0.10")
        c = zones.add_cluster(admin, pod_uuid=p.uuid, name="c", hypervisor="Simulator")
        so = ServiceOffering(uuid=new_uuid(), name="s", cpu_number=1, cpu_speed=1000, memory=1024)
        db.session.add(so)
        db.session.commit()
        zone_id, pod_id, cluster_id = (db.session.get(Zone, z.id).id, db.session.get(Pod, p.id).id,
                                       db.session.get(Cluster, c.id).id)
        db.session.execute(sa.insert(Host), [dict(
            uuid=new_uuid(), name=f"bench-{h:05d}", zone_id=zone_id, pod_id=pod_id, cluster_id=cluster_id,
            hypervisor_type="Simulator", url=f"simulator://bench-{h:05d}", address="127.0.0.1", state="Up",
            resource_state="Enabled", cpu_number=64, cpu_speed=2400, memory_total=256 << 30,
            cpu_allocated=a.vms * 1000, memory_allocated=a.vms << 30) for h in range(a.hosts)])
        host_ids = list(db.session.scalars(sa.select(Host.id).order_by(Host.id)))
        rows = [dict(uuid=new_uuid(), name=f"v{h}-{v}", instance_name=f"i-{h}-{v}-VM", state="Running",
                     account_id=admin.account_id, user_id=admin.id, zone_id=zone_id, host_id=hid, last_host_id=hid,
                     service_offering_id=so.id, hypervisor_type="Simulator", cpu_number=1, cpu_speed=1000,
                     memory=1024, capacity_reserved=True, quota_counted=True)
                for h, hid in enumerate(host_ids) for v in range(a.vms)]
        for i in range(0, len(rows), 10_000):
            db.session.execute(sa.insert(VirtualMachine), rows[i:i + 10_000])
        db.session.commit()
        from app.services import capacity, templates, vms
        for name, fn in (("recover_orphans", vms.recover_orphans), ("recover_uploads", templates.recover_uploads),
                         ("check_hosts", capacity.check_hosts)):
            times = []
            for _ in range(a.runs):
                t0 = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t0)
                assert out == 0, (name, out)
            times.sort()
            print(f"{name}: {a.hosts} hosts, {len(rows)} VMs: median {1000 * times[len(times) // 2]:.1f} ms, "
                  f"max {1000 * times[-1]:.1f} ms")
        # One host drifted: found and repaired.
        db.session.execute(sa.update(Host).where(Host.id == host_ids[0]).values(memory_allocated=0))
        db.session.commit()
        t0 = time.perf_counter()
        assert capacity.check_hosts() == 1
        print(f"check_hosts with one host repaired: {1000 * (time.perf_counter() - t0):.1f} ms")


if __name__ == "__main__":
    main()
