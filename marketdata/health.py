"""Feed health in Redis: what the feed writes, and the one reader the dashboard, the healthcheck
and ``manage.py feed_status`` use.

``md:health`` (process) and ``md:health:<SYM>`` (per symbol) are plain hashes of decimal text,
so ``redis-cli HGETALL md:health`` is readable by a person too. The feed rewrites them about once
a second; ``heartbeat_ms`` is the feed process's wall clock at that write, so a dead or hung
feed shows as an old heartbeat.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from . import redis_keys as keys

# Process-level fields (md:health). Integers unless listed in _FLOAT_FIELDS; text in _TEXT_FIELDS.
PROCESS_FIELDS = (
    "heartbeat_ms",  # wall clock of the last health write
    "started_ms",
    "pid",
    "transport",  # "websocket" | "polling" | ...
    "connection",  # "connected" | "disconnected" | "resyncing" | "stopped" | "" (not yet known)
    "reconnects",
    "malformed",
    "out_of_order",
    "gaps",
    "ticks",  # ticks ingested since start
    "ingest_rate",  # ticks/s over the last health interval
    "lag_ms",  # mean (recv - venue time) over the last interval
    "lag_max_ms",
    "write_lag_ms",  # mean (Redis write - recv) over the last interval
    "redis_errors",  # failed round trips (Redis unavailable)
    "error_replies",  # commands Redis answered with an error
    "buffered",  # ticks waiting for Redis
    "dropped",  # ticks dropped because the buffer overflowed while Redis was away
    "symbols",  # number of subscribed symbols
)
SYMBOL_FIELDS = (
    "last_tick_ms",  # venue time of the newest tick
    "last_recv_ms",  # when we received it
    "ticks",
    "lag_ms",  # recv - venue of the newest tick
    "malformed",
    "out_of_order",
    "gaps",
)
_FLOAT_FIELDS = {"ingest_rate", "lag_ms", "lag_max_ms", "write_lag_ms"}
_TEXT_FIELDS = {"transport", "connection"}


# A feed with a reconnect gap ending within this many seconds reports "degraded".
DEGRADED_WINDOW_S = 60.0
GAP_REASONS_DEGRADING = ("reconnect", "poll_failed")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class SymbolHealth:
    symbol: str
    last_tick_ms: int | None = None
    last_recv_ms: int | None = None
    ticks: int = 0
    lag_ms: float | None = None
    malformed: int = 0
    out_of_order: int = 0
    gaps: int = 0

    def age_s(self, at_ms: int) -> float | None:
        """Seconds since we received the newest tick (None: never)."""
        return None if self.last_recv_ms is None else max(0.0, (at_ms - self.last_recv_ms) / 1000)


@dataclass(slots=True)
class FeedHealth:
    now_ms: int
    process: dict = field(default_factory=dict)
    symbols: dict[str, SymbolHealth] = field(default_factory=dict)
    subscribed: list[str] = field(default_factory=list)
    # reconnect / failed-poll gaps that ended within the last DEGRADED_WINDOW_S (newest first)
    recent_gaps: list[dict] = field(default_factory=list)

    def degraded(self) -> list[str]:
        """Why the feed counts as degraded (empty: not): it is alive, but lost its connection in
        the last minute, so some market data are missing. ``feed_status`` and the healthcheck
        report it; a feed whose connection drops every few seconds never looks "ok"."""
        if not self.recent_gaps:
            return []
        down_s = sum(max(0, int(g.get("to_ms") or 0) - int(g.get("from_ms") or 0)) for g in self.recent_gaps) / 1000
        return [f"{len(self.recent_gaps)} reconnect gap(s) in the last {DEGRADED_WINDOW_S:g}s "
                f"({down_s:.1f}s without data)"]

    @property
    def present(self) -> bool:
        return bool(self.process.get("heartbeat_ms"))

    @property
    def heartbeat_age_s(self) -> float | None:
        hb = self.process.get("heartbeat_ms")
        return None if not hb else max(0.0, (self.now_ms - hb) / 1000)

    @property
    def last_tick_age_s(self) -> float | None:
        """Age of the newest tick over all symbols (None: no tick yet)."""
        ages = [a for s in self.symbols.values() if (a := s.age_s(self.now_ms)) is not None]
        return min(ages) if ages else None

    def stale_symbols(self, max_age_s: float) -> list[str]:
        out = []
        for name in self.subscribed:
            s = self.symbols.get(name)
            age = s.age_s(self.now_ms) if s else None
            if age is None or age > max_age_s:
                out.append(name)
        return out

    def problems(self, max_age_s: float) -> list[str]:
        """Why the feed counts as stale (empty: healthy). A quiet single symbol is not a problem
        of the feed (see ``stale_symbols``); no heartbeat, an old heartbeat or no tick at all
        within ``max_age_s`` while subscribed to something are."""
        if not self.present:
            return ["no feed health in Redis (feed never ran here?)"]
        out = []
        hb = self.heartbeat_age_s
        if hb is not None and hb > max_age_s:
            out.append(f"heartbeat is {hb:.1f}s old (> {max_age_s:g}s)")
        if self.subscribed:
            age = self.last_tick_age_s
            if age is None:
                out.append("no tick received yet")
            elif age > max_age_s:
                out.append(f"newest tick is {age:.1f}s old (> {max_age_s:g}s)")
        return out

    def is_stale(self, max_age_s: float) -> bool:
        return bool(self.problems(max_age_s))

    def to_dict(self) -> dict:
        return {
            "now_ms": self.now_ms,
            "heartbeat_age_s": self.heartbeat_age_s,
            "last_tick_age_s": self.last_tick_age_s,
            "process": self.process,
            "subscribed": self.subscribed,
            "symbols": {k: asdict(v) for k, v in sorted(self.symbols.items())},
            "degraded": self.degraded(),
        }


def _num(name: str, raw: bytes | str):
    text = raw.decode() if isinstance(raw, bytes) else raw
    if name in _TEXT_FIELDS:
        return text
    try:
        return float(text) if name in _FLOAT_FIELDS else int(float(text))
    except ValueError:
        return text


def _decode_hash(raw: dict) -> dict:
    out = {}
    for k, v in raw.items():
        name = k.decode() if isinstance(k, bytes) else k
        out[name] = _num(name, v)
    return out


def read_health(redis, symbols=None, *, at_ms: int | None = None) -> FeedHealth:
    """Read the feed's health. ``symbols``: which per-symbol records to read (default: the
    symbols the feed is subscribed to now). Two pipelined round trips at most."""
    at = now_ms() if at_ms is None else at_ms
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(keys.HEALTH)
    pipe.smembers(keys.SYMBOLS)
    # gaps are recorded when the feed is back, so the entry id (Redis time) is the gap's end
    pipe.xrevrange(keys.GAPS, max="+", min=at - int(DEGRADED_WINDOW_S * 1000), count=1000)
    process_raw, subscribed_raw, gaps_raw = pipe.execute()
    subscribed = sorted(s.decode() if isinstance(s, bytes) else s for s in subscribed_raw)
    names = list(symbols) if symbols is not None else subscribed
    per_symbol: dict[str, SymbolHealth] = {}
    if names:
        pipe = redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.health_symbol(name))
        for name, raw in zip(names, pipe.execute()):
            fields = _decode_hash(raw)
            per_symbol[name] = SymbolHealth(
                symbol=name,
                last_tick_ms=fields.get("last_tick_ms"),
                last_recv_ms=fields.get("last_recv_ms"),
                ticks=fields.get("ticks", 0),
                lag_ms=fields.get("lag_ms"),
                malformed=fields.get("malformed", 0),
                out_of_order=fields.get("out_of_order", 0),
                gaps=fields.get("gaps", 0),
            )
    recent = [g for g in (_decode_entry(e, f) for e, f in gaps_raw) if g.get("reason") in GAP_REASONS_DEGRADING]
    return FeedHealth(
        now_ms=at,
        process=_decode_hash(process_raw),
        symbols=per_symbol,
        subscribed=subscribed,
        recent_gaps=recent,
    )


def _decode_entry(entry_id, fields) -> dict:
    rec = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
           for k, v in fields.items()}
    rec["id"] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return rec


def read_gaps(redis, count: int = 100) -> list[dict]:
    """The newest recorded gaps, newest first."""
    return [_decode_entry(entry_id, fields) for entry_id, fields in redis.xrevrange(keys.GAPS, count=count)]
