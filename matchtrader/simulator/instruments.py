"""Instrument specifications of the simulated broker (realistic precision, lots, contract sizes)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Spec:
    symbol: str
    type: str
    base: str
    quote: str
    price_precision: int
    start_price: float
    spread_points: int  # typical spread in points (1 point = 10**-price_precision)
    annual_vol: float  # annualised volatility of the random walk
    contract_size: Decimal
    volume_min: Decimal = Decimal("0.01")
    volume_max: Decimal = Decimal("100")
    volume_step: Decimal = Decimal("0.01")
    print_size: float = 0.5  # typical trade print size, lots
    description: str = ""

    @property
    def point(self) -> float:
        return 10.0 ** -self.price_precision

    @property
    def volume_precision(self) -> int:
        return max(0, -self.volume_step.normalize().as_tuple().exponent)


_FX = dict(type="FOREX", contract_size=Decimal("100000"))

SPECS: dict[str, Spec] = {
    s.symbol: s
    for s in [
        Spec("EURUSD", base="EUR", quote="USD", price_precision=5, start_price=1.08500, spread_points=8, annual_vol=0.07, **_FX),
        Spec("GBPUSD", base="GBP", quote="USD", price_precision=5, start_price=1.27000, spread_points=10, annual_vol=0.08, **_FX),
        Spec("USDJPY", base="USD", quote="JPY", price_precision=3, start_price=151.500, spread_points=10, annual_vol=0.09, **_FX),
        Spec("AUDUSD", base="AUD", quote="USD", price_precision=5, start_price=0.65500, spread_points=10, annual_vol=0.10, **_FX),
        Spec("USDCHF", base="USD", quote="CHF", price_precision=5, start_price=0.88500, spread_points=12, annual_vol=0.08, **_FX),
        Spec("USDCAD", base="USD", quote="CAD", price_precision=5, start_price=1.36000, spread_points=12, annual_vol=0.07, **_FX),
        Spec("XAUUSD", type="COMMODITY", base="XAU", quote="USD", price_precision=2, start_price=2350.00, spread_points=30,
             annual_vol=0.15, contract_size=Decimal("100"), volume_max=Decimal("50"), print_size=0.3),
        Spec("BTCUSD", type="CRYPTO", base="BTC", quote="USD", price_precision=2, start_price=65000.00, spread_points=2000,
             annual_vol=0.60, contract_size=Decimal("1"), volume_max=Decimal("10"), print_size=0.1),
        Spec("ETHUSD", type="CRYPTO", base="ETH", quote="USD", price_precision=2, start_price=3400.00, spread_points=150,
             annual_vol=0.70, contract_size=Decimal("1"), volume_max=Decimal("100"), print_size=1.0),
        Spec("US500", type="INDEX", base="US500", quote="USD", price_precision=1, start_price=5200.0, spread_points=5,
             annual_vol=0.15, contract_size=Decimal("1"), volume_min=Decimal("0.1"), volume_max=Decimal("500"),
             volume_step=Decimal("0.1"), print_size=2.0),
    ]
}
DEFAULT_SYMBOLS = tuple(SPECS)


def spec_for(symbol: str) -> Spec:
    """Known spec, or a generic CFD spec for an unknown symbol name (so any --symbols works)."""
    if symbol in SPECS:
        return SPECS[symbol]
    return Spec(symbol, type="CFD", base=symbol, quote="USD", price_precision=2, start_price=100.0, spread_points=5,
                annual_vol=0.25, contract_size=Decimal("1"), print_size=1.0)
