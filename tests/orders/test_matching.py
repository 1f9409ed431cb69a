"""Matching a lost order to the broker position it opened (pure)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from orders.matching import find_match, unexplained

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


@dataclass
class BP:
    id: str
    symbol: str = "EURUSD"
    side: str = "BUY"
    volume: D = D("0.25")
    open_time: datetime = T0


def match(cands, **kw):
    args = dict(symbol="EURUSD", side="BUY", volume=D("0.25"), sent_at=T0, claimed=set(),
                clock_skew=timedelta(seconds=2))
    args.update(kw)
    return find_match(cands, **args)


def test_matches_symbol_side_volume_after_the_send():
    assert match([BP("W1", open_time=T0 + timedelta(milliseconds=30))]).id == "W1"


def test_rejects_other_symbol_side_volume_or_earlier_positions():
    assert match([BP("W1", symbol="GBPUSD")]) is None
    assert match([BP("W1", side="SELL")]) is None
    assert match([BP("W1", volume=D("0.26"))]) is None
    assert match([BP("W1", open_time=T0 - timedelta(seconds=3))]) is None
    assert match([BP("W1", open_time=T0 - timedelta(seconds=1))]).id == "W1"  # within the clock skew


def test_claimed_positions_are_never_taken_twice_and_earliest_wins():
    a = BP("W1", open_time=T0 + timedelta(seconds=1))
    b = BP("W2", open_time=T0 + timedelta(seconds=2))
    assert match([b, a]).id == "W1"
    assert match([b, a], claimed={"W1"}).id == "W2"
    assert match([b, a], claimed={"W1", "W2"}) is None


def test_volume_compares_as_decimal():
    assert match([BP("W1", volume="0.250")]).id == "W1"


def test_unexplained_positions():
    assert unexplained(["W3", "W1", "W2"], {"W1"}) == ["W2", "W3"]
