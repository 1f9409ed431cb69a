#!/usr/bin/env bash
# Runs the whole system in simulation mode through the Procfile (honcho): simulator, feed,
# Celery workers, beat, web (gunicorn + whitenoise) and Flower. Ctrl-C (or SIGTERM) stops all.
#
# Environment (all optional): PORT (web, 8000), SIM_PORT (8900), FLOWER_PORT (5555),
# FLOWER_BASIC_AUTH (user:pass; generated and printed when unset), DEMO_ACCOUNTS (20),
# DJANGO_SUPERUSER_USERNAME / _PASSWORD / _EMAIL, DATABASE_URL, REDIS_URL. See .env.example.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
# .env (optional, see .env.example) is read here, once, for this script and every process, the
# way the settings read it (django-environ: a variable already in the environment wins). honcho
# is told not to read it again (-e /dev/null): it would override the environment, e.g. an empty
# FLOWER_BASIC_AUTH= over the one generated below.
if [ -f .env ]; then
  eval "$(python - <<'PY'
import os, shlex
import environ
before = set(os.environ)
environ.Env.read_env(".env")
for key in sorted(set(os.environ) - before):
    print(f"export {key}={shlex.quote(os.environ[key])}")
PY
)"
fi
export SIMULATION_MODE=${SIMULATION_MODE:-true}
# The development switch (tradeops/settings.py): DEBUG on, HTTPS-only settings relaxed, keys
# generated on first run into the git-ignored var/dev-keys.json. The Procfile alone is production.
export TRADEOPS_DEV=${TRADEOPS_DEV:-true}
# Local only: the web process listens on the loopback interface (the Procfile default is 0.0.0.0).
export WEB_HOST=${WEB_HOST:-127.0.0.1}
export PORT=${PORT:-8000}
export SIM_PORT=${SIM_PORT:-8900}
export SIMULATOR_URL=${SIMULATOR_URL:-http://127.0.0.1:${SIM_PORT}}
# the simulator charges 3.5 per lot: sizing counts it in the risk at the stop
export ORDERS_COMMISSION_PER_LOT=${ORDERS_COMMISSION_PER_LOT:-3.5}
export FLOWER_PORT=${FLOWER_PORT:-5555}
export PYTHONUNBUFFERED=1
if [ "$SIMULATION_MODE" != "true" ]; then
  echo "scripts/run.sh runs the simulation (SIMULATION_MODE=true); live deployments use the Procfile." >&2
  exit 2
fi
flower_note="basic auth from FLOWER_BASIC_AUTH"
if [ -z "${FLOWER_BASIC_AUTH:-}" ]; then
  FLOWER_BASIC_AUTH="flower:$(python -c 'import secrets; print(secrets.token_urlsafe(12))')"
  flower_note="basic auth ${FLOWER_BASIC_AUTH}, generated for this run"
fi
export FLOWER_BASIC_AUTH

say() { printf '\033[1m[run]\033[0m %s\n' "$*"; }
# A port already taken would make one process exit at once, and honcho then stops them all:
# say which port instead.
for spec in "PORT=$PORT" "SIM_PORT=$SIM_PORT" "FLOWER_PORT=$FLOWER_PORT"; do
  if python -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(s.connect_ex(('127.0.0.1', int('${spec#*=}'))) != 0)"; then
    echo "port ${spec#*=} is already in use: set ${spec%%=*} to a free port (or stop what listens there)" >&2
    exit 2
  fi
done
say "migrating the database"
python manage.py migrate --noinput -v 0
say "collecting static files"
python manage.py collectstatic --noinput -v 0
say "seeding the demo (idempotent)"
seed_log=$(mktemp)
python manage.py seed_demo --accounts "${DEMO_ACCOUNTS:-20}" | tee "$seed_log"
admin_user=${DJANGO_SUPERUSER_USERNAME:-admin}
if [ -n "${DJANGO_SUPERUSER_PASSWORD:-}" ]; then
  password_note="password from DJANGO_SUPERUSER_PASSWORD"
elif grep -q "generated: note it now" "$seed_log"; then
  password_note="generated password printed above"
else
  password_note="existing superuser; forgot the password? .venv/bin/python manage.py changepassword ${admin_user}"
fi
rm -f "$seed_log"
say "the demo backtest on the shipped EURUSD bars (once per code version)"
python manage.py backtest --demo

# Every Procfile process except "release" (migrations, done above): honcho stops everything
# as soon as one process exits, so a one-shot process must not be in the list.
PROCS=${RUN_PROCESSES:-$(grep -oE '^[a-z_]+' Procfile | grep -v '^release$' | paste -sd, -)}
cat <<MSG

  tradeops is starting in SIMULATION mode (no real broker is contacted).

    Dashboard  http://127.0.0.1:${PORT}/dashboard/
    Admin      http://127.0.0.1:${PORT}/admin/      (superuser: ${admin_user}; ${password_note})
    Flower     http://127.0.0.1:${FLOWER_PORT}/       (${flower_note})
    Simulator  ${SIMULATOR_URL}/_sim/stats
    Health     http://127.0.0.1:${PORT}/healthz     (or: .venv/bin/python manage.py healthcheck)
    Metrics    http://127.0.0.1:${PORT}/metrics     (Prometheus; README "Alerts, health, metrics")

  Processes: ${PROCS//,/ }
  Signals and orders appear within a minute. Stop with Ctrl-C.

MSG
exec honcho start -f Procfile -e /dev/null ${PROCS//,/ }
