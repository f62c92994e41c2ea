#!/usr/bin/env bash
# Copy the front-end packages installed by `npm ci` into static/vendor/.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf static/vendor
mkdir -p static/vendor/htmx static/vendor/novnc static/vendor/htmx-ext-sse static/vendor/uplot static/vendor/axe-core
cp node_modules/htmx.org/dist/htmx.min.js static/vendor/htmx/
cp -r node_modules/@novnc/novnc/core static/vendor/novnc/
[ -d node_modules/@novnc/novnc/vendor ] && cp -r node_modules/@novnc/novnc/vendor static/vendor/novnc/
cp node_modules/@novnc/novnc/LICENSE.txt static/vendor/novnc/ 2>/dev/null || true
# htmx's SSE extension: live state pushed to open pages.
cp node_modules/htmx-ext-sse/dist/sse.min.js static/vendor/htmx-ext-sse/sse.js
cp node_modules/htmx-ext-sse/LICENSE static/vendor/htmx-ext-sse/
# uPlot: metrics charts on the VM and host pages.
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css static/vendor/uplot/
cp node_modules/uplot/LICENSE static/vendor/uplot/ 2>/dev/null || true
# axe-core: accessibility checks, injected by the browser tests only (never served to pages).
cp node_modules/axe-core/axe.min.js node_modules/axe-core/LICENSE static/vendor/axe-core/
