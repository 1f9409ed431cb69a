#!/usr/bin/env bash
# Runs the whole system in simulation mode through the Procfile (honcho).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export SIMULATION_MODE=${SIMULATION_MODE:-true}
export PORT=${PORT:-8000}
python manage.py migrate --noinput
python manage.py collectstatic --noinput -v 0
PROCS=$(grep -oE '^[a-z_]+' Procfile | grep -v '^release$' | paste -sd, -)
cat <<MSG

  tradeops is starting in SIMULATION mode (no real broker is contacted).
  Admin:   http://127.0.0.1:${PORT}/admin/
  Create a superuser with: .venv/bin/python manage.py createsuperuser
  Stop with Ctrl-C.

MSG
exec honcho start -f Procfile "${PROCS//,/ }"
