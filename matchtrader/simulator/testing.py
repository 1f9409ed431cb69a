"""Test helper: a real simulator on 127.0.0.1 (ephemeral port) in a background thread.

    with running_simulator(seed=1, p_5xx=0.0) as sim:
        acc = sim.control.create_accounts([{"email": "a@x", "password": "pw"}])[0]
        client = MatchTraderClient(sim.url, "a@x", "pw", "0")

Any ``SimConfig`` field or fault knob can be passed as a keyword. ``attach(url)`` returns the same
handle for an already-running simulator process (no thread, ``.sim`` is None).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import requests

from .config import SimConfig
from .server import Simulator


class Control:
    """Client of the ``/_sim/`` control API."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()

    def _call(self, method: str, path: str, json=None):
        r = self.http.request(method, self.url + path, json=json, timeout=self.timeout)
        if r.status_code >= 400:
            raise RuntimeError(f"simulator control {method} {path} -> {r.status_code}: {r.text[:300]}")
        return r.json()

    def create_accounts(self, accounts: list[dict]) -> list[dict]:
        """[{email, password, broker_id="0", balance=10000, leverage=100, currency="USD"}] →
        [{email, brokerId, systemUuid, tradingAccountId}]"""
        return self._call("POST", "/_sim/accounts", accounts)["accounts"]

    def create_account(self, email: str, password: str = "pw", **kw) -> dict:
        return self.create_accounts([dict(email=email, password=password, **kw)])[0]

    def set_faults(self, **knobs) -> dict:
        return self._call("POST", "/_sim/faults", knobs)

    def faults(self) -> dict:
        return self._call("GET", "/_sim/faults")

    def surge(self, symbol: str, side: str = "BUY", intensity: float = 4.0, seconds: float = 10.0) -> dict:
        return self._call("POST", "/_sim/surge", {"symbol": symbol, "side": side, "intensity": intensity,
                                                  "seconds": seconds})

    def close_position(self, position_id: str) -> dict:
        return self._call("POST", f"/_sim/positions/{position_id}/close")

    def ledger(self, system_uuid: str) -> dict:
        return self._call("GET", f"/_sim/accounts/{system_uuid}/ledger")

    def stats(self) -> dict:
        return self._call("GET", "/_sim/stats")

    def market(self, paused: bool | None = None, prices: dict[str, float] | None = None) -> dict:
        body: dict = {"prices": prices or {}}
        if paused is not None:
            body["paused"] = paused
        return self._call("POST", "/_sim/market", body)

    def drop_websockets(self) -> int:
        return self._call("POST", "/_sim/ws/drop")["dropped"]

    def issue_trader_token(self, system_uuid: str, scopes=("read", "trade")) -> str:
        """A Trader API bearer token for the account (as the trader makes one in API Access)."""
        return self._call("POST", "/_sim/trader-tokens", {"systemUuid": system_uuid, "scopes": list(scopes)})["token"]

    def revoke_trader_token(self, token: str) -> None:
        self._call("POST", "/_sim/trader-tokens/revoke", {"token": token})

    def expire_sessions(self) -> int:
        return self._call("POST", "/_sim/sessions/expire")["expired"]


@dataclass
class SimHandle:
    url: str
    ws_url: str
    control: Control
    sim: object | None = None  # the in-process Simulator (None when attached by URL)


def attach(url: str) -> SimHandle:
    url = url.rstrip("/")
    ws = "ws" + url[4:] if url.startswith("http") else url
    return SimHandle(url=url, ws_url=ws + "/ws", control=Control(url))


@contextlib.contextmanager
def running_simulator(port: int = 0, **config) -> Iterator[SimHandle]:
    """Start the real server in a daemon thread on 127.0.0.1 (an ephemeral port unless ``port``
    is given, e.g. to restart a broker where a feed expects it); stop it cleanly on exit."""
    config.setdefault("history_minutes", 120)
    config.setdefault("heartbeat_s", 5.0)
    cfg = SimConfig.from_kwargs(**config)

    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict = {}

    def target():
        asyncio.set_event_loop(loop)
        try:
            sim = Simulator(cfg)
            box["sim"] = sim
            box["port"] = loop.run_until_complete(sim.start(host="127.0.0.1", port=port))
        except BaseException as e:  # surface start-up errors in the caller
            box["error"] = e
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(sim.stop())
        loop.close()

    thread = threading.Thread(target=target, name=f"matchtrader-sim-{port or 'any'}", daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("simulator did not start within 30 s")
    if "error" in box:
        raise box["error"]
    url = f"http://127.0.0.1:{box['port']}"
    handle = SimHandle(url=url, ws_url=f"ws://127.0.0.1:{box['port']}/ws", control=Control(url), sim=box["sim"])
    try:
        yield handle
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        handle.control.http.close()
