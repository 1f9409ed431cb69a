"""The web's ``/metrics``: every gunicorn worker's event metrics (tradeops/metrics.py) plus the
system's state, read from PostgreSQL and Redis at scrape time — orders by status and not-sent
reason, rejects by broker code, unknown outcomes and reconciliation repairs, feed lag, tick age
and malformed frames per symbol (the feed's own health record in Redis), queue depth per queue,
rate-limit budget used per credential, broker-state age, equity and daily-loss headroom per
account, the kill switch. True whichever process changed it, and it survives restarts; nothing
in the trading path pays for it."""

from __future__ import annotations

import time

from django.http import HttpResponse
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tradeops import metrics
from tradeops.logging import get_logger

log = get_logger(__name__)


def metrics_view(request):
    if not metrics.allowed(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_AUTHORIZATION")):
        log.warning("metrics_refused", remote_addr=request.META.get("REMOTE_ADDR"))
        return HttpResponse(metrics.REFUSED, status=403, content_type="text/plain")
    return HttpResponse(generate_latest(metrics.registry(StateCollector())), content_type=CONTENT_TYPE_LATEST)


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
        from orders.reads import exposures as load_exposures

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
        from .health import _redis

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
        from django.conf import settings

        from tradeops import redis_clients

        from .data import queue_depths

        client = redis_clients.new("probe", settings.BROKER_REDIS_URL)
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
        from .health import _redis

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
