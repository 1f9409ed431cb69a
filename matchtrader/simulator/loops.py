"""The simulator's two background loops: the market clock and housekeeping.

The market loop steps prices at ``tick_rate`` on a fixed schedule (skipping ahead rather than
bursting when it falls far behind) and never dies on one bad step; housekeeping sends heartbeats
and balance pushes and closes expired or fault-dropped WebSockets.
"""

from __future__ import annotations

import asyncio
import time

from tradeops.logging import get_logger

from .. import protocol as P
from .wire import now_ms

log = get_logger(__name__)


async def market_loop(sim) -> None:
    period = 1.0 / sim.config.tick_rate
    next_t = time.monotonic()
    while True:
        next_t += period
        try:
            sim.step(now_ms())
        except Exception:  # never let the loop die
            log.exception("sim_market_step_failed")
        delay = next_t - time.monotonic()
        if delay < -1.0:  # fell far behind: skip ahead rather than burst
            next_t = time.monotonic()
            delay = 0
        await asyncio.sleep(max(0.0, delay))


async def housekeeping_loop(sim) -> None:
    """Heartbeats, balance pushes, ws drops (fault), auth-expiry closes."""
    hub = sim.ws
    last_hb = time.monotonic()
    while True:
        await asyncio.sleep(0.2)
        mono = time.monotonic()
        wall = time.time()
        drop_every = sim.faults.config.ws_drop_every_s
        hb = mono - last_hb >= sim.config.heartbeat_s
        if hb:
            last_hb = mono
            sim.trader.tokens.expire(sim.faults.config.idempotency_retention_s, wall)
        for c in list(hub.conns):
            if c.session.expires_at <= wall:
                hub.close_later(c, P.WS_CLOSE_AUTH_EXPIRED, b"token expired")
                continue
            if drop_every and mono - c.opened >= drop_every:
                hub.close_later(c, 1012, b"injected drop")
                continue
            if hb:
                hub.send(c, {P.WS_TYPE: P.WS_T_HEARTBEAT, P.F_TIMESTAMP_MS: now_ms()})
            if c.account and int(mono * 5) % 5 == 0:
                hub.push_balance(c)
