#!/usr/bin/env bash
# Install Debian's chromium for the console's browser test (tests/test_console_browser.py), which Playwright drives
# through executable_path: no `playwright install`, no download outside the package registries.
# Idempotent and quiet: nothing to do when /usr/bin/chromium exists. Needs root (or sudo) and apt-get; elsewhere it
# says why and exits 0, and the browser test skips, saying so.
set -euo pipefail

CHROMIUM="${SWITCHYARD_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: no apt-get here; install Chromium yourself (the console's browser test skips without it)" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install-browser: not root and no password-less sudo; run: apt-get install -y chromium" >&2
    exit 0
  fi
fi
echo "install-browser: installing Debian's chromium (for the console's browser test)..."
log="$(mktemp)"
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
  tail -20 "$log" >&2
  rm -f "$log"
  echo "install-browser: apt-get failed; the console's browser test will skip" >&2
  exit 1
fi
rm -f "$log"
echo "install-browser: $("$CHROMIUM" --version 2>/dev/null || echo chromium) installed"
