"""Decimal helpers for prices and quantities: rounding to a symbol's tick size and lot step.

Floats never cross this boundary: every value sent to the broker or stored is a ``Decimal``
quantized to the instrument's grid.
"""

from __future__ import annotations

from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Decimal,
    localcontext,
)

PRICE_DIGITS = 10
PRICE_DECIMALS = 10
VOLUME_DIGITS = 20
VOLUME_DECIMALS = 8
MONEY_DIGITS = 20
MONEY_DECIMALS = 8


def to_decimal(value) -> Decimal:
    """Exact conversion: floats go through their shortest repr, never their binary expansion.

    numpy floats are floats too: ``np.float64`` subclasses ``float`` but its ``repr`` is
    ``np.float64(0.1)`` under numpy 2, and ``np.float32`` is no ``float`` at all; both go through
    ``str``, which is the shortest repr in their own precision (``np.float32(0.1)`` -> ``0.1``).
    NaN and infinities are refused (``ValueError``): no price, size or amount is ever one.
    """
    if isinstance(value, Decimal):
        result = value
    elif type(value) is float:
        result = Decimal(float.__repr__(value))
    elif isinstance(value, (float, int)) or _is_numpy_number(value):
        result = Decimal(str(value))  # numpy scalars; ints (and bool subclasses) are exact anyway
    else:
        result = Decimal(str(value))
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def _is_numpy_number(value) -> bool:
    dtype = getattr(value, "dtype", None)
    return dtype is not None and getattr(dtype, "kind", "") in "fiu" and getattr(value, "ndim", 1) == 0


# Half-way rules: (rounds the tie away from zero?) given whether the truncated quotient is even.
_HALF = {ROUND_HALF_UP: lambda even: True, ROUND_HALF_DOWN: lambda even: False, ROUND_HALF_EVEN: lambda even: not even}


def round_to_step(value, step, rounding=ROUND_HALF_EVEN) -> Decimal:
    """Round ``value`` to a multiple of ``step`` (e.g. a tick size 0.00001 or a lot step 0.01).

    Exact: the quotient is an integer division and the remainder decides the rounding, so no
    intermediate ``value / step`` is ever rounded by the decimal context (with 28 digits,
    0.0299999999999999999999999999999 / 0.01 used to become 3 and "round down" went up).
    """
    value, step = to_decimal(value), to_decimal(step)
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    with localcontext() as ctx:
        ctx.prec = max(60, len(value.as_tuple().digits) + len(step.as_tuple().digits) + 40)
        units, rest = divmod(value, step)  # units truncated toward zero, rest has value's sign
        if rest:
            away = units + (1 if value > 0 else -1)
            if rounding == ROUND_DOWN:
                pass
            elif rounding == ROUND_UP:
                units = away
            elif rounding == ROUND_FLOOR:
                units = units if value > 0 else away
            elif rounding == ROUND_CEILING:
                units = away if value > 0 else units
            elif rounding in _HALF:
                twice = abs(rest) * 2
                if twice > step or (twice == step and _HALF[rounding](units % 2 == 0)):
                    units = away
            else:
                raise ValueError(f"unsupported rounding {rounding!r}")
        return (units * step).quantize(step)


def floor_to_step(value, step) -> Decimal:
    """Round down to the step (sizing: never exceed the risk budget)."""
    return round_to_step(value, step, ROUND_DOWN)


def ceil_to_step(value, step) -> Decimal:
    return round_to_step(value, step, ROUND_UP)


def is_on_step(value, step) -> bool:
    value, step = to_decimal(value), to_decimal(step)
    return (value % step) == 0
