"""What the dashboard shows, read cheaply: aggregated in SQL over a bounded time window.

Every query here is independent of the number of accounts in its *row count returned*, except
the per-account curves, which are limited to the top N accounts. With 1,000 accounts the page
costs a fixed handful of queries (see tests/operate/test_dashboard.py for the guard).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from accounts.models import Account, EquitySnapshot, TradingSwitch
from orders.models import Delivery, Order, Position
from prop import board
from signals.models import Signal
from tradeops.logging import get_logger
from tradeops.queues import Queues

log = get_logger(__name__)

# Selectable windows (query string ``?window=``) and their bucket width: ~60-90 buckets each.
WINDOWS: dict[str, int] = {"15m": 15 * 60, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
# A fresh system has minutes of history: the first view shows them, not an hour of nothing.
DEFAULT_WINDOW = "15m"
CELERY_QUEUES = (Queues.ORDERS, Queues.ANALYSIS, Queues.DEFAULT)


def bucket_seconds(window_s: int) -> int:
    """Bucket width for a window: 15m → 30 s, 1h → 60 s, 6h → 6 min, 24h → 24 min. Never below
    30 s: the balance sync reaches every account about every 20 s, so a narrower bucket would
    hold only some accounts and the total would zigzag."""
    return max(30, window_s // 60)


def window_seconds(name: str | None) -> tuple[str, int]:
    name = name if name in WINDOWS else DEFAULT_WINDOW
    return name, WINDOWS[name]


@dataclass
class EquityData:
    total: list[tuple[float, float]] = field(default_factory=list)
    accounts: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    total_accounts: int = 0  # accounts contributing to the newest total point


@dataclass
class CountSeries:
    buckets: list[float]
    by_status: dict[str, list[int]]

    @property
    def total(self) -> int:
        return sum(sum(v) for v in self.by_status.values())


def _bucket_list(since: datetime, until: datetime, bucket_s: int) -> list[float]:
    start = int(since.timestamp()) // bucket_s * bucket_s
    end = int(until.timestamp()) // bucket_s * bucket_s
    return [float(t) for t in range(start, end + 1, bucket_s)]


def equity_curves(since: datetime, bucket_s: int, top_n: int) -> EquityData:
    """Total equity per time bucket over all accounts, and the curves of the ``top_n`` accounts
    whose equity moved most in the window. Three queries, whatever the number of accounts
    (measured: ~200 ms for 1,000 accounts × 180 snapshots in the 1 h window).

    The total of a bucket is the sum over accounts of their mean equity in that bucket. The
    newest bucket is often partial (the sync task has not reached every account yet); buckets
    with fewer than 90 % of the accounts of the fullest bucket are dropped so the total curve
    does not dip at its right edge for no reason.
    """
    table = EquitySnapshot._meta.db_table
    interval = f"{int(bucket_s)} seconds"
    data = EquityData()
    with connection.cursor() as cur:
        cur.execute(
            f"""
            SELECT extract(epoch FROM b)::float8, SUM(e)::float8, COUNT(*)
            FROM (SELECT date_bin(%s::interval, at, TIMESTAMPTZ '2000-01-01') AS b, account_id, AVG(equity) AS e
                  FROM {table} WHERE at >= %s GROUP BY 1, 2) per_account
            GROUP BY b ORDER BY b
            """,
            [interval, since],
        )
        rows = cur.fetchall()
        if rows:
            full = max(n for _, _, n in rows)
            kept = [(t, e, n) for t, e, n in rows if n >= 0.9 * full]
            data.total = [(t, e) for t, e, _ in kept]
            data.total_accounts = kept[-1][2] if kept else 0
        if top_n <= 0 or not rows:
            return data
        # Accounts that moved most (absolute change between their first and last snapshot in
        # the window): two index probes per account on (account_id, at), ~15 ms for 1,000
        # accounts, where aggregating every snapshot of the window costs 20 times more.
        cur.execute(
            f"""
            SELECT a.id FROM {Account._meta.db_table} a,
                LATERAL (SELECT equity FROM {table} s WHERE s.account_id = a.id AND s.at >= %s
                         ORDER BY s.at DESC LIMIT 1) last,
                LATERAL (SELECT equity FROM {table} s WHERE s.account_id = a.id AND s.at >= %s
                         ORDER BY s.at ASC LIMIT 1) first
            ORDER BY abs(last.equity - first.equity) DESC, a.id LIMIT %s
            """,
            [since, since, top_n],
        )
        top_ids = [r[0] for r in cur.fetchall()]
        if not top_ids:
            return data
        cur.execute(
            f"""
            SELECT a.name, extract(epoch FROM date_bin(%s::interval, s.at, TIMESTAMPTZ '2000-01-01'))::float8 AS b,
                   AVG(s.equity)::float8
            FROM {table} s JOIN {Account._meta.db_table} a ON a.id = s.account_id
            WHERE s.at >= %s AND s.account_id = ANY(%s)
            GROUP BY a.name, b ORDER BY a.name, b
            """,
            [interval, since, top_ids],
        )
        for name, t, e in cur.fetchall():
            data.accounts.setdefault(name, []).append((t, e))
    return data


def counts_by_status(table: str, since: datetime, until: datetime, bucket_s: int) -> CountSeries:
    """Rows created per time bucket, by status (one query)."""
    with connection.cursor() as cur:
        cur.execute(
            f"""
            SELECT extract(epoch FROM date_bin(%s::interval, created_at, TIMESTAMPTZ '2000-01-01'))::float8 AS b,
                   status, COUNT(*)
            FROM {table} WHERE created_at >= %s GROUP BY 1, 2
            """,
            [f"{int(bucket_s)} seconds", since],
        )
        rows = cur.fetchall()
    buckets = _bucket_list(since, until, bucket_s)
    index = {b: i for i, b in enumerate(buckets)}
    by_status: dict[str, list[int]] = {}
    for b, status, n in rows:
        i = index.get(b)
        if i is None:
            continue
        by_status.setdefault(status, [0] * len(buckets))[i] += n
    return CountSeries(buckets=buckets, by_status=dict(sorted(by_status.items())))


def open_exposure() -> list[dict]:
    """Open positions aggregated per symbol: long/short/net lots, count, unrealized PnL."""
    rows = (
        Position.objects.filter(status=Position.Status.OPEN)
        .values("symbol__name")
        .annotate(
            long=Sum("volume", filter=Q(side="BUY"), default=0),
            short=Sum("volume", filter=Q(side="SELL"), default=0),
            positions=Count("id"),
            accounts=Count("account", distinct=True),
            upnl=Sum("unrealized_pnl", default=0),
        )
        .order_by("symbol__name")
    )
    out = []
    for r in rows:
        out.append({
            "symbol": r["symbol__name"], "long": r["long"], "short": r["short"], "net": r["long"] - r["short"],
            "positions": r["positions"], "accounts": r["accounts"], "upnl": r["upnl"],
        })
    return out


def recent_positions(limit: int = 10) -> list[Position]:
    return list(
        Position.objects.filter(status=Position.Status.OPEN)
        .select_related("account", "symbol")
        .only("account__name", "symbol__name", "side", "volume", "open_price", "opened_at", "unrealized_pnl",
              "stop_loss", "take_profit")
        .order_by("-opened_at")[:limit]
    )


def recent_signals(limit: int = 8) -> list[Signal]:
    """The latest signals with their fan-out: SIGNAL orders (opens), filled, and seconds to the last
    one done; their EXIT orders (closes) are counted apart, so a close the broker no longer needed
    does not colour the fan-out."""
    opens = Q(orders__purpose=Order.Purpose.OPEN)
    exits = Q(orders__purpose=Order.Purpose.CLOSE)
    signals = list(
        Signal.objects.select_related("symbol")
        .annotate(order_count=Count("orders", filter=opens, distinct=True),
                  filled_count=Count("orders", filter=opens & Q(orders__status="filled"), distinct=True),
                  exit_count=Count("orders", filter=exits, distinct=True),
                  exit_done=Count("orders", filter=exits & Q(orders__status__in=("filled", "cancelled", "skipped")),
                                  distinct=True),
                  last_completed=Max("orders__completed_at", filter=opens),
                  pair_count=Count("deliveries", distinct=True),
                  delivered_count=Count("deliveries", filter=Q(deliveries__outcome="filled"), distinct=True))
        .order_by("-created_at")[:limit]
    )
    # missed pairs by cause, for these signals in one query (orders.Delivery: one outcome per pair)
    missed: dict[int, list[str]] = {}
    rows = (Delivery.objects.filter(signal_id__in=[s.pk for s in signals], outcome=Delivery.Outcome.MISSED)
            .values("signal_id", "reason").annotate(n=Count("id")).order_by("signal_id", "-n"))
    for row in rows:
        missed.setdefault(row["signal_id"], []).append(f"{row['reason'] or 'unknown'} {row['n']}")
    for s in signals:
        s.fanout_s = (s.last_completed - s.created_at).total_seconds() if s.last_completed else None
        s.missed_by_cause = ", ".join(missed.get(s.pk, []))
    return signals


TICK_TO_TRADE_SIGNALS = 50


def tick_to_trade(limit: int = TICK_TO_TRADE_SIGNALS) -> dict:
    """Where the time goes over the latest signals (``signals.hops.summarise``): one query."""
    from signals.hops import summarise

    docs = list(Signal.objects.order_by("-created_at").values_list("hops", flat=True)[:limit])
    return summarise(docs)


def account_summary() -> dict:
    agg = Account.objects.aggregate(
        total=Count("id"),
        enabled=Count("id", filter=Q(enabled=True)),
        halted=Count("id", filter=Q(halted=True)),
        reconcile=Count("id", filter=Q(needs_reconciliation=True)),
        equity=Sum("equity", default=0),
        balance=Sum("balance", default=0),
    )
    switch = TradingSwitch.objects.filter(pk=1).values("kill_switch", "reason").first() or {}
    agg["kill_switch"] = bool(switch.get("kill_switch"))
    agg["kill_reason"] = switch.get("reason", "")
    agg.update(state_lag(agg["enabled"]))
    # why each account stops trading (a revoked Trader API token says "token revoked or expired"),
    # at most 20 rows: a fleet-wide halt is the kill switch's line, not a list
    agg["stopped"] = list(
        Account.objects.filter(Q(halted=True) | Q(restriction="monitor_only"))
        .order_by("name").values("name", "halt_cause", "halt_reason", "restriction")[:20])
    return agg


def state_lag(enabled_accounts: int) -> dict:
    """How far the database's picture of the broker trails it: the p95 of broker close → database
    over recent closes, and the oldest confirmation of an account's state (account stream); no
    database query (the dashboard's query budget is fixed)."""
    from orders import state_sync

    try:
        lags = state_sync.recent_lags_ms(200)
        ages = state_sync.state_ages_s()
    except Exception as exc:  # noqa: BLE001 - Redis away: the panel says "unknown"
        log.info("dashboard_state_lag_unavailable", error=type(exc).__name__)
        return {"state_lag_p95_s": None, "state_age_max_s": None, "state_unseen": None}
    p95 = sorted(lags)[int(0.95 * (len(lags) - 1))] / 1000 if lags else None
    return {"state_lag_p95_s": p95, "state_age_max_s": max(ages.values()) if ages else None,
            "state_unseen": max(0, (enabled_accounts or 0) - len(ages))}


# kombu's Redis transport keeps one list per queue and priority step: "orders" (0) and
# "orders\x06\x163", "…6", "…9" (tradeops.celery.Priority); a queue's depth is their sum.
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def queue_depths(redis_client) -> dict[str, int | None]:
    """Messages waiting in each Celery queue on the broker, every priority list counted (None when
    the broker is unreachable)."""
    try:
        pipe = redis_client.pipeline(transaction=False)
        for q in CELERY_QUEUES:
            for suffix in PRIORITY_SUFFIXES:
                pipe.llen(q + suffix)
        lengths = pipe.execute()
        n = len(PRIORITY_SUFFIXES)
        return {q: sum(lengths[i * n:(i + 1) * n]) for i, q in enumerate(CELERY_QUEUES)}
    except Exception as exc:  # noqa: BLE001 - the dashboard shows "unavailable", never a 500
        log.warning("dashboard_queue_depth_unavailable", error=exc.__class__.__name__)
        return {q: None for q in CELERY_QUEUES}


def feed_health(redis_client):
    """The feed's health from Redis through ``marketdata.health.read_health``; None when the feed
    has never run here (or Redis is unreachable), so the page says so instead of failing."""
    try:
        from marketdata.health import read_health
    except ImportError:
        return None
    try:
        health = read_health(redis_client)
    except Exception as exc:  # noqa: BLE001
        log.warning("dashboard_feed_health_unavailable", error=exc.__class__.__name__)
        return None
    return health if health.present else None


@dataclass
class Snapshot:
    """Everything one page render needs."""

    window: str
    window_s: int
    bucket_s: int
    now: datetime
    equity: EquityData
    signals: CountSeries
    orders: CountSeries
    exposure: list[dict]
    positions: list[Position]
    latest_signals: list[Signal]
    accounts: dict
    queues: dict
    feed: object | None
    prop_rows: list = field(default_factory=list)  # per-account headroom bars (prop.board)
    prop_alerts: list = field(default_factory=list)  # the breach guard's alerts of the last 24 h
    latency: dict | None = None
    elapsed_ms: float = 0.0


def collect(window: str | None, redis_data, redis_broker, top_n: int | None = None) -> Snapshot:
    started = time.perf_counter()
    name, window_s = window_seconds(window)
    bucket_s = bucket_seconds(window_s)
    now = timezone.now()
    since = now - timedelta(seconds=window_s)
    top_n = settings.DASHBOARD_TOP_ACCOUNTS if top_n is None else top_n
    snap = Snapshot(
        window=name, window_s=window_s, bucket_s=bucket_s, now=now,
        equity=equity_curves(since, bucket_s, top_n),
        signals=counts_by_status(Signal._meta.db_table, since, now, bucket_s),
        orders=counts_by_status(Order._meta.db_table, since, now, bucket_s),
        exposure=open_exposure(),
        positions=recent_positions(),
        latest_signals=recent_signals(),
        accounts=account_summary(),
        queues=queue_depths(redis_broker),
        feed=feed_health(redis_data),
        prop_rows=board.headroom_rows(top_n or 12),
        prop_alerts=board.alerts(),
        latency=tick_to_trade(),
    )
    snap.elapsed_ms = (time.perf_counter() - started) * 1000
    return snap
