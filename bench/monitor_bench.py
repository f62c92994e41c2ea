"""The monitor's full sweep at scale: 2,000 Simulator hosts × 25 running VMs.

Makes the Simulator's hosts and VMs (bench/sim_sweep.py's build) and Nubo's own
records of them (zone, cluster, 2,000 hosts, 50,000 VMs) in one fresh database,
then times what the monitor process does every ping.interval: ping every host
(host_stats, in parallel), then reconcile every answering host's VMs (list_vms +
vm_stats, compare, correct, sample stats). A second sweep finds nothing to change;
a third runs after 500 VMs were stopped behind Nubo's back and must correct them.

Per sweep it prints the whole time, the asking (ping_hosts: the hosts' answers, with
the host rows written back), Nubo's part (the rest: comparing, correcting, the VMs'
stats) and this process's CPU time (the Simulator computes its answers in this process),
on PostgreSQL also the CPU time of the server processes serving the bench's database (read
from /proc: the server must run on this machine). On a shared machine, compare CPU times:
wall-clock times follow the other load.

    .venv/bin/python bench/monitor_bench.py
    .venv/bin/python bench/monitor_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/monitor_bench.py --database-url mysql+pymysql://root@127.0.0.1:3306/test
    options: --hosts 2000 --vms 25 --threads N --profile FILE (cProfile of the three sweeps)
A server URL names the server only: the bench makes a fresh database of its own there
(tests.conftest.fresh_server_database, "nubo_monbench_…").
Target (issue 21): a full sweep ≤ 5 s on SQLite, ≤ 8 s on PostgreSQL.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--hosts", type=int, default=2000)
    ap.add_argument("--vms", type=int, default=25)
    ap.add_argument("--threads", default=None, help="the monitor.threads setting for the run (default: its default)")
    ap.add_argument("--profile", default="", help="write a cProfile of the sweeps to this file")
    args = ap.parse_args()
    instance = tempfile.mkdtemp(prefix="nubo-bench-")
    os.environ.setdefault("NUBO_INSTANCE_PATH", instance)
    url = args.database_url or f"sqlite:///{instance}/nubo.db"
    if not url.startswith("sqlite"):
        from tests.conftest import fresh_server_database
        url = fresh_server_database(url, "monbench")
    from app import create_app
    from app.extensions import db
    from app.models import Cluster, Host, Pod, ServiceOffering, SimVM, VirtualMachine, Zone, utcnow
    from app.monitor.hosts import ping_hosts
    import app.monitor.vms as _mv
    from app.services import accounts, bootstrap, settings
    from bench.sim_sweep import build
    app = create_app({"INSTANCE_PATH": instance, "DATABASE_URL": url, "TESTING": True, "SEED_DEMO": False})
    with app.app_context():
        db.drop_all()
        db.create_all()
        settings.sync_definitions()
        bootstrap.seed_reference_data()
        if args.threads:
            settings.update("monitor.threads", args.threads)
        t0 = time.perf_counter()
        build(db.engine, args.hosts, args.vms)  # the hypervisors' side
        user = accounts.create_user("bench", "quiet-harbor-lamp-41")
        zone = Zone(uuid=str(uuid.uuid4()), name="bench", dns1="8.8.8.8", internal_dns1="10.0.0.2",
                    allocation_state="Enabled")
        db.session.add(zone)
        db.session.flush()
        pod = Pod(uuid=str(uuid.uuid4()), zone_id=zone.id, name="p", gateway="10.0.0.1", netmask="255.255.0.0",
                  start_ip="10.0.0.10")
        db.session.add(pod)
        db.session.flush()
        cluster = Cluster(uuid=str(uuid.uuid4()), zone_id=zone.id, pod_id=pod.id, name="c",
                          hypervisor_type="Simulator")
        so = ServiceOffering(uuid=str(uuid.uuid4()), name="s", cpu_number=1, cpu_speed=1000, memory=1024)
        db.session.add_all([cluster, so])
        db.session.commit()
        now = utcnow()
        db.session.execute(sa.insert(Host), [dict(
            uuid=str(uuid.uuid4()), name=f"bench-{h:05d}", zone_id=zone.id, pod_id=pod.id, cluster_id=cluster.id,
            hypervisor_type="Simulator", url=f"simulator://bench-{h:05d}", address=f"bench-{h:05d}", details="{}",
            state="Up", resource_state="Enabled", cpu_sockets=2, cpu_number=64, cpu_speed=2400,
            memory_total=256 << 30, cpu_allocated=25000, memory_allocated=25 << 30, local_storage_total=0,
            last_pinged=now, created=now) for h in range(args.hosts)])
        db.session.commit()
        host_ids = dict(db.session.execute(sa.select(Host.name, Host.id)).all())
        rows = []
        for h in range(args.hosts):
            for v in range(args.vms):
                rows.append(dict(uuid=str(uuid.uuid4()), name=f"vm-{h}-{v}", instance_name=f"i-{h}-{v}-VM",
                                 state="Running", account_id=user.account_id, user_id=user.id, zone_id=zone.id,
                                 host_id=host_ids[f"bench-{h:05d}"], last_host_id=host_ids[f"bench-{h:05d}"],
                                 service_offering_id=so.id, hypervisor_type="Simulator", cpu_number=1,
                                 cpu_speed=1000, memory=1024, capacity_reserved=True, quota_counted=True,
                                 created=now))
                if len(rows) == 10_000:
                    db.session.execute(sa.insert(VirtualMachine), rows)
                    rows = []
        if rows:
            db.session.execute(sa.insert(VirtualMachine), rows)
        db.session.commit()
        print(f"{args.hosts} hosts × {args.vms} VMs on {url.split(':')[0]}; made in {time.perf_counter() - t0:.1f} s; "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

        profile = None
        if args.profile:
            import cProfile
            profile = cProfile.Profile()

        postgres = url.startswith("postgresql")

        def server_cpu() -> float:
            """PostgreSQL (on this machine): CPU seconds of the server processes serving this
            bench's database (its pools keep their connections, so their backends live on)."""
            if not postgres:
                return 0.0
            with db.engine.connect() as c:
                pids = c.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))
                pids = [p for (p,) in pids]
            total = 0
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
            return total / os.sysconf("SC_CLK_TCK")

        def sweep(label: str) -> None:
            if profile:
                profile.enable()
            server = server_cpu()
            t, cpu = time.perf_counter(), time.process_time()
            pinged = ping_hosts(with_vms=True)  # what the monitor process runs (app/monitor/__init__.py)
            asked = time.perf_counter() - t
            changed = _mv.apply_answers(pinged.vm_answers, pinged.seen_at)
            whole = time.perf_counter() - t
            if profile:
                profile.disable()
            cpu = time.process_time() - cpu
            server = f" | {server_cpu() - server:.2f} s" if postgres else ""
            print(f"| {label} | {whole:.2f} s | {asked:.2f} s | {whole - asked:.2f} s | {cpu:.2f} s{server} | "
                  f"{pinged.hosts} hosts, {pinged.up} up | {changed} records corrected |", flush=True)
        server_head = (" PostgreSQL's CPU (this database) |", "---|") if postgres else ("", "")
        print(f"| sweep | whole | asking the hosts | Nubo's part | CPU (this process) |{server_head[0]} hosts | "
              f"corrections |\n|---|---|---|---|---|{server_head[1]}---|---|")
        sweep("first (stats sampled)")
        sweep("second (nothing changed)")
        with db.engine.begin() as c:  # 500 VMs stopped behind Nubo's back
            c.execute(sa.update(SimVM).where(SimVM.id <= 500).values(state="stopped"))
        sweep("third (500 stopped out of band)")
        stopped = db.session.scalar(sa.select(sa.func.count()).select_from(VirtualMachine)
                                    .where(VirtualMachine.state == "Stopped"))
        assert stopped == 500, stopped
        if profile:
            profile.dump_stats(args.profile)


if __name__ == "__main__":
    main()
