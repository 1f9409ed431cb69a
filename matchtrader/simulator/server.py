"""The simulator's composition root: one aiohttp app serving broker REST + WebSocket on one port,
plus the ``/_sim/`` control API, and the background loops.

Thin I/O around pure parts: :class:`Market` (prices), :class:`Exchange` (books), :class:`Sessions`
(auth) and :class:`FaultInjector`. The faces live in their own modules and share this object's
state: :mod:`.rest` (``/manager`` and ``/mtr-api``), :mod:`.trader_api` (the Trader API, ``/v1``), :mod:`.websocket` (subscriptions and pushes),
:mod:`.control` (``/_sim``), :mod:`.loops` (market clock, housekeeping); :mod:`.wire` holds the
response and body helpers they share. The market loop steps prices at ``tick_rate``, feeds quotes
to the exchange (pending orders, SL/TP) and pushes frames to WebSocket subscribers.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from aiohttp import web

from tradeops.logging import get_logger

from .auth import Sessions
from .config import SimConfig
from .control import ControlApi
from .exchange import Exchange
from .faults import FaultInjector
from .guard import CONTROL_MAX_BODY_BYTES, GuardedAppRunner, make_guard
from .loops import housekeeping_loop, market_loop
from .market import Market, Tick
from .rest import RestApi
from .trader_api import TraderApi
from .websocket import WsConn, WsHub
from .wire import now_ms

__all__ = ["Simulator", "WsConn", "now_ms"]

log = get_logger(__name__)


class Simulator:
    def __init__(self, config: SimConfig):
        self.config = config
        self.started_ms = now_ms()
        self.market = Market(
            config.symbols, seed=config.seed, now_ms=self.started_ms, tick_rate=config.tick_rate,
            history_minutes=config.history_minutes, replay=config.replay,
            replay_ticks_per_bar=config.replay_ticks_per_bar, volatility_scale=config.volatility_scale,
            surges_per_hour=config.surges_per_hour, depth_levels=config.depth_levels,
        )
        self.exchange = Exchange({s: st.spec for s, st in self.market.states.items()},
                                 commission_per_lot=config.commission_per_lot, slippage_points=config.slippage_points)
        self.faults = FaultInjector(config.faults, seed=config.seed)
        self.sessions = Sessions()
        self.stats = {"requests": 0, "ws_frames": 0, "ws_connections": 0, "ticks": 0, "slow_consumers_dropped": 0}
        self.last_tick_ms: dict[str, int] = {}
        self.rest = RestApi(self)
        self.trader = TraderApi(self)
        self.ws = WsHub(self)
        self.control = ControlApi(self)
        self._tasks: list[asyncio.Task] = []
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
        for sym in self.market.symbols:
            bid, ask = self.market.quote(sym)
            self.exchange.on_quote(sym, self._d(sym, bid), self._d(sym, ask), self.started_ms)
        self.exchange.closed_symbols = set(config.faults.closed_symbols)

    @property
    def conns(self) -> set[WsConn]:
        return self.ws.conns

    def _d(self, symbol: str, x: float) -> Decimal:
        prec = self.market.states[symbol].spec.price_precision
        return Decimal(f"{x:.{prec}f}")

    # -- app ---------------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        # The guard (guard.py) refuses hostile input before any handler runs.
        app = web.Application(client_max_size=CONTROL_MAX_BODY_BYTES, middlewares=[make_guard(self)])
        self.rest.add_routes(app.router)
        self.trader.add_routes(app.router)
        self.ws.add_routes(app.router)
        self.control.add_routes(app.router)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        app = self.build_app()
        self.runner = GuardedAppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host or self.config.host,
                           self.config.port if port is None else port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._tasks = [asyncio.create_task(market_loop(self)), asyncio.create_task(housekeeping_loop(self))]
        log.info("simulator_started", host=host or self.config.host, port=self.port, symbols=len(self.market.symbols),
                 seed=self.config.seed)
        return self.port

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        if self.runner is not None:
            await self.runner.cleanup()
        log.info("simulator_stopped")

    async def _on_shutdown(self, _app) -> None:
        for c in list(self.ws.conns):
            await c.ws.close(code=1001, message=b"server shutdown")

    # -- the market clock ---------------------------------------------------------------------------
    def step(self, ts: int) -> list[Tick]:
        ticks = self.market.step(ts)
        for t in ticks:
            self.apply_tick(t)
        self.ws.flush_dirty()
        return ticks

    def apply_tick(self, t: Tick) -> None:
        self.stats["ticks"] += 1
        self.last_tick_ms[t.symbol] = t.ts_ms
        self.exchange.on_quote(t.symbol, self._d(t.symbol, t.bid), self._d(t.symbol, t.ask), t.ts_ms)
        if self.ws.conns:
            self.ws.broadcast_tick(t)
