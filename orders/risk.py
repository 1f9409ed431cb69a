"""Pre-trade risk checks: pure functions over plain values (no ORM, no Redis, no clock).

The caller (:mod:`orders.policy`, over :mod:`orders.reads`) gathers the account's exposure under the per-account lock, so two
order tasks for one account cannot both pass a limit that only one of them fits under.

Checks, in order (the first failure wins):

1. global kill switch on                               → block ``kill_switch``
2. live account while live trading is not enabled      → block ``mode_mismatch``
3. open positions (incl. orders in flight) ≥ maximum   → block ``max_open_positions``
4. volume on the symbol + this order > maximum         → the order is CLAMPED to the room left
   (``max_volume_per_symbol`` − volume already on the symbol, floored to the lot step); blocked
   ``max_volume_per_symbol`` only when that room is below the symbol's minimum volume.

The daily loss limit is NOT checked here: it is one rule of the account's rule profile (the
default profile carries ``Account.daily_loss_limit`` and the UTC-midnight day), checked with the
other firm rules by :func:`prop.rules.check_entry` inside :func:`orders.policy.decide_send`.

The risk-based size is a ceiling that the limits lower, never a reason on its own to skip:
``RiskDecision.volume`` is the volume to send.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tradeops.money import floor_to_step

from .reasons import Reason

ZERO = Decimal("0")


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_open_positions: int
    max_volume_per_symbol: Decimal


@dataclass(frozen=True, slots=True)
class Exposure:
    """What the account holds now, counting orders whose outcome may still become a position."""

    open_positions: int = 0
    symbol_volume: Decimal = ZERO
    realized_pnl_today: Decimal = ZERO  # net of commission and swap; negative is a loss
    unrealized_pnl: Decimal = ZERO

    @property
    def daily_pnl(self) -> Decimal:
        return self.realized_pnl_today + self.unrealized_pnl


@dataclass(frozen=True, slots=True)
class TradingState:
    kill_switch: bool = False
    is_live_account: bool = False
    live_trading_enabled: bool = False  # SIMULATION_MODE false AND TRADING_ENABLED true


@dataclass(frozen=True, slots=True)
class RiskDecision:
    allowed: bool
    reason: str = ""
    detail: str = ""
    volume: Decimal = ZERO  # the volume to send when allowed (≤ the requested one)

    @classmethod
    def ok(cls, volume: Decimal = ZERO) -> RiskDecision:
        return cls(True, volume=volume)


def room_on_symbol(limits: RiskLimits, exposure: Exposure, volume: Decimal, *, lot_step: Decimal | None = None,
                   min_volume: Decimal | None = None) -> Decimal:
    """min(volume, max_volume_per_symbol − volume on the symbol), floored to the lot step; ZERO when
    that is below ``min_volume`` (or not positive)."""
    room = limits.max_volume_per_symbol - exposure.symbol_volume
    clamped = min(volume, room)
    if lot_step:
        clamped = floor_to_step(clamped, lot_step) if clamped > 0 else ZERO
    if clamped <= 0 or (min_volume is not None and clamped < min_volume):
        return ZERO
    return clamped


def check_pre_trade(limits: RiskLimits, exposure: Exposure, state: TradingState, volume: Decimal, *,
                    lot_step: Decimal | None = None, min_volume: Decimal | None = None) -> RiskDecision:
    if state.kill_switch:
        return RiskDecision(False, Reason.KILL_SWITCH, "global kill switch is on")
    if state.is_live_account and not state.live_trading_enabled:
        return RiskDecision(False, Reason.MODE_MISMATCH, "live trading is not enabled")
    if exposure.open_positions >= limits.max_open_positions:
        return RiskDecision(
            False, Reason.MAX_OPEN_POSITIONS,
            f"{exposure.open_positions} open, limit {limits.max_open_positions}",
        )
    if exposure.symbol_volume + volume > limits.max_volume_per_symbol:
        clamped = room_on_symbol(limits, exposure, volume, lot_step=lot_step, min_volume=min_volume)
        if clamped <= 0:
            return RiskDecision(
                False, Reason.MAX_VOLUME_PER_SYMBOL,
                f"{exposure.symbol_volume} lots open, limit {limits.max_volume_per_symbol}: room below the minimum "
                f"{min_volume} (wanted {volume})",
            )
        return RiskDecision(True, detail=f"clamped {volume} → {clamped} lots (limit {limits.max_volume_per_symbol}, "
                                         f"{exposure.symbol_volume} open)", volume=clamped)
    return RiskDecision.ok(volume)
