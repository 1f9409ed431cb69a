"""Fault-injection knobs of the simulator, deterministic under a seed.

Every knob can be set at start (CLI flags / ``SimConfig``) and at run time (``POST /_sim/faults``).
Decisions are drawn from one seeded ``random.Random``, so the same request sequence under the same
seed meets the same faults.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field, fields

SCOPES = ("all", "read", "write")
LOST_MODES = ("5xx", "timeout", "drop")


@dataclass
class FaultConfig:
    latency_ms: float = 0.0  # fixed latency added to every broker request
    latency_jitter_ms: float = 0.0  # + uniform(0, jitter)
    p_429: float = 0.0  # share of broker requests answered 429 + Retry-After
    retry_after_s: float = 1.0
    p_5xx: float = 0.0  # share answered 5xx WITHOUT executing
    p_garbage: float = 0.0  # share answered 200 with a truncated (unparseable) JSON body, not executed
    p_403: float = 0.0  # share answered 403 Cloudflare-style HTML challenge
    scope: str = "all"  # which requests 429/5xx/403/latency hit: all | read | write
    p_reject: float = 0.0  # share of order writes rejected (HTTP 200, status REJECTED)
    reject_code: str = "NOT_ENOUGH_MONEY"  # code used for injected rejects
    p_lost: float = 0.0  # share of writes EXECUTED whose answer is then lost
    lost_mode: str = "5xx"  # 5xx: answer 502 after executing; timeout: sleep lost_sleep_s then answer; drop: close socket
    lost_sleep_s: float = 15.0  # > the client's read timeout
    ws_drop_every_s: float = 0.0  # close each WebSocket this many seconds after it opened (0 = never)
    p_ws_malformed: float = 0.0  # share of push frames followed by an extra malformed frame
    p_ws_out_of_order: float = 0.0  # share of push frames followed by a replay of an older frame
    # session token lifetime ([doc §2.3](../../docs/match-trader-api.md): 15 min vs 3600 s → configurable)
    token_ttl_s: float = 900.0
    rate_limit_per_min: int = 500  # per trading account, sliding 60 s window (0 = off)
    refresh_limit_per_hour: int = 4  # per session (0 = off)
    strict_auth: bool = True  # require the co-auth cookie as well as Auth-trading-api
    closed_symbols: list[str] = field(default_factory=list)  # symbols whose market is closed
    # Trader API: how long an Idempotency-Key's first outcome is kept (doc §6: retention unknown)
    idempotency_retention_s: float = 86400.0
    # Platform API faults seen on real brokers by a third-party SDK (issue 13):
    p_ok_with_error_code: float = 0.0  # share of writes EXECUTED and answered status OK + errorCode UNKNOWN_ERROR
    persistent_403: bool = False  # every broker request answered 403 (a Cloudflare / User-Agent block)
    closed_history_limit: int = 0  # closed positions cut to this many with status FULL (0 = off)

    def validate(self) -> None:
        for f in fields(self):
            if f.name.startswith("p_"):
                v = getattr(self, f.name)
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
                    raise ValueError(f"{f.name} must be a probability in [0, 1]")
        for name in ("latency_ms", "latency_jitter_ms", "retry_after_s", "lost_sleep_s", "ws_drop_every_s",
                     "token_ttl_s", "idempotency_retention_s"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative number")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}")
        if self.lost_mode not in LOST_MODES:
            raise ValueError(f"lost_mode must be one of {LOST_MODES}")
        if not isinstance(self.closed_symbols, list):
            raise ValueError("closed_symbols must be a list")

    def to_dict(self) -> dict:
        return asdict(self)


class FaultInjector:
    def __init__(self, config: FaultConfig | None = None, seed: int = 42):
        self.config = config or FaultConfig()
        self.config.validate()
        self._rng = random.Random(seed ^ 0x5EED)
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def update(self, changes: dict) -> FaultConfig:
        """Apply a partial update atomically; unknown keys or bad values raise ValueError."""
        known = {f.name: f for f in fields(FaultConfig)}
        unknown = set(changes) - set(known)
        if unknown:
            raise ValueError(f"unknown fault knobs: {sorted(unknown)}")
        cand = FaultConfig(**{**self.config.to_dict(), **changes})
        for name in ("rate_limit_per_min", "refresh_limit_per_hour", "closed_history_limit"):
            if not isinstance(getattr(cand, name), int) or getattr(cand, name) < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        for name in ("strict_auth", "persistent_403"):
            if not isinstance(getattr(cand, name), bool):
                raise ValueError(f"{name} must be a boolean")
        cand.validate()
        self.config = cand
        return cand

    def roll(self, knob: str) -> bool:
        p = getattr(self.config, knob)
        if p <= 0:
            return False
        with self._lock:
            hit = p >= 1 or self._rng.random() < p
        if hit:
            self.counts[knob] = self.counts.get(knob, 0) + 1
        return hit

    def in_scope(self, is_write: bool) -> bool:
        s = self.config.scope
        return s == "all" or (s == "write") == is_write

    def latency_s(self) -> float:
        c = self.config
        if c.latency_ms <= 0 and c.latency_jitter_ms <= 0:
            return 0.0
        with self._lock:
            jitter = self._rng.uniform(0, c.latency_jitter_ms) if c.latency_jitter_ms > 0 else 0.0
        return (c.latency_ms + jitter) / 1000.0
