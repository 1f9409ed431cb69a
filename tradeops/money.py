"""Decimal helpers for prices and quantities: rounding to a symbol's tick size and lot step.

Floats never cross this boundary: every value sent to the broker or stored is a ``Decimal``
quantized to the instrument's grid.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal

PRICE_DIGITS = 10
PRICE_DECIMALS = 10
VOLUME_DIGITS = 20
VOLUME_DECIMALS = 8
MONEY_DIGITS = 20
MONEY_DECIMALS = 8


def to_decimal(value) -> Decimal:
    """Exact conversion: floats go through their shortest repr, never their binary expansion."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


def round_to_step(value, step, rounding=ROUND_HALF_EVEN) -> Decimal:
    """Round ``value`` to a multiple of ``step`` (e.g. a tick size 0.00001 or a lot step 0.01)."""
    value, step = to_decimal(value), to_decimal(step)
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    units = (value / step).to_integral_value(rounding=rounding)
    return (units * step).quantize(step)


def floor_to_step(value, step) -> Decimal:
    """Round down to the step (sizing: never exceed the risk budget)."""
    return round_to_step(value, step, ROUND_DOWN)


def ceil_to_step(value, step) -> Decimal:
    return round_to_step(value, step, ROUND_UP)


def is_on_step(value, step) -> bool:
    value, step = to_decimal(value), to_decimal(step)
    return (value % step) == 0
