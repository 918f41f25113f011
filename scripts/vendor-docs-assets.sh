#!/usr/bin/env bash
# Refresh the interactive docs' assets that hookline serves itself (so that /docs and /redoc need
# no CDN): Swagger UI from the npm package swagger-ui-dist, ReDoc's standalone bundle from the
# npm package redoc, each with its licence files, into src/hookline/api/static/.
#
# To upgrade: change a version below, run `scripts/vendor-docs-assets.sh` (needs npm and the npm
# registry), run the browser tests (`.venv/bin/pytest tests/browser`) and commit the result.
set -euo pipefail

SWAGGER_UI_VERSION=5.35.0
# ReDoc 2.x: the line FastAPI's get_redoc_html is written for (a classic script). 3.x is an ES
# module, loads icons from its vendor's CDN and sends usage data home.
REDOC_VERSION=2.5.4

cd "$(dirname "$0")/.."
static=src/hookline/api/static
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

swagger_integrity=$(fetch swagger-ui-dist "$SWAGGER_UI_VERSION")
redoc_integrity=$(fetch redoc "$REDOC_VERSION")

rm -rf "$static/swagger_ui" "$static/redoc"
mkdir -p "$static/swagger_ui" "$static/redoc"
for file in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css \
  favicon-32x32.png LICENSE NOTICE; do
  cp "$work/swagger-ui-dist/$file" "$static/swagger_ui/"
done
for file in bundles/redoc.standalone.js bundles/redoc.standalone.js.LICENSE.txt LICENSE; do
  cp "$work/redoc/$file" "$static/redoc/"
done
# The one change: ReDoc's sidebar shows its vendor's logo, fetched from the vendor's CDN. The docs
# load nothing from elsewhere, so its address becomes an empty image (which ReDoc then hides).
logo=https://cdn.redoc.ly/redoc/logo-mini.svg
if [ "$(grep -o "\"$logo\"" "$static/redoc/redoc.standalone.js" | wc -l)" != 1 ]; then
  echo "ReDoc $REDOC_VERSION: not one \"$logo\" in the bundle; see how it loads it now" >&2
  exit 1
fi
sed -i "s#\"$logo\"#\"data:,\"#" "$static/redoc/redoc.standalone.js"

cat >"$static/README.md" <<EOF
# The interactive docs' assets

Served by hookline at \`/static/\` for \`/docs\` (Swagger UI) and \`/redoc\` (ReDoc), so that
neither needs a CDN. Copied from the npm registry by \`scripts/vendor-docs-assets.sh\`; do not
edit them by hand. One change, by that script: ReDoc's sidebar logo, which it would load from
its vendor's CDN, is an empty image (ReDoc then hides it).

| folder | npm package | version | integrity | licence |
|---|---|---|---|---|
| \`swagger_ui/\` | swagger-ui-dist | $SWAGGER_UI_VERSION | \`$swagger_integrity\` | Apache-2.0 (\`LICENSE\`, \`NOTICE\`) |
| \`redoc/\` | redoc | $REDOC_VERSION | \`$redoc_integrity\` | MIT (\`LICENSE\`) |

The bundles' \`*.LICENSE.txt\` files list the licences of the libraries bundled into them.
EOF
echo "vendored swagger-ui-dist $SWAGGER_UI_VERSION and redoc $REDOC_VERSION into $static"
