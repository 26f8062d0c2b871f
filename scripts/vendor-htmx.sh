#!/usr/bin/env bash
# Vendor htmx from the npm registry into the console's static folder (the console loads nothing from a CDN):
#   scripts/vendor-htmx.sh 2.0.11
# Copies dist/htmx.min.js of the npm package htmx.org@VERSION, unchanged, and rewrites the version and checksum in
# static/NOTICE.txt. Needs npm (the registry only; nothing is installed).
set -euo pipefail

VERSION="${1:?usage: scripts/vendor-htmx.sh VERSION}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATIC="$ROOT/src/switchyard/server/ui/static"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "htmx.org@$VERSION" >/dev/null && tar xzf "htmx.org-$VERSION.tgz")
cp "$work/package/dist/htmx.min.js" "$STATIC/htmx.min.js"
sum="$(sha256sum "$STATIC/htmx.min.js" | cut -d' ' -f1)"
sed -i -E "s/htmx [0-9][^,]*, the file/htmx $VERSION, the file/; s/htmx\.org@[^ ]+ dist/htmx.org@$VERSION dist/; \
s/htmx\.org@[0-9][^,]*, unchanged/htmx.org@$VERSION, unchanged/; s/sha256: [0-9a-f]+/sha256: $sum/" "$STATIC/NOTICE.txt"
echo "vendored htmx $VERSION ($sum)"
