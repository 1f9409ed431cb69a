"""Pre-trade risk checks: pure functions over plain values (no ORM, no Redis, no clock).

The caller (``orders.services``) gathers the account's exposure under the per-account lock, so two
order tasks for one account cannot both pass a limit that only one of them fits under.

Checks, in order (the first failure wins):

1. global kill switch on                               → block ``kill_switch``
2. live account while live trading is not enabled      → block ``trading_disabled``
3. today's loss (realized + unrealized) ≥ daily limit  → block ``daily_loss_limit`` and HALT the account
4. open positions (incl. orders in flight) ≥ maximum   → block ``max_open_positions``
5. volume on the symbol + this order > maximum         → block ``max_volume_per_symbol``
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal("0")


class RiskReason:
    KILL_SWITCH = "kill_switch"
    TRADING_DISABLED = "trading_disabled"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    MAX_OPEN_POSITIONS = "max_open_positions"
    MAX_VOLUME_PER_SYMBOL = "max_volume_per_symbol"


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_open_positions: int
    max_volume_per_symbol: Decimal
    daily_loss_limit: Decimal


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
    halt_account: bool = False

    @classmethod
    def ok(cls) -> RiskDecision:
        return cls(True)


def daily_loss_breached(limits: RiskLimits, exposure: Exposure) -> bool:
    """True when today's loss has reached the limit (a limit of 0 means "no loss allowed")."""
    return -exposure.daily_pnl >= limits.daily_loss_limit and exposure.daily_pnl < 0


def check_pre_trade(limits: RiskLimits, exposure: Exposure, state: TradingState, volume: Decimal) -> RiskDecision:
    if state.kill_switch:
        return RiskDecision(False, RiskReason.KILL_SWITCH, "global kill switch is on")
    if state.is_live_account and not state.live_trading_enabled:
        return RiskDecision(False, RiskReason.TRADING_DISABLED, "live trading is not enabled")
    if daily_loss_breached(limits, exposure):
        return RiskDecision(
            False, RiskReason.DAILY_LOSS_LIMIT,
            f"daily loss {-exposure.daily_pnl} reached the limit {limits.daily_loss_limit}", halt_account=True,
        )
    if exposure.open_positions >= limits.max_open_positions:
        return RiskDecision(
            False, RiskReason.MAX_OPEN_POSITIONS,
            f"{exposure.open_positions} open, limit {limits.max_open_positions}",
        )
    if exposure.symbol_volume + volume > limits.max_volume_per_symbol:
        return RiskDecision(
            False, RiskReason.MAX_VOLUME_PER_SYMBOL,
            f"{exposure.symbol_volume} + {volume} lots > limit {limits.max_volume_per_symbol}",
        )
    return RiskDecision.ok()
