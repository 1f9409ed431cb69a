"""History import: the broker's ``/candles`` into the ``backtest_candle`` table, chunked inside
the account's rate budget, resumable, idempotent, bulk-loaded with COPY.

- Chunks: ``chunk`` candles of ``interval`` per request, oldest first. Each chunk is COPYed into a
  temporary table and moved with ``INSERT … ON CONFLICT DO NOTHING`` into the table keyed by
  (symbol, interval, time), in its own transaction: a chunk is all in or all out, and a candle
  already there is never duplicated (re-importing a range is a no-op).
- Resume: the import of a (symbol, interval, range) keeps its progress in ``CandleImport``,
  advanced in the same transaction as each chunk; the same command again starts at the first
  chunk not stored. An interruption (Ctrl-C, a crash, a broker outage, ``max_chunks``) loses at
  most the chunk in flight. Another range starts at its own beginning (overlaps are skipped by the
  key).
- Rate: every request goes through the account's client (``orders.broker.client_for``), whose
  rate limiter is the account's budget shared with its order work; a broker 429/5xx is retried by
  the client, then the import stops with the error and can be resumed.
- Only closed candles are stored (a candle whose period has not ended yet is left for later).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction

from matchtrader import protocol as P
from tradeops.logging import get_logger

from .models import Candle, CandleImport

log = get_logger(__name__)
COLUMNS = ("symbol", "interval", "time", "open", "high", "low", "close", "volume")


class ImportError_(ValueError):
    pass


@dataclass
class ImportReport:
    requested_from_ms: int
    started_from_ms: int
    to_ms: int
    chunks: int = 0
    fetched: int = 0
    inserted: int = 0
    finished: bool = False


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def progress_row(symbol: str, interval: str, from_ms: int, to_ms: int) -> CandleImport:
    row, _ = CandleImport.objects.get_or_create(symbol=symbol, interval=interval, from_time=_dt(from_ms),
                                                to_time=_dt(to_ms), defaults={"next_time": _dt(from_ms)})
    return row


def copy_chunk(symbol: str, interval: str, candles, job: CandleImport | None = None, next_ms: int | None = None) -> int:
    """COPY ``candles`` (matchtrader.models.Candle) in, skip the ones already stored. Returns how
    many were new."""
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    with transaction.atomic(), connection.cursor() as cur:
        if job is not None:
            CandleImport.objects.filter(pk=job.pk).update(next_time=_dt(next_ms))
        if not candles:
            return 0
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS candle_import (LIKE backtest_candle) ON COMMIT DELETE ROWS")
        with cur.copy(f"COPY candle_import ({cols}) FROM STDIN") as copy:
            for c in candles:
                copy.write_row((symbol, interval, _dt(c.time_ms), c.open, c.high, c.low, c.close, c.volume))
        cur.execute(f"INSERT INTO backtest_candle ({cols}) SELECT {cols} FROM candle_import "
                    "ON CONFLICT (symbol, interval, time) DO NOTHING")
        return cur.rowcount


def import_candles(client, symbol: str, interval: str, from_ms: int, to_ms: int, *, chunk: int = 1000,
                   max_chunks: int | None = None, now_ms: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Fetch [from_ms, to_ms) from ``client.candles`` chunk by chunk and store it (see the module doc)."""
    if interval not in P.INTERVAL_SECONDS:
        raise ImportError_(f"interval must be one of {', '.join(P.INTERVALS)}, got {interval!r}")
    if from_ms >= to_ms:
        raise ImportError_("empty range: --from must be before --to")
    if not 1 <= chunk <= 10_000:
        raise ImportError_("chunk must be in [1, 10000] candles")
    step_ms = P.INTERVAL_SECONDS[interval] * 1000
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    job = progress_row(symbol, interval, from_ms, to_ms)
    start = int(job.next_time.timestamp() * 1000)
    report = ImportReport(from_ms, start, to_ms)
    t = start
    while t < to_ms:
        end = min(to_ms, t + chunk * step_ms)
        candles = client.candles(symbol, interval, _dt(t), _dt(end - 1))
        closed = [c for c in candles if t <= c.time_ms < end and c.time_ms + step_ms <= now_ms]
        if any(c.time_ms + step_ms > now_ms for c in candles if t <= c.time_ms < end):
            end = min(c.time_ms for c in candles if c.time_ms + step_ms > now_ms)  # come back for the open one
            if end <= t:
                break  # the range reaches the candle still forming: stop, resumable later
        report.inserted += copy_chunk(symbol, interval, closed, job, end)
        report.fetched += len(closed)
        report.chunks += 1
        t = end
        if progress:
            progress(min(t, to_ms) - from_ms, to_ms - from_ms)
        if max_chunks is not None and report.chunks >= max_chunks:
            break
    report.finished = t >= to_ms
    if report.finished:
        CandleImport.objects.filter(pk=job.pk).update(finished=True)
    log.info("candles_imported", symbol=symbol, interval=interval, chunks=report.chunks, fetched=report.fetched,
             inserted=report.inserted, finished=report.finished)
    return report


def load_db_bars(symbol: str, start_ms: int | None, end_ms: int | None, interval: str = "M1"):
    """Imported candles as backtest bars (the ``db`` / ``db:<interval>`` data source)."""
    from matchtrader.simulator.market import Bar

    qs = Candle.objects.filter(symbol=symbol, interval=interval)
    if start_ms is not None:
        qs = qs.filter(time__gte=_dt(start_ms))
    if end_ms is not None:
        qs = qs.filter(time__lt=_dt(end_ms))
    bars, times = [], []
    for t, o, h, lo, c, v in qs.order_by("time").values_list("time", "open", "high", "low", "close", "volume"):
        bars.append(Bar(t.isoformat(), float(o), float(h), float(lo), float(c), v))
        times.append(int(t.timestamp() * 1000))
    return bars, times
