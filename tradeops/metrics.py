"""Prometheus metrics: the one module every process records into and every ``/metrics`` serves.

Two kinds, kept apart on purpose:

* **Events**, recorded where they happen, in prometheus_client's multiprocess mode (a file per
  process in ``PROMETHEUS_MULTIPROC_DIR``, chosen per process type by ``tradeops.metrics_env``)
  so gunicorn workers and Celery prefork children add up: per-hop latency histograms (tick →
  signal in the analysis worker, signal → order sent and broker calls in the orders worker),
  web requests. Calls into this module are one line at a clear point (``observe_*``) and never
  raise.
* **State**, read when scraped (``StateCollector``, web ``/metrics`` only): orders by status and
  not-sent reason, rejects by broker code, unknown outcomes, feed lag and malformed frames per
  symbol (the feed's own health record in Redis), queue depth per queue, rate-limit budget used
  per credential, broker-state lag, equity and daily-loss headroom per account, kill switch.
  Read from PostgreSQL and Redis, so it is true whichever process changed it and survives
  restarts; nothing in the trading path pays for it.

Who may read: ``METRICS_TOKEN`` (``Authorization: Bearer <token>``) or a client address inside
``METRICS_ALLOWED_IPS`` (networks; default loopback only). Celery workers, beat and the feed
serve their own registry on ``METRICS_PORTS[<role>]`` (bound to ``METRICS_BIND``) behind the same
check.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import threading
import time
from functools import lru_cache

from tradeops import metrics_env

metrics_env.configure()  # before prometheus_client picks its value store (no-op when already done)

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest  # noqa: E402
from prometheus_client import multiprocess  # noqa: E402
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: E402
from prometheus_client.exposition import CONTENT_TYPE_LATEST  # noqa: E402

from tradeops.logging import get_logger  # noqa: E402

log = get_logger(__name__)

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

TICK_TO_SIGNAL = Histogram("tradeops_tick_to_signal_seconds",
                           "Venue time of the causing tick to the stored signal.", buckets=LATENCY_BUCKETS_S)
SIGNAL_TO_ORDER_SENT = Histogram("tradeops_signal_to_order_sent_seconds",
                                 "Signal stored to its order's broker call leaving.", buckets=LATENCY_BUCKETS_S)
BROKER_CALL = Histogram("tradeops_broker_call_seconds", "Broker REST call latency by endpoint and outcome.",
                        ["endpoint", "outcome"], buckets=LATENCY_BUCKETS_S)
HTTP_REQUESTS = Counter("tradeops_http_requests", "Web requests served, by method and status class.",
                        ["method", "status"])

_UUIDISH = re.compile(r"/(?:[0-9a-fA-F-]{16,}|\d+)(?=/|$)")


def endpoint_of(path: str) -> str:
    """A bounded label: ids and uuids in the path become ``{id}``."""
    return _UUIDISH.sub("/{id}", path.split("?", 1)[0])


def observe_broker_call(path: str, outcome: str, seconds: float) -> None:
    try:
        BROKER_CALL.labels(endpoint_of(path), outcome).observe(seconds)
    except Exception:  # noqa: BLE001 - metrics never break a call
        pass


def observe_signals(signals) -> None:
    for s in signals:
        try:
            if s.tick_at and s.created_at:
                TICK_TO_SIGNAL.observe(max(0.0, (s.created_at - s.tick_at).total_seconds()))
        except Exception:  # noqa: BLE001
            pass


def observe_order_sent(signal=None, order=None) -> None:
    """Signal → order sent: ``signal`` given, or the order's signal if already loaded."""
    try:
        if signal is None and order is not None:
            signal = order._state.fields_cache.get("signal")
        if signal is not None and signal.created_at:
            SIGNAL_TO_ORDER_SENT.observe(max(0.0, time.time() - signal.created_at.timestamp()))
    except Exception:  # noqa: BLE001
        pass


# --- access ------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]):
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip())


def allowed(remote_addr: str | None, authorization: str | None) -> bool:
    from django.conf import settings

    token = settings.METRICS_TOKEN
    if token and authorization:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    try:
        addr = ipaddress.ip_address((remote_addr or "").split("%", 1)[0])
    except ValueError:
        return False
    return any(addr in net for net in _networks(tuple(settings.METRICS_ALLOWED_IPS)))


# --- exposition -----------------------------------------------------------------------------------------
def registry(with_state: bool = False) -> CollectorRegistry:
    reg = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(reg)
    else:  # a single process (tests, manage.py): its own in-memory metrics
        for collector in (TICK_TO_SIGNAL, SIGNAL_TO_ORDER_SENT, BROKER_CALL, HTTP_REQUESTS):
            reg.register(collector)
    if with_state:
        reg.register(StateCollector())
    return reg


def metrics_view(request):
    """``/metrics`` of the web process: every gunicorn worker's events plus the system state."""
    from django.http import HttpResponse

    if not allowed(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_AUTHORIZATION")):
        log.warning("metrics_refused", remote_addr=request.META.get("REMOTE_ADDR"))
        return HttpResponse("metrics: a token or an allowed address is required\n", status=403,
                            content_type="text/plain")
    return HttpResponse(generate_latest(registry(with_state=True)), content_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Counts web requests (the web's own multiprocess event metric)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        try:
            HTTP_REQUESTS.labels(request.method if request.method in ("GET", "POST", "HEAD") else "other",
                                 f"{response.status_code // 100}xx").inc()
        except Exception:  # noqa: BLE001
            pass
        return response


def _wsgi_app(with_state: bool):
    def app(environ, start_response):
        if not allowed(environ.get("REMOTE_ADDR"), environ.get("HTTP_AUTHORIZATION")):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"metrics: a token or an allowed address is required\n"]
        body = generate_latest(registry(with_state))
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body]

    return app


_served = False


def serve(role: str | None = None) -> int | None:
    """Serve this process type's ``/metrics`` on ``METRICS_PORTS[role]`` in a daemon thread
    (Celery worker main process, beat, feed). -> the port, or None when not configured. A port
    already taken is logged, never fatal: metrics must not stop a worker."""
    global _served
    from django.conf import settings

    from tradeops import metrics_env

    role = role or os.environ.get("TRADEOPS_METRICS_ROLE") or None
    port = settings.METRICS_PORTS.get(role) if role else None
    if _served or not port or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    from wsgiref.simple_server import make_server

    from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

    metrics_env.clear_stale()
    try:
        httpd = make_server(settings.METRICS_BIND, int(port), _wsgi_app(False), ThreadingWSGIServer,
                            handler_class=_SilentHandler)
    except OSError as exc:
        log.warning("metrics_port_unavailable", role=role, port=port, error=str(exc))
        return None
    threading.Thread(target=httpd.serve_forever, name=f"metrics-{role}", daemon=True).start()
    _served = True
    log.info("metrics_serving", role=role, port=port, bind=settings.METRICS_BIND)
    return int(port)


def process_exited(pid: int) -> None:
    """A worker child exited (gunicorn child_exit, Celery worker_process_shutdown)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        try:
            multiprocess.mark_process_dead(pid)
        except Exception:  # noqa: BLE001
            pass


# --- state, read at scrape time ------------------------------------------------------------------------
class StateCollector:
    """The system's state from PostgreSQL and Redis (see the module docstring). Each part fails
    on its own: an unreadable Redis drops the Redis families, not the database ones."""

    def collect(self):
        for part in (self._orders, self._accounts, self._feed, self._queues, self._rate_budget):
            try:
                yield from part()
            except Exception as exc:  # noqa: BLE001
                log.warning("metrics_state_unavailable", part=part.__name__, error=exc.__class__.__name__)

    def _orders(self):
        from datetime import timedelta

        from django.db.models import Count
        from django.utils import timezone

        from orders.lifecycle import OrderStatus as S
        from orders.models import Order

        since = timezone.now() - timedelta(hours=24)
        by_status = GaugeMetricFamily("tradeops_orders_last_24h",
                                      "Orders created in the last 24 h by status and reason (skip/reject/fail code).",
                                      labels=["status", "reason"])
        rejects = GaugeMetricFamily("tradeops_rejects_last_24h", "Broker rejects in the last 24 h by broker code.",
                                    labels=["code"])
        for status, reason, n in (Order.objects.filter(created_at__gte=since).values_list("status", "reason")
                                  .annotate(n=Count("id")).order_by()):
            by_status.add_metric([status, reason or ""], n)
            if status == S.REJECTED:
                rejects.add_metric([reason or "unknown"], n)
        yield by_status
        yield rejects
        yield GaugeMetricFamily("tradeops_orders_unknown_outcome",
                                "Orders whose outcome is unknown now (awaiting reconciliation).",
                                value=Order.objects.filter(status=S.UNKNOWN).count())
        from accounts.models import AuditLog

        repairs = GaugeMetricFamily("tradeops_reconcile_repairs_last_24h",
                                    "Reconciliation repairs in the last 24 h by kind (in_doubt_order: an unknown "
                                    "outcome resolved; fill_linked; position_closed).", labels=["repair"])
        for repair, n in (AuditLog.objects.filter(action=AuditLog.Action.RECONCILE, created_at__gte=since)
                          .values_list("details__repair").annotate(n=Count("id")).order_by()):
            repairs.add_metric([str(repair or "other")], n)
        yield repairs

    def _accounts(self):
        from django.utils import timezone

        from accounts.models import Account, TradingSwitch
        from orders.execution import load_exposures

        now = timezone.now()
        accounts = list(Account.objects.filter(enabled=True))
        equity = GaugeMetricFamily("tradeops_account_equity", "Last equity read from the broker.",
                                   labels=["account", "currency"])
        headroom = GaugeMetricFamily("tradeops_account_daily_loss_headroom",
                                     "Daily loss limit minus today's loss (account currency).", labels=["account"])
        limit = GaugeMetricFamily("tradeops_account_daily_loss_limit", "Daily loss limit (account currency).",
                                  labels=["account"])
        lag = GaugeMetricFamily("tradeops_broker_state_age_seconds",
                                "Seconds since the account's balance and positions were read from the broker.",
                                labels=["account"])
        trading = [a for a in accounts if not a.halted]
        exposures = load_exposures(trading, 0, now) if trading else {}
        for a in accounts:
            if a.equity is not None:
                equity.add_metric([a.name, a.currency], float(a.equity))
            if a.balance_updated_at:
                lag.add_metric([a.name], max(0.0, (now - a.balance_updated_at).total_seconds()))
            limit.add_metric([a.name], float(a.daily_loss_limit))
            if a.pk in exposures:
                headroom.add_metric([a.name], float(a.daily_loss_limit + exposures[a.pk].daily_pnl))
        yield equity
        yield headroom
        yield limit
        yield lag
        yield GaugeMetricFamily("tradeops_accounts_halted", "Enabled accounts halted now.",
                                value=sum(1 for a in accounts if a.halted))
        switch = TradingSwitch.objects.filter(id=1).first()
        yield GaugeMetricFamily("tradeops_kill_switch", "1 while the global kill switch is on.",
                                value=1 if switch and switch.kill_switch else 0)

    def _feed(self):
        from marketdata.health import read_health
        from dashboard.health import _redis

        client = _redis()
        try:
            health = read_health(client)
        finally:
            client.close()
        lag = GaugeMetricFamily("tradeops_feed_lag_seconds", "Receive time minus venue time of the newest tick.",
                                labels=["symbol"])
        age = GaugeMetricFamily("tradeops_feed_tick_age_seconds", "Seconds since the newest tick was received.",
                                labels=["symbol"])
        malformed = CounterMetricFamily("tradeops_feed_malformed_frames",
                                        "Malformed frames per symbol since the feed started.", labels=["symbol"])
        for name, sym in health.symbols.items():
            if sym.lag_ms is not None:
                lag.add_metric([name], sym.lag_ms / 1000)
            a = sym.age_s(health.now_ms)
            if a is not None:
                age.add_metric([name], a)
            malformed.add_metric([name], sym.malformed)
        yield lag
        yield age
        yield malformed
        yield CounterMetricFamily("tradeops_feed_malformed_frames_all",
                                  "Malformed frames of the feed process since it started (any symbol).",
                                  value=int(health.process.get("malformed") or 0))

    def _queues(self):
        import redis as redis_lib
        from django.conf import settings

        from dashboard.data import queue_depths

        client = redis_lib.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            depths = queue_depths(client)
        finally:
            client.close()
        fam = GaugeMetricFamily("tradeops_queue_depth", "Messages waiting in a Celery queue.", labels=["queue"])
        for q, n in depths.items():
            if n is not None:
                fam.add_metric([q], n)
        yield fam

    def _rate_budget(self):
        from django.conf import settings

        from orders.broker import BUCKET_KEY
        from dashboard.health import _redis

        capacity = float(settings.ORDERS_RATE_BURST)
        rate_per_ms = settings.ORDERS_RATE_LIMIT_PER_MIN / 60_000.0
        now_ms = time.time() * 1000
        fam = GaugeMetricFamily("tradeops_rate_budget_used_ratio",
                                "Share of the per-credential broker request bucket in use (1 = exhausted).",
                                labels=["credential"])
        client = _redis()
        try:
            keys = list(client.scan_iter(match=BUCKET_KEY.format(credential="*"), count=1000))
            pipe = client.pipeline(transaction=False)
            for k in keys:
                pipe.hmget(k, "tokens", "ts")
            for k, (tokens, ts) in zip(keys, pipe.execute()):
                if tokens is None or ts is None:
                    continue
                level = min(capacity, float(tokens) + max(0.0, now_ms - float(ts)) * rate_per_ms)
                fam.add_metric([k.decode().rsplit(":", 1)[-1]], round(1 - level / capacity, 4))
        finally:
            client.close()
        yield fam
