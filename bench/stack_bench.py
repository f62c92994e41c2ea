"""End-to-end benchmarks against the real processes (honcho: gunicorn, huey
consumers, monitor, console), through the real `cs` client on loopback.

    deploy: N deploys through the API onto Simulator hosts, two huey consumer
            processes; all must end Running, none lost. Target ≥ 20 VMs/s.
    load:   C concurrent API clients calling list and query commands for S seconds.
            Target: 0 errors, p99 ≤ 300 ms.

    .venv/bin/python bench/stack_bench.py deploy --n 1000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/nubo_stackbench --jobs-url redis://127.0.0.1:6379/8
    .venv/bin/python bench/stack_bench.py load --clients 50 --seconds 60 (same database options)

The database is emptied first (dropped and created); the Redis database is flushed.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import fresh_server_database  # noqa: E402
from tests.e2e.conftest import Stack  # noqa: E402
from tests.helpers.www import raw_image, serve  # noqa: E402


def build_zone(api, image_url: str, instance: Path, hosts: int) -> dict:
    z = api.createZone(name="BZ", networktype="Basic", dns1="8.8.8.8", internaldns1="10.0.0.2",
                       guestcidraddress="10.64.0.0/16")["zone"]
    p = api.createPod(zoneid=z["id"], name="P", gateway="192.168.200.1", netmask="255.255.255.0",
                      startip="192.168.200.10", endip="192.168.200.250")["pod"]
    c = api.addCluster(zoneid=z["id"], podid=p["id"], clustername="C", hypervisor="Simulator",
                       clustertype="CloudManaged")["cluster"][0]
    for i in range(hosts):
        api.addHost(zoneid=z["id"], podid=p["id"], clusterid=c["id"],
                    url=f"simulator://bench-{i}?cpus=128&cpuspeed=2400&memory=1048576&localstorage=4000")
    api.createStoragePool(zoneid=z["id"], clusterid=c["id"], name="nfs", url="nfs://filer/export/bench")
    api.addImageStore(provider="Local", url=f"file://{instance}/sec", zoneid=z["id"], name="sec")
    t = api.registerTemplate(name="tiny", url=image_url, zoneid=z["id"], hypervisor="Simulator", format="RAW",
                             ispublic="true")["template"][0]
    while not api.listTemplates(templatefilter="all", id=t["id"])["template"][0].get("isready"):
        time.sleep(0.2)
    so = api.createServiceOffering(name="s", displaytext="s", cpunumber=1, cpuspeed=100, memory=128)["serviceoffering"]
    return {"zone": z["id"], "template": t["id"], "offering": so["id"]}


def cpu_seconds(root: int) -> dict[str, float]:
    """CPU seconds so far (from /proc) of the stack's processes by role (descendants of
    honcho, `root`), the database and Redis servers, and this process (the clients):
    where a benchmark's time goes."""
    import os
    import resource
    tick = os.sysconf("SC_CLK_TCK")
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            args = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        procs[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, args)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    stack, todo = set(), [root]
    while todo:
        pid = todo.pop()
        stack.add(pid)
        todo += children.get(pid, [])
    # The stack's processes by what their command line contains; the servers by their
    # program name only (this process's own arguments name postgres too).
    roles = {"gunicorn": "web (gunicorn)", "huey_consumer": "workers (huey)", " monitor": "monitor",
             "app.console": "console"}
    servers = {"postgres": "PostgreSQL", "mariadbd": "MariaDB", "redis-server": "Redis"}
    totals: dict[tuple[str, int], float] = {}
    for pid, (_, cpu, args) in procs.items():
        program = os.path.basename(args.split(" ", 1)[0]).rstrip(":")
        role = servers.get(program) or next((r for k, r in roles.items() if k in args), None) \
            if pid in stack else servers.get(program)
        if role:
            totals[(role, pid)] = cpu
    me = resource.getrusage(resource.RUSAGE_SELF)
    totals[("bench clients (cs)", 0)] = me.ru_utime + me.ru_stime
    return totals


def cpu_report(before: dict[tuple[str, int], float], after: dict[tuple[str, int], float], wall: float) -> None:
    """Per process, then by role: a process gone before the end (a database backend whose
    connection closed) counts neither its CPU before the run nor during it. Summed by role
    alone, its CPU before the run was taken off the others' (PostgreSQL once read 0.1 s)."""
    used: dict[str, float] = {}
    for (role, pid), cpu in after.items():
        used[role] = used.get(role, 0.0) + cpu - before.get((role, pid), 0.0)
    total = sum(used.values())
    print(f"CPU over {wall:.1f} s on {__import__('os').cpu_count()} cores: {total:.1f} s "
          + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(used.items(), key=lambda kv: -kv[1]) if v >= 0.05))


def deploy(api, ids: dict, n: int, session: int | None = None) -> None:
    before = cpu_seconds(session) if session else {}
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        jobs = list(pool.map(lambda i: api.deployVirtualMachine(
            zoneid=ids["zone"], templateid=ids["template"], serviceofferingid=ids["offering"],
            name=f"b{i}")["jobid"], range(n)))
    submitted = time.monotonic() - t0
    pending = set(jobs)
    failed = 0
    while pending:
        page = 1
        while True:
            rows = api.listAsyncJobs(listall="true", pagesize=500, page=page).get("asyncjobs", [])
            for j in rows:
                if j["jobid"] in pending and j["jobstatus"] != 0:
                    pending.discard(j["jobid"])
                    failed += j["jobstatus"] != 1
            if len(rows) < 500:
                break
            page += 1
        time.sleep(0.5)
    elapsed = time.monotonic() - t0
    running = 0
    page = 1
    while True:
        rows = api.listVirtualMachines(listall="true", details="min", state="Running", pagesize=500,
                                       page=page).get("virtualmachine", [])
        running += len(rows)
        if len(rows) < 500:
            break
        page += 1
    print(f"| {n} deploys | submitted in {submitted:.1f} s | all finished in {elapsed:.1f} s | "
          f"{n / elapsed:.1f} VMs/s | Running: {running} | failed: {failed} |")
    if session:
        cpu_report(before, cpu_seconds(session), elapsed)


# The load test's calls, each client in turn (bench/budget_bench.py measures each one's CPU).
LOAD_CALLS = [("listVirtualMachines", {"listall": "true", "pagesize": 50, "page": 1}),
              ("listVirtualMachines", {"listall": "true", "details": "min", "state": "Running", "pagesize": 200}),
              ("listHosts", {"pagesize": 50}), ("listTemplates", {"templatefilter": "executable"}),
              ("listZones", {}), ("listServiceOfferings", {}), ("listAsyncJobs", {"pagesize": 50}),
              ("listCapacity", {}), ("listEvents", {"pagesize": 50})]


def load(api_factory, clients: int, seconds: float, ids: dict, session: int | None = None) -> None:
    before = cpu_seconds(session) if session else {}
    calls = LOAD_CALLS
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        api = api_factory()
        i = k
        while time.monotonic() < deadline:
            name, params = calls[i % len(calls)]
            i += 1
            t0 = time.perf_counter()
            try:
                getattr(api, name)(**params)
                ok = True
            except Exception as e:  # noqa: BLE001 - counted as an error
                ok = False
                err = f"{name}: {e}"
            dt = (time.perf_counter() - t0) * 1000
            with lock:
                times.append(dt)
                if not ok:
                    errors.append(err)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    times.sort()
    q = statistics.quantiles(times, n=100)
    print(f"| {clients} clients × {seconds:.0f} s | {len(times)} calls ({len(times) / seconds:.0f}/s) | "
          f"p50 {q[49]:.0f} ms | p95 {q[94]:.0f} ms | p99 {q[98]:.0f} ms | errors: {len(errors)} |")
    if errors:
        print("first errors:", errors[:3])
    if session:
        cpu_report(before, cpu_seconds(session), seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("deploy", "load"))
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--jobs-url", default="redis://127.0.0.1:6379/8")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--web-workers", default="2")
    ap.add_argument("--worker-threads", default="8", help="threads per huey consumer process (two processes)")
    ap.add_argument("--preload", type=int, default=200, help="VMs deployed before the load test")
    args = ap.parse_args()
    import redis
    redis.Redis.from_url(args.jobs_url).flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="nubo-stackbench-"))
    stack = Stack(tmp / "instance", {"NUBO_DATABASE_URL": fresh_server_database(args.database_url, "stackbench"),
                                     "NUBO_JOBS_URL": args.jobs_url, "NUBO_WEB_WORKERS": args.web_workers,
                                     "NUBO_WORKER_THREADS": args.worker_threads})
    (tmp / "www").mkdir()
    raw_image(tmp / "www" / "tiny.raw", "8M")
    with serve(tmp / "www") as base:
        run(args, stack, tmp, f"{base}/tiny.raw")


def run(args, stack: Stack, tmp: Path, image: str) -> None:
    try:
        stack.start(concurrency="worker=2")
        api = stack.api()
        api.updateConfiguration(name="api.throttling.enabled", value="false")
        ids = build_zone(api, image, tmp / "instance", args.hosts)
        session = stack.proc.pid  # honcho: the stack's processes are its descendants
        if args.mode == "deploy":
            deploy(api, ids, args.n, session)
        else:
            deploy(api, ids, args.preload)
            from cs import CloudStack
            load(lambda: CloudStack(endpoint=api.endpoint, key=api.key, secret=api.secret), args.clients,
                 args.seconds, ids, session)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
