"""The I/O around the pure strategy: which symbols, which parameters, what was signalled last,
and turning a Decision into a stored ``Signal`` handed to order dispatch.

``analyze_market`` (signals.tasks) is a thin wrapper around ``run_analysis`` here.

One pass costs a constant number of round trips whatever the number of symbols (pinned by
tests/signals/test_service.py): 2 queries to load (symbols, strategy configs; a wake-up of the
event path reuses those of the last full pass, see ``pass_config``), 1 Redis round trip
for the windows, 1 pipeline for the cool-downs and the feed's connection state, 1 pipeline for
the stale-data warnings, and — only when something fires — 1 compare-and-set of their
cool-downs (the claim that keeps one surge → one signal across concurrent passes) plus 1 INSERT
for all of the pass's signals. A wake-up reads the cool-downs first and skips the window read of
a symbol in cool-down (``strategy.cooling_down``): the looks after a surge's signal cost one
pipelined round trip.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db import transaction

from marketdata.models import Symbol
from tradeops import metrics
from tradeops.celery import Queues, app
from tradeops.logging import get_logger
from tradeops.money import round_to_step, to_decimal

from . import hops as hops_mod
from .models import Signal, StrategyConfig
from .strategies import DEFAULT_STRATEGY, Strategy, get_strategy
from .strategy import Decision, Reason, StrategyParams, analyse_all, cooling_down

log = get_logger(__name__)

LAST_SIGNAL_KEY = "signals:last_signal_ms"  # hash symbol -> ms; survives worker restarts (cool-down)
STALE_WARN_KEY = "signals:stale_warned:{symbol}"  # one warning per symbol per minute, not per second
STALE_WARN_EVERY_S = 60
DISPATCH_TASK = "orders.dispatch_signal"


@dataclass(slots=True)
class AnalysisRun:
    symbols: int
    signals: list[int]
    reasons: dict[str, int]
    read_ms: float
    analyse_ms: float
    store_ms: float = 0.0


def enabled_symbols() -> list[Symbol]:
    return list(Symbol.objects.filter(enabled=True).only("id", "name", "tick_size"))


# The symbols and strategies a pass works with (issue 16). A wake-up analyses one symbol, and the
# two queries that load them were about a third of its time on a loaded machine. A full (beat)
# pass always loads them and leaves them here; a wake-up within CONFIG_MAX_AGE_S of that reuses
# them, so an edit in the admin reaches the event path at most one beat period later than the beat
# itself. Saving a Symbol or StrategyConfig in this process drops them at once (signals.apps).
CONFIG_MAX_AGE_S = 2.0
_config: tuple[float, list[Symbol], dict[str, tuple[Strategy, object]]] | None = None


def forget_config(**_kwargs) -> None:
    global _config
    _config = None


def pass_config(full: bool) -> tuple[list[Symbol], dict[str, tuple[Strategy, object]]]:
    """Enabled symbols and their (strategy, params): loaded for a full pass, reused by a wake-up."""
    global _config
    now = time.monotonic()
    if not full and _config is not None and now - _config[0] <= CONFIG_MAX_AGE_S:
        return _config[1], _config[2]
    symbols = enabled_symbols()
    chosen = load_strategies(symbols)
    _config = (now, symbols, chosen)
    return symbols, chosen


def load_params(symbols: list[Symbol]) -> dict[str, StrategyParams]:
    """Each symbol's parameters (see ``load_strategies``, which also gives the strategy)."""
    return {name: params for name, (_, params) in load_strategies(symbols).items()}


def load_strategies(symbols: list[Symbol]) -> dict[str, tuple[Strategy, object]]:
    """symbol -> (strategy, params): a symbol's row chooses the strategy (else the default row's,
    else the volume-surge scalper); parameters are that strategy's defaults, overridden by the
    default row (only when it is the same strategy), overridden by the symbol's row.

    Keys are merged (a symbol row only needs the keys it changes); several enabled default rows
    (different ``name``) merge in creation order. A merged set that fails
    validation is logged and the symbol falls back to the defaults (the admin validates on save,
    so this only happens on a hand-edited row).
    """
    rows = list(StrategyConfig.objects.filter(enabled=True).select_related("symbol").order_by("pk"))
    base: dict = {}
    base_strategy = ""
    per_symbol: dict[str, StrategyConfig] = {}
    for row in rows:
        if not isinstance(row.params, dict):
            log.error("strategy_params_invalid", config_id=row.pk, error="params is not a JSON object")
            continue
        if row.symbol_id is None:
            if base_strategy and row.strategy != base_strategy:
                log.error("strategy_params_invalid", config_id=row.pk, error="default rows name different strategies")
                continue
            base.update(row.params)
            base_strategy = row.strategy
        else:
            per_symbol[row.symbol.name] = row
    out: dict[str, tuple[Strategy, object]] = {}
    for symbol in symbols:
        own = per_symbol.get(symbol.name)
        name = (own.strategy if own is not None else "") or base_strategy or DEFAULT_STRATEGY
        try:
            strategy = get_strategy(name)
        except ValueError as exc:
            log.error("strategy_params_invalid", symbol=symbol.name, error=str(exc))
            strategy = get_strategy(DEFAULT_STRATEGY)
        merged = {**(base if strategy.name == (base_strategy or DEFAULT_STRATEGY) else {}),
                  **(own.params if own is not None else {})}
        try:
            params = strategy.parse_params(merged) if merged else strategy.default_params()
        except (ValueError, TypeError) as exc:
            log.error("strategy_params_invalid", symbol=symbol.name, error=str(exc))
            params = strategy.default_params()
        out[symbol.name] = (strategy, params)
    return out


# One surge → one signal, whichever path (beat pass, wake-up) analyses it, without a lock around
# the passes: a pass that decides to signal claims the symbol's cool-down by compare-and-set against
# the value it read (absent = ""); of two passes that read the same value, one wins, the other's
# decision becomes ``cooldown``. The claim is written BEFORE the insert and put back if the insert
# fails, so the cool-down never blocks a symbol whose signal was not stored (a process killed
# between the two loses that one signal's cool-down period: the beat's next pass after it signals).
_CLAIM_LUA = """
local won = {}
for i = 2, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if (cur == false and ARGV[i + 1] == '') or cur == ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[1])
    won[#won + 1] = ARGV[i]
  end
end
return won
"""
_RELEASE_LUA = """
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then
    if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i])
    else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
  end
end
return 1
"""


def _claim_args(seen: dict[str, int | None], now_ms: int) -> list:
    args: list = [str(int(now_ms))]
    for name, last in seen.items():
        args += [name, "" if last is None else str(int(last))]
    return args


def claim_cooldowns(redis, seen: dict[str, int | None], now_ms: int) -> set[str]:
    """Atomically start the cool-down (``now_ms``) of each symbol whose stored last signal is
    still the one this pass read (``seen``); returns the symbols this pass won."""
    if not seen:
        return set()
    won = redis.eval(_CLAIM_LUA, 1, LAST_SIGNAL_KEY, *_claim_args(seen, now_ms))
    return {w.decode() if isinstance(w, bytes) else w for w in won}


def release_cooldowns(redis, seen: dict[str, int | None], now_ms: int) -> None:
    """Undo ``claim_cooldowns`` (the signals were not stored), where nobody claimed after us."""
    if seen:
        redis.eval(_RELEASE_LUA, 1, LAST_SIGNAL_KEY, *_claim_args(seen, now_ms))


def last_signal_times(redis, names: list[str]) -> dict[str, int | None]:
    values = redis.hmget(LAST_SIGNAL_KEY, names) if names else []
    return {name: int(v) if v is not None else None for name, v in zip(names, values)}


# The feed's own word that its source is away (md:health "connection"): its newest ticks may still
# be seconds old, i.e. "fresh", while the broker behind them restarted on another price (a
# simulator restarts from its seed): a signal from them would be priced off a market that is gone.
# "resyncing": the source restarted and the feed is re-checking the history in Redis against it.
FEED_NOT_LIVE = frozenset({"disconnected", "stopped", "resyncing"})


def pass_state(redis, names: list[str]) -> tuple[dict[str, int | None], str]:
    """Cool-downs and the feed's connection state, in ONE pipelined round trip."""
    from marketdata import redis_keys as md_keys

    pipe = redis.pipeline(transaction=False)
    pipe.hmget(LAST_SIGNAL_KEY, names)
    pipe.hget(md_keys.HEALTH, "connection")
    values, connection = pipe.execute()
    if isinstance(connection, bytes):
        connection = connection.decode()
    last = {name: int(v) if v is not None else None for name, v in zip(names, values)}
    return last, connection or ""


def run_analysis(redis, now_ms: int | None = None, *, only: list[str] | None = None,
                 wakes: dict[str, dict] | None = None) -> AnalysisRun:
    """Read every enabled symbol's window in one round trip, analyse, store and dispatch signals.

    ``only``: analyse just these symbols (the event path: the feed's pre-screen woke them);
    ``wakes``: their wake-up hops (venue, recv, store, wake — ``signals.hops``), stored with a signal.
    """
    from marketdata.reader import read_windows

    started_mono = hops_mod.mono_ms()
    symbols, chosen = pass_config(full=only is None)
    if only is not None:
        wanted = set(only)
        symbols = [s for s in symbols if s.name in wanted]
        chosen = {s.name: chosen[s.name] for s in symbols}
    names = [s.name for s in symbols]
    if not names:
        return AnalysisRun(0, [], {}, 0.0, 0.0)
    params = {name: p for name, (_, p) in chosen.items()}
    strategies = {name: s for name, (s, _) in chosen.items()}
    t0 = time.perf_counter()
    cooling: list[str] = []
    if only is None:
        windows = read_windows(redis, names)
        last_signals, feed_connection = pass_state(redis, names)
    else:
        # A wake-up: the cool-down first. The pre-screen looks again while its test holds, and
        # after the surge's signal every look is answered ``cooldown`` whatever the window says:
        # those skip the window read (most of a look's cost), with the strategy's own rule. (A
        # stale symbol in cool-down is answered ``cooldown`` here; the beat pass still warns.)
        last_signals, feed_connection = pass_state(redis, names)
        if feed_connection not in FEED_NOT_LIVE:
            at = now_ms if now_ms is not None else int(time.time() * 1000)
            cooling = [n for n in names if cooling_down(at, last_signals.get(n), getattr(params[n], "cooldown_ms", 0))]
        windows = read_windows(redis, [n for n in names if n not in cooling]) if len(cooling) < len(names) else {}
    t1 = time.perf_counter()
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    if feed_connection in FEED_NOT_LIVE:
        decisions = {name: Decision(name, Reason.STALE_DATA, {"feed": feed_connection},
                                    tick_ts_ms=windows[name].last_tick_ms) for name in names}
    else:
        decisions = analyse_all(windows, params, now_ms, last_signals, {s.name: float(s.tick_size) for s in symbols},
                                strategies)
        decisions.update((n, Decision(n, Reason.COOLDOWN, {})) for n in cooling)
    t2 = time.perf_counter()
    by_name = {s.name: s for s in symbols}
    reasons: dict[str, int] = {}
    stale: list[Decision] = []
    firing: list[tuple[Symbol, Decision]] = []
    for name, decision in decisions.items():
        reasons[str(decision.reason)] = reasons.get(str(decision.reason), 0) + 1
        if decision.reason == Reason.STALE_DATA:
            stale.append(decision)
        elif decision.is_signal:
            firing.append((by_name[name], decision))
    if stale:
        _warn_stale(redis, stale, now_ms)
    created: list[int] = []
    if firing:
        won = claim_cooldowns(redis, {symbol.name: last_signals.get(symbol.name) for symbol, _ in firing}, now_ms)
        for symbol, _ in firing:
            if symbol.name not in won:  # another pass (beat or wake-up) signalled it since our read
                reasons[str(Reason.SIGNAL)] -= 1
                reasons[str(Reason.COOLDOWN)] = reasons.get(str(Reason.COOLDOWN), 0) + 1
                log.info("signal_cooldown_claim_lost", symbol=symbol.name)
        reasons = {k: n for k, n in reasons.items() if n}
        firing = [(symbol, decision) for symbol, decision in firing if symbol.name in won]
    if firing:
        signal_mono = hops_mod.mono_ms()
        at = hops_mod.anchor()
        hops: dict[str, dict] = {}
        for _, decision in firing:
            wake = (wakes or {}).get(decision.symbol) or {}
            hops[decision.symbol] = {**wake, "path": "event" if wake else "beat",
                                     "venue": wake.get("venue") or decision.tick_ts_ms,
                                     "analysis": started_mono, "signal": signal_mono, "anchor": at}
        try:
            created = [s.pk for s in record_signals(firing, hops)]
        except BaseException:
            # the cool-down never blocks a symbol whose signal was not stored
            release_cooldowns(redis, {symbol.name: last_signals.get(symbol.name) for symbol, _ in firing}, now_ms)
            raise
    t3 = time.perf_counter()
    return AnalysisRun(len(names), created, reasons, (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000)


def _warn_stale(redis, decisions: list[Decision], now_ms: int) -> None:
    """One ``stale_market_data`` warning per symbol per minute (a dead feed would otherwise log
    every symbol every second); the rate keys are set in one pipelined round trip."""
    pipe = redis.pipeline(transaction=False)
    for d in decisions:
        pipe.set(STALE_WARN_KEY.format(symbol=d.symbol), 1, nx=True, ex=STALE_WARN_EVERY_S)
    for d, first in zip(decisions, pipe.execute()):
        if first:
            age = now_ms - d.tick_ts_ms if d.tick_ts_ms else None
            log.warning("stale_market_data", symbol=d.symbol, last_tick_age_ms=age,
                        last_tick_ms=d.tick_ts_ms)


def _price(value: float | None, tick_size: Decimal) -> Decimal | None:
    return None if value is None else round_to_step(to_decimal(value), tick_size)


def json_safe(features: dict) -> dict:
    """Plain JSON for the ``features`` column: numpy scalars become Python numbers, and NaN/inf
    (which PostgreSQL's jsonb rejects) become null."""
    out = {}
    for key, value in features.items():
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            value = value.item()  # numpy scalar -> int/float/bool
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[str(key)] = value
    return out


def build_signal(symbol: Symbol, decision: Decision, hops: dict | None = None) -> Signal:
    plan = decision.exit
    tick_at = datetime.fromtimestamp(decision.tick_ts_ms / 1000, tz=UTC) if decision.tick_ts_ms else None
    return Signal(
        symbol=symbol,
        side=str(decision.side),
        strength=Decimal(str(round(min(max(decision.strength, 0.0), 1.0), 4))),
        features=json_safe(decision.features),
        entry_price=_price(plan.entry_price if plan else None, symbol.tick_size),
        stop_loss=_price(plan.stop_loss if plan else None, symbol.tick_size),
        take_profit=_price(plan.take_profit if plan else None, symbol.tick_size),
        time_stop_seconds=plan.time_stop_s if plan else None,
        tick_at=tick_at,
        hops=hops or {},
    )


def record_signals(items: list[tuple[Symbol, Decision]], hops: dict[str, dict] | None = None) -> list[Signal]:
    """Store a pass's signals with ONE insert and hand each to order dispatch once committed."""
    rows = [build_signal(symbol, decision, (hops or {}).get(symbol.name)) for symbol, decision in items]
    with transaction.atomic():
        Signal.objects.bulk_create(rows)
        ids = [row.pk for row in rows]
        transaction.on_commit(lambda: dispatch_all(ids), robust=True)
    metrics.observe_signals(rows)
    for row in rows:
        log.info("signal", signal_id=row.pk, symbol=row.symbol.name, side=row.side, strength=float(row.strength),
                 latency_ms=row.latency_ms, entry_price=str(row.entry_price), stop_loss=str(row.stop_loss),
                 take_profit=str(row.take_profit))
    return rows


def record_signal(symbol: Symbol, decision: Decision) -> Signal:
    """Store one signal and hand it to order dispatch once the row is committed."""
    return record_signals([(symbol, decision)])[0]


def dispatch(signal_id: int, producer=None) -> bool:
    """By name, so analysis never imports the order engine; the message waits on the orders queue.

    Runs on commit: a broker hiccup here is logged and must not stop the pass (the other symbols'
    signals, the cool-downs). The signal then stays ``new``. Returns whether it was sent.
    """
    try:
        app.send_task(DISPATCH_TASK, args=[signal_id], queue=Queues.ORDERS, producer=producer)
        return True
    except Exception as exc:  # noqa: BLE001 - logged; kombu already retried the publish
        log.error("signal_dispatch_failed", signal_id=signal_id, error=f"{type(exc).__name__}: {exc}"[:300])
        return False


def dispatch_all(signal_ids: list[int]) -> None:
    """One pooled producer (one connection checkout) for all of a pass's signals."""
    try:
        with app.producer_or_acquire() as producer:
            for signal_id in signal_ids:
                dispatch(signal_id, producer=producer)
    except Exception as exc:  # noqa: BLE001 - the broker is unreachable: log every id left undispatched
        log.error("signal_dispatch_failed", signal_ids=signal_ids, error=f"{type(exc).__name__}: {exc}"[:300])
