"""Simulator configuration and its command line (shared by ``python -m matchtrader.simulator`` and
``manage.py run_simulator``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation

from .faults import LOST_MODES, SCOPES, FaultConfig
from .instruments import DEFAULT_SYMBOLS


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 8900
    seed: int = 42
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    replay: dict[str, str] = field(default_factory=dict)  # symbol -> "backtesting:EURUSD" | path.csv
    tick_rate: float = 10.0  # ticks per second per symbol
    replay_ticks_per_bar: int = 60  # time compression: one bar plays in ticks_per_bar / tick_rate s
    history_minutes: int = 240  # M1 history generated at start
    volatility_scale: float = 3.0  # × realistic volatility, so a demo moves
    surges_per_hour: float = 6.0  # random volume surges per symbol per hour
    depth_levels: int = 5
    heartbeat_s: float = 30.0  # server heartbeat on the WebSocket ([doc §8](../../docs/match-trader-api.md))
    commission_per_lot: Decimal = Decimal("3.5")  # USD per lot, charged at open
    slippage_points: int = 0
    ws_queue_max: int = 20000  # frames buffered per socket before a slow consumer is dropped
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self):
        if isinstance(self.faults, dict):
            self.faults = FaultConfig(**self.faults)
        self.symbols = tuple(self.symbols)
        unknown = set(self.replay) - set(self.symbols)
        if unknown:
            self.symbols = self.symbols + tuple(sorted(unknown))
        if self.tick_rate <= 0 or self.tick_rate > 1000:
            raise ValueError("tick_rate must be in (0, 1000]")
        if not self.symbols:
            raise ValueError("at least one symbol is required")
        self.faults.validate()

    @classmethod
    def from_kwargs(cls, **kw) -> SimConfig:
        """Top-level fields by name; any FaultConfig knob may be passed flat (``p_5xx=0.1``)."""
        fault_names = {f.name for f in fields(FaultConfig)}
        faults = kw.pop("faults", None) or {}
        if isinstance(faults, FaultConfig):
            faults = faults.to_dict()
        for k in list(kw):
            if k in fault_names:
                faults[k] = kw.pop(k)
        own = {f.name for f in fields(cls)}
        bad = set(kw) - own
        if bad:
            raise TypeError(f"unknown simulator options: {sorted(bad)}")
        return cls(**kw, faults=FaultConfig(**faults))


def _replay_arg(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError("--replay takes SYMBOL=SOURCE, e.g. EURUSD=backtesting:EURUSD")
    sym, src = text.split("=", 1)
    if not sym or not src:
        raise argparse.ArgumentTypeError("--replay takes SYMBOL=SOURCE")
    return sym.strip().upper(), src.strip()


def _prob(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError("must be a probability between 0 and 1")
    return v


def _nonneg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    g.add_argument("--port", type=int, default=8900, help="0 = ephemeral (default 8900)")
    g.add_argument("--seed", type=int, default=42, help="random seed of prices and faults (same seed, same run)")
    g.add_argument("--symbols", default=",".join(DEFAULT_SYMBOLS), help="comma-separated symbols")
    g.add_argument("--replay", action="append", type=_replay_arg, default=[], metavar="SYM=SOURCE",
                   help="replay real bars: SYM=backtesting:EURUSD|BTCUSD|GOOG or SYM=/path/bars.csv")
    g.add_argument("--tick-rate", type=float, default=10.0, help="ticks/s per symbol (default 10)")
    g.add_argument("--replay-ticks-per-bar", type=int, default=60, help="ticks generated inside each replayed bar (>= 4)")
    g.add_argument("--history-minutes", type=int, default=240, help="minutes of 1 m candle history served at start")
    g.add_argument("--volatility-scale", type=float, default=3.0, help="multiplier of the random walk's volatility")
    g.add_argument("--surges-per-hour", type=float, default=6.0, help="random volume surges per symbol per hour (0 = none)")
    g.add_argument("--heartbeat", type=float, default=30.0, dest="heartbeat_s", help="WebSocket heartbeat period (s)")
    g.add_argument("--commission-per-lot", type=_decimal, default=Decimal("3.5"), help="commission charged per lot")
    g.add_argument("--slippage-points", type=int, default=0, help="points of adverse slippage on market fills")
    f = parser.add_argument_group("faults (also settable at run time: POST /_sim/faults)")
    f.add_argument("--latency-ms", type=_nonneg, default=0.0, help="added to every REST answer (ms)")
    f.add_argument("--latency-jitter-ms", type=_nonneg, default=0.0, help="random extra latency up to this (ms)")
    f.add_argument("--fault-429", type=_prob, default=0.0, dest="p_429", help="probability of a 429 Too Many Requests")
    f.add_argument("--retry-after", type=_nonneg, default=1.0, dest="retry_after_s", help="Retry-After of those 429s (s)")
    f.add_argument("--fault-5xx", type=_prob, default=0.0, dest="p_5xx", help="probability of a 5xx before executing")
    f.add_argument("--fault-403", type=_prob, default=0.0, dest="p_403", help="probability of a 403 (challenge page)")
    f.add_argument("--fault-scope", choices=SCOPES, default="all", dest="scope", help="which requests the faults hit")
    f.add_argument("--fault-reject", type=_prob, default=0.0, dest="p_reject", help="probability that an order is rejected")
    f.add_argument("--fault-lost", type=_prob, default=0.0, dest="p_lost",
                   help="share of writes executed whose answer is lost")
    f.add_argument("--lost-mode", choices=LOST_MODES, default="5xx", help="how a lost answer looks to the client")
    f.add_argument("--lost-sleep", type=_nonneg, default=15.0, dest="lost_sleep_s", help="seconds a lost answer hangs (timeout mode)")
    f.add_argument("--ws-drop-every", type=_nonneg, default=0.0, dest="ws_drop_every_s", help="drop WebSocket connections every N s (0 = never)")
    f.add_argument("--ws-malformed", type=_prob, default=0.0, dest="p_ws_malformed", help="probability of a malformed WebSocket frame")
    f.add_argument("--ws-out-of-order", type=_prob, default=0.0, dest="p_ws_out_of_order", help="probability of an out-of-order tick")
    f.add_argument("--token-ttl", type=_nonneg, default=900.0, dest="token_ttl_s", help="session token lifetime (s)")
    f.add_argument("--rate-limit", type=int, default=500, dest="rate_limit_per_min", help="per account per minute, 0=off")
    f.add_argument("--lenient-auth", action="store_false", dest="strict_auth",
                   help="accept Auth-trading-api without the co-auth cookie")


FAULT_ARGS = ("latency_ms", "latency_jitter_ms", "p_429", "retry_after_s", "p_5xx", "p_403", "scope", "p_reject",
              "p_lost", "lost_mode", "lost_sleep_s", "ws_drop_every_s", "p_ws_malformed", "p_ws_out_of_order",
              "token_ttl_s", "rate_limit_per_min", "strict_auth")


def config_from_options(opts: dict) -> SimConfig:
    """Build a SimConfig from parsed arguments (argparse namespace vars or Django options)."""
    symbols = tuple(s.strip().upper() for s in str(opts["symbols"]).split(",") if s.strip())
    if not 0 <= int(opts["port"]) <= 65535:
        raise ValueError("--port must be in 0..65535")
    if opts["replay_ticks_per_bar"] < 4:
        raise ValueError("--replay-ticks-per-bar must be >= 4")
    replay = dict(opts.get("replay") or [])
    from .market import load_bars

    for sym, src in replay.items():
        load_bars(src)  # fail fast with a clear message
    return SimConfig(
        host=opts["host"], port=int(opts["port"]), seed=int(opts["seed"]), symbols=symbols, replay=replay,
        tick_rate=float(opts["tick_rate"]), replay_ticks_per_bar=int(opts["replay_ticks_per_bar"]),
        history_minutes=int(opts["history_minutes"]), volatility_scale=float(opts["volatility_scale"]),
        surges_per_hour=float(opts["surges_per_hour"]), heartbeat_s=float(opts["heartbeat_s"]),
        commission_per_lot=opts["commission_per_lot"], slippage_points=int(opts["slippage_points"]),
        faults=FaultConfig(**{k: opts[k] for k in FAULT_ARGS}),
    )
