"""Number formatting for the dashboard tables (money with thousands separators, lots)."""

from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()


def _dec(value):
    try:
        return Decimal(str(value))
    except (InvalidOperation, TypeError, ValueError):
        return None


@register.filter
def money(value):
    d = _dec(value)
    return "–" if d is None else f"{d:,.2f}"


@register.filter
def signed_money(value):
    d = _dec(value)
    return "–" if d is None else f"{d:+,.2f}"


@register.filter
def lots(value):
    d = _dec(value)
    if d is None:
        return "–"
    return f"{d.quantize(Decimal('0.01')):,}" if d == d.quantize(Decimal("0.01")) else f"{d.normalize():f}"


@register.filter
def normalize(value):
    """A Decimal price without trailing zeros (1.0850000000 → 1.085)."""
    d = _dec(value)
    if d is None or value is None:
        return ""
    return f"{d.normalize():f}"
