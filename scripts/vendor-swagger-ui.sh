#!/usr/bin/env bash
# Replace the vendored Swagger UI (the viewer of GET /docs) with swagger-ui-dist VERSION from the npm registry.
# Usage: scripts/vendor-swagger-ui.sh 5.35.0   (then update static/swagger-ui/VENDORED.md and SWAGGER_UI_VERSION)
set -euo pipefail
version="${1:?usage: $0 VERSION}"
dest="$(cd "$(dirname "$0")/.." && pwd)/src/switchyard/server/static/swagger-ui"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@${version}" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
for f in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt; do
  cp "$work/package/$f" "$dest/$f"
done
echo "swagger-ui-dist ${version} -> ${dest}"
sha256sum "$work"/swagger-ui-dist-*.tgz
