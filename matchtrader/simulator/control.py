"""The ``/_sim/`` control API (tests and the demo only): accounts, the ledger, fault knobs,
planted surges, price moves, forced closes and drops, stats.

Not part of the broker protocol; the test helper :class:`matchtrader.simulator.testing.Control`
is its client.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from aiohttp import web

from .. import protocol as P
from .exchange import Reject
from .wire import BadRequest, err, jresp, json_body, now_ms, op_ok


class ControlApi:
    def __init__(self, sim):
        self.sim = sim
        self.market = sim.market
        self.exchange = sim.exchange
        self.faults = sim.faults
        self.sessions = sim.sessions
        self.stats = sim.stats

    def add_routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/_sim/accounts", self.c_create_accounts)
        r.add_get("/_sim/accounts/{uuid}/ledger", self.c_ledger)
        r.add_get("/_sim/faults", self.c_get_faults)
        r.add_post("/_sim/faults", self.c_set_faults)
        r.add_post("/_sim/surge", self.c_surge)
        r.add_post("/_sim/positions/{id}/close", self.c_close_position)
        r.add_post("/_sim/market", self.c_market)
        r.add_post("/_sim/ws/drop", self.c_ws_drop)
        r.add_post("/_sim/sessions/expire", self.c_expire_sessions)
        r.add_post("/_sim/trader-tokens", self.c_issue_trader_token)
        r.add_post("/_sim/trader-tokens/revoke", self.c_revoke_trader_token)
        r.add_get("/_sim/stats", self.c_stats)
        r.add_get("/_sim/health", self.c_health)

    async def c_create_accounts(self, request: web.Request) -> web.Response:
        try:
            body = await json_body(request)
        except BadRequest as e:
            return err(400, str(e))
        items = body.get("accounts") if isinstance(body, dict) else body
        if isinstance(body, dict) and items is None:
            items = [body]
        if not isinstance(items, list):
            return err(400, "Body must be a list of accounts or {'accounts': [...]}")
        out = []
        try:
            for i, a in enumerate(items):
                if not isinstance(a, dict):
                    raise ValueError(f"item {i} is not an object")
                # Optional "systemUuid" (added for workers.sim_provision): the account keeps the uuid
                # the database already knows, and creating it again is a no-op (idempotent).
                wanted = a.get("systemUuid") or None
                if wanted is not None and wanted in self.exchange.accounts:
                    acc = self.exchange.accounts[wanted]
                else:
                    acc = self.exchange.create_account(
                        a.get("email"), a.get("password"), str(a.get("broker_id", a.get("brokerId", "0"))),
                        Decimal(str(a.get("balance", "10000"))), int(a.get("leverage", 100)),
                        a.get("currency", "USD"), uuid=None if wanted is None else str(wanted), now_ms=now_ms())
                # Optional "traderApiToken" (+ "traderApiScopes"): the account is also reachable
                # through the Trader API with that token (workers.sim_provision sends the token an
                # operator entered in the admin for a simulation account)
                if a.get("traderApiToken"):
                    scopes = a.get("traderApiScopes") or ["read", "trade"]
                    if not isinstance(scopes, list):
                        raise ValueError("traderApiScopes must be a list")
                    self.sim.trader.tokens.register(a["traderApiToken"], acc.uuid, scopes)
                out.append({"email": acc.email, "brokerId": acc.broker_id, "systemUuid": acc.uuid,
                            "tradingAccountId": acc.trading_account_id})
        except (ValueError, TypeError, InvalidOperation) as e:
            return err(400, f"Bad account: {e}")
        return jresp({"accounts": out}, status=201)

    async def c_ledger(self, request: web.Request) -> web.Response:
        acc = self.exchange.accounts.get(request.match_info["uuid"])
        if acc is None:
            return err(404, "Unknown system uuid")
        with self.exchange.lock:
            entries = list(acc.ledger)
        return jresp({"systemUuid": acc.uuid,
                      "requests": [e for e in entries if e["kind"] == "request"],
                      "executions": [e for e in entries if e["kind"] == "execution"],
                      "faults": [e for e in entries if e["kind"] == "fault"]})

    async def c_get_faults(self, request: web.Request) -> web.Response:
        return jresp(self.faults.config.to_dict())

    async def c_set_faults(self, request: web.Request) -> web.Response:
        try:
            body = await json_body(request)
            if not isinstance(body, dict):
                raise BadRequest("Body must be a JSON object of knobs")
            cfg = self.faults.update(body)
        except (BadRequest, ValueError, TypeError) as e:
            return err(400, str(e))
        self.exchange.closed_symbols = set(cfg.closed_symbols)
        return jresp(cfg.to_dict())

    async def c_surge(self, request: web.Request) -> web.Response:
        try:
            b = await json_body(request)
            sym = b.get("symbol") if isinstance(b, dict) else None
            if sym not in self.market.states:
                raise BadRequest(f"Unknown symbol {sym!r}")
            side = str(b.get("side", "BUY")).upper()
            if side not in P.SIDES:
                raise BadRequest("side must be BUY or SELL")
            intensity, seconds = float(b.get("intensity", 4)), float(b.get("seconds", 10))
            if intensity <= 0 or seconds <= 0:
                raise BadRequest("intensity and seconds must be > 0")
        except (BadRequest, ValueError, TypeError) as e:
            return err(400, str(e))
        starts = now_ms()
        self.market.plant_surge(sym, 1 if side == P.SIDE_BUY else -1, intensity, seconds, starts)
        # starts_ms: venue time from which ticks surge (the tick-to-trade bench measures from it)
        return jresp({"symbol": sym, "side": side, "intensity": intensity, "seconds": seconds, "starts_ms": starts})

    async def c_close_position(self, request: web.Request) -> web.Response:
        try:
            oid = self.exchange.close_by_broker(request.match_info["id"], now_ms())
        except Reject as e:
            return err(404, e.message)
        self.sim.ws.flush_dirty()
        return jresp(op_ok(oid))

    async def c_market(self, request: web.Request) -> web.Response:
        """``{"paused": bool, "prices": {"EURUSD": 1.1}}`` — freeze the walk and/or set bids now."""
        try:
            b = await json_body(request)
            if not isinstance(b, dict):
                raise BadRequest("Body must be a JSON object")
            prices = b.get("prices") or {}
            if not isinstance(prices, dict) or any(s not in self.market.states for s in prices):
                raise BadRequest("prices must map known symbols to bids")
            vals = {s: float(v) for s, v in prices.items()}
            if any(v <= 0 for v in vals.values()):
                raise BadRequest("prices must be > 0")
        except (BadRequest, ValueError, TypeError) as e:
            return err(400, str(e))
        if "paused" in b:
            self.market.paused = bool(b["paused"])
        ts = now_ms()
        for s, v in vals.items():
            self.market.set_price(s, v)
            self.sim.apply_tick(self.market.tick_now(s, ts))
        self.sim.ws.flush_dirty()
        return jresp({"paused": self.market.paused, "quotes": [self.sim.rest.quote_json(s) for s in vals]})

    async def c_ws_drop(self, request: web.Request) -> web.Response:
        n = len(self.sim.ws.conns)
        await self.sim.ws.close_all(1012, b"dropped by control API")
        return jresp({"dropped": n})

    async def c_expire_sessions(self, request: web.Request) -> web.Response:
        return jresp({"expired": self.sessions.expire_all()})

    async def c_issue_trader_token(self, request: web.Request) -> web.Response:
        """``{"systemUuid": ..., "scopes": ["read", "trade"]}`` → ``{"token": ...}``: what the trader
        does in Match-Trader's API Access view (doc §2). The token is in the answer (the trader
        copies it from the API Access view the same way); the simulator never logs it."""
        try:
            b = await json_body(request)
            if not isinstance(b, dict) or b.get("systemUuid") not in self.exchange.accounts:
                raise BadRequest("systemUuid must name an existing account")
            scopes = b.get("scopes", ["read", "trade"])
            if not isinstance(scopes, list):
                raise BadRequest("scopes must be a list")
            t = self.sim.trader.tokens.issue(b["systemUuid"], scopes)
        except (BadRequest, ValueError) as e:
            return err(400, str(e))
        return jresp({"token": t.token, "systemUuid": t.uuid, "scopes": sorted(t.scopes)}, status=201)

    async def c_revoke_trader_token(self, request: web.Request) -> web.Response:
        try:
            b = await json_body(request)
            if not isinstance(b, dict) or not isinstance(b.get("token"), str):
                raise BadRequest("Body must be {'token': ...}")
        except BadRequest as e:
            return err(400, str(e))
        if not self.sim.trader.tokens.revoke(b["token"]):
            return err(404, "Unknown token")
        return jresp({"revoked": True})

    async def c_stats(self, request: web.Request) -> web.Response:
        return jresp(dict(self.stats, accounts=len(self.exchange.accounts), open_positions=len(self.exchange.positions),
                          pending_orders=len(self.exchange.orders), executions=self.exchange.executions,
                          ws_open=len(self.sim.ws.conns), faults_hit=dict(self.faults.counts), symbols=self.market.symbols,
                          surge_first_tick_ms=self.market.surge_first_ticks(),
                          uptime_s=round((now_ms() - self.sim.started_ms) / 1000, 1)))

    async def c_health(self, request: web.Request) -> web.Response:
        return jresp({"ok": True})
