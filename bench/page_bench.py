"""Every portal page at scale: 100,000 VMs over 2,000 hosts (list_bench's generator), then
each page an admin or a user opens, rendered through Flask's test client (server time, no
network), with its SQL statements counted.

The pages are found, not listed by hand: every GET route of the app that takes no argument
(the navigation's pages and the rest), plus the detail pages of one VM, host, zone and
account. A page that does not answer 200 is reported with its status, not timed.

    .venv/bin/python bench/page_bench.py                       # SQLite in a temp dir
    .venv/bin/python bench/page_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
    options: --vms 100000 --hosts 2000 --zones 10 --repeat 15 --only /vms/
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from bench.list_bench import Counter, fresh_app, generate  # noqa: E402

# Endpoints that are not pages: streams, downloads, API, static files, log-out, console sockets.
SKIP_PREFIXES = ("static", "api.", "ops.", "auth.logout", "stream", "downloads.fetch", "console.vnc")


def pages(app) -> list[str]:
    """GET routes without arguments (sorted), the portal's own pages."""
    urls = set()
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.arguments or rule.endpoint.startswith(SKIP_PREFIXES):
            continue
        if rule.rule.startswith(("/client", "/metrics", "/healthz", "/download")):
            continue
        urls.add(rule.rule)
    return sorted(urls)


def timed(client, counter, url: str, repeat: int) -> tuple[int, list[float], list[int]]:
    times, queries, status = [], [], 0
    for _ in range(repeat):
        counter.n = 0
        t0 = time.perf_counter()
        resp = client.get(url)
        elapsed = (time.perf_counter() - t0) * 1000
        status = resp.status_code
        if status != 200:
            return status, [], []
        times.append(elapsed)
        queries.append(counter.n)
    return status, sorted(times), queries


def row(label: str, status: int, times: list[float], queries: list[int]) -> str:
    if status != 200:
        return f"| {label} | {status} | | | |"
    p50 = times[len(times) // 2]
    p95 = times[max(0, int(len(times) * 0.95) - 1)]
    q = f"{min(queries)}" if min(queries) == max(queries) else f"{min(queries)}–{max(queries)}"
    return f"| {label} | 200 | {p50:.1f} | {p95:.1f} | {q} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--vms", type=int, default=100_000)
    ap.add_argument("--hosts", type=int, default=2_000)
    ap.add_argument("--zones", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--only", default="", help="only URLs containing this text")
    args = ap.parse_args()
    from app.extensions import db
    from app.models import Account, Host, VirtualMachine, Zone
    from app.runtime import tune_gc
    app = fresh_app(args.database_url)
    with app.app_context():
        t0 = time.perf_counter()
        ids = generate(db, args.vms, args.hosts, args.zones)
        made = time.perf_counter() - t0
        vm = db.session.scalar(sa.select(VirtualMachine.uuid).where(VirtualMachine.state == "Running").limit(1))
        host = db.session.scalar(sa.select(Host.uuid).limit(1))
        zone = db.session.scalar(sa.select(Zone.uuid).limit(1))
        account = db.session.scalar(sa.select(Account.uuid).where(Account.name == "u0"))
        counter = Counter(db.engine)
    tune_gc()
    dialect = "SQLite" if not args.database_url else args.database_url.split("+")[0].split(":")[0]
    print(f"{args.vms} VMs, {args.hosts} hosts, {args.zones} zones on {dialect}; generated in {made:.1f} s; "
          f"{args.repeat} renders per page")
    details = [f"/vms/{vm}", f"/admin/hosts/{host}", f"/admin/zones/{zone}", f"/admin/accounts/{account}"]
    # The VM list's sorts, its Destroyed tab and the top bar's search (--only "?" for these alone).
    details += [f"/vms/?sort={key}" for key in ("name", "-state", "host", "zone", "template", "offering", "account",
                                                 "ip", "created")] + ["/vms/?view=destroyed", "/search/?find=vm-12"]
    for who, (user, password) in (("admin", ids["admin"]), ("user", ("u0", "bench-secret-pass-41"))):
        client = app.test_client()
        client.post("/login", data={"username": user, "password": password})
        urls = pages(app) + (details if who == "admin" else [])
        print(f"\n{who} ({user})\n")
        print("| page | status | p50 ms | p95 ms | SQL statements |")
        print("|---|---|---|---|---|")
        for url in urls:
            if args.only and args.only not in url:
                continue
            status, times, queries = timed(client, counter, url, args.repeat)
            if who == "user" and status in (302, 403):
                continue  # an admin page: not the user's
            print(row(url, status, times, queries), flush=True)


if __name__ == "__main__":
    random.seed(7)
    main()
