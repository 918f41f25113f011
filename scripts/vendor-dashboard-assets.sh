#!/usr/bin/env bash
# Refresh the dashboard's vendored scripts, which hookline serves itself (the dashboard loads
# nothing from a CDN): htmx from the npm package htmx.org and Chart.js from the npm package
# chart.js, each with its licence, into src/hookline/dashboard/static/vendor/.
#
# To upgrade: change a version below, run `scripts/vendor-dashboard-assets.sh` (needs npm and
# the npm registry), run the dashboard's tests (`.venv/bin/pytest tests/browser/test_dashboard.py
# tests/api/test_dashboard.py`) and commit the result.
set -euo pipefail

# htmx 2.x: the maintained line whose attributes the templates use (4.x changed them).
HTMX_VERSION=2.0.11
CHARTJS_VERSION=4.6.1

cd "$(dirname "$0")/.."
vendor=src/hookline/dashboard/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() {  # fetch <package> <version>: unpacked into $work/<package>; prints its integrity
  local json
  json=$(cd "$work" && npm pack --silent --json "$1@$2")
  mkdir -p "$work/$1"
  tar -xzf "$work/$(node -p 'JSON.parse(process.argv[1])[0].filename' "$json")" \
    -C "$work/$1" --strip-components=1
  node -p 'JSON.parse(process.argv[1])[0].integrity' "$json"
}

htmx_integrity=$(fetch htmx.org "$HTMX_VERSION")
chartjs_integrity=$(fetch chart.js "$CHARTJS_VERSION")

rm -rf "$vendor"
mkdir -p "$vendor"
cp "$work/htmx.org/dist/htmx.min.js" "$vendor/htmx.min.js"
cp "$work/htmx.org/LICENSE" "$vendor/htmx.LICENSE"
# Without its source map comment: the map is not shipped, and a browser would ask for it.
sed '/^\/\/# sourceMappingURL=/d' "$work/chart.js/dist/chart.umd.min.js" >"$vendor/chart.umd.min.js"
cp "$work/chart.js/LICENSE.md" "$vendor/chart.js.LICENSE.md"

cat >"$vendor/README.md" <<EOT
# The dashboard's vendored scripts

Served by hookline at \`/dashboard/static/vendor/\`, so that the dashboard needs no CDN.
Copied from the npm registry by \`scripts/vendor-dashboard-assets.sh\`; do not edit them by
hand. One change, by that script: Chart.js's \`sourceMappingURL\` comment is removed (the map is
not shipped).

| file | npm package | version | integrity | licence |
|---|---|---|---|---|
| \`htmx.min.js\` | htmx.org | $HTMX_VERSION | \`$htmx_integrity\` | 0BSD (\`htmx.LICENSE\`) |
| \`chart.umd.min.js\` | chart.js | $CHARTJS_VERSION | \`$chartjs_integrity\` | MIT (\`chart.js.LICENSE.md\`) |
EOT
echo "vendored htmx.org $HTMX_VERSION and chart.js $CHARTJS_VERSION into $vendor"
