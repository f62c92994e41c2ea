"""Listing at scale: 100,000 VMs over 2,000 hosts in 10 zones, made directly in the
database, then `listVirtualMachines` (pagesize 500) and the admin VM list page
(50 rows) with filters by state, zone, host and name keyword.

Reports p50/p95 server time (inside the app, through Flask's test client: no
network) and the SQL statements per request; then the request against its own SQL
(issue 21: "each list request within 1.5x the time its own SQL statements take when
run directly on the same database"): every statement of each repeat is recorded as the
DBAPI executed it (text and parameters, from the engine's cursor events), and right
after that repeat the same statements run again straight on a raw DBAPI connection of
the same engine (cursor.execute + fetchall, then a rollback, as the request ends its
transaction). "own SQL" is the p50 of those replays; ratio = request p50 / own SQL p50.
CPU columns: this process's time.process_time() (on SQLite all of the database's work
too; on a server only the driver's).

    .venv/bin/python bench/list_bench.py                       # SQLite in a temp dir
    .venv/bin/python bench/list_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432
    .venv/bin/python bench/list_bench.py --database-url mysql+pymysql://root@127.0.0.1:3306
    options: --vms 100000 --hosts 2000 --zones 10 --repeat 30 --only keyword
A server URL's database name is ignored: the run makes its own (nubo_listbench_<pid>_<random>)
and drops it at the end.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402


def generate(db, n_vms: int, n_hosts: int, n_zones: int) -> dict:
    """Rows straight into the tables (bulk inserts), shaped like a real cloud."""
    from app.models import (Cluster, Host, Network, Nic, Pod, ServiceOffering, Template, VirtualMachine, Zone,
                            utcnow)
    from app.services import accounts
    now = utcnow()
    admin = accounts.create_user("benchadmin", "bench-secret-pass-41", role="admin", account="benchadmin")
    users = [accounts.create_user(f"u{i}", "bench-secret-pass-41") for i in range(50)]
    so = ServiceOffering(uuid=str(uuid.uuid4()), name="small", cpu_number=1, cpu_speed=1000, memory=512)
    db.session.add(so)
    zones, pods, clusters, nets = [], [], [], []
    for z in range(n_zones):
        zone = Zone(uuid=str(uuid.uuid4()), name=f"zone-{z}", dns1="8.8.8.8", internal_dns1="10.0.0.2",
                    allocation_state="Enabled", hypervisor_type="Simulator")
        db.session.add(zone)
        db.session.flush()
        pod = Pod(uuid=str(uuid.uuid4()), zone_id=zone.id, name=f"pod-{z}", gateway="10.0.0.1",
                  netmask="255.255.0.0", start_ip="10.0.0.10", end_ip="10.0.255.200")
        db.session.add(pod)
        db.session.flush()
        cluster = Cluster(uuid=str(uuid.uuid4()), zone_id=zone.id, pod_id=pod.id, name=f"cluster-{z}",
                          hypervisor_type="Simulator")
        net = Network(uuid=str(uuid.uuid4()), name=f"guest-{z}", zone_id=zone.id, cidr="10.8.0.0/16",
                      gateway="10.8.0.1", netmask="255.255.0.0", start_ip="10.8.0.2", end_ip="10.8.255.254",
                      is_default=True)
        db.session.add_all([cluster, net])
        db.session.flush()
        zones.append(zone), pods.append(pod), clusters.append(cluster), nets.append(net)
    t = Template(uuid=str(uuid.uuid4()), name="tmpl", format="RAW", hypervisor_type="Simulator",
                 account_id=admin.account_id, is_public=True)
    db.session.add(t)
    db.session.commit()
    hosts = [dict(uuid=str(uuid.uuid4()), name=f"host-{i:04d}", zone_id=zones[i % n_zones].id,
                  pod_id=pods[i % n_zones].id, cluster_id=clusters[i % n_zones].id, hypervisor_type="Simulator",
                  url=f"simulator://host-{i:04d}", address=f"host-{i:04d}", details="{}", state="Up",
                  resource_state="Enabled", cpu_sockets=2, cpu_number=64, cpu_speed=2400, memory_total=512 << 30,
                  cpu_allocated=0, memory_allocated=0, local_storage_total=0, created=now)
             for i in range(n_hosts)]
    db.session.execute(sa.insert(Host), hosts)
    db.session.commit()
    host_rows = db.session.execute(sa.select(Host.id, Host.zone_id)).all()
    states = ["Running"] * 7 + ["Stopped"] * 2 + ["Destroyed"]
    net_of_zone = {z.id: n.id for z, n in zip(zones, nets)}
    batch, nic_batch = [], []
    first_id = (db.session.scalar(sa.select(sa.func.max(VirtualMachine.id))) or 0) + 1
    for i in range(n_vms):
        host_id, zone_id = host_rows[i % len(host_rows)]
        u = users[i % len(users)]
        state = states[i % len(states)]
        batch.append(dict(id=first_id + i, uuid=str(uuid.uuid4()), name=f"vm-{i:06d}", display_name=f"vm-{i:06d}",
                          instance_name=f"i-{u.account_id}-{first_id + i}-VM", state=state,
                          account_id=u.account_id, user_id=u.id, zone_id=zone_id,
                          host_id=host_id if state == "Running" else None, last_host_id=host_id, template_id=t.id,
                          service_offering_id=so.id, hypervisor_type="Simulator", cpu_number=1, cpu_speed=1000,
                          memory=512, created=now, capacity_reserved=state == "Running", quota_counted=True))
        nic_batch.append(dict(uuid=str(uuid.uuid4()), vm_id=first_id + i, network_id=net_of_zone[zone_id],
                              mac_address=f"02:00:{(i >> 24) & 255:02x}:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:"
                                          f"{i & 255:02x}",
                              ip_address=f"10.8.{(i // 250) % 256}.{i % 250 + 2}", is_default=True, device_id=0,
                              created=now))
        if len(batch) == 5000:
            db.session.execute(sa.insert(VirtualMachine), batch)
            db.session.execute(sa.insert(Nic), nic_batch)
            db.session.commit()
            batch, nic_batch = [], []
    if batch:
        db.session.execute(sa.insert(VirtualMachine), batch)
        db.session.execute(sa.insert(Nic), nic_batch)
        db.session.commit()
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(sa.text("VACUUM ANALYZE"))  # what autovacuum does after bulk inserts
    sample_host = db.session.scalar(sa.select(Host.uuid).order_by(Host.id).limit(1).offset(n_hosts // 2))
    return {"zone": zones[3].uuid, "host": sample_host, "admin": ("benchadmin", "bench-secret-pass-41")}


def fresh_app(database_url: str):
    """The app on an empty schema (a temp instance dir; SQLite there unless a URL is given)
    with the reference data, as the benchmarks start from."""
    instance = tempfile.mkdtemp(prefix="nubo-bench-")
    os.environ.setdefault("NUBO_INSTANCE_PATH", instance)
    from app import create_app
    from app.extensions import db
    from app.models.vms import create_trigram_index
    from app.services import bootstrap, settings
    app = create_app({"INSTANCE_PATH": instance, "DATABASE_URL": database_url, "TESTING": True,
                      "SEED_DEMO": False, "JOBS_IMMEDIATE": True, "WTF_CSRF_ENABLED": False})
    with app.app_context():
        db.drop_all()
        db.create_all()
        with db.engine.begin() as conn:
            create_trigram_index(conn)  # as migration 0005 does (PostgreSQL only)
        settings.sync_definitions()
        bootstrap.seed_reference_data()
    return app


class Counter:
    def __init__(self, engine):
        self.n = 0
        sa.event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *args):
        self.n += 1


class Recorder(Counter):
    """Counts statements, and while `recording` keeps each one as the DBAPI ran it:
    (text, parameters, executemany) after it succeeded."""

    def __init__(self, engine):
        super().__init__(engine)
        self.recording = False
        self.statements: list[tuple] = []
        sa.event.listen(engine, "after_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        if self.recording:
            self.statements.append((statement, parameters, executemany))


def replay(engine, statements: list[tuple]) -> tuple[float, float]:
    """(wall ms, CPU ms) of running these statements directly on a raw DBAPI connection of
    the engine (from its pool, so the one the app used: same caches, same prepared statements),
    every row fetched, then a rollback (nothing the request wrote is kept)."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        c0, t0 = time.process_time(), time.perf_counter()
        for statement, parameters, executemany in statements:
            if executemany:
                cursor.executemany(statement, parameters)
            else:
                cursor.execute(statement, parameters)
            if cursor.description is not None:
                cursor.fetchall()
        raw.rollback()
        wall, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
        cursor.close()
    finally:
        raw.close()
    return wall, cpu


class Figures(NamedTuple):
    p50: float
    p95: float
    mean: float
    statements: str
    cpu_p50: float
    sql_p50: float | None = None
    sql_cpu_p50: float | None = None


def measure(client, counter, url: str, repeat: int, *, engine=None, **kw) -> Figures:
    """Each repeat timed (wall and this process's CPU); with an `engine` (and a Recorder as
    `counter`) each repeat's own statements replayed right after it (see replay)."""
    times, cpus, queries, sql, sql_cpu = [], [], [], [], []
    for _ in range(repeat):
        counter.n = 0
        if engine is not None:
            counter.statements, counter.recording = [], True
        c0, t0 = time.process_time(), time.perf_counter()
        resp = client.get(url, **kw) if "data" not in kw else client.post(url, **kw)
        times.append((time.perf_counter() - t0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
        queries.append(counter.n)
        assert resp.status_code == 200, (url, resp.status_code, resp.get_data(as_text=True)[:300])
        if engine is not None:
            counter.recording = False
            wall, cpu = replay(engine, counter.statements)
            sql.append(wall), sql_cpu.append(cpu)
    times.sort()
    p95 = times[max(0, int(len(times) * 0.95) - 1)]
    q = f"{min(queries)}" if min(queries) == max(queries) else f"{min(queries)}–{max(queries)}"
    return Figures(statistics.median(times), p95, statistics.mean(times), q, statistics.median(cpus),
                   statistics.median(sql) if sql else None, statistics.median(sql_cpu) if sql_cpu else None)


@contextlib.contextmanager
def server_database(url: str):
    """A server URL with a database of its own (a unique name: other runs and the tests keep
    theirs), dropped afterwards; SQLite ("") as it is."""
    if not url:
        yield url
        return
    base = sa.engine.make_url(url)
    name = f"nubo_listbench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    postgres = url.startswith("postgresql")
    admin = sa.create_engine(base.set(database="postgres") if postgres else base.set(database=None),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"' if postgres else f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' if postgres
                              else f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--vms", type=int, default=100_000)
    ap.add_argument("--hosts", type=int, default=2_000)
    ap.add_argument("--zones", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--count-cache-seconds", default=None,
                    help="list.count.cache.seconds for the run (default: the product's default, 5; 0 counts every time)")
    ap.add_argument("--only", default="", help="only the requests whose label contains this")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after each request's figures, cProfile it (as many repeats) and print the top N functions")
    args = ap.parse_args()
    with server_database(args.database_url) as url:
        run(args, url)


def run(args, database_url: str) -> None:
    from app.extensions import db
    from app.runtime import tune_gc
    from app.services import settings
    app = fresh_app(database_url)
    with app.app_context():
        settings.update("api.throttling.enabled", "false")
        if args.count_cache_seconds is not None:
            settings.update("list.count.cache.seconds", args.count_cache_seconds)
        t0 = time.perf_counter()
        ids = generate(db, args.vms, args.hosts, args.zones)
        made = time.perf_counter() - t0
        engine = db.engine
        counter = Recorder(engine)
    tune_gc()  # as wsgi.py does in the web processes
    client = app.test_client()
    user, password = ids["admin"]
    key = client.post("/client/api", data={"command": "login", "username": user, "password": password,
                                           "response": "json"}).get_json()["loginresponse"]["sessionkey"]
    # The portal's log-in replaces the session cookie the API's sessionkey goes with: its own client.
    web = app.test_client()
    web.post("/login", data={"username": user, "password": password})
    api = f"/client/api?response=json&sessionkey={key}&command=listVirtualMachines&listall=true&pagesize=500&page=1"
    cases = [
        ("listVirtualMachines pagesize=500", api),
        ("listVirtualMachines pagesize=500 page 150", api.replace("page=1", "page=150")),
        ("listVirtualMachines state=Running", api + "&state=Running"),
        ("listVirtualMachines zoneid", api + f"&zoneid={ids['zone']}"),
        ("listVirtualMachines hostid", api + f"&hostid={ids['host']}"),
        ("listVirtualMachines keyword", api + "&keyword=vm-0123"),
        ("listVirtualMachines details=min", api + "&details=min"),
        ("VM list page (50 rows)", "/vms/"),
        ("VM list page state=Running", "/vms/?state=Running"),
        ("VM list page zone", f"/vms/?zone={ids['zone']}"),
        ("VM list page host", f"/vms/?host={ids['host']}"),
        ("VM list page keyword", "/vms/?q=vm-0123"),
        ("VM list fragment (HTMX)", "/vms/?state=Running&page=2"),
    ]
    dialect = "SQLite" if not args.database_url else args.database_url.split("+")[0].split(":")[0]
    with app.app_context():
        cache = settings.get("list.count.cache.seconds")
    print(f"{args.vms} VMs, {args.hosts} hosts, {args.zones} zones on {dialect}; generated in {made:.1f} s; "
          f"list.count.cache.seconds={cache:g}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| request | p50 ms | p95 ms | mean ms | SQL statements | own SQL p50 ms | ratio | CPU p50 ms: request / own SQL |")
    print("|---|---|---|---|---|---|---|---|")
    for label, url in cases:
        if args.only and args.only not in label:
            continue
        kw = {"headers": {"HX-Request": "true"}} if "HTMX" in label else {}
        f = measure(client if url.startswith("/client") else web, counter, url, args.repeat, engine=engine, **kw)
        print(f"| {label} | {f.p50:.1f} | {f.p95:.1f} | {f.mean:.1f} | {f.statements} | {f.sql_p50:.1f} | "
              f"{f.p50 / f.sql_p50:.2f} | {f.cpu_p50:.1f} / {f.sql_cpu_p50:.1f} |", flush=True)
        if args.profile:
            import cProfile
            import pstats
            prof = cProfile.Profile(time.thread_time)  # CPU, not waits on the database
            prof.runcall(measure, client if url.startswith("/client") else web, counter, url, args.repeat, **kw)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(args.profile)
            pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with app.app_context():
        engine.dispose()  # the pooled connections, before the database is dropped


if __name__ == "__main__":
    random.seed(7)
    main()
