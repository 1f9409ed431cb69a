"""tradeops settings: everything comes from the environment (12-factor).

Every variable is documented in ``.env.example``. **Secure by default**: a process started with
no configuration behaves as production (DEBUG off, HTTPS-only cookies, HSTS, no host allowed,
``SECRET_KEY`` and ``FIELD_ENCRYPTION_KEY`` required, start-up fails with a clear message without
them). Development is one explicit switch, ``TRADEOPS_DEV=true`` (set by ``make run`` and
``scripts/test.sh``): it turns DEBUG on and relaxes the HTTPS-only settings, nothing else. Its keys
are not in the repository: they are generated on first use into a git-ignored local file
(``tradeops/devkeys.py``); production never generates a key.
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from tradeops.queues import Queues

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    env.read_env(str(BASE_DIR / ".env"))

from tradeops import metrics_env  # noqa: E402

# Before anything imports prometheus_client: this process type's multiprocess metrics directory.
metrics_env.configure()

# The one development switch. Everything it changes is in this file, next to the word DEV_MODE.
DEV_MODE = env.bool("TRADEOPS_DEV", default=False)
if env.bool("DEBUG", default=False) and not DEV_MODE:
    raise ImproperlyConfigured(
        "DEBUG=true is not read any more: development is the explicit switch TRADEOPS_DEV=true "
        "(make run and the tests set it). Production leaves both unset."
    )
DEBUG = DEV_MODE


def _required_in_production(name: str) -> str:
    value = env.str(name, default="")
    if value:
        return value
    if DEV_MODE:
        from tradeops.devkeys import dev_key

        return dev_key(name, env.str("TRADEOPS_DEV_KEYS_FILE", default=str(BASE_DIR / "var" / "dev-keys.json")))
    raise ImproperlyConfigured(
        f"{name} is not set. It is required outside development (TRADEOPS_DEV unset): set it in the "
        f"environment (see .env.example for how to generate one)."
    )


SECRET_KEY = _required_in_production("SECRET_KEY")
# Fernet keys, comma-separated: the first encrypts, all decrypt (key rotation).
FIELD_ENCRYPTION_KEYS = [
    k.strip() for k in _required_in_production("FIELD_ENCRYPTION_KEY").split(",") if k.strip()
]

# Empty by default: production answers no Host until told its name (DEBUG already allows localhost).
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Trading switches -------------------------------------------------------------------------
# Simulation is the default. Live trading needs SIMULATION_MODE=false *and* TRADING_ENABLED=true,
# and an account whose mode is "live".
SIMULATION_MODE = env.bool("SIMULATION_MODE", default=True)
TRADING_ENABLED = env.bool("TRADING_ENABLED", default=False)
SIMULATOR_URL = env.str("SIMULATOR_URL", default="http://127.0.0.1:8900")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "axes",
    "csp",
    "accounts",
    "marketdata",
    "signals",
    "orders",
    "prop",
    "workers",
    "dashboard",
    "alerts",
    "backtest",
]

MIDDLEWARE = [
    "tradeops.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a lockout raised during authentication into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "tradeops.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tradeops.context_processors.trading_mode",
            ],
        },
    },
]

WSGI_APPLICATION = "tradeops.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/tradeops")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Tests running side by side (several developers, CI) each get their own test database.
DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME", default="test_tradeops")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# redis://host:port/db, or redis+sentinel://h1:26379,h2:26379/<master>/<db> for a deployment that
# fails over (tradeops/redisconn.py; every Redis client and the Celery broker follow the master).
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

from tradeops.redisconn import celery_url_and_options, is_sentinel_url  # noqa: E402

# Django's cache is not used by the project's code; Django's Redis cache backend cannot ask
# sentinels, so a sentinel deployment gets a per-process cache instead.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"} if is_sentinel_url(REDIS_URL)
          else {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# ISO dates and 24-hour times with seconds in the admin and the dashboard (tradeops/formats/en).
FORMAT_MODULE_PATH = ["tradeops.formats"]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

LOGIN_URL = "admin:login"

# --- Login throttling (django-axes) -------------------------------------------------------------
# Failed logins are counted per (username, client address) pair: a fifth wrong password from one
# address locks that username *from that address* for AXES_COOLOFF_TIME, so nobody elsewhere can
# lock the admin out by knowing its username. Every failure, success and lockout is also in the
# audit log (accounts/audit_auth.py).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out (username, address) at once
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = None  # django-axes's plain 429 "Account locked" answer
AXES_HTTP_RESPONSE_CODE = 429
# The client address: REMOTE_ADDR, unless the web process sits behind TRUSTED_PROXY_COUNT reverse
# proxies that append to X-Forwarded-For (tradeops/client_ip.py says which entry counts and why).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "tradeops.client_ip.client_ip"

# --- Content-Security-Policy (django-csp) ------------------------------------------------------
# Same-origin scripts, styles and images only: no inline script or style anywhere (the dashboard's
# legend swatches are SVG, its refresh is a static file), no framing, no plugins, forms post home.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    },
}

# --- Security headers and HTTPS (manage.py check --deploy is clean in production) -------------
# Always on: no MIME sniffing, no framing, no referrer to other sites, HttpOnly session cookie.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
# HTTPS-only settings: on unless TRADEOPS_DEV (local http://127.0.0.1 has no TLS).
# The TLS terminating proxy (PaaS router, nginx) says the original scheme in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = False if DEV_MODE else env.bool("SECURE_SSL_REDIRECT", default=True)
# A load balancer probes /healthz over plain HTTP inside the private network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = not DEV_MODE
CSRF_COOKIE_SECURE = not DEV_MODE
SECURE_HSTS_SECONDS = 0 if DEV_MODE else env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEV_MODE
SECURE_HSTS_PRELOAD = (not DEV_MODE) and env.bool("SECURE_HSTS_PRELOAD", default=False)
# Preloading is a one-way commitment for the whole domain: a choice, not a default (W021 says so).
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD or DEV_MODE else ["security.W021"]

# --- Celery ---------------------------------------------------------------------------------------
# A redis+sentinel:// URL (here or in REDIS_URL) becomes kombu's sentinel:// form + master_name.
# BROKER_REDIS_URL: the broker as a Redis URL our own clients read (queue depths on the dashboard,
# health, metrics); CELERY_BROKER_URL is what kombu wants.
BROKER_REDIS_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_BROKER_URL, _broker_sentinel_options = celery_url_and_options(BROKER_REDIS_URL)
CELERY_RESULT_BACKEND, _backend_sentinel_options = celery_url_and_options(
    env.str("CELERY_RESULT_BACKEND", default=REDIS_URL))
# JSON only: tasks take ids and plain values, never pickled objects.
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
# Results are only read by tests and operators; keep them an hour, not forever.
CELERY_RESULT_EXPIRES = 3600
# Per-task acks_late is set on order tasks (see orders.tasks); the global default stays early ack
# so a crashed analysis tick is simply skipped, not replayed stale.
CELERY_TASK_ACKS_LATE = False
# One message at a time per process: an order task never waits behind a prefetched backlog.
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
# A hung broker call must not hold a worker forever; soft limit lets the task record why.
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
# Redis redelivers unacked (acks_late) messages only after this; 1 h by default. Orders are
# reconciled at worker start-up, so a shorter window is safe and recovers a crash faster.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=600),
    **_broker_sentinel_options,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"retry_policy": {"timeout": 5.0}, **_backend_sentinel_options}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Queues split by kind of work: a burst of analysis never delays an order.
CELERY_TASK_DEFAULT_QUEUE = Queues.DEFAULT
CELERY_TASK_ROUTES = {
    "signals.*": {"queue": Queues.ANALYSIS},
    "orders.*": {"queue": Queues.ORDERS},
    "alerts.*": {"queue": Queues.OPS},
    "ops.*": {"queue": Queues.OPS},
    "backtest.*": {"queue": Queues.BACKTEST},  # sweeps: their own nice'd worker, never an analysis/orders slot
}
# Task events cost one extra publish per message sent (task-sent) and three per task run
# (received/started/succeeded): measured as the largest share of the order fan-out's Python time
# (orders/README.md, Benchmark). Nothing in the code reads them; Flower switches worker events on
# at run time itself (its enable_events option, on by default), so they are off unless asked for.
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("CELERY_WORKER_SEND_TASK_EVENTS", default=False)
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# --- Orders (order engine: orders/) -----------------------------------------------------------
# Submit retries happen only where the request surely did not execute (see orders/README.md).
ORDERS_MAX_SUBMIT_ATTEMPTS = env.int("ORDERS_MAX_SUBMIT_ATTEMPTS", default=5)
# Exponential backoff with full jitter: sleep uniform(0, min(cap, base * 2**attempt)).
ORDERS_BACKOFF_BASE_S = env.float("ORDERS_BACKOFF_BASE_S", default=0.2)
ORDERS_BACKOFF_CAP_S = env.float("ORDERS_BACKOFF_CAP_S", default=3.0)
# Reads that decide whether an in-doubt order executed are safe to repeat: try them this often
# before declaring the outcome unknown (which blocks the account until reconciliation).
ORDERS_IN_DOUBT_READ_ATTEMPTS = env.int("ORDERS_IN_DOUBT_READ_ATTEMPTS", default=8)
# An unknown outcome triggers reconciliation of that account after this many seconds.
ORDERS_RECONCILE_AFTER_UNKNOWN_S = env.float("ORDERS_RECONCILE_AFTER_UNKNOWN_S", default=2.0)
# No retry starts after this many seconds in the send loop (stays inside the task time limit).
ORDERS_SUBMIT_DEADLINE_S = env.float("ORDERS_SUBMIT_DEADLINE_S", default=30.0)
# Longest Retry-After we wait inside a task; a longer one fails the order (never sent).
ORDERS_MAX_RETRY_AFTER_S = env.float("ORDERS_MAX_RETRY_AFTER_S", default=10.0)
# A signal older than this is not traded (nor resent after an unknown outcome).
ORDERS_SIGNAL_MAX_AGE_S = env.int("ORDERS_SIGNAL_MAX_AGE_S", default=120)
# Wait this long for the per-account lock before re-queueing the task.
ORDERS_ACCOUNT_LOCK_WAIT_S = env.float("ORDERS_ACCOUNT_LOCK_WAIT_S", default=20.0)
# Sizing uses the last equity read if younger than this; otherwise reads /balance first.
ORDERS_EQUITY_MAX_AGE_S = env.int("ORDERS_EQUITY_MAX_AGE_S", default=300)
# Broker clock vs ours: a position opened this long before our submit may still be ours.
ORDERS_MATCH_CLOCK_SKEW_S = env.float("ORDERS_MATCH_CLOCK_SKEW_S", default=2.0)
# Wait before reading back after a lost answer, so a late execution is visible.
ORDERS_UNKNOWN_SETTLE_S = env.float("ORDERS_UNKNOWN_SETTLE_S", default=0.3)
# An account halted BY reconciliation (unexplained broker state) resumes by itself when a later
# reconciliation explains everything; other halt causes never do (audited either way).
ORDERS_AUTO_RESUME_RECONCILED = env.bool("ORDERS_AUTO_RESUME_RECONCILED", default=True)
# Reconcile accounts when an orders worker starts (worker_ready).
ORDERS_RECONCILE_ON_WORKER_READY = env.bool("ORDERS_RECONCILE_ON_WORKER_READY", default=True)
# Shared Redis token bucket per broker credential: 500 req/min documented, keep a margin.
ORDERS_RATE_LIMIT_PER_MIN = env.int("ORDERS_RATE_LIMIT_PER_MIN", default=450)
# Bucket size: burst + rate per minute <= 500 keeps every 60 s window under the broker limit.
ORDERS_RATE_BURST = env.int("ORDERS_RATE_BURST", default=50)
# Share of the bucket only "high" priority calls (closes, cancels) may use.
ORDERS_RATE_HIGH_RESERVE = env.float("ORDERS_RATE_HIGH_RESERVE", default=0.2)
# Account-state worker (manage.py run_account_stream): push (simulator WebSocket) or poll (real APIs).
ACCOUNT_STREAM_MODE = env.str("ACCOUNT_STREAM_MODE", default="push" if SIMULATION_MODE else "poll")
ACCOUNT_STREAM_BALANCE_EVERY_S = env.float("ACCOUNT_STREAM_BALANCE_EVERY_S", default=5.0)
# The prop breach guard (prop/guard.py) judges an account on the state the account stream keeps
# (open Positions, the last balance/equity read) and reads the broker itself only when that state is
# STALE: the stream has not confirmed the account's positions for PROP_GUARD_STATE_MAX_AGE_S, or the
# balance was read longer than PROP_GUARD_BALANCE_MAX_AGE_S ago (two balance-sync periods).
PROP_GUARD_STATE_MAX_AGE_S = env.float("PROP_GUARD_STATE_MAX_AGE_S", default=10.0)
PROP_GUARD_BALANCE_MAX_AGE_S = env.float("PROP_GUARD_BALANCE_MAX_AGE_S", default=60.0)
ACCOUNT_STREAM_SNAPSHOT_EVERY_S = env.float("ACCOUNT_STREAM_SNAPSHOT_EVERY_S", default=30.0)
# Poll cadence: accounts with open positions / flat accounts; per-account and per-host caps.
ACCOUNT_POLL_OPEN_S = env.float("ACCOUNT_POLL_OPEN_S", default=1.0)
ACCOUNT_POLL_FLAT_S = env.float("ACCOUNT_POLL_FLAT_S", default=10.0)
ACCOUNT_POLL_MAX_PER_MIN = env.float("ACCOUNT_POLL_MAX_PER_MIN", default=60.0)
ACCOUNT_POLL_HOST_MAX_PER_S = env.float("ACCOUNT_POLL_HOST_MAX_PER_S", default=200.0)
# sync_accounts: skip accounts read within this many seconds; at most this many per run.
ORDERS_SYNC_MIN_AGE_S = env.int("ORDERS_SYNC_MIN_AGE_S", default=20)
ORDERS_SYNC_BATCH = env.int("ORDERS_SYNC_BATCH", default=200)
# Redis hands a dead worker's unacknowledged order messages back only when a sweep runs, about
# every interval × throttle seconds (kombu's defaults: 10 × 10 = 100 s). Sweep every 10 s so a
# crash is recovered soon after the visibility timeout (the sweep is one ZRANGE on Redis).
CELERY_BROKER_TRANSPORT_OPTIONS.update({
    "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=10),
    "unacked_restore_throttle": env.int("CELERY_UNACKED_RESTORE_THROTTLE", default=1),
})
# Broker session tokens cached in Redis (encrypted): kept this long, refreshed after this age
# (the session lives 15 min per the API notes; refresh is limited to 4/hour).
ORDERS_TOKEN_TTL_S = env.int("ORDERS_TOKEN_TTL_S", default=3600)
ORDERS_TOKEN_REFRESH_AFTER_S = env.int("ORDERS_TOKEN_REFRESH_AFTER_S", default=840)
ORDERS_USER_AGENT = env.str("ORDERS_USER_AGENT", default="tradeops-orders/1.0")
# Link a fill to its broker position inside the order task (one more broker read per order), or
# in a follow-up orders.link_fill task (default: keeps the fan-out's critical path short).
ORDERS_LINK_FILL_INLINE = env.bool("ORDERS_LINK_FILL_INLINE", default=False)
# ...and the follow-up runs this many seconds after the fill. Default 0: it is published at
# follow-up priority instead, so it waits behind pending order work (tradeops.celery.Priority);
# a delay makes it an ETA task held by the worker, which bypasses that ordering once due.
ORDERS_LINK_FILL_DELAY_S = env.float("ORDERS_LINK_FILL_DELAY_S", default=0.0)
# A link pass leaves an order unlinked when its account is busy (the filling chunk still holds the
# lock) or its read failed: the task tries those again this many times, 0.5 s, 1 s, 2 s, 4 s, 8 s
# apart (orders.linking.retry_delay_s); then reconciliation links them.
ORDERS_LINK_FILL_RETRIES = env.int("ORDERS_LINK_FILL_RETRIES", default=5)
# Accounts per orders.place_orders task in a signal's fan-out (orders/batch.py): large enough that
# the per-chunk queries are amortised, small enough that every worker process gets chunks. 40, not
# 20: 1,000 accounts in 1.47-1.60 s instead of 1.91-2.09 s (bench/fanout.py, same run, 2 cores:
# half the chunks, a third less PostgreSQL CPU); 100 accounts are still 4 chunks of 25.
ORDERS_FANOUT_CHUNK = env.int("ORDERS_FANOUT_CHUNK", default=40)
# The orders worker's processes (the Procfile's ORDER_WORKER_CONCURRENCY): a fan-out is cut into a
# whole number of rounds of chunks for them (orders.dispatch.fanout_chunks), so for 100 accounts
# every process starts one chunk at once and none waits for a fifth.
ORDERS_FANOUT_PROCESSES = env.int("ORDER_WORKER_CONCURRENCY", default=4)
# Broker calls of a chunk in flight together (per worker process); at least the largest chunk
# (about 1.5 x ORDERS_FANOUT_CHUNK) so a chunk's orders leave together, right after their
# kill-switch read. 1 = one after another.
ORDERS_SEND_CONCURRENCY = env.int("ORDERS_SEND_CONCURRENCY", default=64)
# Sizing a symbol quoted in neither the account's currency nor its base (GBPUSD on a EUR account)
# uses the converting pair's quote from the feed if younger than this, else asks the broker.
ORDERS_CONVERSION_MAX_AGE_S = env.int("ORDERS_CONVERSION_MAX_AGE_S", default=60)
# Round-trip commission per lot in the account's currency, counted in the loss at the stop when
# sizing (the risk budget then includes it). 0 = not counted; the simulator charges 3.5 per lot
# (`make run` sets that).
ORDERS_COMMISSION_PER_LOT = env.str("ORDERS_COMMISSION_PER_LOT", default="0")
# Broker HTTP timeouts (connect, read) in seconds.
ORDERS_BROKER_TIMEOUT = (env.float("ORDERS_BROKER_CONNECT_TIMEOUT", default=3.05),
                         env.float("ORDERS_BROKER_READ_TIMEOUT", default=10.0))
# Just before sending, SL/TP are re-anchored on the live quote (ask for BUY, bid for SELL) at the
# signal's distances; a quote received longer ago than this is stale → the signal's prices are used.
ORDERS_MAX_QUOTE_AGE_MS = env.int("ORDERS_MAX_QUOTE_AGE_MS", default=5000)
# Skip (reason price_moved) when the live price moved against the signal's entry by more than this
# fraction of the stop distance.
ORDERS_MAX_ENTRY_DEVIATION = env.str("ORDERS_MAX_ENTRY_DEVIATION", default="0.5")  # a Decimal string

# --- Logging: JSON lines on stdout, via structlog's stdlib integration --------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="json")  # "json" or "console"

from tradeops.logging import build_logging_config  # noqa: E402

LOGGING = build_logging_config(LOG_LEVEL, LOG_FORMAT)

# --- Feed (workers/feed.py, manage.py run_feed) ------------------------------------------------
# The feed process owns the broker's market data and keeps Redis the single source of live data.
# "websocket": the simulator's /ws push (default). "polling": REST /quotations + /candles, the
# only way to get data from the real Match-Trader Platform API (it has no public stream).
FEED_TRANSPORT = env.str("FEED_TRANSPORT", default="websocket")
FEED_BASE_URL = env.str("FEED_BASE_URL", default="") or SIMULATOR_URL
FEED_WS_URL = env.str("FEED_WS_URL", default="")  # default: FEED_BASE_URL as ws(s)://…/ws
FEED_EMAIL = env.str("FEED_EMAIL", default="feed@tradeops.local")
# The default password is only for the simulator account; a real broker login comes from the env.
FEED_PASSWORD = env.str("FEED_PASSWORD", default="feed-password" if SIMULATION_MODE else "")
FEED_BROKER_ID = env.str("FEED_BROKER_ID", default="0")
# Trader API instead: a (read-scope) token of one trading account; the feed then polls REST
# (FEED_TRANSPORT=polling: the Trader API has no stream). Never logged.
FEED_TRADER_API_TOKEN = env.str("FEED_TRADER_API_TOKEN", default="")
# In simulation, run_feed creates its login on the simulator (/_sim/accounts, idempotent).
FEED_SIM_AUTO_ACCOUNT = env.bool("FEED_SIM_AUTO_ACCOUNT", default=SIMULATION_MODE)
# polling: 0 = the cadence that spends the dedicated data login's budget (matchtrader.polling.cadence)
FEED_POLL_INTERVAL_S = env.float("FEED_POLL_INTERVAL_S", default=0.0)
FEED_DATA_BUDGET_PER_MIN = env.float("FEED_DATA_BUDGET_PER_MIN", default=450.0)
# Bounds of what Redis keeps per symbol (memory stays flat whatever the uptime).
FEED_STREAM_MAXLEN = env.int("FEED_STREAM_MAXLEN", default=20_000)  # md:ticks:<SYM>, MAXLEN ~
FEED_TAPE_LEN = env.int("FEED_TAPE_LEN", default=5_000)  # ticks the reader can ask for (md:tape)
FEED_BARS_1S_LEN = env.int("FEED_BARS_1S_LEN", default=3_600)
FEED_BARS_1M_LEN = env.int("FEED_BARS_1M_LEN", default=1_440)
# Ticks buffered in memory while Redis is unavailable; beyond it the oldest are dropped (counted).
FEED_BUFFER_MAX_TICKS = env.int("FEED_BUFFER_MAX_TICKS", default=500_000)
FEED_SYMBOLS_POLL_S = env.float("FEED_SYMBOLS_POLL_S", default=2.0)
FEED_WARMUP_MINUTES = env.int("FEED_WARMUP_MINUTES", default=240)  # 1 m history loaded at start
FEED_LEASE_TTL_S = env.float("FEED_LEASE_TTL_S", default=10.0)  # one active feed per Redis db
FEED_MAX_AGE_S = env.float("FEED_MAX_AGE_S", default=15.0)  # feed_status: older = stale
# In simulation, run_feed waits up to this long for the simulator to answer before streaming.
FEED_WAIT_FOR_BROKER_S = env.float("FEED_WAIT_FOR_BROKER_S", default=60.0)
# Event-driven analysis (issue 16): the feed runs each symbol's strategy pre-screen on every tick
# and wakes the analysis for the symbols that moved (signals.analyze_symbols); beat stays on.
ANALYSIS_EVENT_PATH = env.bool("ANALYSIS_EVENT_PATH", default=True)

# --- Operate (dashboard, healthcheck, Flower, demo seeding: the dashboard app) -----------------
# Dashboard: auto-refresh period of the panels, and how many per-account equity curves it draws
# (the accounts whose equity moved most in the window; the total curve covers every account).
DASHBOARD_REFRESH_S = env.int("DASHBOARD_REFRESH_S", default=5)
DASHBOARD_TOP_ACCOUNTS = env.int("DASHBOARD_TOP_ACCOUNTS", default=8)
# Healthcheck thresholds: older heartbeats count as down (manage.py healthcheck, /healthz).
HEALTH_FEED_MAX_AGE_S = env.float("HEALTH_FEED_MAX_AGE_S", default=15.0)
HEALTH_BEAT_MAX_AGE_S = env.float("HEALTH_BEAT_MAX_AGE_S", default=30.0)
HEALTH_WORKER_MAX_AGE_S = env.float("HEALTH_WORKER_MAX_AGE_S", default=30.0)
HEALTH_ANALYSIS_MAX_AGE_S = env.float("HEALTH_ANALYSIS_MAX_AGE_S", default=30.0)
# Broker-state lag: the oldest balance/positions read of a trading account (orders.sync_accounts).
HEALTH_BROKER_STATE_MAX_AGE_S = env.float("HEALTH_BROKER_STATE_MAX_AGE_S", default=180.0)
# Messages waiting in the "orders" queue above which the system is degraded (a backlog).
HEALTH_ORDERS_QUEUE_MAX = env.int("HEALTH_ORDERS_QUEUE_MAX", default=500)
# Host clock vs the broker's (HTTP Date header of HEALTH_CLOCK_URL, default FEED_BASE_URL).
HEALTH_CLOCK_URL = env.str("HEALTH_CLOCK_URL", default="")
HEALTH_CLOCK_MAX_SKEW_S = env.float("HEALTH_CLOCK_MAX_SKEW_S", default=1.0)
HEALTH_CLOCK_CACHE_S = env.float("HEALTH_CLOCK_CACHE_S", default=30.0)
# /healthz answers only "ok"/"degraded"/"down" without credentials; the detailed JSON needs a staff
# session or "Authorization: Bearer <HEALTH_TOKEN>" (unset: staff only).
HEALTH_TOKEN = env.str("HEALTH_TOKEN", default="")
# Queues some live worker must consume, else the "workers" check fails.
HEALTH_REQUIRED_QUEUES = env.list("HEALTH_REQUIRED_QUEUES", default=list(Queues.TRADING))
# Flower (Procfile "flower") reads FLOWER_PORT and FLOWER_BASIC_AUTH=user:pass itself; they are
# read here only so scripts/run.sh and the dashboard can print the URL.
FLOWER_PORT = env.int("FLOWER_PORT", default=5555)

# --- Alerts (alerts/: channels configured in the admin) ------------------------------------------
# Mail for the e-mail channels: EMAIL_URL, e.g. smtp+tls://user:password@mail.example.com:587 .
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="smtp://127.0.0.1:25")
globals().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="tradeops@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Seconds between two evaluations (alerts.evaluate, beat entry created by alerts/migrations).
ALERTS_EVALUATE_EVERY_S = env.int("ALERTS_EVALUATE_EVERY_S", default=15)
# A condition still firing is repeated at most this often; one "resolved" message when it clears.
ALERTS_REPEAT_S = env.int("ALERTS_REPEAT_S", default=3600)
# Rates (rejects, unknown outcomes) and reconciliation repairs are counted over this window.
ALERTS_RATE_WINDOW_S = env.int("ALERTS_RATE_WINDOW_S", default=900)
ALERTS_RATE_MIN_ORDERS = env.int("ALERTS_RATE_MIN_ORDERS", default=10)
ALERTS_REJECT_RATE_PCT = env.float("ALERTS_REJECT_RATE_PCT", default=20.0)
ALERTS_UNKNOWN_RATE_PCT = env.float("ALERTS_UNKNOWN_RATE_PCT", default=5.0)
# Warn when today's loss is within this many percent of an account's daily loss limit.
ALERTS_DAILY_LOSS_WARN_PCT = env.float("ALERTS_DAILY_LOSS_WARN_PCT", default=20.0)
ALERTS_SEND_TIMEOUT_S = env.float("ALERTS_SEND_TIMEOUT_S", default=10.0)
ALERTS_TELEGRAM_API_URL = env.str("ALERTS_TELEGRAM_API_URL", default="https://api.telegram.org")

# --- Metrics (tradeops/metrics.py, Prometheus) -----------------------------------------------------
# /metrics and the per-process metric ports answer a bearer token or an address in these networks.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1/32", "::1/128"])
# Ports of the process types without a web server (role = the Celery -n name's prefix, beat, feed);
# the web's /metrics is on its own port. Multiprocess files live under METRICS_DIR/<role>.
METRICS_PORTS = {k: int(v) for k, v in env.dict(
    "METRICS_PORTS", default={"orders": "9101", "analysis": "9102", "ops": "9103", "beat": "9104", "feed": "9105"}
).items()}
METRICS_BIND = env.str("METRICS_BIND", default="127.0.0.1")

# --- Retention (workers/retention.py, ops.prune_history hourly, manage.py prune_history) ----------
# Days each kind of history is kept (0 = forever). Orders, trades and the audit log are kept longest.
RETENTION_ORDERS_DAYS = env.int("RETENTION_ORDERS_DAYS", default=730)
RETENTION_AUDIT_DAYS = env.int("RETENTION_AUDIT_DAYS", default=730)
RETENTION_SIGNALS_DAYS = env.int("RETENTION_SIGNALS_DAYS", default=90)
RETENTION_EQUITY_DAYS = env.int("RETENTION_EQUITY_DAYS", default=365)
RETENTION_ALERTS_DAYS = env.int("RETENTION_ALERTS_DAYS", default=90)
RETENTION_BATCH = env.int("RETENTION_BATCH", default=5000)
RETENTION_MAX_SECONDS = env.float("RETENTION_MAX_SECONDS", default=120.0)
