"""Market-data events produced by every transport (WebSocket push or REST polling).

This is the contract between ``matchtrader`` transports and the feed worker (``workers.feed``).
Events are small slotted dataclasses so the feed can ingest tens of thousands per second.
Prices and sizes are floats here on purpose: market data feeds numeric analysis; money that is
*sent to* or *booked from* the broker (orders, fills, balances) is ``Decimal`` (see
``matchtrader.models``).

Times: ``ts_ms`` is the venue time (epoch milliseconds, UTC) carried by the broker;
``recv_ms`` is when we received it. Their difference is the feed latency.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BUY = 1
SELL = -1
UNKNOWN_SIDE = 0


@dataclass(slots=True)
class QuoteEvent:
    symbol: str
    bid: float
    ask: float
    ts_ms: int
    recv_ms: int
    seq: int | None = None  # simulator extension: per-symbol sequence number


@dataclass(slots=True)
class TradeEvent:
    """A trade print with its aggressor side (simulator extension; the real API has none)."""

    symbol: str
    price: float
    volume: float
    side: int  # BUY, SELL or UNKNOWN_SIDE
    ts_ms: int
    recv_ms: int
    seq: int | None = None


@dataclass(slots=True)
class DepthEvent:
    """Order-book depth snapshot, best first (simulator extension; the real API has none)."""

    symbol: str
    bids: list[tuple[float, float]]  # [(price, size), ...] best (highest) first
    asks: list[tuple[float, float]]  # [(price, size), ...] best (lowest) first
    ts_ms: int
    recv_ms: int
    seq: int | None = None


@dataclass(slots=True)
class CandleEvent:
    symbol: str
    interval: str  # "M1", "M5", ...
    time_ms: int  # candle open time
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool
    recv_ms: int


@dataclass(slots=True)
class GapEvent:
    """Data may be missing between ``from_ms`` and ``to_ms`` (reconnect, sequence jump)."""

    reason: str  # "reconnect", "sequence", "poll_failed"
    symbols: list[str]
    from_ms: int
    to_ms: int
    missed: int | None = None  # number of messages known to be missing, when a sequence says so


@dataclass(slots=True)
class ConnectionEvent:
    state: str  # "connected", "disconnected"
    reconnects: int
    detail: str = ""


@dataclass(slots=True)
class MalformedFrame:
    """A frame that could not be parsed or was out of order. Counted and logged, never fatal."""

    raw: str
    error: str
    recv_ms: int
    symbol: str | None = None
    kind: str = "malformed"  # "malformed" or "out_of_order"


MarketEvent = QuoteEvent | TradeEvent | DepthEvent | CandleEvent | GapEvent | ConnectionEvent | MalformedFrame


@dataclass(slots=True)
class TransportStats:
    reconnects: int = 0
    malformed: int = 0
    out_of_order: int = 0
    gaps: int = 0
    frames: int = 0
    extra: dict = field(default_factory=dict)
