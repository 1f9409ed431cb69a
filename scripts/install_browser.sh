#!/usr/bin/env bash
# Installs Debian's chromium for the Playwright browser tests (tests/browser/), idempotently.
# Never `playwright install`: the machines have no internet; the tests launch /usr/bin/chromium.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
say() { printf '\033[1m[browser]\033[0m %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install_browser.sh: chromium is missing and we are not root (no sudo): browser tests will be skipped" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show chromium >/dev/null 2>&1; then
  say "updating the package index"
  $SUDO apt-get update -qq
fi
say "installing chromium (Debian package)"
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
test -x /usr/bin/chromium
say "chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}') installed"
