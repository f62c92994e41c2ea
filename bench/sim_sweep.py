"""Micro-benchmark: a reconcile sweep over a large Simulator data centre.

Creates HOSTS sim hosts with VMS running VMs each (default 2,000 x 25) in a
fresh database, then times `list_vms()` on every host through the real driver
(one driver per host, as the monitor would hold), and optionally DEPLOYS
start_vm calls. Target: a full sweep in <= 10 s.

    .venv/bin/python bench/sim_sweep.py                     # SQLite file in a temp dir
    .venv/bin/python bench/sim_sweep.py --database-url postgresql+psycopg://postgres@127.0.0.1/nubo_bench
    .venv/bin/python bench/sim_sweep.py --hosts 200 --vms 25 --deploys 1000

The database must be empty or disposable: the sim_* tables are dropped and recreated.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sqlalchemy as sa  # noqa: E402

import app  # noqa: E402,F401  (SQLite pragmas)
from app.config import engine_options  # noqa: E402
from app.hypervisors.base import DriverContext, VMSpec  # noqa: E402
from app.hypervisors.simulator import SIMULATOR, dispose_engines  # noqa: E402
from app.models import SimFault, SimHost, SimPool, SimVM, SimVolume  # noqa: E402
from app.models.simulator import SimRouter, SimSegment, SimVMSnapshot  # noqa: E402

# Every sim_* table (those that refer to sim_vms / sim_hosts too: PostgreSQL will not drop one alone).
TABLES = [m.__table__ for m in (SimHost, SimVM, SimPool, SimVolume, SimFault, SimRouter, SimSegment, SimVMSnapshot)]


def build(engine, hosts: int, vms: int) -> None:
    SimHost.metadata.drop_all(engine, tables=TABLES)
    SimHost.metadata.create_all(engine, tables=TABLES)
    now = time.time()
    with engine.begin() as c:
        c.execute(sa.insert(SimHost.__table__), [
            dict(name=f"bench-{h:05d}", cpus=64, cpu_speed=2400, memory_mib=262144, local_storage_gib=4096,
                 up=True, delay_seconds=0.0, step_seconds=0.0) for h in range(hosts)])
        ids = dict(c.execute(sa.select(SimHost.name, SimHost.id)).all())
        batch = []
        for h in range(hosts):
            hid = ids[f"bench-{h:05d}"]
            for v in range(vms):
                batch.append(dict(host_id=hid, name=f"i-{h}-{v}-VM", uuid=str(uuid.uuid4()), state="running",
                                  cpus=1, cpu_mhz=1000, memory_mib=1024, console_port=5900 + v, disks="[]",
                                  started_at=now))
            if len(batch) >= 10_000:
                c.execute(sa.insert(SimVM.__table__), batch)
                batch = []
        if batch:
            c.execute(sa.insert(SimVM.__table__), batch)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", type=int, default=2000)
    p.add_argument("--vms", type=int, default=25)
    p.add_argument("--deploys", type=int, default=0, help="also time this many start_vm calls")
    p.add_argument("--database-url", default=None)
    args = p.parse_args()

    tmp = None
    url = args.database_url
    if not url:
        tmp = tempfile.TemporaryDirectory(prefix="nubo-bench-")
        url = f"sqlite:///{tmp.name}/bench.db"
    engine = sa.create_engine(url, **engine_options(url))
    t0 = time.perf_counter()
    build(engine, args.hosts, args.vms)
    setup = time.perf_counter() - t0

    ctx = DriverContext(database_url=url)
    drivers = [SIMULATOR.make_driver(SIMULATOR.connection(f"simulator://bench-{h:05d}", {}), ctx)
               for h in range(args.hosts)]
    drivers[0].list_vms()  # warm the engine / pool
    t0 = time.perf_counter()
    seen = sum(len(d.list_vms()) for d in drivers)
    sweep = time.perf_counter() - t0
    assert seen == args.hosts * args.vms, seen

    result = {"database": url.split(":")[0], "hosts": args.hosts, "vms_per_host": args.vms, "vms_seen": seen,
              "setup_s": round(setup, 2), "sweep_s": round(sweep, 3),
              "per_host_ms": round(1000 * sweep / args.hosts, 3)}
    if args.deploys:
        t0 = time.perf_counter()
        for i in range(args.deploys):
            drivers[i % len(drivers)].start_vm(VMSpec(name=f"deploy-{i}", uuid=str(uuid.uuid4()), cpus=1,
                                                      cpu_mhz=500, memory_mib=512))
        deploy = time.perf_counter() - t0
        result.update(deploys=args.deploys, deploy_s=round(deploy, 2),
                      per_deploy_ms=round(1000 * deploy / args.deploys, 2))
    print(f"sweep of {args.hosts} hosts x {args.vms} VMs: {sweep:.2f} s "
          f"({result['per_host_ms']} ms per host); setup {setup:.1f} s", file=sys.stderr)
    print(json.dumps(result))
    dispose_engines()
    engine.dispose()
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
