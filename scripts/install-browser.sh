#!/usr/bin/env bash
# Debian packages the test suite drives, installed when missing: chromium (the console's and /docs' browser tests,
# which Playwright drives through executable_path: no `playwright install`, no download outside the package
# registries) and nginx-light (the compose test's load balancer, tests/test_deploy_compose.py).
# Idempotent and quiet: nothing to do when both are there. Needs root (or password-less sudo) and apt-get; elsewhere
# it says why and exits 0, and the tests that need them skip, saying so.
set -euo pipefail

need=()
[ -x "${SWITCHYARD_CHROMIUM:-/usr/bin/chromium}" ] || need+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: no apt-get here; install ${need[*]} yourself (the tests that need them skip)" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install-browser: not root and no password-less sudo; run: apt-get install -y ${need[*]}" >&2
    exit 0
  fi
fi
echo "install-browser: installing Debian's ${need[*]} (for the browser and compose tests)..."
log="$(mktemp)"
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"; } >"$log" 2>&1; then
  tail -20 "$log" >&2
  rm -f "$log"
  echo "install-browser: apt-get failed; the tests that need ${need[*]} will skip" >&2
  exit 0
fi
rm -f "$log"
echo "install-browser: ${need[*]} installed"
