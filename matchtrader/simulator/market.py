"""Simulated markets: seeded price processes with regimes and volume surges, or replay of real bars.

Pure and synchronous: :meth:`Market.step` advances every symbol by one tick at a given wall time
and returns :class:`Tick` records; the server turns them into quotes, trades (aggressor side),
depth and candles. No asyncio, no clock reads inside (time is passed in), so tests drive it directly.

Price convention: candles and replayed bars are on the BID side (as Match-Trader's
``candleSide=BID`` web-app parameter suggests [CODE S6]); ask = bid + spread.
Candle ``volume`` = sum of the simulated trade-print volumes in lots (the real API's is tick volume [INF]).
"""

from __future__ import annotations

import csv
import importlib.util
import math
import random
from collections import deque
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

from .. import protocol as P
from .instruments import Spec, spec_for

SECONDS_PER_YEAR = 365.25 * 24 * 3600
M1_MS = 60_000
MAX_M1_HISTORY = 20_000  # ~2 weeks of M1 per symbol


# --- replay of real bars --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Bar:
    time: str
    open: float
    high: float
    low: float
    close: float
    volume: Decimal


def backtesting_csv(name: str) -> Path:
    """Path of a CSV shipped by the installed ``backtesting`` package (never copied into the repo)."""
    spec = importlib.util.find_spec("backtesting")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the 'backtesting' package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "test" / f"{name}.csv"
    if not path.exists():
        raise FileNotFoundError(f"backtesting ships no {name}.csv (have EURUSD, BTCUSD, GOOG)")
    return path


def load_bars(source: str) -> list[Bar]:
    """``backtesting:EURUSD`` or a path to a CSV with columns [time],Open,High,Low,Close,Volume."""
    path = backtesting_csv(source.split(":", 1)[1]) if source.startswith("backtesting:") else Path(source)
    bars = []
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader)]
        idx = {k: header.index(k) for k in ("open", "high", "low", "close", "volume")}
        for row in reader:
            if not row:
                continue
            bars.append(
                Bar(row[0], float(row[idx["open"]]), float(row[idx["high"]]), float(row[idx["low"]]),
                    float(row[idx["close"]]), Decimal(row[idx["volume"]].strip() or "0"))
            )
    if not bars:
        raise ValueError(f"no bars in {source}")
    return bars


def split_volume(total: Decimal, n: int, rng: random.Random) -> list[Decimal]:
    """``n`` non-negative parts summing EXACTLY to ``total`` (kept at the total's decimal places)."""
    exp = total.as_tuple().exponent
    quantum = Decimal(1).scaleb(min(exp, 0)) if isinstance(exp, int) else Decimal(1)
    weights = [rng.random() + 0.05 for _ in range(n)]
    wsum = sum(weights)
    parts = [(total * Decimal(repr(w / wsum))).quantize(quantum, rounding=ROUND_FLOOR) for w in weights]
    parts[-1] += total - sum(parts)  # floor leaves a non-negative remainder
    return parts


def expand_bar(bar: Bar, n: int, rng: random.Random, precision: int) -> list[tuple[float, Decimal]]:
    """Turn one OHLCV bar into ``n`` (price, volume) ticks: first = open, last = close, high and low
    both touched, never exceeded; volumes sum to the bar volume exactly."""
    n = max(n, 4)
    o, h, lo, c = bar.open, bar.high, bar.low, bar.close
    i1 = rng.randint(1, n - 3)
    i2 = rng.randint(i1 + 1, n - 2)
    first, second = (h, lo) if rng.random() < 0.5 else (lo, h)
    anchors = [(0, o), (i1, first), (i2, second), (n - 1, c)]
    prices: list[float] = [0.0] * n
    for (ia, pa), (ib, pb) in zip(anchors, anchors[1:]):
        for i in range(ia, ib + 1):
            t = (i - ia) / (ib - ia) if ib > ia else 0.0
            p = pa + (pb - pa) * t
            if ia < i < ib:
                p += rng.gauss(0, (h - lo) * 0.1)
            prices[i] = round(min(h, max(lo, p)), precision)
    for i, p in anchors:
        prices[i] = p
    return list(zip(prices, split_volume(bar.volume, n, rng)))


# --- live state -----------------------------------------------------------------------------------
@dataclass(slots=True)
class Surge:
    side: int  # +1 buy aggression, -1 sell
    intensity: float
    until_ms: int
    first_tick_ms: int | None = None  # venue time of the first tick it shaped (what a surge is measured from)


@dataclass(slots=True)
class Trade:
    price: float
    volume: float
    side: int  # +1 buyer aggressor, -1 seller aggressor


@dataclass(slots=True)
class Tick:
    symbol: str
    ts_ms: int
    bid: float
    ask: float
    trades: list[Trade]
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    candle: list  # the current M1 candle [time_ms, o, h, l, c, v]
    closed_candle: list | None  # an M1 candle that just closed, if any
    replay_bar: int | None = None  # index of the replayed bar this tick belongs to


@dataclass(slots=True)
class SymbolState:
    spec: Spec
    bid: float
    rng: random.Random
    regime: str = "normal"
    surge: Surge | None = None
    last_surge: Surge | None = None  # the latest surge, also once over (its first tick's time: control API stats)
    day_high: float = 0.0
    day_low: float = 0.0
    m1: deque = field(default_factory=lambda: deque(maxlen=MAX_M1_HISTORY))  # closed candles
    current: list | None = None
    # replay
    bars: list[Bar] | None = None
    bar_index: int = 0
    pending: deque = field(default_factory=deque)  # queued (price, volume) ticks of the current bar


REGIME_VOL = {"calm": 0.6, "normal": 1.0, "volatile": 2.5}


class Market:
    """All symbols' prices, candles, trades and depth. Thread-confined: the server's loop owns it."""

    def __init__(
        self,
        symbols,
        *,
        seed: int = 42,
        now_ms: int,
        tick_rate: float = 10.0,
        history_minutes: int = 240,
        replay: dict[str, str] | None = None,
        replay_ticks_per_bar: int = 60,
        volatility_scale: float = 3.0,
        surges_per_hour: float = 6.0,
        depth_levels: int = 5,
    ):
        self.tick_rate = tick_rate
        self.volatility_scale = volatility_scale
        self.surges_per_hour = surges_per_hour
        self.depth_levels = depth_levels
        self.replay_ticks_per_bar = replay_ticks_per_bar
        self.paused = False
        self.states: dict[str, SymbolState] = {}
        replay = replay or {}
        master = random.Random(seed)
        for sym in symbols:
            spec = spec_for(sym)
            st = SymbolState(spec=spec, bid=spec.start_price, rng=random.Random(master.getrandbits(64)))
            if sym in replay:
                st.bars = load_bars(replay[sym])
            self.states[sym] = st
            self._pregenerate(st, now_ms, history_minutes)

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def symbols(self) -> list[str]:
        return list(self.states)

    def spread(self, st: SymbolState) -> float:
        mult = 2.0 if st.regime == "volatile" else 1.0
        return st.spec.spread_points * st.spec.point * mult

    def quote(self, symbol: str) -> tuple[float, float]:
        st = self.states[symbol]
        return st.bid, round(st.bid + self.spread(st), st.spec.price_precision)

    def _sigma_per_tick(self, st: SymbolState) -> float:
        per_sec = st.spec.annual_vol / math.sqrt(SECONDS_PER_YEAR) * self.volatility_scale
        return per_sec / math.sqrt(self.tick_rate) * REGIME_VOL[st.regime]

    def _pregenerate(self, st: SymbolState, now_ms: int, minutes: int) -> None:
        """Fill the M1 history so /candles has data right after start."""
        start = (now_ms // M1_MS - minutes) * M1_MS
        prec = st.spec.price_precision
        if st.bars is not None:
            k = min(minutes, max(0, len(st.bars) - 1))
            for i in range(k):
                b = st.bars[i]
                st.m1.append([start + (minutes - k + i) * M1_MS, b.open, b.high, b.low, b.close, float(b.volume)])
            st.bar_index = k
            st.bid = st.bars[k].open
        else:
            sig = st.spec.annual_vol / math.sqrt(SECONDS_PER_YEAR / 60) * self.volatility_scale / 3
            p = st.bid
            for i in range(minutes):
                o = p
                hi = lo = o
                for _ in range(6):
                    p *= math.exp(st.rng.gauss(0, sig))
                    hi, lo = max(hi, p), min(lo, p)
                vol = round(st.spec.print_size * st.rng.uniform(20, 60), 2)
                st.m1.append([start + i * M1_MS, round(o, prec), round(hi, prec), round(lo, prec), round(p, prec), vol])
            st.bid = round(p, prec)
        st.day_high = max(c[2] for c in st.m1) if st.m1 else st.bid
        st.day_low = min(c[3] for c in st.m1) if st.m1 else st.bid

    # -- control -----------------------------------------------------------------------------------
    def plant_surge(self, symbol: str, side: int, intensity: float, seconds: float, now_ms: int) -> None:
        st = self.states[symbol]
        st.surge = st.last_surge = Surge(side=1 if side > 0 else -1, intensity=max(1.0, intensity),
                                         until_ms=now_ms + int(seconds * 1000))

    def set_price(self, symbol: str, bid: float) -> None:
        st = self.states[symbol]
        st.bid = round(bid, st.spec.price_precision)

    def surge_first_ticks(self) -> dict[str, int]:
        """Per symbol, the venue time of its latest surge's first tick (what a surge is measured from)."""
        return {sym: st.last_surge.first_tick_ms for sym, st in self.states.items()
                if st.last_surge is not None and st.last_surge.first_tick_ms is not None}

    # -- stepping ----------------------------------------------------------------------------------
    def step(self, now_ms: int) -> list[Tick]:
        if self.paused:
            return []
        return [self._step_symbol(st, now_ms) for st in self.states.values()]

    def tick_now(self, symbol: str, now_ms: int) -> Tick:
        """Emit one tick at the current price without moving it (used after set_price)."""
        st = self.states[symbol]
        return self._emit(st, now_ms, [], None)

    def _step_symbol(self, st: SymbolState, now_ms: int) -> Tick:
        rng = st.rng
        if st.bars is not None:
            return self._step_replay(st, now_ms)
        # regime switching: mean stay ~2 minutes
        if rng.random() < 1.0 / (120 * self.tick_rate):
            st.regime = rng.choice(("calm", "normal", "normal", "volatile"))
        # random surges
        if st.surge is None and rng.random() < self.surges_per_hour / (3600 * self.tick_rate):
            st.surge = st.last_surge = Surge(rng.choice((1, -1)), rng.uniform(3, 6),
                                             now_ms + int(rng.uniform(5, 20) * 1000))
        if st.surge is not None and now_ms >= st.surge.until_ms:
            st.surge = None
        sigma = self._sigma_per_tick(st)
        drift = 0.0
        n_trades = _poisson(rng, 1.0)
        buy_prob = 0.5
        size_mult = 1.0
        if st.surge is not None:
            if st.surge.first_tick_ms is None:
                st.surge.first_tick_ms = now_ms
            drift = st.surge.side * sigma * 0.8 * st.surge.intensity ** 0.5
            n_trades = _poisson(rng, 1.0 * st.surge.intensity) + 1
            buy_prob = 0.88 if st.surge.side > 0 else 0.12
            size_mult = st.surge.intensity
        ret = rng.gauss(drift, sigma)
        prec = st.spec.price_precision
        st.bid = round(max(st.spec.point, st.bid * math.exp(ret)), prec)
        if st.surge is None:
            buy_prob = 0.55 if ret > 0 else 0.45 if ret < 0 else 0.5
        ask = round(st.bid + self.spread(st), prec)
        trades = []
        for _ in range(n_trades):
            side = 1 if rng.random() < buy_prob else -1
            size = round(st.spec.print_size * rng.lognormvariate(0, 0.6) * size_mult, 2) or 0.01
            trades.append(Trade(ask if side > 0 else st.bid, size, side))
        return self._emit(st, now_ms, trades, None)

    def _step_replay(self, st: SymbolState, now_ms: int) -> Tick:
        if not st.pending:
            if st.bar_index >= len(st.bars):
                st.bar_index = 0  # wrap around (documented price jump)
            bar = st.bars[st.bar_index]
            st.pending.extend((st.bar_index, p, v) for p, v in
                              expand_bar(bar, self.replay_ticks_per_bar, st.rng, st.spec.price_precision))
            st.bar_index += 1
        idx, price, vol = st.pending.popleft()
        st.bid = price
        prev_side = 1 if st.rng.random() < 0.5 else -1
        ask = round(price + self.spread(st), st.spec.price_precision)
        trades = [Trade(ask if prev_side > 0 else price, float(vol), prev_side)] if vol > 0 else []
        tick = self._emit(st, now_ms, trades, idx, volume_override=float(vol))
        return tick

    def _emit(self, st: SymbolState, now_ms: int, trades: list[Trade], bar_idx, volume_override=None) -> Tick:
        prec = st.spec.price_precision
        bid = st.bid
        ask = round(bid + self.spread(st), prec)
        st.day_high = max(st.day_high, bid)
        st.day_low = min(st.day_low, bid)
        # candle
        closed = None
        minute = now_ms // M1_MS * M1_MS
        vol = volume_override if volume_override is not None else sum(t.volume for t in trades)
        cur = st.current
        if cur is None or cur[0] != minute:
            if cur is not None:
                st.m1.append(cur)
                closed = cur
            elif st.m1 and st.m1[-1][0] == minute:  # pre-generated history already covers this minute
                cur = st.m1.pop()
                cur[2], cur[3], cur[4], cur[5] = max(cur[2], bid), min(cur[3], bid), bid, cur[5] + vol
                st.current = cur
                return self._finish(st, now_ms, bid, ask, trades, closed, bar_idx)
            st.current = cur = [minute, bid, bid, bid, bid, 0.0]
        cur[2] = max(cur[2], bid)
        cur[3] = min(cur[3], bid)
        cur[4] = bid
        cur[5] = round(cur[5] + vol, 8)
        return self._finish(st, now_ms, bid, ask, trades, closed, bar_idx)

    def _finish(self, st, now_ms, bid, ask, trades, closed, bar_idx) -> Tick:
        # depth: imbalance follows the surge side (buyers' bids deeper on a buy surge)
        rng = st.rng
        step = max(st.spec.point, (ask - bid) / 2)
        imb = 1.0
        if st.surge is not None:
            imb = 1.0 + 0.6 * st.surge.intensity
        bid_mult = imb if (st.surge and st.surge.side > 0) else 1.0
        ask_mult = imb if (st.surge and st.surge.side < 0) else 1.0
        prec = st.spec.price_precision
        base = st.spec.print_size * 4
        bids = [(round(bid - i * step, prec), round(base * rng.uniform(0.5, 1.5) * bid_mult * (1 + 0.3 * i), 2))
                for i in range(self.depth_levels)]
        asks = [(round(ask + i * step, prec), round(base * rng.uniform(0.5, 1.5) * ask_mult * (1 + 0.3 * i), 2))
                for i in range(self.depth_levels)]
        return Tick(st.spec.symbol, now_ms, bid, ask, trades, bids, asks, st.current, closed, bar_idx)

    # -- candles -----------------------------------------------------------------------------------
    def candles(self, symbol: str, interval: str, from_ms: int, to_ms: int) -> list[list]:
        """Candles whose open time is in [from_ms, to_ms], aggregated from M1 history (+ current)."""
        st = self.states[symbol]
        size = P.INTERVAL_SECONDS[interval] * 1000
        src = list(st.m1) + ([st.current] if st.current else [])
        out: dict[int, list] = {}
        for t, o, h, lo, c, v in src:
            b = t // size * size
            if b < from_ms - size or b > to_ms:
                continue
            agg = out.get(b)
            if agg is None:
                out[b] = [b, o, h, lo, c, v]
            else:
                agg[2] = max(agg[2], h)
                agg[3] = min(agg[3], lo)
                agg[4] = c
                agg[5] = round(agg[5] + v, 8)
        return [out[k] for k in sorted(out) if from_ms <= k <= to_ms]


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth; lam is small here
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
