"""The one interface the feed worker drives, whatever carries the market data.

Two implementations live beside it:
- ``matchtrader.stream.WebSocketTransport``: the simulator's WebSocket push (ping, reconnect with
  exponential backoff and jitter, resubscribe, gap detection from sequence numbers).
- ``matchtrader.polling.PollingTransport``: REST polling of ``/quotations`` (all symbols in one
  call) and ``/candles`` for the real Match-Trader Platform API, which has no public stream.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from .events import MarketEvent, TransportStats

EventSink = Callable[[MarketEvent], None]


class MarketDataTransport(Protocol):
    stats: TransportStats

    def set_symbols(self, symbols: Iterable[str]) -> None:
        """Replace the subscribed set. Thread-safe; takes effect within one poll/receive cycle
        (the WebSocket transport sends subscribe/unsubscribe for the difference)."""

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        """Block, delivering events to ``sink`` in arrival order, reconnecting as needed,
        until ``stop`` is set. Never raises for network or frame errors: they become
        ``ConnectionEvent``/``GapEvent``/``MalformedFrame`` events."""
