#!/usr/bin/env bash
# End-to-end smoke test of "make run": start the whole system exactly as scripts/run.sh does, on
# free ports with a fresh database, wait until the admin answers and a Signal and an Order exist
# (deadline SMOKE_DEADLINE_S, 120 s), check the healthcheck, then stop everything with SIGTERM and
# check that every process exited cleanly (rc=0, nothing SIGKILLed, ports released).
#
# Environment: SMOKE_DB (tradeops_smoke), SMOKE_REDIS_URL (redis://127.0.0.1:6379/6, flushed),
# SMOKE_DEADLINE_S (120), SMOKE_ACCOUNTS (10), SMOKE_LOG (artifacts/smoke.log).
# Exit 0 on success; on failure the tail of the log is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DB=${SMOKE_DB:-tradeops_smoke}
DEADLINE_S=${SMOKE_DEADLINE_S:-120}
mkdir -p artifacts
LOG=${SMOKE_LOG:-artifacts/smoke.log}

say() { printf '\033[1m[smoke]\033[0m %s\n' "$*"; }
fail() { say "FAIL: $*"; echo "----- last lines of $LOG -----"; tail -n 60 "$LOG" || true; exit 1; }
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
listening() { $PY -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(s.connect_ex(('127.0.0.1', $1)))"; }
sql() { psql -h 127.0.0.1 -U postgres -d "$DB" -tAc "$1" 2>/dev/null || echo 0; }

export PORT=$(free_port) SIM_PORT=$(free_port) FLOWER_PORT=$(free_port)
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/${DB}"
export REDIS_URL=${SMOKE_REDIS_URL:-redis://127.0.0.1:6379/6}
export CELERY_BROKER_URL=$REDIS_URL CELERY_RESULT_BACKEND=$REDIS_URL
export SIMULATOR_URL="http://127.0.0.1:${SIM_PORT}"
export DEMO_ACCOUNTS=${SMOKE_ACCOUNTS:-10}
export DJANGO_SUPERUSER_USERNAME=smoke DJANGO_SUPERUSER_PASSWORD="smoke-$($PY -c 'import secrets; print(secrets.token_hex(8))')"
export SIM_SURGES_PER_HOUR=${SIM_SURGES_PER_HOUR:-120}  # more surges than the demo: a faster first signal
export WEB_CONCURRENCY=1 ORDER_WORKER_CONCURRENCY=2 LOG_LEVEL=${LOG_LEVEL:-INFO}
unset FLOWER_BASIC_AUTH RUN_PROCESSES

say "fresh database $DB, Redis $REDIS_URL; web :$PORT, simulator :$SIM_PORT, flower :$FLOWER_PORT"
dropdb -h 127.0.0.1 -U postgres --if-exists "$DB"
createdb -h 127.0.0.1 -U postgres "$DB"
$PY - <<PYEOF
import redis; redis.Redis.from_url("$REDIS_URL").flushdb()
PYEOF

start=$(date +%s)
setsid bash scripts/run.sh >"$LOG" 2>&1 &
RUN_PID=$!
stopped=0
cleanup() {
  if [ "$stopped" = 0 ] && kill -0 "$RUN_PID" 2>/dev/null; then
    kill -TERM "$RUN_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$RUN_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
elapsed() { echo $(( $(date +%s) - start )); }

# 1. the admin answers
until curl -sf -o /dev/null "http://127.0.0.1:${PORT}/admin/login/"; do
  kill -0 "$RUN_PID" 2>/dev/null || fail "run.sh exited early"
  [ "$(elapsed)" -lt "$DEADLINE_S" ] || fail "the admin did not answer within ${DEADLINE_S}s"
  sleep 0.5
done
say "admin answers after $(elapsed)s"

# 2. a signal and an order in the database
until [ "$(sql 'select count(*) from signals_signal')" -gt 0 ] && [ "$(sql 'select count(*) from orders_order')" -gt 0 ]; do
  kill -0 "$RUN_PID" 2>/dev/null || fail "run.sh exited early"
  [ "$(elapsed)" -lt "$DEADLINE_S" ] || fail "no signal and order within ${DEADLINE_S}s (signals: $(sql 'select count(*) from signals_signal'), orders: $(sql 'select count(*) from orders_order'))"
  sleep 1
done
say "first signal and order after $(elapsed)s: $(sql 'select count(*) from signals_signal') signal(s), $(sql "select string_agg(status || '=' || n, ' ') from (select status, count(*) n from orders_order group by status) t") order(s)"

# 3. the healthcheck passes, the dashboard renders for the superuser, Flower wants its password
until $PY manage.py healthcheck >/tmp/smoke_health.$$ 2>&1; do
  [ "$(elapsed)" -lt "$DEADLINE_S" ] || { cat /tmp/smoke_health.$$; rm -f /tmp/smoke_health.$$; fail "healthcheck still failing"; }
  sleep 1
done
rm -f /tmp/smoke_health.$$
say "healthcheck ok"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${FLOWER_PORT}/")
[ "$code" = 401 ] || fail "Flower answered $code without credentials (expected 401)"

# 4. SIGTERM, and every process exits cleanly
say "stopping with SIGTERM"
kill -TERM "$RUN_PID"
rc=0
wait "$RUN_PID" || rc=$?
stopped=1
started=$(grep -cE 'system +\| [a-z]+\.1 started' "$LOG" || true)
clean=$(grep -cE 'system +\| [a-z]+\.1 stopped \(rc=0\)' "$LOG" || true)
grep -E 'system +\| .*(stopped|SIGKILL)' "$LOG" | sed 's/^/    /'
grep -q 'SIGKILL' "$LOG" && fail "a process had to be SIGKILLed"
expected=$(grep -oE '^[a-z_]+' Procfile | grep -vc '^release$')
[ "$started" = "$expected" ] || fail "$started process(es) started, the Procfile has $expected (release excluded)"
[ "$clean" = "$started" ] || fail "$clean of $started process(es) exited with rc=0"
for port in "$PORT" "$SIM_PORT" "$FLOWER_PORT"; do
  if listening "$port"; then fail "port $port still listening after shutdown"; fi
done
say "OK: $started processes stopped cleanly (honcho rc=$rc) in $(elapsed)s"
