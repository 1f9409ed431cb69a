"""Broker truth into PostgreSQL: the one home for applying what the broker says about an account.

The account-stream worker (``workers/account_stream.py``) calls these from its push path (the
simulator's ``positionClosed`` extension) and from its budgeted polling path (the real APIs, which
push nothing). Every function is idempotent and safe to race with the order engine:

* :func:`apply_close` closes a Position from the broker's closed-positions row (close price,
  reason TP/SL, realized PnL, commission) through ``recording.record_close`` — a compare-and-set on
  ``status=open``, so a close seen twice (push + poll, or a racing close order) is applied once.
* :func:`apply_open_snapshot` fills gaps: an open Position the broker no longer lists is closed
  from ``/closed-positions`` — only with that evidence (a snapshot can predate a fresh open).
* :func:`apply_balance` stores balance/equity on the Account and, at most every
  ``ACCOUNT_STREAM_SNAPSHOT_EVERY_S``, an ``EquitySnapshot``.

Each applied close records its lag (broker close time -> database) in Redis
(``STATE_LAG_KEY``), which the dashboard shows and ``bench/state_sync.py`` measures.
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from accounts.models import Account, EquitySnapshot
from matchtrader.errors import BrokerError
from matchtrader.models import ClosedPosition
from tradeops.logging import get_logger

from .broker import get_redis
from .models import Position
from .recording import record_close

log = get_logger(__name__)

STATE_LAG_KEY = "orders:state_sync:lag_ms"  # sorted set: "<position pk>" -> lag ms of recent closes
STATE_SEEN_KEY = "orders:state_sync:seen"  # hash: account id -> broker state last confirmed (epoch ms)
SEEN_FORGET_S = 3600  # an account not confirmed for an hour (disabled, deleted) leaves the hash
LAG_KEEP = 1_000


def _redis():
    return get_redis()


def record_lag(position_pk: int, close_time, now=None) -> int | None:
    """Broker close time -> database, in ms; kept for the dashboard and the benchmark."""
    if close_time is None:
        return None
    now = now or timezone.now()
    lag_ms = max(0, int((now - close_time).total_seconds() * 1000))
    try:
        r = _redis()
        pipe = r.pipeline(transaction=False)
        pipe.zadd(STATE_LAG_KEY, {f"{position_pk}:{lag_ms}": int(time.time() * 1000)})
        pipe.zremrangebyrank(STATE_LAG_KEY, 0, -LAG_KEEP - 1)
        pipe.execute()
    except Exception as exc:  # noqa: BLE001 - a metric never fails the apply
        log.info("state_lag_unrecorded", error=type(exc).__name__)
    return lag_ms


def recent_lags_ms(limit: int = 200) -> list[int]:
    rows = _redis().zrevrange(STATE_LAG_KEY, 0, limit - 1)
    return [int(r.decode().rsplit(":", 1)[1]) for r in rows]


def mark_seen(account_id: int, at_ms: int | None = None) -> None:
    """The broker's state of this account was confirmed now (push frame or poll)."""
    try:
        _redis().hset(STATE_SEEN_KEY, str(account_id), at_ms or int(time.time() * 1000))
    except Exception:  # noqa: BLE001
        pass


def mark_seen_many(seen: dict[int, int]) -> None:
    if seen:
        _redis().hset(STATE_SEEN_KEY, mapping={str(k): v for k, v in seen.items()})


def state_ages_s() -> dict[int, float]:
    """Seconds since each account's broker state was last confirmed (accounts seen in the last hour)."""
    r = _redis()
    now = time.time() * 1000
    out, stale = {}, []
    for k, v in r.hgetall(STATE_SEEN_KEY).items():
        age = max(0.0, (now - int(v)) / 1000)
        if age > SEEN_FORGET_S:
            stale.append(k)
        else:
            out[int(k)] = age
    if stale:
        r.hdel(STATE_SEEN_KEY, *stale)
    return out


def state_age_s(account_id: int) -> float | None:
    """Seconds since the account stream last confirmed this account's broker state (one HGET);
    None when it never did (no stream running, account not streamed) or Redis cannot say."""
    try:
        raw = _redis().hget(STATE_SEEN_KEY, str(account_id))
    except Exception:  # noqa: BLE001 - unknown age = stale: the caller reads the broker
        return None
    if raw is None:
        return None
    return max(0.0, time.time() - int(raw) / 1000)


def apply_close(account_id: int, closed: ClosedPosition) -> bool:
    """Close our Position for the broker's ``closed`` row. True if this call closed it."""
    position = (Position.objects.filter(account_id=account_id, broker_position_id=closed.id,
                                        status=Position.Status.OPEN).first())
    if position is None:
        return False
    changed = record_close(position, closed, reason=Position.CloseReason.BROKER)
    if changed:
        lag = record_lag(position.pk, closed.close_time)
        log.info("position_closed_at_broker", position=position.pk, account=account_id, reason=position.close_reason,
                 close_price=str(closed.close_price), realized=str(position.realized_pnl), lag_ms=lag)
    return changed


def open_position_ids(account_id: int) -> dict[str, int]:
    return dict(Position.objects.filter(account_id=account_id, status=Position.Status.OPEN)
                .values_list("broker_position_id", "pk"))


def apply_open_snapshot(account_id: int, broker_open_ids: set[str], client, *, snapshot_at=None) -> list[str]:
    """Positions open in the database but not at the broker: closed from the broker's history.

    Only positions opened before the snapshot are considered, and only a history row closes one
    (no evidence, no change: the next snapshot or poll looks again). Returns the ids closed."""
    snapshot_at = snapshot_at or timezone.now()
    missing = list(Position.objects.filter(account_id=account_id, status=Position.Status.OPEN,
                                           opened_at__lt=snapshot_at)
                   .exclude(broker_position_id__in=broker_open_ids).order_by("opened_at"))
    if not missing:
        return []
    try:
        rows = client.closed_positions(missing[0].opened_at - timedelta(minutes=1), timezone.now() + timedelta(minutes=1))
    except BrokerError as exc:
        log.info("state_sync_history_unavailable", account=account_id, error=type(exc).__name__)
        return []
    last: dict[str, ClosedPosition] = {}
    for c in sorted(rows, key=lambda c: c.close_time or snapshot_at):
        last[c.id] = c  # after partial closes, the final close wins
    closed_ids = []
    for pos in missing:
        row = last.get(pos.broker_position_id)
        if row is not None and apply_close(account_id, row):
            closed_ids.append(pos.broker_position_id)
    return closed_ids


def apply_balance(account_id: int, *, balance, equity, margin=None, open_positions: int | None = None,
                  snapshot: bool = False) -> None:
    now = timezone.now()
    Account.objects.filter(pk=account_id).update(balance=balance, equity=equity, balance_updated_at=now)
    if snapshot:
        n_open = open_positions if open_positions is not None else Position.objects.filter(
            account_id=account_id, status=Position.Status.OPEN).count()
        EquitySnapshot.objects.create(account_id=account_id, at=now, balance=balance, equity=equity,
                                      margin=margin or Decimal(0), open_positions=n_open)


def snapshot_every_s() -> float:
    return float(getattr(settings, "ACCOUNT_STREAM_SNAPSHOT_EVERY_S", 30))


def touched(side: str, bid, ask, sl, tp) -> bool:
    """Has the closing side of the quote reached the stop or the target? BUY closes on the bid,
    SELL on the ask (as the broker triggers them)."""
    try:
        px = Decimal(str(bid if side == "BUY" else ask))
    except Exception:  # noqa: BLE001
        return False
    if side == "BUY":
        return (sl is not None and px <= sl) or (tp is not None and px >= tp)
    return (sl is not None and px >= sl) or (tp is not None and px <= tp)
