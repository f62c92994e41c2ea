"""A/B of the VM list's Python, in one process: the page rows (`vm_views.list_vms`) and their
answers (`serializers.vm_dicts`) of an older checkout against this one's, on the same data,
timed in turn. On a machine whose speed drifts between runs (bench/RESULTS.md, fifth pass: the
same replay of a page's SQL took 11.6 ms in one run and 20.7 ms in another), two runs of
list_bench.py cannot show a change of a few milliseconds; alternating inside one process can.
Each round runs both sides, the order flipped every round (whichever runs first in a round was
up to 2 ms faster here), and the medians are printed with the machine's load.

    git worktree add --detach /work/wt/base <rev>
    .venv/bin/python bench/list_ab.py --base /work/wt/base [--database-url URL] [--vms 2000 --hosts 400]

The older side's modules are loaded from its files under other names (base_vm_views,
base_serializers); everything they import comes from this checkout, so only those two files
may differ. A server URL's database name is ignored (list_bench.server_database makes one).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.list_bench import fresh_app, generate, server_database  # noqa: E402


def load(base: Path, relative: str, name: str):
    """A module of the older checkout, as `name` (registered first: dataclasses look it up)."""
    spec = importlib.util.spec_from_file_location(name, base / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def page_answers(serializers):
    """The side's page serializer: vm_dicts, or vm_dict per VM before it existed."""
    many = getattr(serializers, "vm_dicts", None)
    if many is not None:
        return many
    return lambda vms, minimal=False, admin=False: [serializers.vm_dict(v, minimal, admin=admin) for v in vms]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="the older checkout (a worktree)")
    ap.add_argument("--database-url", default="")
    ap.add_argument("--vms", type=int, default=2000)
    ap.add_argument("--hosts", type=int, default=400)
    ap.add_argument("--page", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=60)
    a = ap.parse_args()
    with server_database(a.database_url) as url:
        app = fresh_app(url)
        with app.app_context():
            from app.api import serializers
            from app.extensions import db
            from app.services import accounts, vm_views
            ids = generate(db, a.vms, a.hosts, 4)
            admin = accounts.get_user(ids["admin"][0])
            sides = {"base": (load(a.base, "app/services/vm_views.py", "base_vm_views"),
                              page_answers(load(a.base, "app/api/serializers.py", "base_serializers"))),
                     "this": (vm_views, serializers.vm_dicts)}
            # Both sides give the same answers first (else the timing compares different work).
            for minimal in (False, True):
                made = [answers(views.list_vms(admin, page=(1, a.page), details_min=minimal)[0], minimal, admin=True)
                        for views, answers in sides.values()]
                assert made[0] == made[1], f"the two sides answer differently (details_min={minimal})"
            times: dict[str, list[float]] = {}
            for i in range(a.rounds):
                for name in (("base", "this") if i % 2 == 0 else ("this", "base")):
                    views, answers = sides[name]
                    for minimal in (False, True):
                        kind = "details=min" if minimal else "full"
                        t = time.process_time()
                        rows, _ = views.list_vms(admin, page=(1, a.page), details_min=minimal)
                        t1 = time.process_time()
                        answers(rows, minimal, admin=True)
                        t2 = time.process_time()
                        times.setdefault(f"{kind} rows ({name})", []).append(t1 - t)
                        times.setdefault(f"{kind} answers ({name})", []).append(t2 - t1)
                db.session.rollback()
            dialect = db.engine.dialect.name
            db.engine.dispose()  # the pooled connections, before the database is dropped
    print(f"{dialect}, {a.vms} VMs on {a.hosts} hosts, page of {a.page}, {a.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| what | base ms | this ms |")
    print("|---|---|---|")
    for what in ("full rows", "full answers", "details=min rows", "details=min answers"):
        base, this = (statistics.median(times[f"{what} ({s})"]) * 1000 for s in ("base", "this"))
        print(f"| {what} | {base:.2f} | {this:.2f} |")


if __name__ == "__main__":
    main()
