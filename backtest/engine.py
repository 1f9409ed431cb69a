"""The event-driven backtest engine: the live decision code on a simulated clock, no I/O.

One loop over feed events (``backtest.data.bar_events`` or a recorded stream), in time order:

1. **Beat.** Before an event later than the next beat time ``T`` (every ``analysis_period_ms``,
   aligned on the epoch like the live 1 s beat), an analysis pass runs at ``now = T`` over every
   symbol, on the windows holding every event up to ``T``. It is ``signals.strategy.analyse_all``
   — the live pass's own entry point — with each symbol's ``signals.strategies`` strategy and
   params, the cool-down state (the time of the symbol's last signal, as the live service keeps
   it) and the symbol's tick size.
2. **Ingest.** The event goes into ``backtest.windows.WindowBuilder`` (the feed's rules).
3. **Market.** On a quote: queued entries of that symbol fill at it; open positions' SL/TP
   trigger on it; time stops due by then close at it. Every price comes from
   ``matchtrader.simulator.fills`` — the simulator's fill model (bid/ask, slippage, SL/TP on the
   closing side, gap fills at the gap price, commission, pro-rata partial closes).
4. **Wake-up.** With ``use_prescreen``, the tick goes to the strategy's pre-screen
   (``Strategy.prescreen``, the hook the live feed calls); when it fires, that symbol is analysed
   at once at ``now = tick time``.

A signal sets the symbol's cool-down, closes the opposite positions of every account (the live
``orders.manage_positions`` exit), and queues one entry per account, sized by
``orders.sizing.size_order`` on the account's equity and risk (the live sizing function), filled at
the symbol's NEXT quote (an order never fills on the quote that produced its signal). Every
(signal, account) pair ends in a trade or a named skip (sizing's reasons, ``max_open_positions``,
``not_enough_money``, ``invalid_stops``). Positions still open at the end close at the last quote
(``end``).

Known differences from live (stated, not hidden): the live time stop is checked every 5 s by a
beat (``orders.manage_positions``), here on the first quote after the deadline; live orders see
network and broker latency, here one quote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from marketdata.bars import Bar as FeedBar
from matchtrader.events import DepthEvent, QuoteEvent, TradeEvent
from matchtrader.simulator import fills
from matchtrader.simulator.instruments import Spec
from orders.sizing import SymbolSpec, quote_to_account_rate, size_order
from signals.strategies import Strategy, get_strategy, wakeups
from signals.strategy import Decision, Reason, analyse_all

from .propcheck import PropMonitor
from .stream import StreamBuilder, StreamWindows, TickStream
from .windows import WindowBuilder

ZERO = Decimal("0")


class BacktestConfigError(ValueError):
    """A bad run definition (account, symbol, parameters), with a message a user can act on."""


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """An account the run sizes for (not the live fleet)."""

    name: str = "A"
    equity: Decimal = Decimal("10000")
    currency: str = "USD"
    risk_pct: Decimal = Decimal("0.5")
    max_open_positions: int = 5
    leverage: int = 100

    def __post_init__(self):
        for name in ("equity", "risk_pct"):
            value = getattr(self, name)
            if not isinstance(value, Decimal):
                object.__setattr__(self, name, Decimal(str(value)))
        if not self.equity.is_finite() or self.equity <= 0:
            raise BacktestConfigError(f"account {self.name}: equity must be > 0, got {self.equity}")
        if not self.risk_pct.is_finite() or not (0 < self.risk_pct <= 100):
            raise BacktestConfigError(f"account {self.name}: risk_pct must be in (0, 100], got {self.risk_pct}")
        if self.max_open_positions < 1 or self.leverage < 1:
            raise BacktestConfigError(f"account {self.name}: max_open_positions and leverage must be >= 1")
        if not (isinstance(self.currency, str) and len(self.currency) == 3 and self.currency.isalpha()):
            raise BacktestConfigError(f"account {self.name}: currency must be a 3-letter code, got {self.currency!r}")


@dataclass(frozen=True, slots=True)
class SymbolSetup:
    symbol: str
    spec: Spec
    strategy: str = "volume_surge"
    params: Mapping | None = None  # overrides of the strategy's defaults

    @property
    def tick_size(self) -> float:
        return self.spec.point

    @property
    def pip(self) -> Decimal:
        p = self.spec.price_precision
        return Decimal(1).scaleb(-(p - 1) if p in (3, 5) else -p)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    analysis_period_ms: int = 1000  # the live beat
    use_prescreen: bool = True
    commission_per_lot: Decimal = Decimal("3.5")  # the simulator's default
    slippage_points: int = 0


@dataclass(slots=True)
class Position:
    account: int
    symbol: str
    side: str
    volume: Decimal
    open_price: Decimal
    open_ms: int
    open_bar: int
    sl: Decimal | None
    tp: Decimal | None
    deadline_ms: int
    commission: Decimal
    signal: int
    open: bool = True  # False once fully closed (a firm-rule flatten may close others mid-loop)


@dataclass(slots=True)
class Trade:
    account: str
    symbol: str
    side: str
    volume: Decimal
    open_ms: int
    open_price: Decimal
    close_ms: int
    close_price: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    reason: str
    profit: Decimal  # account currency, before commission
    commission: Decimal  # negative
    pips: Decimal
    signal: int
    open_bar: int
    close_bar: int

    @property
    def net(self) -> Decimal:
        return self.profit + self.commission


@dataclass(slots=True)
class SignalRecord:
    index: int
    symbol: str
    now_ms: int
    tick_ms: int | None
    side: str
    strength: float
    entry_price: float
    stop_loss: float
    take_profit: float
    time_stop_s: int
    bar: int
    woken: bool  # True: by the pre-screen, False: by the beat
    decision: Decision | None = None


@dataclass(slots=True)
class Result:
    signals: list[SignalRecord] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    skips: list[tuple[int, str, str]] = field(default_factory=list)  # (signal, account, reason)
    equity: dict[str, list[tuple[int, Decimal]]] = field(default_factory=dict)  # account -> [(bar, equity)]
    reasons: dict[str, int] = field(default_factory=dict)
    passes: int = 0
    wakeups: int = 0
    events: int = 0
    ticks: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    bars: int = 0
    pass_log: list[tuple[int, dict[str, str]]] | None = None  # (now_ms, symbol -> reason), scheduled runs only


def _dec(x: float) -> Decimal:
    return Decimal(repr(x))


class Engine:
    def __init__(self, symbols: list[SymbolSetup], accounts: list[AccountSpec], config: EngineConfig = EngineConfig(),
                 history: Mapping[str, list[FeedBar]] | None = None, prop: PropMonitor | None = None,
                 bar_times: list[int] | None = None):
        """``prop``: the accounts' prop-firm rule profiles (``backtest.propcheck``), evaluated on
        ``bar_times`` (each bar's own date, ms; default the replay clock)."""
        if not symbols:
            raise BacktestConfigError("no symbols")
        if not accounts:
            raise BacktestConfigError("no accounts")
        names = [a.name for a in accounts]
        if len(set(names)) != len(names):
            raise BacktestConfigError(f"account names must be unique: {names}")
        if config.analysis_period_ms < 1:
            raise BacktestConfigError("analysis_period_ms must be >= 1")
        self.config = config
        self.accounts = accounts
        self.setups = {s.symbol: s for s in symbols}
        self.strategies: dict[str, Strategy] = {}
        self.params: dict[str, object] = {}
        for s in symbols:
            strategy = get_strategy(s.strategy)  # StrategyParamsError (a ValueError) when unknown
            self.strategies[s.symbol] = strategy
            self.params[s.symbol] = strategy.parse_params(s.params)
        self.tick_sizes = {s.symbol: s.tick_size for s in symbols}
        self._names = list(self.setups)
        self.builder = WindowBuilder()
        self.history = dict(history or {})
        for name, bars in (history or {}).items():
            self.builder.book(name).load_history(bars)
        self.prescreens = {s: self.strategies[s].prescreen(self.params[s]) for s in self.setups}
        self.last_signal: dict[str, int | None] = {s: None for s in self.setups}
        self.balance = [a.equity for a in accounts]
        self.positions: list[Position] = []
        self.pending: dict[str, list[tuple[int, int, Decimal, Decimal, Decimal, int]]] = {}
        self.quotes_f: dict[str, tuple[float, float]] = {}  # latest quote, as received
        self._quotes: dict[str, tuple[Decimal, Decimal]] = {}
        self.slippage = {s.symbol: fills.slippage_price(config.slippage_points, s.spec.price_precision)
                         for s in symbols}
        self.result = Result(equity={a.name: [] for a in accounts})
        self.prop = prop
        self.bar_times = bar_times
        self._bar = -1
        self._now = 0

    # -- the loop -------------------------------------------------------------------------------
    def run(self, events: Iterable, schedule: Iterable[tuple[int, int]] | None = None) -> Result:
        """Replay ``events`` (``event`` or ``(event, bar index)``). ``schedule``: explicit analysis
        passes ``(events ingested before it, now_ms)`` instead of the beat (the parity test replays
        the live passes this way)."""
        res = self.result
        period = self.config.analysis_period_ms
        next_beat = None
        plan = iter(schedule) if schedule is not None else None
        planned = next(plan, None) if plan is not None else None
        if plan is not None:
            res.pass_log = []
        prescreen = self.config.use_prescreen and plan is None
        builder = self.builder
        books = builder.books
        screens = self.prescreens
        on_quote = self._on_quote
        n = ticks = 0
        bar_now = self._bar
        for item in events:
            if type(item) is tuple:
                ev, bar = item
            else:
                ev, bar = item, (bar_now if bar_now >= 0 else 0)
            cls = type(ev)
            if plan is not None:
                while planned is not None and planned[0] <= n:
                    self._analyse(planned[1], None, False)
                    planned = next(plan, None)
            if cls is not QuoteEvent and cls is not TradeEvent:
                # depth goes to the windows; connection, gap, malformed frames carry nothing for them
                if cls is DepthEvent:
                    builder.ingest(ev)
                n += 1
                continue
            ts = ev.ts_ms
            if plan is None:
                if next_beat is None:
                    next_beat = ts - ts % period + period
                while ts > next_beat:
                    self._analyse(next_beat, None, False)
                    next_beat += period
            if bar != bar_now:
                if bar_now >= 0:
                    self._mark_equity()
                self._bar = bar_now = bar
            symbol = ev.symbol
            book = books.get(symbol) or builder.book(symbol)
            n += 1
            ticks += 1
            self._now = ts
            if cls is QuoteEvent:
                book.quote(ts, ev.bid, ev.ask)
                on_quote(symbol, ev.bid, ev.ask, ts)
                price, volume = (ev.bid + ev.ask) * 0.5, 0.0
            else:
                price, volume = ev.price, ev.volume
                book.trade(ts, price, volume, ev.side)
            if prescreen and screens[symbol].on_tick(ts, price, volume):
                res.wakeups += 1
                self._analyse(ts, [symbol], True)
            if res.first_ms is None:
                res.first_ms = ts
            res.last_ms = ts
        res.ticks += ticks
        if plan is not None:
            while planned is not None:
                self._analyse(planned[1], None, False)
                planned = next(plan, None)
        res.events = n
        self._close_all("end")
        self._mark_equity()
        res.bars = self._bar + 1
        return res

    def run_stream(self, stream: TickStream) -> Result:
        """The same replay as ``run`` over a stream known in advance (``backtest.stream``), without
        per-tick Python: the windows are slices of precomputed columns, the pre-screen's wake-ups
        come at once (``signals.strategies.wakeups``), and the loop jumps from one event that can
        change something to the next — a beat, a wake-up, a new bar, the next quote after an
        entry was queued, the first quote that triggers an open position's SL/TP
        (``fills.first_stop_trigger``) or time stop. Each such event is handled by the same code,
        in the same order, as in ``run``; the events in between do nothing there either.
        ``tests/backtest/test_stream.py`` checks both give the same result."""
        res = self.result
        symbol = stream.symbol
        if symbol not in self.setups:
            raise BacktestConfigError(f"the stream's symbol {symbol} is not a symbol of the run")
        n = len(stream)
        if n == 0:
            return self.run([])
        others = {s: self.builder.book(s) for s in self.setups if s != symbol}
        period = self.config.analysis_period_ms
        ts, bars = stream.ts, stream.bar
        ts0 = int(ts[0])
        next_beat = ts0 - ts0 % period + period
        wake_a = (wakeups(self.prescreens[symbol], ts, stream.price, stream.volume)
                  if self.config.use_prescreen else np.empty(0, dtype=np.int64))
        # every window the run will read: after the events before each beat, and up to each wake-up
        last = int(ts[-1])
        beats = np.arange(next_beat, last, period, dtype=np.int64) if last > next_beat else np.empty(0, np.int64)
        beat_pos = np.searchsorted(ts, beats, side="right")  # the event each beat comes before
        sw = StreamWindows(stream, self.history.get(symbol), np.concatenate((beat_pos, wake_a + 1)))
        self.builder = builder = StreamBuilder(sw, others)
        is_trade = stream.trade
        q_idx = np.flatnonzero(~is_trade)  # the quotes, by event index
        q_ts = ts[q_idx]
        q_bid, q_ask = stream.bid[q_idx], stream.ask[q_idx]
        nq = len(q_idx)
        # the events known in advance to need handling (a beat before them, a wake-up, a new bar),
        # with what handling them reads, gathered once as Python values
        bar_new = np.flatnonzero(bars[1:] != bars[:-1]) + 1
        stops = np.unique(np.concatenate((beat_pos, wake_a, bar_new)))
        stops = stops[stops < n]
        info = self._event_info(stream, stops, wake_a, q_idx, q_bid, q_ask)
        stop_list = stops.tolist() + [n]
        watch: dict[int, tuple[Position, int, int]] = {}  # id -> (position, from g, event index it closes at or n)
        self._bar = int(bars[0])
        if others:
            def analyse(now_ms: int, woken: bool) -> None:
                self._analyse(now_ms, None if not woken else [symbol], woken)
        else:  # one symbol: its window straight from the stream (what ``StreamBuilder.windows`` returns)
            params, last_signal, tick_sizes, strategies = self.params, self.last_signal, self.tick_sizes, self.strategies
            window, on_signal, reasons = sw.window, self._on_signal, {}  # reasons: counted by Reason, named at the end
            signal_reason = Reason.SIGNAL

            def analyse(now_ms: int, woken: bool) -> None:
                d = analyse_all({symbol: window(builder.pos)}, params, now_ms, last_signal, tick_sizes,
                                strategies)[symbol]
                res.passes += 1
                reason = d.reason
                reasons[reason] = reasons.get(reason, 0) + 1
                if reason is signal_reason:
                    on_signal(symbol, d, now_ms, woken)
        positions, pending, quotes_f = self.positions, self.pending, self.quotes_f
        si = g = 0
        while g < n:
            # the next event that can change anything
            while stop_list[si] < g:
                si += 1
            m = stop_list[si]
            if pending.get(symbol):  # the first quote at or after g fills the queued entries
                qg = int(np.searchsorted(q_idx, g))
                if qg < nq and q_idx[qg] < m:
                    m = int(q_idx[qg])
            for pos in positions:  # the quote an open position closes at (SL/TP, time stop)
                if pos.symbol != symbol:
                    continue
                seen = watch.get(id(pos))
                if seen is None or seen[0] is not pos or seen[2] < g:
                    qg = int(np.searchsorted(q_idx, g))
                    seen = watch[id(pos)] = (pos, g, self._watch(pos, qg, q_idx, q_ts, q_bid, q_ask, n))
                if seen[2] < m:
                    m = seen[2]
            if m >= n:
                break
            # event m, as ``run`` handles it
            t, prev_t, bar, quote_before, quote, woke = (
                info[si] if m == stop_list[si] else
                self._event_info(stream, np.array([m]), wake_a, q_idx, q_bid, q_ask)[0])
            if quote_before is not None:
                quotes_f[symbol] = quote_before
            if m > 0:
                self._now = prev_t
            builder.pos = m
            while t > next_beat:
                analyse(next_beat, False)
                next_beat += period
            if bar != self._bar:
                self._mark_equity()
                self._bar = bar
            self._now = t
            builder.pos = m + 1
            if quote is not None:
                self._on_quote(symbol, quote[0], quote[1], t)
            if woke:
                res.wakeups += 1
                analyse(t, True)
            g = m + 1
        if not others:
            for reason, count in reasons.items():
                key = str(reason)
                res.reasons[key] = res.reasons.get(key, 0) + count
        # the rest does nothing but move the clock and the latest quote on
        if nq:
            quotes_f[symbol] = (float(q_bid[-1]), float(q_ask[-1]))
        self._now = last
        builder.pos = n
        res.ticks += n
        res.events = n
        res.first_ms, res.last_ms = ts0, last
        self._close_all("end")
        self._mark_equity()
        res.bars = self._bar + 1
        return res

    @staticmethod
    def _event_info(stream: TickStream, at: np.ndarray, wake_a: np.ndarray, q_idx, q_bid, q_ask) -> list[tuple]:
        """What ``run_stream`` reads to handle each event of ``at`` (ascending), as Python values:
        (its time, the previous event's time, its bar, the latest quote before it or None, its own
        quote if it is one else None, whether the pre-screen wakes on it)."""
        if len(at) == 0:
            return []
        ts = stream.ts
        j = np.searchsorted(q_idx, at) - 1  # the last quote before each event
        if len(q_idx):
            jj = np.maximum(j, 0)
            before = [(b, a) if h else None
                      for h, b, a in zip((j >= 0).tolist(), q_bid[jj].tolist(), q_ask[jj].tolist())]
        else:  # trade prints only: no quote yet at any of them
            before = [None] * len(at)
        own = [None if tr else (b, a)
               for tr, b, a in zip(stream.trade[at].tolist(), stream.bid[at].tolist(), stream.ask[at].tolist())]
        woke = np.isin(at, wake_a).tolist()
        return list(zip(ts[at].tolist(), ts[np.maximum(at - 1, 0)].tolist(), stream.bar[at].tolist(), before, own,
                        woke))

    def _watch(self, pos: Position, qg: int, q_idx, q_ts, q_bid, q_ask, n: int) -> int:
        """Event index of the first quote from the ``qg``-th on where ``pos`` closes by SL/TP
        (``fills.first_stop_trigger``) or by its time stop, or ``n`` (none)."""
        due = int(np.searchsorted(q_ts, pos.deadline_ms, side="left"))  # first quote at/after the deadline
        end = max(qg, min(due, len(q_idx)))
        hit = fills.first_stop_trigger(pos.side, pos.sl, pos.tp, q_bid[qg:end], q_ask[qg:end])
        if hit is not None:
            return int(q_idx[qg + hit[0]])
        return int(q_idx[due]) if due < len(q_idx) else n

    # -- analysis -------------------------------------------------------------------------------
    def _analyse(self, now_ms: int, only: list[str] | None, woken: bool) -> None:
        names = only if only is not None else self._names
        windows = self.builder.windows(names)
        self._decided(analyse_all(windows, self.params, now_ms, self.last_signal, self.tick_sizes, self.strategies),
                      now_ms, woken)

    def _decided(self, decisions: Mapping[str, Decision], now_ms: int, woken: bool) -> None:
        res = self.result
        res.passes += 1
        if res.pass_log is not None:
            res.pass_log.append((now_ms, {name: str(d.reason) for name, d in decisions.items()}))
        for name, d in decisions.items():
            key = str(d.reason)
            res.reasons[key] = res.reasons.get(key, 0) + 1
            if d.reason is Reason.SIGNAL:
                self._on_signal(name, d, now_ms, woken)

    def _on_signal(self, symbol: str, d: Decision, now_ms: int, woken: bool) -> None:
        res = self.result
        plan = d.exit
        idx = len(res.signals)
        res.signals.append(SignalRecord(idx, symbol, now_ms, d.tick_ts_ms, str(d.side), d.strength, plan.entry_price,
                                        plan.stop_loss, plan.take_profit, plan.time_stop_s, self._bar, woken, d))
        self.last_signal[symbol] = now_ms
        side = str(d.side)
        for pos in [p for p in self.positions if p.symbol == symbol and p.side != side]:
            if pos.open:
                self._close_at_market(pos, "opposite")
        entry, sl, tp = _dec(plan.entry_price), _dec(plan.stop_loss), _dec(plan.take_profit)
        queue = self.pending.setdefault(symbol, [])
        for k in range(len(self.accounts)):
            queue.append((idx, k, entry, sl, tp, plan.time_stop_s * 1000))

    # -- market ---------------------------------------------------------------------------------
    def _on_quote(self, symbol: str, bid_f: float, ask_f: float, ts: int) -> None:
        self.quotes_f[symbol] = (bid_f, ask_f)
        queue = self.pending.get(symbol)
        if not queue and not self.positions:
            return  # the common case: nothing to fill, no Decimal work
        bid, ask = self._quote(symbol)
        if queue:
            self.pending[symbol] = []
            for item in queue:
                self._enter(symbol, bid, ask, ts, *item)
        if not self.positions:
            return
        for pos in [p for p in self.positions if p.symbol == symbol]:
            if not pos.open:
                continue
            hit = fills.stop_trigger(pos.side, pos.sl, pos.tp, bid, ask)
            if hit is not None:
                self._close(pos, hit[1], hit[0])
            elif ts >= pos.deadline_ms:
                self._close_at_market(pos, "time")

    def _equity(self, k: int) -> Decimal:
        eq = self.balance[k]
        for p in self.positions:
            if p.account == k and p.symbol in self.quotes_f:
                bid, ask = self._quote(p.symbol)
                eq += self._profit(p, p.volume, fills.closing_quote(p.side, bid, ask)) + p.commission
        return eq

    def _rate(self, setup: SymbolSetup, currency: str, price: Decimal) -> Decimal | None:
        spec = setup.spec
        cross = {}
        for other in self.quotes_f:
            b, a = self._quote(other)
            cross[other] = (b + a) / 2
        return quote_to_account_rate(quote_currency=spec.quote, base_currency=spec.base, account_currency=currency,
                                     price=price, cross_rates=cross)

    def _profit(self, p: Position, volume: Decimal, close_price: Decimal) -> Decimal:
        setup = self.setups[p.symbol]
        spec = setup.spec
        acct = self.accounts[p.account]
        in_quote = fills.pnl_quote(p.side, p.open_price, close_price, volume, spec.contract_size)
        rate = None
        if spec.quote != acct.currency and spec.base != acct.currency:
            rate = self._rate(setup, acct.currency, close_price)
        return fills.pnl_to_account(in_quote, base=spec.base, quote=spec.quote, account_currency=acct.currency,
                                    close_price=close_price, quote_rate=rate)

    def _enter(self, symbol, bid, ask, ts, signal, k, entry, sl, tp, time_stop_ms) -> None:
        res = self.result
        acct = self.accounts[k]
        setup = self.setups[symbol]
        spec = setup.spec
        side = res.signals[signal].side
        if sum(1 for p in self.positions if p.account == k) >= acct.max_open_positions:
            res.skips.append((signal, acct.name, "max_open_positions"))
            return
        rate = self._rate(setup, acct.currency, entry)
        size = size_order(equity=self._equity(k), risk_pct=acct.risk_pct, entry_price=entry, stop_loss=sl,
                          spec=SymbolSpec(spec.contract_size, spec.volume_step, spec.volume_min, spec.volume_max),
                          quote_to_account_rate=rate)
        if not size.tradable:
            res.skips.append((signal, acct.name, size.reason))
            return
        price = fills.market_fill(side, bid, ask, self.slippage[symbol])
        if fills.stops_problem(side, fills.closing_quote(side, bid, ask), sl, tp):
            res.skips.append((signal, acct.name, "invalid_stops"))
            return
        notional = size.volume * spec.contract_size * (price if spec.base != acct.currency else 1)
        if spec.base != acct.currency and rate is not None:
            notional *= rate
        used = sum((p.volume * self.setups[p.symbol].spec.contract_size * p.open_price / acct.leverage
                    for p in self.positions if p.account == k), ZERO)
        if notional / acct.leverage > self._equity(k) - used:
            res.skips.append((signal, acct.name, "not_enough_money"))
            return
        volume = size.volume
        if self.prop is not None and self.prop.rules[k] is not None:
            mine = [p for p in self.positions if p.account == k]
            volume, rule = self.prop.entry(
                k, self._firm_ms(), balance=self.balance[k], equity=self._equity(k), open_positions=len(mine),
                open_risk=sum((self._risk_to_stop(p) for p in mine), ZERO), volume=volume,
                loss_per_lot=self._loss_per_lot(symbol, k, side, price, sl), currencies={spec.base, spec.quote},
                lot_step=spec.volume_step, min_volume=spec.volume_min)
            if volume <= 0:
                res.skips.append((signal, acct.name, str(rule)))
                return
        self.positions.append(Position(k, symbol, side, volume, price, ts, self._bar, sl, tp, ts + time_stop_ms,
                                       fills.open_commission(volume, self.config.commission_per_lot), signal))

    # -- prop-firm rules (backtest.propcheck) ---------------------------------------------------------
    def _firm_ms(self) -> int:
        """The firm's clock: the current bar's own date (the replay clock when none was given)."""
        if self.bar_times:
            return self.bar_times[min(max(self._bar, 0), len(self.bar_times) - 1)]
        return self._now

    def _loss_per_lot(self, symbol: str, k: int, side: str, price: Decimal, sl: Decimal | None) -> Decimal | None:
        """One lot's loss if the stop is hit, in the account currency, at the worse of the
        conversions at the price and at the stop (the live pre-trade check's conservative rule)."""
        if sl is None:
            return None
        spec, acct = self.setups[symbol].spec, self.accounts[k]
        in_quote = -fills.pnl_quote(side, price, sl, Decimal(1), spec.contract_size)
        if in_quote <= 0:
            return None
        rate = None
        if spec.quote != acct.currency and spec.base != acct.currency:
            rate = self._rate(self.setups[symbol], acct.currency, sl)
            if rate is None:
                return None
        return max(fills.pnl_to_account(in_quote, base=spec.base, quote=spec.quote, account_currency=acct.currency,
                                        close_price=p, quote_rate=rate) for p in (price, sl))

    def _risk_to_stop(self, p: Position) -> Decimal:
        if p.symbol not in self.quotes_f:
            return ZERO
        bid, ask = self._quote(p.symbol)
        per_lot = self._loss_per_lot(p.symbol, p.account, p.side, fills.closing_quote(p.side, bid, ask), p.sl)
        return ZERO if per_lot is None else per_lot * p.volume

    def _flatten(self, k: int) -> None:
        """A loss rule at its flatten margin (enforced): close every position of the account."""
        for pos in [p for p in self.positions if p.account == k and p.symbol in self.quotes_f]:
            if pos.open:
                self._close_at_market(pos, "firm_rule")

    def _quote(self, symbol: str) -> tuple[Decimal, Decimal]:
        """The symbol's latest quote as Decimal (converted only when money is computed)."""
        raw = self.quotes_f[symbol]
        cached = self._quotes.get(symbol)
        if cached is None or cached[2] != raw:
            cached = self._quotes[symbol] = (_dec(raw[0]), _dec(raw[1]), raw)
        return cached[0], cached[1]

    def _close_at_market(self, pos: Position, reason: str) -> None:
        bid, ask = self._quote(pos.symbol)
        self._close(pos, fills.close_fill(pos.side, bid, ask, self.slippage[pos.symbol]), reason)

    def _close(self, pos: Position, price: Decimal, reason: str, volume: Decimal | None = None) -> Trade:
        """Close all of ``pos`` or ``volume`` of it (the rest stays open with the rest of the commission)."""
        volume = pos.volume if volume is None or volume >= pos.volume else volume
        commission = fills.commission_share(pos.commission, volume, pos.volume)
        profit = fills.q(self._profit(pos, volume, price), 2)
        setup = self.setups[pos.symbol]
        diff = (price - pos.open_price) if pos.side == fills.BUY else (pos.open_price - price)
        trade = Trade(self.accounts[pos.account].name, pos.symbol, pos.side, volume, pos.open_ms, pos.open_price,
                      self._now, price, pos.sl, pos.tp, reason if volume == pos.volume else "partial", profit, commission,
                      (diff / setup.pip).quantize(Decimal("0.1")), pos.signal, pos.open_bar, self._bar)
        self.balance[pos.account] += profit + commission
        if volume == pos.volume:
            self.positions.remove(pos)
            pos.open = False
        else:
            pos.volume -= volume
            pos.commission -= commission
        self.result.trades.append(trade)
        k = pos.account
        if self.prop is not None and self.prop.exit(k, self._firm_ms(), reason=reason, held_ms=self._now - pos.open_ms,
                                                    balance=self.balance[k], equity=self._equity(k)):
            self._flatten(k)
        return trade

    def _close_all(self, reason: str) -> None:
        for pos in list(self.positions):
            if pos.open and pos.symbol in self.quotes_f:
                self._close_at_market(pos, reason)
        pending = sum(len(q) for q in self.pending.values())
        for queue in self.pending.values():
            for item in queue:
                self.result.skips.append((item[0], self.accounts[item[1]].name, "data_ended"))
        if pending:
            self.pending = {}

    def _mark_equity(self) -> None:
        for k, acct in enumerate(self.accounts):
            equity = self._equity(k)
            self.result.equity[acct.name].append((self._bar, equity))
            if self.prop is not None and self.prop.observe(k, self._firm_ms(), self.balance[k], equity):
                self._flatten(k)
