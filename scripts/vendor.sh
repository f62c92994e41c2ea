#!/usr/bin/env bash
# Copy the front-end packages installed by `npm ci` into static/vendor/.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf static/vendor
mkdir -p static/vendor/htmx static/vendor/novnc
cp node_modules/htmx.org/dist/htmx.min.js static/vendor/htmx/
cp -r node_modules/@novnc/novnc/core static/vendor/novnc/
[ -d node_modules/@novnc/novnc/vendor ] && cp -r node_modules/@novnc/novnc/vendor static/vendor/novnc/
cp node_modules/@novnc/novnc/LICENSE.txt static/vendor/novnc/ 2>/dev/null || true
