#!/usr/bin/env bash
# The dashboard's front-end build: install the pinned npm packages (package-lock.json) and copy the
# files the page loads into pooler/web/static/vendor/ (generated, gitignored, shipped in the Python
# package). No bundler: the page is plain JS and loads uPlot's browser build as it is.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
out=../pooler/web/static/vendor
mkdir -p "$out"
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css "$out/"
cp node_modules/uplot/LICENSE "$out/uPlot.LICENSE"
