"""Fixtures of the order engine tests: a real simulator over a real socket, sim-backed accounts."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from django.utils import timezone

from matchtrader.simulator.testing import running_simulator
from tests.factories import make_account, make_signal, make_symbol

_seq = itertools.count(1)

EURUSD_BID = 1.10000  # frozen market: ask = 1.10008 (8 points of spread)
USDJPY_BID = 150.000


@pytest.fixture(scope="session")
def sim():
    with running_simulator(seed=7, tick_rate=5.0, history_minutes=5, surges_per_hour=0.0) as handle:
        handle.control.market(paused=True, prices={"EURUSD": EURUSD_BID, "USDJPY": USDJPY_BID})
        yield handle


@pytest.fixture(autouse=True)
def orders_settings(settings, sim):
    """Point the engine at the simulator; no sleeping in retries; no start-up reconciliation."""
    from orders import broker

    settings.SIMULATION_MODE = True
    settings.TRADING_ENABLED = False
    settings.SIMULATOR_URL = sim.url
    settings.ORDERS_UNKNOWN_SETTLE_S = 0.0
    settings.ORDERS_BACKOFF_BASE_S = 0.01
    settings.ORDERS_BACKOFF_CAP_S = 0.05
    settings.ORDERS_RECONCILE_ON_WORKER_READY = False
    settings.ORDERS_LINK_FILL_INLINE = True  # direct calls have no worker for orders.link_fill
    broker.reset_clients()
    sim.control.set_faults(p_5xx=0.0, p_429=0.0, p_reject=0.0, p_lost=0.0, latency_ms=0.0, latency_jitter_ms=0.0,
                           scope="all", lost_mode="5xx")
    sim.control.market(paused=True, prices={"EURUSD": EURUSD_BID, "USDJPY": USDJPY_BID})
    yield settings
    sim.control.set_faults(p_5xx=0.0, p_429=0.0, p_reject=0.0, p_lost=0.0, latency_ms=0.0, latency_jitter_ms=0.0)
    broker.reset_clients()


def eurusd():
    return make_symbol("EURUSD", digits=5, tick_size=Decimal("0.00001"), lot_step=Decimal("0.01"),
                       min_volume=Decimal("0.01"), max_volume=Decimal("100"), contract_size=Decimal("100000"),
                       base_currency="EUR", quote_currency="USD")


def usdjpy():
    return make_symbol("USDJPY", digits=3, tick_size=Decimal("0.001"), lot_step=Decimal("0.01"),
                       min_volume=Decimal("0.01"), max_volume=Decimal("100"), contract_size=Decimal("100000"),
                       base_currency="USD", quote_currency="JPY")


def sim_accounts(sim, n: int, *, balance="10000", api="platform", scopes=("read", "trade"), sim_balance=None,
                 **account_kw) -> list:
    """n simulator accounts and their DB rows (equity known, so sizes can be computed by hand).
    ``api="trader"``: reached through the Trader API with a token of ``scopes``."""
    run = next(_seq)
    emails = [f"t{run}-{i}-{timezone.now().timestamp():.0f}@sim.test" for i in range(n)]
    created = sim.control.create_accounts([{"email": e, "password": "pw-123", "balance": sim_balance or balance}
                                           for e in emails])
    now = timezone.now()
    out = []
    for e, c in zip(emails, created, strict=True):
        kw = dict(platform_url=sim.url, email=e, password="pw-123", system_uuid=c["systemUuid"],
                  trading_account_id=c["tradingAccountId"], balance=Decimal(balance), equity=Decimal(balance),
                  balance_updated_at=now)
        if api == "trader":
            kw.update(api="trader", email="", password="",
                      trader_api_token=sim.control.issue_trader_token(c["systemUuid"], scopes))
        kw.update(account_kw)
        out.append(make_account(**kw))
    return out


def eurusd_buy_signal(symbol=None, **kw):
    """Entry 1.10000, stop 1.09800 (20 pips), target 1.10400: 0.5 % of 10,000 → 0.25 lots."""
    defaults = dict(side="BUY", entry_price=Decimal("1.10000"), stop_loss=Decimal("1.09800"),
                    take_profit=Decimal("1.10400"), time_stop_seconds=300)
    defaults.update(kw)
    return make_signal(symbol=symbol or eurusd(), **defaults)


def ledger_counts(sim, account) -> tuple[int, int]:
    """(order requests received, positions opened) for one account, from the simulator's ledger."""
    led = sim.control.ledger(account.system_uuid)
    reqs = [r for r in led["requests"] if str(r.get("path", "")).endswith("/position/open") or r.get("op") == "open"]
    opens = [e for e in led["executions"] if e.get("action") == "open"]
    return len(reqs), len(opens)
