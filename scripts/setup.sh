#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: virtualenv + requirements, PostgreSQL and Redis up,
# the database created. Used by `make run`, `make test` and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Virtualenv and requirements (re-installed only when requirements.txt changed).
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing requirements"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -m pip install --quiet -r requirements.txt 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -c "import django, celery, talib, redis, psycopg" # fail loudly if the install did not work
  echo "$want" > "$stamp"
fi

# 2. PostgreSQL
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  say "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 1 50); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
fi

# 3. Redis
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  say "starting Redis"
  # Append-only persistence: Celery's queues (the order chunks of a signal being fanned out, the
  # unacknowledged messages) and the feed's recent data survive a Redis restart. fsync once a
  # second: at most ~1 s of writes is lost on a crash of the machine (a Redis process crash loses
  # nothing), at a fraction of the cost of "always". Settings and trade-off: README, Production.
  REDIS_DIR=${REDIS_DIR:-/var/lib/redis}
  mkdir -p "$REDIS_DIR" /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --dir "$REDIS_DIR" \
    --appendonly yes --appendfsync everysec --save "" --aof-use-rdb-preamble yes
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi

# 4. Database
DB_NAME=${DB_NAME:-tradeops}
if ! psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname='$DB_NAME'" | grep -q 1; then
  say "creating database $DB_NAME"
  createdb -h 127.0.0.1 -U postgres "$DB_NAME"
fi
say "ready"
