// Metrics charts of the VM and host pages (templates/_partials/metrics_charts.html):
// fetch the history as JSON (?range=1h|24h|7d, averaged server side) and draw each
// figure with uPlot (static/vendor/uplot). No inline script: everything is in data-*.
"use strict";

(() => {
  const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
  const bytes = (v) => {
    if (v == null) return "";
    let i = 0;
    while (Math.abs(v) >= 1024 && i < UNITS.length - 1) { v /= 1024; i += 1; }
    return `${v.toFixed(v >= 100 || i === 0 ? 0 : 1)} ${UNITS[i]}`;
  };
  const CHARTS = {
    cpu: {series: [["cpu_pct", "CPU %", "#2f7de1"]], fmt: (v) => (v == null ? "" : `${v.toFixed(0)} %`), max: 100},
    memory: {series: [["memory_used", "Used", "#8e44ad"]], fmt: bytes},
    network: {series: [["net_rx_bps", "Received", "#16a085"], ["net_tx_bps", "Sent", "#e67e22"]],
      fmt: (v) => (v == null ? "" : `${bytes(v)}/s`)},
    disk: {series: [["disk_read_bps", "Read", "#27ae60"], ["disk_write_bps", "Written", "#c0392b"]],
      fmt: (v) => (v == null ? "" : `${bytes(v)}/s`)},
  };

  function draw(section, data) {
    const status = section.querySelector(".metrics-status");
    status.hidden = data.t.length > 0;
    section.querySelectorAll("[data-chart]").forEach((fig) => {
      const spec = CHARTS[fig.dataset.chart];
      if (fig.plot) { fig.plot.destroy(); fig.plot = null; }
      const cols = spec.series.map(([key]) => data[key] || []);
      const empty = !data.t.length || cols.every((c) => c.every((v) => v == null));
      fig.classList.toggle("metrics-empty", empty);
      if (empty) return;
      // CPU on 0-100 %, memory on 0 to the VM's (host's) memory, rates on 0 to their peak.
      const top = (hi) => Math.max(spec.max || 0, fig.dataset.chart === "memory" ? data.memory_total || 0 : 0,
        (hi || 0) * 1.1, 1);
      const opts = {
        width: Math.max(fig.clientWidth, 240), height: 160,
        series: [{}, ...spec.series.map(([, label, stroke]) => ({label, stroke, width: 2, value: (u, v) => spec.fmt(v)}))],
        axes: [{}, {values: (u, ticks) => ticks.map(spec.fmt), size: 70}],
        // The whole range chosen, whatever part of it has samples (one sample is a point, not a year).
        scales: {x: {time: true, range: () => [data.start, data.end]}, y: {range: (u, lo, hi) => [0, spec.max || top(hi)]}},
        legend: {live: true},
      };
      fig.plot = new window.uPlot(opts, [data.t, ...cols], fig);
    });
  }

  function load(section, range) {
    const url = new URL(section.dataset.metricsUrl, window.location.href);
    url.searchParams.set("range", range);
    section.dataset.range = range;
    section.querySelectorAll("[data-range]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.range === range)));
    fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin"})
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`${r.status}`))))
      .then((data) => draw(section, data))
      .catch(() => {
        const status = section.querySelector(".metrics-status");
        status.hidden = false;
        status.textContent = "The metrics could not be read.";
      });
  }

  function start() {
    document.querySelectorAll("[data-metrics-url]").forEach((section) => {
      if (!window.uPlot) return;
      section.addEventListener("click", (event) => {
        const button = event.target.closest("[data-range]");
        if (button) load(section, button.dataset.range);
      });
      load(section, "1h");
      // New samples arrive every vm.stats.interval: read the range again each minute.
      window.setInterval(() => { if (!document.hidden) load(section, section.dataset.range); }, 60000);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
