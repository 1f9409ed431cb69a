from decimal import Decimal

import pytest

from matchtrader.client import dumps_exact
from matchtrader.errors import MalformedResponse
from matchtrader.models import Balance, LoginResult, OperationResult, OpenPosition, Quote, dec, items


def _account(uuid="u1", acc_id="1001", token="tt"):
    return {"tradingAccountId": acc_id, "tradingApiToken": token, "offer": {"system": {"uuid": uuid}}}


def test_numbers_as_json_numbers_or_strings_become_exact_decimals():
    assert dec("1000.01") == Decimal("1000.01")
    assert dec(1.1) == Decimal("1.1")  # via repr, not the binary expansion
    assert dec(3) == Decimal(3)
    b = Balance.from_json({"balance": "10000.00", "equity": 9999.5, "freeMargin": "1", "margin": 0, "currency": "USD"})
    assert (b.balance, b.equity, b.free_margin) == (Decimal("10000.00"), Decimal("9999.5"), Decimal("1"))


@pytest.mark.parametrize("bad", [True, "abc", [1], {"x": 1}])
def test_non_numbers_are_malformed(bad):
    with pytest.raises(MalformedResponse):
        dec(bad, name="x")


def test_login_accepts_tradingAccounts_or_accounts():
    new = LoginResult.from_json({"token": "t", "tradingAccounts": [_account("A")]})
    old = LoginResult.from_json({"token": "t", "accounts": [_account("B")]})
    assert new.accounts[0].system_uuid == "A" and old.accounts[0].system_uuid == "B"
    with pytest.raises(MalformedResponse):
        LoginResult.from_json({"token": "t"})


def test_position_sl_tp_zero_means_none_and_quote_requires_bid():
    p = OpenPosition.from_json({"id": "W1", "symbol": "EURUSD", "side": "buy", "volume": "0.01", "openPrice": "1.1",
                                "stopLoss": "0", "takeProfit": 1.2, "openTimeMillis": 1717171717000})
    assert p.side == "BUY" and p.stop_loss is None and p.take_profit == Decimal("1.2")
    assert p.open_time.tzinfo is not None
    with pytest.raises(MalformedResponse):
        Quote.from_json({"symbol": "EURUSD", "ask": 1.1})


def test_operation_result_empty_body_is_ok_and_wrapped_lists():
    assert OperationResult.from_json(None).ok
    assert not OperationResult.from_json({"status": "REJECTED", "nativeCode": "X"}).ok
    assert items([1], "k") == [1] and items({"k": [2]}, "k") == [2]
    with pytest.raises(MalformedResponse):
        items({"other": []}, "k")


def test_decimals_serialised_digit_for_digit():
    text = dumps_exact({"volume": Decimal("0.07"), "p": Decimal("1.234567890123456789"), "e": Decimal("1E+1"),
                        "n": [Decimal("-0.10")]})
    assert text == '{"volume":0.07,"p":1.234567890123456789,"e":10,"n":[-0.10]}'
