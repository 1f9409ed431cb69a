"""The strategy interface: what the live analysis and the backtest both call, and nothing else.

Why an interface: the beat-driven analysis (``signals.service.run_analysis``), a future
event-driven wake-up in the feed (issue 16) and the backtest engine (``backtest.engine``) must run
the *same* decision code, or a backtest says nothing about live trading. They differ only in
where the ``MarketWindow`` comes from (Redis, or a window built in memory from replayed ticks) and
what the clock is (wall time, or the simulated clock). Everything a strategy decides is here:

``Strategy`` (one instance per kind, stateless, registered in ``STRATEGIES`` by ``name``):

- ``parse_params(overrides) -> params``: defaults + overrides, validated (unknown key, wrong type,
  out of range → ``StrategyParamsError`` naming the key). ``describe()`` documents every
  parameter with its range (admin, sweeps).
- ``evaluate(window, params, now_ms, last_signal_ms, tick_size) -> Decision``: PURE — no I/O, no
  clock (``now_ms`` is passed in). ``Decision.reason`` names why nothing happened; a signal carries
  ``side``, ``strength`` (0..1) and an ``ExitPlan`` (entry, SL, TP on the tick grid, time stop).
  ``last_signal_ms`` is the symbol's previous signal time: the cool-down is the strategy's rule.
- ``prescreen(params) -> PreScreen``: a NEW per-symbol wake-up state. The caller feeds it every
  tick as it arrives (``on_tick(ts_ms, price, volume) -> bool``); True means "analyse this
  symbol now, don't wait for the next beat". It must be cheap (O(1) per tick, no numpy) and is a
  hint only: beat still analyses every symbol every period, so a missed wake-up costs latency,
  never a signal. Each strategy wakes on what matters to it: the volume-surge scalper on the
  analysis' own surge test kept incrementally (``VolumeSurgePreScreen``), the moving-average cross on a new
  1 m bar.

The backtest drives ``prescreen`` exactly like the live feed will: an analysis pass at every
beat time AND at every tick where the pre-screen fires (``backtest.engine``). A backtest knows
its ticks in advance, so it asks ``wakeups(prescreen, ts, price, volume)`` for the indices of the
ticks a fresh pre-screen fires on: a pre-screen may offer an exact vectorised
``wakeups(ts, price, volume)`` (None when it cannot be exact); otherwise ``on_tick`` is called per
tick. ``tests/backtest/test_stream.py`` checks the vectorised one against ``on_tick``.

Adding a strategy: a params dataclass (``signals.strategy._p`` fields give ranges and docs), a
pure ``evaluate``, a ``PreScreen``, a ``Strategy`` subclass registered in ``STRATEGIES``. See
``signals/ma_cross.py`` for a small complete example.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from marketdata.windows import MarketWindow

from .analysis.volume import MIN_BASELINE_RATE
from .strategy import DEFAULT_PARAMS, Decision, StrategyParams, StrategyParamsError, evaluate

DEFAULT_STRATEGY = "volume_surge"


class PreScreen(Protocol):
    def on_tick(self, ts_ms: int, price: float, volume: float) -> bool: ...


def wakeups(prescreen: PreScreen, ts: np.ndarray, price: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Indices (int64, ascending) of the ticks at which ``prescreen`` — fresh — fires when fed
    ``ts``/``price``/``volume`` in order: its own vectorised ``wakeups`` when it has one that can
    answer exactly, else ``on_tick`` per tick. The pre-screen's state is consumed either way."""
    fast = getattr(prescreen, "wakeups", None)
    if fast is not None:
        out = fast(ts, price, volume)
        if out is not None:
            return out
    on_tick = prescreen.on_tick
    return np.array([i for i, (t, p, v) in enumerate(zip(ts.tolist(), price.tolist(), volume.tolist()))
                     if on_tick(t, p, v)], dtype=np.int64)


class Strategy:
    """Base class: subclasses set ``name``, ``params_type``, ``label`` and implement ``evaluate``
    and ``prescreen``."""

    name: str = ""
    label: str = ""
    params_type: type = StrategyParams

    def parse_params(self, overrides: Mapping[str, Any] | None):
        return self.params_type.from_dict(overrides)

    def default_params(self):
        return self.params_type()

    def describe(self) -> dict[str, dict[str, Any]]:
        return self.params_type.describe()

    def evaluate(self, window: MarketWindow, params, now_ms: int, last_signal_ms: int | None,
                 tick_size: float) -> Decision:
        raise NotImplementedError

    def prescreen(self, params) -> PreScreen:
        raise NotImplementedError


class VolumeSurgePreScreen:
    """Wake analysis when the analysis' own volume-surge test passes on the ticks seen so far.

    The same arithmetic as ``signals.analysis.volume.analyse_volume``, kept incrementally: activity
    per second (traded volume, or the tick count while the ticks carry no volume — the
    ``volume_source='auto'`` rule) in a ring of ``recent_window_s + baseline_window_s`` seconds,
    with running sums of the recent window and of the baseline window (sum and sum of squares, so
    mean and population std are O(1)); the recent rate divides by the elapsed part of the window,
    as the analysis does. It fires when ratio ≥ ``surge_min_ratio``, z-score ≥
    ``surge_min_zscore`` and recent volume ≥ ``surge_min_volume`` with at least
    ``min_baseline_s`` covered baseline seconds — the analysis' thresholds WITHOUT its no-book
    multiplier, so it is a necessary condition of a volume-surge signal: it wakes at least
    whenever the analysis could fire, and otherwise stays quiet (a calm market wakes nothing).
    While the test holds it fires again: every ``RELOOK_MS`` (15 ms: every tick of a symbol ticking
    up to ~65 times a second, every few ticks of a busier one) during the first ``FAST_PHASE_MS``
    (0.5 s) of an episode, then once per
    ``REFIRE_MAX_MS`` (one beat period). Why: the first look of a surge often finds the analysis'
    other conditions (direction, flow: over the recent window, still mostly the calm seconds
    before the surge) not met yet, and they are met a few ticks later; a re-look must then come
    within a tick or two of that evidence. A doubling schedule (50, 100, 200, 400 ms ...) put up to
    hundreds of ms on the slow surges, a fixed 250 ms one a quarter second on one surge in five
    (``bench/relook_schedule.py``: on 200 of the simulator's surges the strategy's evidence is
    there 40 / 120 / 260 ms (p50 / p95 / max) after the surge start; doubling signals at
    40 / 200 / 420, this schedule at 40 / 120 / 260 — at the evidence's own tick on every surge,
    where a 25 ms interval, every other tick at 50 ticks/s, came one tick late on some: 20 ms at
    p95, 100 ms at most). The cost is bounded: at most ``FAST_PHASE_MS / RELOOK_MS`` + 1 looks in
    an episode's fast phase (25 at 50 ticks/s: every tick), then one a second (28 per 3 s surge
    there, 7 with doubling); after the signal the live feed sends none of them while the symbol
    is in cool-down (``workers.feed``), and one already on its way is answered ``cooldown`` before
    the analysis reads the market window (``signals.service.run_analysis``).
    Beyond one beat period the beat looks anyway. An episode ends when the test has not held for
    ``REARM_MS``; the next one starts a new fast phase. A calm market
    never passes the test, so this costs nothing there. The baseline covers only the seconds this pre-screen has seen (a
    feed restart starts it empty): until ``min_baseline_s`` have passed it never fires and the
    beat alone covers the symbol.
    """

    RELOOK_MS = 15  # re-look interval in an episode's fast phase: every tick up to ~65 ticks/s
    FAST_PHASE_MS = 500  # how long an episode re-looks every RELOOK_MS (from its first fire)
    REFIRE_MAX_MS = 1_000  # after the fast phase: the beat period (the beat looks this often anyway)
    REARM_MS = 1_000  # the test not holding this long ends the episode

    __slots__ = ("ratio", "zmin", "vmin", "std_floor", "recent_s", "baseline_s", "n", "min_seconds", "use_volume",
                 "ring", "second", "first_second", "recent_sum", "base_sum", "base_sq", "next_fire_ms",
                 "resum_at", "episode_ms", "held_ms", "gate_mean", "gate_rate_min", "gate_denom", "gate_from_ms")

    def __init__(self, params: StrategyParams):
        self.ratio = params.surge_min_ratio
        self.zmin = params.surge_min_zscore
        self.vmin = params.surge_min_volume
        self.std_floor = params.zscore_std_floor
        self.recent_s = params.recent_window_s
        self.baseline_s = params.baseline_window_s
        self.n = self.recent_s + self.baseline_s
        self.min_seconds = params.min_baseline_s
        self.use_volume = params.volume_source == "volume"
        self._reset()

    def _reset(self) -> None:
        self.ring = [0.0] * self.n  # activity of second s at ring[s % n]
        self.second = -1
        self.first_second = -1
        self.recent_sum = 0.0
        self.base_sum = 0.0
        self.base_sq = 0.0
        self.next_fire_ms = -1
        self.resum_at = 0
        self.episode_ms = 0  # the first fire of the current episode
        self.held_ms = -(1 << 62)  # the last tick at which the test held
        self.gate_mean = None  # the second's baseline terms (``_gate``); None: the test cannot hold
        self.gate_rate_min = self.gate_denom = 0.0
        self.gate_from_ms = 0

    def _gate(self) -> None:
        """The test's terms that change only with the second (the baseline moves once a second):
        the baseline mean, ``ratio × mean``, the z-score's denominator and where the recent window
        starts. Computed once a second instead of at every tick (the per-tick cost is the feed's);
        the same float operations as before, so the test's answers are the same to the bit."""
        second = self.second
        k = min(self.baseline_s, second - self.recent_s - self.first_second)
        self.gate_mean = None
        if k < self.min_seconds or k <= 0:
            return
        mean = self.base_sum / k
        if mean <= MIN_BASELINE_RATE:
            return
        std = math.sqrt(max(self.base_sq / k - mean * mean, 0.0))
        self.gate_mean = mean
        self.gate_rate_min = self.ratio * mean
        self.gate_denom = max(std, self.std_floor * mean)
        self.gate_from_ms = (second - self.recent_s + 1) * 1000 - 1

    def _advance(self, second: int) -> None:
        """Move the windows on to ``second`` (the seconds in between had no activity)."""
        n, r, ring = self.n, self.recent_s, self.ring
        if second - self.second >= n or second >= self.resum_at:
            # long silence, or periodically: recompute the sums exactly (no float drift over days)
            for s in range(max(self.second + 1, second - n + 1), second + 1):
                ring[s % n] = 0.0
            if second - self.second >= n:
                for i in range(n):
                    ring[i] = 0.0
            self.second = second
            recent = [ring[s % n] for s in range(second - r + 1, second + 1)]
            base = [ring[s % n] for s in range(second - n + 1, second - r + 1)]
            self.recent_sum = sum(recent)
            self.base_sum = sum(base)
            self.base_sq = sum(x * x for x in base)
            self.resum_at = second + n
            self._gate()
            return
        for s in range(self.second + 1, second + 1):
            moving = ring[(s - r) % n]  # leaves the recent window, enters the baseline
            leaving = ring[s % n]  # leaves the baseline (its slot is reused for second s)
            self.recent_sum -= moving
            self.base_sum += moving - leaving
            self.base_sq += moving * moving - leaving * leaving
            ring[s % n] = 0.0
        self.second = second
        self._gate()

    def wakeups(self, ts: np.ndarray, price: np.ndarray, volume: np.ndarray) -> np.ndarray | None:
        """``on_tick`` over a whole time-ordered run at once, for a fresh pre-screen (see ``wakeups``).

        Exact, not approximate: the activity per second is then a whole number (tick counts, or
        whole traded volumes), so the incremental sums ``on_tick`` keeps are exact integers and
        equal the prefix sums computed here to the bit; the threshold arithmetic is the same
        float operations in the same order. None (loop ``on_tick``) when that does not hold:
        fractional volumes, sums beyond 2**53, ticks out of order, a state not fresh."""
        if self.first_second != -1 or self.second != -1:
            return None
        n = len(ts)
        if n == 0:
            return np.empty(0, dtype=np.int64)
        if n > 1 and bool((ts[1:] < ts[:-1]).any()):
            return None
        if self.use_volume:
            parts = [(0, n, True)]
        else:  # counts ticks until the first traded volume, then resets and measures volume
            up = np.flatnonzero(volume > 0)
            f = int(up[0]) if len(up) else n
            parts = [(0, f, False)] + ([(f, n, True)] if f < n else [])
        out = []
        for a, b, use_volume in parts:
            if b > a:
                got = self._scan(ts[a:b], volume[a:b], use_volume)
                if got is None:
                    return None
                out.append(got + a)
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)

    def _scan(self, ts: np.ndarray, volume: np.ndarray, use_volume: bool) -> np.ndarray | None:
        x = volume if use_volume else np.ones(len(ts))
        if not bool((x == np.floor(x)).all()) or float(np.abs(x).sum()) ** 2 >= 2.0**53:
            return None
        xi = x.astype(np.int64)
        sec = ts // 1000
        first = int(sec[0])
        span = int(sec[-1]) - first + 1
        if span > 50_000_000:
            return None
        counted = sec > first  # the first (partly seen) second never counts
        rel = sec - first
        act = np.bincount(rel[counted], weights=xi[counted], minlength=span).astype(np.int64)  # exact: < 2**53
        p = np.concatenate(([0], np.cumsum(act)))  # p[j] = activity of relative seconds < j
        p2 = np.concatenate(([0], np.cumsum(act * act)))
        xc = np.where(counted, xi, 0)
        cx = np.cumsum(xc)
        new_second = np.concatenate(([True], rel[1:] != rel[:-1]))
        before = (cx - xc)[new_second]  # cumulative before each second's first tick
        in_second = cx - before[np.cumsum(new_second) - 1]
        r, nb = self.recent_s, self.n
        lo_recent = np.maximum(rel - r + 1, 0)
        lo_base = np.maximum(rel - nb + 1, 0)
        recent = (p[rel] - p[lo_recent] + in_second).astype(np.float64)
        base = (p[lo_recent] - p[lo_base]).astype(np.float64)
        base_sq = (p2[lo_recent] - p2[lo_base]).astype(np.float64)
        k = np.minimum(self.baseline_s, rel - r)
        with np.errstate(divide="ignore", invalid="ignore"):
            kf = k.astype(np.float64)
            mean = base / kf
            ok = counted & (k >= self.min_seconds) & (k > 0) & (mean > MIN_BASELINE_RATE)
            std = np.sqrt(np.maximum(base_sq / kf - mean * mean, 0.0))
            elapsed_s = (ts - (sec - r + 1) * 1000 + 1) / 1000.0
            rate = recent / elapsed_s
            ok &= (rate >= self.ratio * mean) & ((rate - mean) / np.maximum(std, self.std_floor * mean) >= self.zmin)
            ok &= recent >= self.vmin
        # the re-look schedule of on_tick over the ticks at which the test holds (same episode rule)
        fires, next_fire, episode, held = [], -1, 0, -(1 << 62)
        fast, phase, slow, rearm = self.RELOOK_MS, self.FAST_PHASE_MS, self.REFIRE_MAX_MS, self.REARM_MS
        candidates = np.flatnonzero(ok)
        for i, t in zip(candidates.tolist(), ts[candidates].tolist()):
            if t - held >= rearm:
                next_fire = -1  # a new episode: fire now
            held = t
            if t >= next_fire:
                if next_fire < 0:
                    episode = t
                fires.append(i)
                next_fire = t + (fast if t - episode < phase else slow)
        return np.array(fires, dtype=np.int64)

    def on_tick(self, ts_ms: int, price: float, volume: float) -> bool:
        second = ts_ms // 1000
        if volume > 0 and not self.use_volume:
            self.use_volume = True  # traded volume seen: measure volume, like volume_source='auto'
            self._reset()
        if self.first_second < 0 or second == self.first_second:
            # the first second is only partly seen: the analysis leaves it out of the baseline too
            self.first_second = second
            self.second = second
            self.resum_at = second + self.n
            return False
        if second > self.second:
            self._advance(second)
        elif second < self.second:
            return False  # out of order: the feed stores it, the windows here move forward only
        x = volume if self.use_volume else 1.0
        self.ring[second % self.n] += x
        self.recent_sum += x
        # the baseline (seconds after the first, partial one, before the recent window): _gate
        mean = self.gate_mean
        if mean is None:
            return False
        rate = self.recent_sum / ((ts_ms - self.gate_from_ms) / 1000.0)
        if (rate >= self.gate_rate_min and (rate - mean) / self.gate_denom >= self.zmin
                and self.recent_sum >= self.vmin):
            if ts_ms - self.held_ms >= self.REARM_MS:
                self.next_fire_ms = -1  # a new episode: fire now
            self.held_ms = ts_ms
            if ts_ms < self.next_fire_ms:
                return False
            if self.next_fire_ms < 0:
                self.episode_ms = ts_ms
            self.next_fire_ms = ts_ms + (self.RELOOK_MS if ts_ms - self.episode_ms < self.FAST_PHASE_MS
                                         else self.REFIRE_MAX_MS)
            return True
        return False


class VolumeSurgeStrategy(Strategy):
    name = "volume_surge"
    label = "Volume-surge scalper"
    params_type = StrategyParams

    def default_params(self):
        return DEFAULT_PARAMS

    def parse_params(self, overrides):
        return StrategyParams.from_dict(overrides) if overrides else DEFAULT_PARAMS

    def evaluate(self, window, params, now_ms, last_signal_ms, tick_size):
        return evaluate(window, params, now_ms, last_signal_ms, tick_size)

    def prescreen(self, params) -> VolumeSurgePreScreen:
        return VolumeSurgePreScreen(params)


STRATEGIES: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    if not strategy.name or strategy.name in STRATEGIES:
        raise ValueError(f"strategy name {strategy.name!r} is empty or already registered")
    STRATEGIES[strategy.name] = strategy
    return strategy


register(VolumeSurgeStrategy())


def get_strategy(name: str | None) -> Strategy:
    """The registered strategy ``name`` (None/"" → the default). Unknown → StrategyParamsError."""
    _load_builtin()
    key = name or DEFAULT_STRATEGY
    try:
        return STRATEGIES[key]
    except KeyError:
        raise StrategyParamsError(f"unknown strategy {key!r}; valid: {', '.join(sorted(STRATEGIES))}") from None


def strategy_choices() -> list[tuple[str, str]]:
    _load_builtin()
    return [(s.name, s.label or s.name) for s in STRATEGIES.values()]


def _load_builtin() -> None:
    if "ma_cross" not in STRATEGIES:
        from . import ma_cross  # noqa: F401 - registers itself


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
