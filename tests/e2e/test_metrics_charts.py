"""Metrics charts in Chromium against the real processes: a Simulator VM deployed through
the API, an hour of samples in its metrics history, and its page draws the CPU, memory,
network and disk charts with uPlot (canvases), for 1 h and again for 7 d, under the CSP
(the `page` fixture fails the test on a violation). Screenshot: test-artifacts/vm-metrics."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import expect

from tests.api.test_templates_cs import files  # noqa: F401  (fixture: a RAW image over HTTP)
from tests.api.test_vms_cs import deploy, simulator_zone
from tests.e2e.conftest import screenshot
from tests.e2e.test_admin_pages import login

pytestmark = pytest.mark.browser


def add_samples(db_path, vm_uuid: str, minutes: int = 60) -> None:
    """A sample a minute for the last `minutes` (as the monitor keeps them every vm.stats.interval)."""
    now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    with sqlite3.connect(db_path, timeout=30) as conn:
        vm_id = conn.execute("SELECT id FROM vm_instances WHERE uuid = ?", (vm_uuid,)).fetchone()[0]
        conn.executemany(
            "INSERT INTO metric_samples (kind, resource_id, at, period, cpu_pct, memory_used, net_rx_bps, "
            "net_tx_bps, disk_read_bps, disk_write_bps) VALUES (1, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
            [(vm_id, (now - timedelta(minutes=m, seconds=30)).isoformat(sep=" "), 20 + m % 50, (200 + m) << 20,
              1000.0 * m, 500.0 * m, 4096.0, 8192.0) for m in range(minutes)])


def test_vm_page_draws_its_metrics(stack, page, files, tmp_path):  # noqa: F811
    stack.start()
    api = stack.api()
    z, _, t, so = simulator_zone(api, files, tmp_path)
    vm = deploy(api, z, t, so, name="charted")
    add_samples(stack.env["NUBO_INSTANCE_PATH"] + "/nubo.db", vm["id"])
    login(page, stack.url)

    page.goto(stack.url + f"/vms/{vm['id']}")
    charts = page.locator("#metrics [data-chart]")
    expect(charts).to_have_count(4)
    expect(page.locator("#metrics [data-chart] canvas")).to_have_count(4)  # one uPlot per figure
    expect(page.locator("#metrics .metrics-status")).to_be_hidden()
    assert page.locator("#metrics [data-chart=cpu] .u-legend").count() == 1
    screenshot(page, "vm-metrics")

    with page.expect_response(lambda r: "/metrics?range=7d" in r.url):
        page.click("#metrics button[data-range='7d']")
    expect(page.locator("#metrics button[data-range='7d']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#metrics [data-chart] canvas")).to_have_count(4)  # redrawn, not added
