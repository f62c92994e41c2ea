"""CPU budget per operation (issue 21), in one process: Nubo's CPU (this process, all threads)
and, on PostgreSQL, the CPU of the server processes behind this process's connections, per
deploy (API call and job apart), VM stop, start, reboot and destroy with expunge (call and
job), listVirtualMachines (pagesize 20), queryAsyncJobResult, each call of the 50-client load
test, and the dashboard and VM list pages; with the SQL statements of each. An API call is
measured from its signed request to its answer's bytes (the client's signing and parsing left
out). The same operations as tests/integration/test_statement_budget.py, on a Simulator zone,
through Flask's test client (no network, no HTTP server), jobs run right after their call as a
worker would (a fresh app context each).

    PYTHONPATH=$PWD .venv/bin/python bench/budget_bench.py [--database-url URL] [--n 40]

--compare-expiry also runs the VM jobs with the session expiring on commit (as before issue 21)
in the same run, so the two are measured side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NUBO_PASSWORD_HASH", "scrypt:1024:8:1")

import sqlalchemy as sa  # noqa: E402

from app import create_app  # noqa: E402
from app.api.signing import sign  # noqa: E402
from app.extensions import db  # noqa: E402
from app.jobs import service as jobs, tasks  # noqa: E402
from app.services import accounts, bootstrap, settings  # noqa: E402
from tests.conftest import csrf_token, fresh_server_database  # noqa: E402
from tests.helpers.sim_zone import simulator_zone  # noqa: E402
from tests.helpers.users import existing_user  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return 0.0
    f = stat[stat.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / TICK


class Meter:
    """Nubo's CPU (process_time), the PostgreSQL backends' CPU, statements, for one operation; and
    the round trips to the database on every engine (the Simulator's own included): statements,
    commits, pings, and pool checkouts. The round trips are counted, so they do not vary with the
    machine's speed as the CPU figures do."""

    def __init__(self, engine, backends: set[int]):
        self.engine, self.backends, self.statements = engine, backends, 0
        self.trips = {"statements": 0, "begins": 0, "commits": 0, "rollbacks": 0, "pings": 0, "checkouts": 0}
        self.tracing, self.trace = False, []  # --trace: each round trip with its caller in app/
        sa.event.listen(engine, "before_cursor_execute", self._count)
        sa.event.listen(sa.engine.Engine, "before_cursor_execute",
                        lambda conn, cur, statement, *a: self._trip("statements", statement))
        sa.event.listen(sa.pool.Pool, "checkout", lambda *a: self._trip("checkouts"))
        if engine.dialect.name == "postgresql":
            self._count_transactions()
        else:  # pymysql sends no BEGIN; its ROLLBACKs (and SQLite's) are not counted
            sa.event.listen(sa.engine.Engine, "commit", lambda *a: self._trip("commits"))
        dialect = type(engine.dialect)
        real_ping = dialect.do_ping
        dialect.do_ping = lambda d, c: self._trip("pings") or real_ping(d, c)

    def _count_transactions(self) -> None:
        """psycopg's own round trips for transactions, on every engine: the BEGIN it sends before
        the first statement of one (not in autocommit), and each COMMIT or ROLLBACK that reaches
        the server (a read-only transaction's end is a COMMIT: app/engine.py)."""
        import psycopg
        from psycopg.pq import TransactionStatus
        meter = self
        real_commit, real_rollback = psycopg.Connection.commit, psycopg.Connection.rollback

        def commit(conn):
            if conn.info.transaction_status == TransactionStatus.INTRANS:
                meter._trip("commits")
            return real_commit(conn)

        def rollback(conn):
            if conn.info.transaction_status != TransactionStatus.IDLE:
                meter._trip("rollbacks")
            return real_rollback(conn)
        psycopg.Connection.commit, psycopg.Connection.rollback = commit, rollback

        @sa.event.listens_for(sa.engine.Engine, "before_cursor_execute")
        def _begins(conn, cursor, *a):
            raw = cursor.connection
            if not raw.autocommit and raw.info.transaction_status == TransactionStatus.IDLE:
                meter._trip("begins")

    def _count(self, *a):
        self.statements += 1

    def _trip(self, kind, statement=""):
        self.trips[kind] += 1
        if self.tracing:
            self.trace.append((kind, _app_frames(), " ".join(statement.split())[:90]))

    def measure(self, fn):
        s0, c0, t0 = self.statements, time.process_time(), dict(self.trips)
        b0 = sum(proc_cpu(p) for p in self.backends)
        out = fn()
        cpu = time.process_time() - c0
        server = sum(proc_cpu(p) for p in self.backends) - b0
        return out, cpu, server, self.statements - s0, {k: v - t0[k] for k, v in self.trips.items()}


def _app_frames() -> str:
    """The innermost three of Nubo's own frames (app/) that led to a round trip."""
    out, f = [], sys._getframe(2)
    while f is not None and len(out) < 3:
        path = f.f_code.co_filename
        if "/app/" in path and "/site-packages/" not in path:
            out.append(f"{path.rsplit('/app/', 1)[1]}:{f.f_lineno} {f.f_code.co_name}")
        f = f.f_back
    return " < ".join(out)


def simulator_world(database_url: str, name: str, *, testing: bool):
    """The benchmarks' world: a fresh database `nubo_<name>` on `database_url`'s server (SQLite
    without one), an admin with API keys (no instance limit), a Simulator zone of four hosts; jobs
    run where they are submitted unless tasks.run_job is replaced. (app, ids, key, secret)."""
    url = fresh_server_database(database_url, name) if database_url else ""
    instance = Path(tempfile.mkdtemp())
    app = create_app({"INSTANCE_PATH": str(instance), "DATABASE_URL": url, "TESTING": testing, "SEED_DEMO": False,
                      "JOBS_IMMEDIATE": True})
    settings.CACHE_SECONDS = 3600.0
    with app.app_context():
        db.create_all()
        settings.sync_definitions()
        bootstrap.seed_reference_data()
        existing_user("admin", "adminpass", role="admin", account="admin")
        admin = accounts.get_user("admin")
        w = simulator_zone(admin, instance, name="bz", guest_cidr="10.64.0.0/16",
                           host_urls=[f"simulator://b{i}?cpus=128&memory=1048576" for i in range(4)])
        ids = dict(zone=w.zone.uuid, t=w.template.uuid, so=w.offering.uuid)
        key, secret = accounts.ensure_keys(admin)
    return app, ids, key, secret


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url", default="")
    ap.add_argument("--n", type=int, default=40, help="deploys (and stop/start pairs, list calls...) measured")
    ap.add_argument("--compare-expiry", action="store_true")
    ap.add_argument("--profile", help="cProfile the operations whose name starts with this (top 30 printed)")
    ap.add_argument("--profile-out", help="also write the profile to this file (pstats)")
    ap.add_argument("--trace", help="print every round trip (statement, commit, checkout) of the last run of "
                                    "the operation whose name starts with this, with its callers in app/")
    a = ap.parse_args()
    app, ids, key, secret = simulator_world(a.database_url, "budget", testing=True)
    backends: set[int] = set()
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "postgresql":
        @sa.event.listens_for(engine, "connect")
        def _pid(dbapi_conn, _):
            cur = dbapi_conn.cursor()
            cur.execute("SELECT pg_backend_pid()")
            backends.add(cur.fetchone()[0])
            cur.close()
        engine.dispose()
    queued: list[int] = []
    tasks.run_job = queued.append  # the job is run apart from its call (below)
    client = app.test_client()
    meter = Meter(engine, backends)

    def call(command, **params):
        return api_call(None, command, **params)

    def api_call(label, command, /, **params):
        """A signed API call, recorded as `label` (None: not measured). Signing it and parsing
        its answer are the client's work: only the request itself is measured."""
        p = {"apiKey": key, "response": "json", "command": command, **{k: str(v) for k, v in params.items()}}
        p["signature"] = sign(p, secret)
        send = lambda: client.get("/client/api", query_string=p)  # noqa: E731
        resp = send() if label is None else record(label, send)
        assert resp.status_code == 200, resp.data
        return json.loads(resp.data)[f"{command.lower()}response"]

    def run_job():
        job_id = queued.pop()
        with app.app_context():
            jobs.execute(job_id)

    rows: dict[str, list[tuple[float, float, int]]] = {}
    traces: dict[str, list] = {}

    import cProfile
    # CPU time, not wall time: a job's waits (the Simulator's boot delay, the database's
    # answers) are not Nubo's cost.
    prof = cProfile.Profile(time.thread_time) if a.profile else None

    def record(name, fn):
        if prof is not None and name.startswith(a.profile):
            fn = (lambda f: lambda: prof.runcall(f))(fn)
        meter.tracing, meter.trace = bool(a.trace and name.startswith(a.trace)), []
        out, cpu, server, n, trips = meter.measure(fn)
        if meter.tracing:
            traces[name], meter.tracing = meter.trace, False
        rows.setdefault(name, []).append((cpu, server, n, trips))
        return out

    saved = set(jobs._NO_EXPIRY)
    variants = [("", saved)] + ([(" (expiring on commit)", set())] if a.compare_expiry else [])
    call("deployVirtualMachine", zoneid=ids["zone"], serviceofferingid=ids["so"], templateid=ids["t"], name="warm")
    run_job()
    vm_ids = []
    for suffix, no_expiry in variants:
        jobs._NO_EXPIRY.clear()
        jobs._NO_EXPIRY.update(no_expiry)
        for i in range(a.n):
            body = api_call("deployVirtualMachine: API call", "deployVirtualMachine", zoneid=ids["zone"],
                            serviceofferingid=ids["so"], templateid=ids["t"], name=f"v{suffix and 'e'}{i}")
            record("deploy job" + suffix, run_job)
            vm_ids.append(body["id"])
        last_job = body["jobid"]
        for vm in vm_ids[-a.n:]:
            for action in ("stop", "start", "reboot"):
                api_call(f"{action}VirtualMachine: API call", f"{action}VirtualMachine", id=vm)
                record(f"{action} job" + suffix, run_job)
    jobs._NO_EXPIRY.clear()
    jobs._NO_EXPIRY.update(saved)
    for _ in range(a.n):
        api_call("listVirtualMachines pagesize=20", "listVirtualMachines", pagesize=20, page=1)
        api_call("queryAsyncJobResult", "queryAsyncJobResult", jobid=last_job)
    from bench.stack_bench import LOAD_CALLS
    for command, params in LOAD_CALLS:  # the load test's calls (stack_bench.py load), each one's cost
        label = f"{command} {' '.join(f'{k}={v}' for k, v in params.items() if k != 'listall')}".strip()
        call(command, **params)
        for _ in range(a.n):
            api_call(f"load mix: {label}", command, **params)
    client.post("/login", data={"username": "admin", "password": "adminpass", "csrf_token": csrf_token(client)})
    for page in ("/admin/", "/vms/"):
        client.get(page)
        for _ in range(a.n):
            record(f"page {page}", lambda page=page: client.get(page))
    # Last, as it empties the zone: each VM destroyed and expunged at once.
    for vm in vm_ids:
        api_call("destroyVirtualMachine expunge=true: API call", "destroyVirtualMachine", id=vm, expunge="true")
        record("destroy job", run_job)
    if prof is not None:
        import pstats
        pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        if a.profile_out:
            prof.dump_stats(a.profile_out)
    print(f"{engine.dialect.name}, {len(vm_ids) + 1} VMs on 4 Simulator hosts, n={a.n} per operation; "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    server = "PostgreSQL CPU ms" if backends else "(server CPU not measured)"
    print(f"| operation | Nubo CPU ms (median / mean) | {server} (mean) | SQL statements | "
          "all engines, median: statements + begins + commits + rollbacks + pings (checkouts) |")
    print("|---|---|---|---|---|")
    for name, vals in rows.items():
        cpu = [v[0] * 1000 for v in vals]
        srv = statistics.mean(v[1] * 1000 for v in vals)
        st = sorted({v[2] for v in vals})
        t = {k: statistics.median(v[3][k] for v in vals) for k in vals[0][3]}
        print(f"| {name} | {statistics.median(cpu):.1f} / {statistics.mean(cpu):.1f} | "
              f"{srv:.1f} | {st[0]}{'–' + str(st[-1]) if len(st) > 1 else ''} | "
              f"{t['statements']:g} + {t['begins']:g} + {t['commits']:g} + {t['rollbacks']:g} + {t['pings']:g} "
              f"({t['checkouts']:g}) |")
    for name, trace in traces.items():
        print(f"\n{name}: {len(trace)} round trips and checkouts, in order")
        for i, (kind, where, statement) in enumerate(trace, 1):
            print(f"{i:3} {kind:10} {statement or '':90} {where}")


if __name__ == "__main__":
    main()
