"""Micro-benchmark: the metrics history at 100,000 VMs (app/services/metrics/history.py).
Only the metric_samples table is used (samples name VMs by id; no VM rows are needed).

Measures: one sweep's samples of VMS VMs written (record_vms: one bulk INSERT), an hour of
samples (SAMPLES per VM) averaged into hourly rows (rollup), the samples pruned, the
table's size per row, and one VM's 24 h series read back.

    .venv/bin/python bench/metrics_bench.py                      # SQLite in a temp dir
    .venv/bin/python bench/metrics_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1/nubo_bench

The database must be empty or disposable (tables are dropped and recreated).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sqlalchemy as sa  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=6, help="samples per VM in the hour that is rolled up")
    ap.add_argument("--database-url", default="")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="nubo-metrics-")
    from app import create_app
    from app.extensions import db
    app = create_app({"INSTANCE_PATH": tmp, "DATABASE_URL": a.database_url, "SEED_DEMO": False, "TESTING": True})
    with app.app_context():
        from app.models import MetricSample
        from app.services import settings
        from app.services.metrics import history
        MetricSample.__table__.drop(db.engine, checkfirst=True)
        db.create_all()
        settings.sync_definitions()
        t0 = datetime(2026, 12, 1, 10, 0)
        writes = []
        for i in range(a.samples):
            history._last.clear()
            samples = [{"id": v, "cpu_used_pct": 12.5, "memory_used_kib": 1 << 20, "net_rx_bps": 1e4,
                        "net_tx_bps": 5e3, "disk_read_bps": 2e5, "disk_write_bps": 1e5} for v in range(1, a.vms + 1)]
            started = time.perf_counter()
            history.record_vms(samples, t0 + timedelta(minutes=10 * i))
            db.session.commit()
            writes.append(time.perf_counter() - started)
        total = db.session.scalar(sa.select(sa.func.count()).select_from(MetricSample))
        size = None
        if db.engine.dialect.name == "postgresql":
            size = db.session.scalar(sa.text("SELECT pg_total_relation_size('metric_samples')"))
        elif db.engine.dialect.name == "sqlite":
            db.session.commit()
            size = os.path.getsize(os.path.join(tmp, "nubo.db"))
        started = time.perf_counter()
        history.rollup(t0 + timedelta(hours=1, minutes=5))
        db.session.commit()
        rollup = time.perf_counter() - started
        started = time.perf_counter()
        series = history.series(history.MetricKind.VM, a.vms // 2, "24h", now=t0 + timedelta(hours=1))
        read = time.perf_counter() - started
        settings.update("vm.stats.max.retention.time", "1")
        started = time.perf_counter()
        deleted = history.prune(t0 + timedelta(hours=1, minutes=5))
        db.session.commit()
        prune = time.perf_counter() - started
        print(f"{db.engine.dialect.name}: {a.vms} VMs; one sweep's samples written in "
              f"median {sorted(writes)[len(writes) // 2]:.2f} s (min {min(writes):.2f}, max {max(writes):.2f}); "
              f"{total} rows{f', {size / total:.0f} bytes per row on disk' if size else ''}; "
              f"an hour rolled up in {rollup:.2f} s; {deleted} samples pruned in {prune:.2f} s; "
              f"one VM's 24 h series ({len(series['t'])} points) read in {read * 1000:.1f} ms")


if __name__ == "__main__":
    main()
