"""The feed process: broker market data → Redis (``manage.py run_feed``, Procfile ``feed``).

Three threads, one direction of data:

- **transport** (``matchtrader`` WebSocket or REST polling) delivers events into a queue; its
  reconnect/backoff/resubscribe and gap detection are its own.
- **symbols** polls the database every ``symbols_poll_s`` (one indexed query) for enabled
  ``Symbol`` rows; for a newly enabled symbol it loads 1 m history from REST candles (warm-up)
  *before* subscribing it when the broker answers; then it calls ``transport.set_symbols``.
  A warm-up that fails (the broker starts after the feed, an outage) is retried with capped
  exponential backoff (``warmup_retry_s`` .. ``warmup_retry_max_s``) while live ticks already
  flow; a reconnect after a gap of ``rewarmup_gap_s`` or more schedules it again (the broker
  alone knows the missed minutes, and it may have restarted on another price path).
- The history is reconciled with Redis by the writer (``MarketDataWriter.load_history``): the
  broker's bars replace the stored ones for the minutes they cover; if the stored bars do not
  continue the broker's (data from an earlier run, a simulator restarted from its seed), the
  symbol's ticks, bars, quote and book are deleted first (``source_reset`` in ``md:gaps``), so
  the analysis never reads a window that mixes two price paths.
- **writer** (the thread that calls ``run``) drains the queue in batches (up to ``batch_max``
  events or ``batch_window_s``), applies them to ``MarketDataWriter`` and sends one pipelined
  buffer per batch; the replies of batch N are read after batch N+1 is parsed, so Redis and the
  feed work in parallel (``flush(wait=False)``). If Redis is away it keeps ingesting into a
  bounded buffer and retries with capped exponential backoff. Health is written about once a
  second.

Event-driven analysis (issue 16): every tick the writer ingests also goes through its symbol's
strategy pre-screen (``Strategy.prescreen(params).on_tick``, the same hook the backtest drives);
the symbols thread keeps one pre-screen per enabled symbol from the symbols' configured strategies
(rebuilt only when a symbol's strategy or parameters change, so the incremental baseline
survives). When one fires, the batch holding that tick is flushed *and acknowledged* by Redis
(the analysis must find the tick there), then ONE ``signals.analyze_symbols`` message on the
``analysis`` queue (``expires`` one beat period) wakes the analysis for just those symbols, with
their hop times (venue, receive, store, wake — ``signals.hops``); a symbol in its strategy's
cool-down after a signal is not woken until it ends (``FeedWorker._in_cooldown``). ``prescreen=False``
(``ANALYSIS_EVENT_PATH=false``) leaves the beat alone, as before.

Shutdown (``stop`` set, e.g. by SIGTERM/SIGINT in the command): the transport is stopped, the
events already queued are ingested, the last batch is flushed (retrying for up to
``shutdown_flush_s``), and ``run`` returns.

For an end-to-end test, run it in a thread::

    worker = FeedWorker(FeedConfig.from_settings(base_url=sim.url, email=..., password=...),
                        redis=redis_client)
    with worker.running():       # a background thread; stopped and joined on exit
        wait_until(lambda: redis_client.xlen("md:ticks:EURUSD") > 0)
"""

from __future__ import annotations

import contextlib
import functools
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from tradeops.backoff import exponential
from tradeops.logging import get_logger

from marketdata import redis_keys as keys
from marketdata.bars import Bar
from marketdata.store import MarketDataWriter
from workers.lease import Lease, LeaseKeeper, LeaseLost

log = get_logger(__name__)

REDIS_BACKOFF_BASE_S = 0.05  # first retry of a failed flush; doubles up to redis_backoff_max_s


@dataclass
class FeedConfig:
    transport: str = "websocket"  # "websocket" | "polling"
    base_url: str = "http://127.0.0.1:8900"
    ws_url: str = ""  # default: base_url with ws:// and /ws
    email: str = ""
    password: str = field(default="", repr=False)
    broker_id: str = "0"
    trader_api_token: str = field(default="", repr=False)  # set: read through the Trader API (polling)
    channels: tuple[str, ...] = ("quotes", "trades", "depth")
    poll_interval_s: float = 0.0  # polling: 0 = from the data session's budget
    data_budget_per_min: float = 450.0  # polling: requests/min the dedicated data login may make
    stream_maxlen: int = 20_000
    tape_len: int = 5_000
    bars_1s_len: int = 3_600
    bars_1m_len: int = 1_440
    buffer_max_ticks: int = 500_000
    batch_max: int = 5_000
    batch_window_s: float = 0.001
    symbols_poll_s: float = 2.0
    health_interval_s: float = 1.0
    warmup_minutes: int = 240
    warmup_retry_s: float = 1.0  # first retry of a failed warm-up; doubles up to warmup_retry_max_s
    warmup_retry_max_s: float = 60.0
    rewarmup_gap_s: float = 5.0  # a reconnect after a gap this long re-loads (and re-checks) history
    redis_backoff_max_s: float = 2.0
    shutdown_flush_s: float = 5.0
    lease_ttl_s: float = 10.0  # one active feed per Redis db; a standby takes over within this
    prescreen: bool = True  # run the strategies' pre-screens and wake the analysis (event path)

    @classmethod
    def from_settings(cls, **overrides) -> "FeedConfig":
        from django.conf import settings

        cfg = cls(
            transport=settings.FEED_TRANSPORT,
            base_url=settings.FEED_BASE_URL,
            ws_url=settings.FEED_WS_URL,
            email=settings.FEED_EMAIL,
            password=settings.FEED_PASSWORD,
            broker_id=settings.FEED_BROKER_ID,
            trader_api_token=settings.FEED_TRADER_API_TOKEN,
            poll_interval_s=settings.FEED_POLL_INTERVAL_S,
            data_budget_per_min=settings.FEED_DATA_BUDGET_PER_MIN,
            stream_maxlen=settings.FEED_STREAM_MAXLEN,
            tape_len=settings.FEED_TAPE_LEN,
            bars_1s_len=settings.FEED_BARS_1S_LEN,
            bars_1m_len=settings.FEED_BARS_1M_LEN,
            buffer_max_ticks=settings.FEED_BUFFER_MAX_TICKS,
            symbols_poll_s=settings.FEED_SYMBOLS_POLL_S,
            warmup_minutes=settings.FEED_WARMUP_MINUTES,
            lease_ttl_s=settings.FEED_LEASE_TTL_S,
            prescreen=settings.ANALYSIS_EVENT_PATH,
        )
        return replace(cfg, **overrides)


def enabled_symbols_from_db() -> set[str]:
    """Names of enabled symbols: one indexed query (``enabled`` has a db index)."""
    from django.db import close_old_connections

    from marketdata.models import Symbol

    close_old_connections()  # this thread lives for days: drop a connection the DB closed
    return set(Symbol.objects.filter(enabled=True).values_list("name", flat=True))


def prescreens_from_db(names: set[str]) -> dict[str, tuple]:
    """symbol -> (key, factory, cooldown_ms) of each enabled symbol's configured strategy's
    pre-screen: the analysis' own choice of strategy and parameters
    (``signals.service.load_strategies``); ``cooldown_ms``: its strategy's cool-down (see
    ``FeedWorker._in_cooldown``)."""
    from marketdata.models import Symbol
    from signals.service import load_strategies

    symbols = list(Symbol.objects.filter(enabled=True, name__in=names).only("id", "name"))
    out = {}
    for name, (strategy, params) in load_strategies(symbols).items():
        out[name] = ((strategy.name, repr(params)), functools.partial(strategy.prescreen, params),
                     getattr(params, "cooldown_ms", 0))
    return out


def send_wakes(wakes: dict[str, dict]) -> None:
    """One ``signals.analyze_symbols`` message for the symbols the pre-screens woke (by name: the
    feed does not import the analysis)."""
    from signals.tasks import ANALYZE_SYMBOLS_TASK, EVENT_EXPIRES_S
    from tradeops.celery import Queues, app

    app.send_task(ANALYZE_SYMBOLS_TASK, args=[sorted(wakes), wakes], queue=Queues.ANALYSIS,
                  expires=EVENT_EXPIRES_S, ignore_result=True)


def warm_wake_sink() -> None:
    """Do once, at start, what the feed's first ``send_wakes`` would otherwise do on a surge's
    critical path: build Celery's publishing machinery, load the result backend (``send_task``
    builds an AsyncResult even with ``ignore_result``: an import and an entry-point scan), connect
    the producer to the broker and declare the ``analysis`` queue. Cold, the first send took
    55 ms at load 3.3 (measured in this process), hundreds of ms on a loaded machine."""
    from tradeops.celery import Queues, app

    app.backend  # noqa: B018 - loads and caches the backend
    with app.producer_or_acquire() as producer:
        producer.connection.ensure_connection(max_retries=1)
        producer.maybe_declare(app.amqp.queues[Queues.ANALYSIS])  # what send_task declares, once


def check_dedicated_data_login(email: str, base_url: str) -> None:
    """The feed's login must not be a trading account's: quote polling would eat that account's
    request budget and delay its orders and position reads. Raises ValueError naming the account."""
    from accounts.models import Account

    clash = Account.objects.filter(email__iexact=email.strip()).only("name", "platform_url").first()
    if clash is not None and (not clash.platform_url or clash.platform_url.rstrip("/") == base_url.rstrip("/")):
        raise ValueError(f"FEED_EMAIL {email!r} is the login of trading account {clash.name!r}: give the feed a "
                         f"dedicated data login (quote polling must not spend a trading session's budget)")


def build_client(cfg: FeedConfig):
    if cfg.trader_api_token:
        from matchtrader.trader_client import TraderApiClient

        return TraderApiClient(cfg.base_url, cfg.trader_api_token, user_agent="tradeops-feed/1.0", label="feed")
    from matchtrader.client import MatchTraderClient

    return MatchTraderClient(cfg.base_url, cfg.email, cfg.password, cfg.broker_id, user_agent="tradeops-feed/1.0")


def build_transport(cfg: FeedConfig, client):
    if cfg.transport == "websocket" and cfg.trader_api_token:
        raise ValueError("the Trader API has no stream: set FEED_TRANSPORT=polling with FEED_TRADER_API_TOKEN")
    if cfg.transport == "websocket":
        from matchtrader.stream import WebSocketTransport

        ws_url = cfg.ws_url or client.ws_url
        return WebSocketTransport(ws_url, client.ws_auth_headers, [], channels=cfg.channels,
                                  on_auth_error=client.refresh_session)
    if cfg.transport == "polling":
        from matchtrader.polling import PollingTransport

        # 0: the cadence that spends the dedicated data session's budget (matchtrader.polling.cadence)
        return PollingTransport(client, interval_s=cfg.poll_interval_s or None, budget_per_min=cfg.data_budget_per_min)
    raise ValueError(f"FEED_TRANSPORT must be 'websocket' or 'polling', not {cfg.transport!r}")


def candles_to_bars(candles, now_ms: int, period_ms: int = 60_000) -> list[Bar]:
    """REST candles → closed 1 m bars (the still-forming candle is left out). The broker gives no
    aggressor split: buy/sell volume are 0 (unknown) and ``ticks`` is the candle's tick volume."""
    out = []
    for c in candles:
        if c.time_ms + period_ms > now_ms:
            continue
        vol = float(c.volume)
        out.append(Bar(c.time_ms, float(c.open), float(c.high), float(c.low), float(c.close), vol, 0.0, 0.0, int(vol)))
    return out


class FeedWorker:
    def __init__(
        self,
        config: FeedConfig,
        *,
        redis=None,
        transport=None,
        client=None,
        symbol_source: Callable[[], Iterable[str]] | None = None,
        warmup: bool = True,
        prescreen_source: Callable[[set[str]], dict[str, tuple]] | None = None,
        wake_sink: Callable[[dict[str, dict]], None] | None = None,
    ):
        self.cfg = config
        if redis is None:
            redis = _redis_from_settings()
        self.redis = redis
        self.client = client
        if transport is None:
            self.client = client or build_client(config)
            transport = build_transport(config, self.client)
        self.transport = transport
        self.symbol_source = symbol_source or enabled_symbols_from_db
        # pre-screens (event path): symbol -> (key, factory[, cooldown_ms]); wake-ups go to ``wake_sink``
        self.prescreen_source = (prescreen_source or prescreens_from_db) if config.prescreen else None
        self.wake_sink = wake_sink or send_wakes
        self.wakes_sent = 0
        self.wake_failures = 0
        self.wakes_in_cooldown = 0  # wake-ups not sent: their symbol is in its strategy's cool-down
        self._cooldown_ms: dict[str, float] = {}  # symbol -> its strategy's cool-down (prescreens)
        self._quiet_until_ms: dict[str, float] = {}  # symbol -> wall ms its known cool-down ends
        self.warmup_enabled = warmup and self.client is not None
        self.writer = MarketDataWriter(
            redis,
            stream_maxlen=config.stream_maxlen,
            tape_len=config.tape_len,
            bars_1s_len=config.bars_1s_len,
            bars_1m_len=config.bars_1m_len,
            buffer_max_ticks=config.buffer_max_ticks,
            transport_name=config.transport,
        )
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self._control: deque = deque()  # (kind, payload) from the symbols thread to the writer
        self.symbols: set[str] = set()
        self.stop_event = threading.Event()
        self._transport_stop = threading.Event()
        self.ready = threading.Event()  # set once the first symbol set was applied
        # warm-ups to (re)try: symbol -> (failures so far, monotonic time it is due)
        self._warmup_due: dict[str, tuple[int, float]] = {}
        self._warmup_lock = threading.Lock()
        self._wake = threading.Event()  # wakes the symbols thread (warm-up due, stop)
        self.writer.on_gap = self._on_gap
        self.writer.on_source_restart = self._on_source_restart
        self.batches = 0
        self.lease = Lease(redis, keys.FEED_LEASE, ttl_s=config.lease_ttl_s)
        self.lease_lost = False  # set when another feed took the lease: the process must exit non-zero

    # ---------------------------------------------------------------- symbols thread
    def sync_symbols(self) -> bool:
        """Apply the enabled set from the database. Returns True if it changed.

        A new symbol's history is loaded before it is subscribed when the broker answers; when it
        does not (e.g. the broker starts after the feed), the symbol is subscribed anyway and its
        warm-up is retried with backoff (``run_due_warmups``) without holding up live ticks."""
        try:
            wanted = set(self.symbol_source())
        except Exception as exc:  # noqa: BLE001 - a DB hiccup must not stop the feed
            log.warning("feed_symbols_query_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return False
        if wanted == self.symbols:
            return False
        added = sorted(wanted - self.symbols)
        removed = sorted(self.symbols - wanted)
        with self._warmup_lock:
            for sym in removed:
                self._warmup_due.pop(sym, None)
        self.symbols = wanted
        if added and self.warmup_enabled:
            self.request_warmup(added, reason="subscribe")
            self.run_due_warmups()
        self._control.append(("subscribed", sorted(wanted)))
        self.transport.set_symbols(sorted(wanted))
        log.info("feed_symbols", added=added, removed=removed, total=len(wanted))
        return True

    def sync_prescreens(self) -> None:
        """Hand the writer the enabled symbols' pre-screens (it keeps those whose key is unchanged)."""
        if self.prescreen_source is None:
            return
        try:
            wanted = self.prescreen_source(set(self.symbols))
        except Exception as exc:  # noqa: BLE001 - a DB hiccup must not stop the feed; beat still runs
            log.warning("feed_prescreen_query_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return
        self._control.append(("prescreens", wanted))

    # ---------------------------------------------------------------- warm-up (symbols thread)
    def request_warmup(self, symbols: Iterable[str], reason: str) -> None:
        """Schedule a (re-)load of the symbols' 1 m history, due now. Thread-safe."""
        if not self.warmup_enabled:
            return
        symbols = list(symbols)
        with self._warmup_lock:
            for sym in symbols:
                self._warmup_due.setdefault(sym, (0, 0.0))
        log.info("feed_warmup_requested", symbols=sorted(symbols)[:20], nsymbols=len(list(symbols)), reason=reason)
        self._wake.set()

    def warmup_pending(self) -> dict[str, int]:
        """Symbols whose history is still to be loaded, with how many attempts failed so far."""
        with self._warmup_lock:
            return {s: failures for s, (failures, _) in self._warmup_due.items()}

    def _warmup_backoff(self, failures: int) -> float:
        return exponential(failures, self.cfg.warmup_retry_s, self.cfg.warmup_retry_max_s)

    def run_due_warmups(self) -> None:
        """Load history for every symbol whose warm-up is due. A broker outage stops the round
        (one timeout, not one per symbol) and pushes every due symbol back with backoff."""
        now = time.monotonic()
        with self._warmup_lock:
            due = sorted(s for s, (_, at) in self._warmup_due.items() if at <= now and s in self.symbols)
        for i, sym in enumerate(due):
            if self.stop_event.is_set():
                return
            outcome = self._warmup(sym)
            if outcome == "ok":
                with self._warmup_lock:  # in the writer's hands: not due again until it reports back
                    if sym in self._warmup_due:
                        self._warmup_due[sym] = (self._warmup_due[sym][0], math.inf)
                continue
            postpone = due[i:] if outcome == "outage" else [sym]
            self._warmup_failed(postpone)
            if outcome == "outage":
                log.warning("feed_warmup_postponed", symbols=len(postpone),
                            retry_in_s=round(self._warmup_backoff(self._warmup_due.get(sym, (1, 0))[0]), 2))
                return

    def _warmup_failed(self, symbols) -> None:
        now = time.monotonic()
        with self._warmup_lock:
            for sym in symbols:
                if sym in self._warmup_due:
                    failures = self._warmup_due[sym][0] + 1
                    self._warmup_due[sym] = (failures, now + self._warmup_backoff(failures))
        self._wake.set()

    def _history_applied(self, symbol: str, ok: bool) -> None:
        """Writer thread: the history reached Redis (done) or Redis was away (retry later)."""
        if ok:
            with self._warmup_lock:
                self._warmup_due.pop(symbol, None)
            self.writer.resync_done(symbol)
        else:
            self._warmup_failed([symbol])

    def _warmup(self, symbol: str) -> str:
        """Fetch the symbol's closed 1 m history and hand it to the writer.
        "ok", "failed" (a bad answer about this symbol) or "outage" (the broker is away)."""
        now = datetime.now(UTC)
        try:
            candles = self.client.candles(symbol, "M1", now - timedelta(minutes=self.cfg.warmup_minutes), now)
        except Exception as exc:  # noqa: BLE001 - no history is a degraded start, not a failure
            from matchtrader.errors import AuthenticationError, BrokerUnavailable, RateLimited

            log.warning("feed_warmup_failed", symbol=symbol, error=f"{type(exc).__name__}: {exc}"[:300])
            outage = isinstance(exc, (BrokerUnavailable, RateLimited, AuthenticationError, OSError))
            return "outage" if outage else "failed"
        bars = candles_to_bars(candles, int(now.timestamp() * 1000))
        self._control.append(("history", (symbol, bars)))
        log.info("feed_warmup", symbol=symbol, candles=len(candles), bars=len(bars))
        return "ok"

    def _on_source_restart(self, symbol: str) -> bool:
        """Writer thread: the source's sequence started again (it restarted, however briefly):
        re-check the symbol's history now, whatever the gap. True if a check is on its way."""
        if not self.warmup_enabled:
            return False
        self.request_warmup([symbol], reason="source_restarted")
        return True

    def _on_gap(self, ev) -> None:
        """Writer thread: after a long outage the minutes it missed (and, if the broker restarted
        meanwhile, a different price path) are only known to the broker's history: reload it."""
        if ev.reason in ("reconnect", "poll_failed") and ev.to_ms - ev.from_ms >= self.cfg.rewarmup_gap_s * 1000:
            self.request_warmup([s for s in ev.symbols if s in self.symbols], reason=f"gap:{ev.reason}")

    def _symbols_loop(self) -> None:
        next_poll = 0.0
        while not self.stop_event.is_set():
            if time.monotonic() >= next_poll:
                self.sync_symbols()
                self.sync_prescreens()
                self.ready.set()
                next_poll = time.monotonic() + self.cfg.symbols_poll_s
            self.run_due_warmups()
            self._wake.wait(self._next_wake(next_poll))
            self._wake.clear()

    def _next_wake(self, next_poll: float) -> float:
        with self._warmup_lock:
            due = [at for s, (_, at) in self._warmup_due.items() if s in self.symbols]
        at = min([next_poll, *due])
        return max(0.01, at - time.monotonic())

    # ---------------------------------------------------------------- transport thread
    def _transport_loop(self) -> None:
        try:
            self.transport.run(self.events.put, self._transport_stop)
        except Exception:  # noqa: BLE001 - the contract says it never raises; log if it does
            log.exception("feed_transport_crashed")
            self.stop_event.set()

    # ---------------------------------------------------------------- writer (caller's thread)
    def _apply_control(self) -> None:
        while self._control:
            kind, payload = self._control.popleft()
            if kind == "subscribed":
                self.writer.set_subscribed(payload)
            elif kind == "prescreens":
                state = self.writer.state
                for name, (key, factory, *cooldown) in payload.items():
                    self._cooldown_ms[name] = cooldown[0] if cooldown else 0
                    if state.sym(name).prescreen_key != key:
                        try:
                            state.set_prescreen(name, key, factory())
                        except Exception:  # noqa: BLE001 - a broken strategy hook: beat still covers it
                            log.exception("feed_prescreen_failed", symbol=name)
                for name, st in list(state._syms.items()):
                    if name not in payload and st.prescreen is not None:
                        state.set_prescreen(name, None, None)
            elif kind == "history":
                symbol, bars = payload
                self._history_applied(symbol, self.writer.load_history(symbol, bars, "1m") is not None)

    def _next_batch(self, timeout: float) -> list:
        get = self.events.get
        try:
            first = get(timeout=timeout)
        except queue.Empty:
            return []
        batch = [first]
        limit = self.cfg.batch_max
        deadline = time.perf_counter() + self.cfg.batch_window_s
        get_nowait = self.events.get_nowait
        while len(batch) < limit:
            try:
                batch.append(get_nowait())
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    batch.append(get(timeout=remaining))
                except queue.Empty:
                    break
        return batch

    def run(self, stop: threading.Event | None = None) -> None:
        """Run until ``stop`` (or ``self.stop_event``) is set. Blocks; returns after a clean flush."""
        if stop is not None and stop is not self.stop_event:
            threading.Thread(target=lambda: (stop.wait(), self.stop_event.set()), daemon=True,
                             name="feed-stop-relay").start()
        stop = self.stop_event
        # one active feed per Redis db: wait as a standby (not connected to the broker) until the
        # lease is ours
        if not self.lease.wait(stop):
            return
        keeper = LeaseKeeper(self.lease)
        log.info("feed_starting", transport=self.cfg.transport, base_url=self.cfg.base_url)
        if self.prescreen_source is not None and self.wake_sink is send_wakes:
            try:
                warm_wake_sink()
            except Exception as exc:  # noqa: BLE001 - the first wake-up then connects (and retries) itself
                log.warning("feed_wake_warmup_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        threads = [
            threading.Thread(target=self._symbols_loop, name="feed-symbols", daemon=True),
            threading.Thread(target=self._transport_loop, name="feed-transport", daemon=True),
        ]
        for t in threads:
            t.start()
        writer = self.writer
        next_health = 0.0
        flush_failures = 0
        next_try = 0.0
        try:
            while not stop.is_set():
                batch = self._next_batch(0.05)
                if self._control:
                    self._apply_control()
                if batch:
                    writer.ingest(batch)
                    self.batches += 1
                now = time.monotonic()
                try:
                    keeper.tick(now)
                except LeaseLost as exc:
                    log.error("feed_lease_lost", error=str(exc))
                    self.lease_lost = True
                    break
                if now >= next_health:
                    writer.write_health()
                    next_health = now + self.cfg.health_interval_s
                if now >= next_try:
                    # a pending wake-up waits for Redis' acknowledgement of its tick (the analysis
                    # must read it); otherwise batch N's replies are read after batch N+1 is parsed
                    waking = self._drop_wakes_in_cooldown()
                    if writer.flush(wait=waking):
                        flush_failures = 0
                        next_try = 0.0
                        if waking:
                            self._send_wakes()
                    else:
                        flush_failures += 1
                        next_try = now + exponential(flush_failures, REDIS_BACKOFF_BASE_S,
                                                     self.cfg.redis_backoff_max_s)
                elif batch:
                    writer.encode()  # keep buffering (bounded) while Redis is away
        finally:
            self._shutdown(threads)

    def _send_wakes(self) -> None:
        """Wake the analysis for the symbols whose pre-screen fired (their ticks are stored)."""
        from signals import hops

        stored = hops.mono_ms()
        at = hops.anchor()
        wakes: dict[str, dict] = {}
        for symbol, venue_ms, recv_wall_ms in self.writer.state.take_wakes():
            if symbol not in wakes:  # the first tick that fired is the one the path is timed from
                wakes[symbol] = {"venue": venue_ms, "recv": min(hops.wall_to_mono(recv_wall_ms, at), stored),
                                 "store": stored}
        for symbol in self._in_cooldown(list(wakes)):
            del wakes[symbol]
        if not wakes:
            return
        sent = hops.mono_ms()
        for w in wakes.values():
            w["wake"] = sent
        try:
            self.wake_sink(wakes)
            self.wakes_sent += len(wakes)
        except Exception as exc:  # noqa: BLE001 - the beat's next pass covers the symbols
            self.wake_failures += 1
            log.warning("feed_wake_failed", symbols=sorted(wakes), error=f"{type(exc).__name__}: {exc}"[:300])

    # After a symbol's signal, every wake-up until its strategy's cool-down ends is answered
    # ``cooldown`` (signals.strategy.cooling_down) whatever the market says: at 50 ticks/s the
    # pre-screen's re-looks are 25 messages and analysis tasks per surge, on the 2 cores the
    # signal's fan-out needs at that very moment. So the feed reads the woken symbols' last signal
    # times before it sends (one HMGET; a symbol without a cool-down costs nothing) and, for a
    # symbol in cool-down, drops its wake-ups until the cool-down ends, without I/O. The
    # pre-screen itself is untouched (the backtest drives the same one), and the beat still
    # analyses every symbol every period (it also covers the rare claim the analysis puts back
    # when its signal's INSERT failed: the feed stays quiet until that cool-down would have ended).
    def _drop_wakes_in_cooldown(self) -> bool:
        """Drop the pending wake-ups of symbols in a known cool-down; True if any are left."""
        state = self.writer.state
        if state.wakes and self._quiet_until_ms:
            now_ms = time.time() * 1000.0
            kept = [w for w in state.wakes if self._quiet_until_ms.get(w[0], 0.0) <= now_ms]
            self.wakes_in_cooldown += len(state.wakes) - len(kept)
            state.wakes = kept
        return bool(state.wakes)

    def _in_cooldown(self, names: list[str]) -> list[str]:
        """The symbols of ``names`` in their strategy's cool-down (remembered until it ends)."""
        from signals.service import last_signal_times
        from signals.strategy import cooling_down

        names = [n for n in names if self._cooldown_ms.get(n)]
        if not names:
            return []
        try:
            last = last_signal_times(self.redis, names)
        except Exception as exc:  # noqa: BLE001 - unknown: wake, the analysis applies the rule itself
            log.warning("feed_cooldown_read_failed", symbols=names, error=f"{type(exc).__name__}: {exc}"[:300])
            return []
        now_ms = int(time.time() * 1000)
        cooling = [n for n in names if cooling_down(now_ms, last[n], self._cooldown_ms[n])]
        for n in cooling:
            self._quiet_until_ms[n] = last[n] + self._cooldown_ms[n]
        self.wakes_in_cooldown += len(cooling)
        return cooling

    def _shutdown(self, threads) -> None:
        self._transport_stop.set()
        self.stop_event.set()
        self._wake.set()
        for t in threads:
            t.join(timeout=5)
        if self.lease_lost:  # another feed is writing now: writing ours too would duplicate ticks
            log.error("feed_lease_lost_dropping_buffer", buffered=self.writer.buffered_ticks)
            self.writer.close()
            return
        # whatever the transport delivered before it stopped still goes to Redis
        leftover = []
        while True:
            try:
                leftover.append(self.events.get_nowait())
            except queue.Empty:
                break
        self._apply_control()
        if leftover:
            self.writer.ingest(leftover)
        self.writer.connection_state = "stopped"
        self.writer.write_health()
        deadline = time.monotonic() + self.cfg.shutdown_flush_s
        ok = self.writer.flush()
        while not ok and time.monotonic() < deadline:
            time.sleep(0.1)
            ok = self.writer.flush()
        if not ok:
            log.error("feed_shutdown_unflushed", buffered=self.writer.buffered_ticks)
        self.writer.close()
        self.lease.release()
        log.info("feed_stopped", ticks=self.writer.ticks, flushed=ok)

    @contextlib.contextmanager
    def running(self, ready_timeout: float = 10.0):
        """Run in a background thread (tests, embedding); stop and join on exit."""
        thread = threading.Thread(target=self.run, name="feed-writer", daemon=True)
        thread.start()
        try:
            if not self.ready.wait(ready_timeout):
                raise RuntimeError("feed did not apply its first symbol set in time")
            yield self
        finally:
            self.stop_event.set()
            thread.join(timeout=15)


def _redis_from_settings():
    from tradeops import redis_clients

    # Its own pool (the writer checks a connection out for good); timeouts so a hung Redis
    # surfaces as an error (buffer + retry) instead of a stuck writer.
    return redis_clients.new("feed")
