"""A backtest under a prop-firm rule profile: the breaches the run would have caused. Pure.

Why: a result that would have closed a funded account on day three is no result. The rules are
``prop.rules``' pure functions (the live pre-trade check's ``check_entry``, the guard's
``guard_action``, ``floors``, ``firm_day``, ``session_block``, ``blackout_hit``), never a copy: the
runner resolves the profile for each simulated account with ``prop.state.resolve`` and hands the
pure rule objects in here.

Per account, on the bars' own dates (the replay clock compresses a bar into its ticks; within a
bar the firm's clock reads the bar's open time):

- **firm day**: at the first event of a new firm day (``reset_time`` in ``reset_timezone``, DST
  included) the day-start balance and equity are taken as they are then and the day's lots /
  orders start at zero;
- **entries**: ``check_entry`` with the live equity, the floors, the day's usage, the open
  positions and their risk to the stops, trading hours / weekend / news blackouts — a skip or a
  shrink is a breach the entry would have caused (``action="breach"``) or, with ``enforce``, is
  applied like the live pre-trade check (``skipped`` / ``shrunk``);
- **loss limits**: equity is checked at every entry, exit and bar end against each loss floor
  (daily on the profile's basis, maximum static or trailing on the high-water mark of the equity
  seen at those points). Below a floor: a breach (once per rule per firm day; the maximum loss
  once). With ``enforce`` the guard's own thresholds act first: at the flatten margin the account
  is flattened and halted (the daily rule until the next firm day, the maximum loss for good);
- **minimum hold**: an exit of our own (time stop, opposite signal) sooner than ``min_hold_s``
  (replay clock, like the time stop) is a breach; loss exits (SL/TP) never are. Not enforced.

Not modelled: equity between those sampling points (a position's worst tick inside a bar),
modification caps (the engine sends no modifications), copy-trading rules (one simulated fleet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from decimal import Decimal

from prop import rules as R

MAX_BREACHES_KEPT = 500


@dataclass(frozen=True, slots=True)
class PropRules:
    """One profile, resolved for one simulated account (``prop.state.resolve``)."""

    name: str
    loss: R.LossRules
    caps: R.Caps
    session: R.Session
    reset_time: time
    reset_tz: str
    initial_balance: Decimal
    min_hold_s: int = 0
    news: tuple[R.NewsWindow, ...] = ()
    news_before_s: int = 0
    news_after_s: int = 0
    news_min_impact: str = "high"


@dataclass(slots=True)
class Breach:
    account: str
    rule: str
    at_ms: int  # the firm clock (the bar's date)
    value: str
    limit: str
    detail: str
    action: str  # breach (report only) / skipped / shrunk / flattened

    def to_dict(self) -> dict:
        return {"account": self.account, "rule": self.rule, "at": _iso(self.at_ms), "value": self.value,
                "limit": self.limit, "detail": self.detail, "action": self.action}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


@dataclass(slots=True)
class _State:
    day: R.FirmDay | None = None
    day_balance: Decimal | None = None
    day_equity: Decimal | None = None
    high_water: Decimal | None = None
    usage: R.Usage = field(default_factory=R.Usage)
    halted: str = ""  # a loss rule halted the account (enforce)
    reported: set = field(default_factory=set)  # (rule, firm day) loss breaches already recorded


class PropMonitor:
    """The rule profile of each account of a run (None: no profile), driven by the engine."""

    def __init__(self, rules: list[PropRules | None], names: list[str], enforce: bool = False):
        self.rules = rules
        self.names = names
        self.enforce = enforce
        self.state = [_State() for _ in rules]
        self.breaches: list[Breach] = []
        self.counts: dict[str, int] = {}

    def _record(self, k: int, rule: str, at_ms: int, value, limit, detail: str, action: str) -> None:
        key = str(rule)
        self.counts[key] = self.counts.get(key, 0) + 1
        if len(self.breaches) < MAX_BREACHES_KEPT:
            self.breaches.append(Breach(self.names[k], key, at_ms, str(value), str(limit), detail, action))

    def _roll(self, k: int, at_ms: int, balance: Decimal, equity: Decimal) -> _State:
        """The account's state in the firm day of ``at_ms`` (a new day takes its snapshot now)."""
        r, st = self.rules[k], self.state[k]
        now = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
        if st.day is None or not (st.day.start <= now < st.day.end):
            st.day = R.firm_day(now, r.reset_time, r.reset_tz)
            st.day_balance, st.day_equity = balance, equity
            st.usage = R.Usage()
            if st.halted == R.Rule.DAILY_LOSS:
                st.halted = ""
        st.high_water = R.raise_high_water(st.high_water, equity)
        return st

    def _floors(self, k: int, st: _State) -> R.Floors:
        return R.floors(self.rules[k].loss, day_balance=st.day_balance, day_equity=st.day_equity,
                        initial_balance=self.rules[k].initial_balance, high_water=st.high_water)

    def observe(self, k: int, at_ms: int, balance: Decimal, equity: Decimal) -> bool:
        """Equity seen at an entry, exit or bar end. True: flatten the account now (enforce)."""
        r = self.rules[k]
        if r is None:
            return False
        st = self._roll(k, at_ms, balance, equity)
        rooms = R.headrooms(r.loss, self._floors(k, st), equity)
        for h in rooms:
            key = (h.rule, st.day.day if h.rule == R.Rule.DAILY_LOSS else None)
            if h.headroom < 0 and key not in st.reported:
                st.reported.add(key)
                self._record(k, h.rule, at_ms, equity, h.floor,
                             f"equity {equity} below the {h.rule} floor {h.floor} (limit {h.limit})", "breach")
        if self.enforce and not st.halted:
            g = R.guard_action(r.loss, rooms)
            if g.action == R.GuardAction.FLATTEN:
                st.halted = g.rule
                self._record(k, g.rule, at_ms, equity, "", g.detail, "flattened")
                return True
        return False

    def entry(self, k: int, at_ms: int, *, balance: Decimal, equity: Decimal, open_positions: int,
              open_risk: Decimal, volume: Decimal, loss_per_lot: Decimal | None, currencies: set[str],
              lot_step: Decimal, min_volume: Decimal) -> tuple[Decimal, str]:
        """The volume to open (``volume`` when not enforcing) and the rule that changed it."""
        r = self.rules[k]
        if r is None:
            return volume, ""
        self.observe(k, at_ms, balance, equity)
        st = self.state[k]
        if self.enforce and st.halted:
            self._record(k, st.halted, at_ms, equity, "", "the account is halted by a loss rule", "skipped")
            return Decimal(0), st.halted
        now = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
        blocked, detail = R.session_block(r.session, now), ""
        if blocked:
            detail = f"entry at {now.isoformat()} outside the profile's session ({r.session.tz})"
        elif r.news:
            hit = R.blackout_hit(list(r.news), now, currencies=currencies, before_s=r.news_before_s,
                                 after_s=r.news_after_s, min_impact=r.news_min_impact)
            if hit is not None:
                blocked, detail = R.Rule.NEWS_BLACKOUT, f"{hit.currency} {hit.impact} {hit.title!r} at {hit.at}"
        ctx = R.EntryContext(equity=equity, floors=self._floors(k, st), usage=st.usage, open_orders=open_positions,
                             open_risk=open_risk, blocked_by=blocked, blocked_detail=detail)
        d = R.check_entry(r.loss, r.caps, ctx, volume=volume, loss_per_lot=loss_per_lot, lot_step=lot_step,
                          min_volume=min_volume)
        out = volume
        if d.volume < volume:
            action = ("skipped" if not d.allowed else "shrunk") if self.enforce else "breach"
            self._record(k, d.rule, at_ms, f"{volume} lots", f"{d.volume} lots allowed", d.detail, action)
            if self.enforce:
                out = d.volume
        if out > 0:
            st.usage = R.Usage(st.usage.lots + out, st.usage.orders + 1, st.usage.modifications)
        return out, (d.rule if out != volume else "")

    def exit(self, k: int, at_ms: int, *, reason: str, held_ms: int, balance: Decimal, equity: Decimal) -> bool:
        """A close: counts as an order, checks the minimum hold on our own exits, then the equity."""
        r = self.rules[k]
        if r is None:
            return False
        st = self._roll(k, at_ms, balance, equity)
        st.usage = R.Usage(st.usage.lots, st.usage.orders + 1, st.usage.modifications)
        if r.min_hold_s and reason in ("time", "opposite") and held_ms < r.min_hold_s * 1000:
            self._record(k, "min_hold", at_ms, f"{held_ms / 1000:g} s", f"{r.min_hold_s} s",
                         f"{reason} exit after {held_ms / 1000:g} s of the {r.min_hold_s} s minimum hold", "breach")
        return self.observe(k, at_ms, balance, equity)

    def halted(self, k: int) -> bool:
        return self.rules[k] is not None and bool(self.state[k].halted)

    def summary(self) -> dict:
        names = sorted({r.name for r in self.rules if r is not None})
        return {"profile": ", ".join(names), "enforced": self.enforce, "counts": dict(self.counts),
                "breaches": [b.to_dict() for b in self.breaches], "kept": len(self.breaches),
                "total": sum(self.counts.values())}
