"""manage.py broker_check for both APIs against the simulator over a real socket (read-only), and
the shape diff it prints."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from matchtrader import shapes
from tests.orders.conftest import sim_accounts

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("api", ["platform", "trader"])
def test_broker_check_passes_and_sends_nothing(sim, api):
    [account] = sim_accounts(sim, 1, api=api)
    out = io.StringIO()
    call_command("broker_check", account=account.name, stdout=out)
    text = out.getvalue()
    for op in ("instruments", "quotations", "candles", "balance", "open_positions"):
        assert f"{op}: OK" in text, text
    assert "every shape matches" in text
    led = sim.control.ledger(account.system_uuid)
    assert led["requests"] == [] and led["executions"] == []  # read-only: not one write
    if api == "trader":
        assert account.trader_api_token not in text
    else:
        assert account.password not in text


def test_broker_check_refuses_a_revoked_token_with_exit_1(sim):
    [account] = sim_accounts(sim, 1, api="trader")
    sim.control.revoke_trader_token(account.trader_api_token)
    out = io.StringIO()
    with pytest.raises(SystemExit) as e:
        call_command("broker_check", account=account.name, stdout=out)
    assert e.value.code == 1 and "TokenRevoked" in out.getvalue()


def test_the_shape_diff_names_what_differs():
    spec = shapes.TRADER["open_positions"]
    good = {"positions": [{"id": "1", "symbol": "EURUSD", "side": "BUY", "volume": 0.1, "openPrice": 1.1}]}
    assert shapes.diff(good, spec) == []
    bad = {"positions": [{"id": "1", "instrument": "EURUSD", "side": "BUY", "volume": "x", "openPrice": 1.1}]}
    out = shapes.diff(bad, spec)
    assert "item 0: missing required field 'symbol'" in out
    assert "item 0: field 'volume' = 'x' is not num" in out
    assert any(d.startswith("info:") and "instrument" in d for d in out)
    assert shapes.diff({"items": []}, spec) == ["expected {'positions': [...]}, got ['items']"]
    assert shapes.diff([], shapes.PLATFORM["balance"]) == ["expected an object, got list"]
