#!/usr/bin/env bash
# Checks the import contracts, then runs the whole suite (slow end-to-end and browser tests included) against the real
# PostgreSQL and Redis. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# The development switch (tradeops/settings.py): DEBUG on, HTTPS-only settings relaxed, keys
# generated into var/dev-keys.json. Nothing else differs from production.
export TRADEOPS_DEV=${TRADEOPS_DEV:-true}
export LOG_LEVEL=${LOG_LEVEL:-WARNING}
# Test runs use their own Redis database unless told otherwise, never the running system's db 0.
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/15}
# The house rules first (.importlinter: pure modules, the ground floor, the broker boundary, no
# import circle in orders, nothing imports orders.tasks): a broken contract fails the run before
# any test starts.
.venv/bin/lint-imports --no-cache
if [ -x scripts/install_browser.sh ]; then bash scripts/install_browser.sh; fi
exec .venv/bin/pytest "$@"
