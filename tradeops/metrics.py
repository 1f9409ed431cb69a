"""Prometheus metrics: the one module every process records into and every ``/metrics`` serves.

Two kinds, kept apart on purpose:

* **Events**, recorded where they happen, in prometheus_client's multiprocess mode (a file per
  process in ``PROMETHEUS_MULTIPROC_DIR``, chosen per process type by ``tradeops.metrics_env``)
  so gunicorn workers and Celery prefork children add up: per-hop latency histograms (tick →
  signal in the analysis worker, signal → order sent and broker calls in the orders worker),
  web requests. Calls into this module are one line at a clear point (``observe_*``) and never
  raise.
* **State**, read when scraped: ``dashboard/metrics.py`` (the web's ``/metrics``; it reads the
  apps' tables, which this ground-floor module never imports).

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
from prometheus_client.exposition import CONTENT_TYPE_LATEST  # noqa: E402

from matchtrader import client as _client  # noqa: E402
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


# The broker client's calls are timed by the client and recorded here (the boundary imports no
# metrics library; it calls its observers).
_client.CALL_OBSERVERS.append(observe_broker_call)


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
def registry(*extra) -> CollectorRegistry:
    """This process type's event metrics (every process's files, or this process's own outside
    multiprocess mode), plus ``extra`` collectors (the web adds the system state)."""
    reg = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(reg)
    else:  # a single process (tests, manage.py): its own in-memory metrics
        for collector in (TICK_TO_SIGNAL, SIGNAL_TO_ORDER_SENT, BROKER_CALL, HTTP_REQUESTS):
            reg.register(collector)
    for collector in extra:
        reg.register(collector)
    return reg


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


REFUSED = b"metrics: a token or an allowed address is required\n"


def _wsgi_app():
    def app(environ, start_response):
        if not allowed(environ.get("REMOTE_ADDR"), environ.get("HTTP_AUTHORIZATION")):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [REFUSED]
        body = generate_latest(registry())
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
        httpd = make_server(settings.METRICS_BIND, int(port), _wsgi_app(), ThreadingWSGIServer,
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
