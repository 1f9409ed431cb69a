"""The simulated broker's books: accounts, positions, pending orders, fills, PnL, ledger.

Pure and synchronous, protected by one lock; no aiohttp and no clock reads (``now_ms`` is passed
in). Hedging accounts: several positions per symbol. All money/volume/prices are ``Decimal``.

Fills: ``fills`` (the one fill model, shared with the backtest engine): market BUY at ask, SELL
at bid, worsened by ``slippage_points``. SL/TP trigger on the closing side: bid for BUY positions, ask for SELL positions. Pending LIMIT/STOP orders trigger on
quote updates (BUY on ask, SELL on bid) and fill at the triggering price; a gap through SL/TP
fills at the gap price.
PnL is converted from the quote currency into the account's currency at the close: the symbol's
own close price when the account currency is its base (USDJPY on a USD account: JPY / close),
else the mid of the pair that converts the quote currency into it, through USD when no pair
joins them directly (JPY -> USD -> EUR). An account currency that no instrument can convert is
refused when the account is created; a rate that is missing at run time raises ``NoRate`` (never
a silent 1.0). Commission is ``commission_per_lot`` per lot in the account's currency.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from .. import protocol as P
from . import fills
from .instruments import Spec

ZERO = Decimal("0")
TWO_PLACES = Decimal("0.01")


PIVOT = "USD"


class NoRate(LookupError):
    """No price converts one currency into the other (yet): an error, never a rate of 1."""


class Reject(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class Position:
    id: str
    account: str
    symbol: str
    side: str
    volume: Decimal
    open_price: Decimal
    open_ms: int
    sl: Decimal | None = None
    tp: Decimal | None = None
    commission: Decimal = ZERO
    order_id: str = ""
    comment: str = ""  # Trader API ``comment`` [DOC T6]; the Platform API has none


@dataclass(slots=True)
class PendingOrder:
    id: str
    account: str
    symbol: str
    side: str
    type: str
    volume: Decimal
    price: Decimal
    created_ms: int
    sl: Decimal | None = None
    tp: Decimal | None = None


LEDGER_MAX = 20_000  # entries per account


@dataclass(slots=True)
class Account:
    uuid: str
    trading_account_id: str
    email: str
    password: str
    broker_id: str
    balance: Decimal
    leverage: int
    currency: str = "USD"
    positions: dict[str, Position] = field(default_factory=dict)
    orders: dict[str, PendingOrder] = field(default_factory=dict)
    closed: list[dict] = field(default_factory=list)
    finance: list[dict] = field(default_factory=list)
    # what tests assert on (write requests, executions); bounded so a long demo run stays flat
    ledger: deque = field(default_factory=lambda: deque(maxlen=LEDGER_MAX))


_q = fills.q


class Exchange:
    def __init__(self, specs: dict[str, Spec], *, commission_per_lot: Decimal = Decimal("3.5"),
                 slippage_points: int = 0, id_seed: int = 6910422326):
        self.specs = specs
        self.commission_per_lot = Decimal(str(commission_per_lot))
        self.slippage_points = slippage_points
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.by_email: dict[tuple[str, str], list[str]] = {}
        self.prices: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (bid, ask)
        self.closed_symbols: set[str] = set()
        self.positions: dict[str, Position] = {}  # id -> position (all accounts)
        self.orders: dict[str, PendingOrder] = {}
        self.by_symbol_pos: dict[str, set[str]] = {}
        self.by_symbol_ord: dict[str, set[str]] = {}
        self._ids = itertools.count(id_seed)
        self._accounts_seq = itertools.count(100001)
        self.dirty: set[str] = set()  # accounts whose positions/orders/balance changed (WS pushes)
        # closes not yet pushed (WS extension ``positionClosed``): (account uuid, closed-positions row)
        self.close_events: deque = deque(maxlen=100_000)
        self.executions = 0

    def _next_id(self) -> str:
        return f"W{next(self._ids)}"

    # -- accounts ----------------------------------------------------------------------------------
    def create_account(self, email: str, password: str, broker_id: str = "0", balance: Decimal = Decimal("10000"),
                       leverage: int = 100, currency: str = "USD", uuid: str | None = None, now_ms: int = 0) -> Account:
        import uuid as uuid_mod

        if not email or not isinstance(email, str) or not isinstance(password, str):
            raise ValueError("email and password are required strings")
        balance = Decimal(str(balance))
        if balance < 0 or int(leverage) <= 0:
            raise ValueError("balance must be >= 0 and leverage > 0")
        currency = str(currency or "").upper()
        if currency not in self.currencies():
            raise ValueError(f"unknown account currency {currency!r}: one of {', '.join(sorted(self.currencies()))}")
        with self.lock:
            acc = Account(uuid=uuid or str(uuid_mod.uuid4()), trading_account_id=str(next(self._accounts_seq)),
                          email=email, password=password, broker_id=str(broker_id), balance=_q(balance, 2),
                          leverage=int(leverage), currency=currency)
            self.accounts[acc.uuid] = acc
            self.by_email.setdefault((email.lower(), acc.broker_id), []).append(acc.uuid)
            acc.finance.append({"id": self._next_id(), "type": "DEPOSIT", "time": now_ms, "profit": acc.balance,
                                "comment": "initial deposit", "uid": acc.uuid})
            return acc

    def record(self, uuid: str, entry: dict) -> None:
        with self.lock:
            acc = self.accounts.get(uuid)
            if acc is not None:
                acc.ledger.append(entry)

    # -- prices ------------------------------------------------------------------------------------
    def currencies(self) -> set[str]:
        """Currencies an account may be kept in: those of the FX pairs (a conversion path exists)."""
        out = {PIVOT}
        for spec in self.specs.values():
            if spec.type == "FOREX":
                out.update((spec.base, spec.quote))
        return out

    def _direct_rate(self, ccy: str, acc_ccy: str) -> Decimal | None:
        direct = self.prices.get(f"{ccy}{acc_ccy}")
        if direct:
            return (direct[0] + direct[1]) / 2
        inverse = self.prices.get(f"{acc_ccy}{ccy}")
        if inverse:
            return 2 / (inverse[0] + inverse[1])
        return None

    def rate_to_account(self, ccy: str, acc_ccy: str = PIVOT) -> Decimal:
        """Multiply an amount in ``ccy`` by this to get it in ``acc_ccy``: the mid of the pair that
        joins them, else through USD. Raises ``NoRate`` when no price is known."""
        if ccy == acc_ccy:
            return Decimal(1)
        rate = self._direct_rate(ccy, acc_ccy)
        if rate is None and PIVOT not in (ccy, acc_ccy):
            a, b = self._direct_rate(ccy, PIVOT), self._direct_rate(PIVOT, acc_ccy)
            rate = a * b if a is not None and b is not None else None
        if rate is None:
            raise NoRate(f"no price converts {ccy} into {acc_ccy}")
        return rate

    def _acc_ccy(self, account_uuid: str) -> str:
        acc = self.accounts.get(account_uuid)
        return acc.currency if acc is not None else PIVOT

    def _pnl(self, pos: Position, close_price: Decimal) -> Decimal:
        spec = self.specs[pos.symbol]
        in_quote = fills.pnl_quote(pos.side, pos.open_price, close_price, pos.volume, spec.contract_size)
        acc_ccy = self._acc_ccy(pos.account)
        rate = None if acc_ccy in (spec.quote, spec.base) else self.rate_to_account(spec.quote, acc_ccy)
        return fills.pnl_to_account(in_quote, base=spec.base, quote=spec.quote, account_currency=acc_ccy,
                                    close_price=close_price, quote_rate=rate)

    def _margin(self, symbol: str, volume: Decimal, price: Decimal, leverage: int, acc_ccy: str = PIVOT) -> Decimal:
        spec = self.specs[symbol]
        notional_quote = volume * spec.contract_size * price
        if spec.base == acc_ccy:
            notional = volume * spec.contract_size
        elif spec.quote == acc_ccy:
            notional = notional_quote
        else:
            notional = notional_quote * self.rate_to_account(spec.quote, acc_ccy)
        return notional / Decimal(leverage)

    def _close_price(self, pos: Position) -> Decimal:
        bid, ask = self.prices[pos.symbol]
        return fills.closing_quote(pos.side, bid, ask)

    def account_summary(self, acc: Account) -> dict:
        with self.lock:
            profit = ZERO
            margin = ZERO
            commission = ZERO
            for pos in acc.positions.values():
                if pos.symbol in self.prices:
                    profit += self._pnl(pos, self._close_price(pos))
                margin += self._margin(pos.symbol, pos.volume, pos.open_price, acc.leverage, acc.currency)
                commission += pos.commission
            equity = acc.balance + profit + commission
            return {
                "balance": _q(acc.balance, 2), "equity": _q(equity, 2), "margin": _q(margin, 2),
                "freeMargin": _q(equity - margin, 2),
                "marginLevel": _q(equity / margin * 100, 2) if margin > 0 else ZERO,
                "profit": _q(profit, 2), "netProfit": _q(profit + commission, 2), "credit": ZERO,
                "currency": acc.currency, "currencyPrecision": 2,
            }

    # -- validation --------------------------------------------------------------------------------
    def _account(self, uuid: str) -> Account:
        acc = self.accounts.get(uuid)
        if acc is None:
            raise KeyError(uuid)
        return acc

    def _spec(self, symbol) -> Spec:
        if not isinstance(symbol, str) or symbol not in self.specs:
            raise Reject(P.REJECT_UNKNOWN_INSTRUMENT, f"Unknown instrument {symbol!r}")
        if symbol in self.closed_symbols:
            raise Reject(P.REJECT_MARKET_CLOSED, f"Market for {symbol} is closed")
        if symbol not in self.prices:
            raise Reject(P.REJECT_MARKET_CLOSED, f"No price for {symbol} yet")
        return self.specs[symbol]

    @staticmethod
    def _check_volume(spec: Spec, volume: Decimal) -> None:
        if volume <= 0 or volume < spec.volume_min or volume > spec.volume_max:
            raise Reject(P.REJECT_INVALID_VOLUME,
                         f"Volume {volume} outside [{spec.volume_min}, {spec.volume_max}] for {spec.symbol}")
        if volume % spec.volume_step != 0:
            raise Reject(P.REJECT_INVALID_VOLUME, f"Volume {volume} is not a multiple of step {spec.volume_step}")

    def _check_stops(self, spec: Spec, side: str, ref: Decimal, sl: Decimal | None, tp: Decimal | None) -> None:
        """BUY: SL below and TP above the reference (closing) price; SELL the reverse."""
        problem = fills.stops_problem(side, ref, sl, tp)
        if problem:
            raise Reject(P.REJECT_INVALID_STOPS, problem)

    def _fill_price(self, spec: Spec, side: str) -> Decimal:
        bid, ask = self.prices[spec.symbol]
        return fills.market_fill(side, bid, ask, fills.slippage_price(self.slippage_points, spec.price_precision))

    # -- trading -----------------------------------------------------------------------------------
    def open_position(self, uuid: str, symbol, side: str, volume: Decimal, sl: Decimal | None,
                      tp: Decimal | None, now_ms: int, comment: str = "") -> tuple[str, str]:
        """Market order. Returns (order_id, position_id)."""
        with self.lock:
            acc = self._account(uuid)
            spec = self._spec(symbol)
            self._check_volume(spec, volume)
            bid, ask = self.prices[symbol]
            self._check_stops(spec, side, bid if side == P.SIDE_BUY else ask, sl, tp)
            price = self._fill_price(spec, side)
            return self._open(acc, spec, side, volume, price, sl, tp, now_ms, reason="market", comment=comment)

    def _open(self, acc, spec, side, volume, price, sl, tp, now_ms, reason, order_id=None,
              comment: str = "") -> tuple[str, str]:
        try:
            need = self._margin(spec.symbol, volume, price, acc.leverage, acc.currency)
        except NoRate as exc:  # no conversion price yet: refuse rather than book at a guessed rate
            raise Reject(P.REJECT_MARKET_CLOSED, f"No conversion price into {acc.currency}: {exc}") from exc
        if need > self.account_summary(acc)["freeMargin"]:
            raise Reject(P.REJECT_NOT_ENOUGH_MONEY, f"Not enough money: margin {_q(need, 2)} required")
        order_id = order_id or self._next_id()
        pos = Position(id=self._next_id(), account=acc.uuid, symbol=spec.symbol, side=side, volume=volume,
                       open_price=price, open_ms=now_ms, sl=sl, tp=tp,
                       commission=fills.open_commission(volume, self.commission_per_lot), order_id=order_id,
                       comment=comment)
        acc.positions[pos.id] = pos
        self.positions[pos.id] = pos
        self.by_symbol_pos.setdefault(spec.symbol, set()).add(pos.id)
        self.executions += 1
        acc.ledger.append({"kind": "execution", "action": "open", "reason": reason, "orderId": order_id,
                           "positionId": pos.id, "symbol": spec.symbol, "side": side, "volume": str(volume),
                           "price": str(price), "ts": now_ms})
        self.dirty.add(acc.uuid)
        return order_id, pos.id

    def _find_position(self, acc: Account, position_id) -> Position:
        pos = acc.positions.get(str(position_id)) if position_id is not None else None
        if pos is None:
            raise Reject(P.REJECT_POSITION_NOT_FOUND, f"Position {position_id!r} not found")
        return pos

    def edit_position(self, uuid: str, position_id, sl: Decimal | None, tp: Decimal | None, now_ms: int) -> str:
        with self.lock:
            acc = self._account(uuid)
            pos = self._find_position(acc, position_id)
            spec = self._spec(pos.symbol)
            self._check_stops(spec, pos.side, self._close_price(pos), sl, tp)
            pos.sl, pos.tp = sl, tp
            oid = self._next_id()
            acc.ledger.append({"kind": "execution", "action": "edit", "orderId": oid, "positionId": pos.id,
                               "sl": str(sl), "tp": str(tp), "ts": now_ms})
            self.dirty.add(acc.uuid)
            return oid

    def close_position(self, uuid: str, position_id, volume: Decimal | None, now_ms: int,
                       reason: str = P.CLOSE_REASON_MANUAL, price: Decimal | None = None) -> str:
        """Close all (``volume`` None or equal) or part of a position. Returns the closing order id."""
        with self.lock:
            acc = self._account(uuid)
            pos = self._find_position(acc, position_id)
            if pos.symbol in self.closed_symbols and reason == P.CLOSE_REASON_MANUAL:
                raise Reject(P.REJECT_MARKET_CLOSED, f"Market for {pos.symbol} is closed")
            spec = self.specs[pos.symbol]
            if volume is None or volume == pos.volume:
                volume = pos.volume
            elif volume <= 0 or volume > pos.volume or volume % spec.volume_step != 0:
                raise Reject(P.REJECT_INVALID_VOLUME, f"Cannot close {volume} of {pos.volume}")
            elif pos.volume - volume < spec.volume_min:
                raise Reject(P.REJECT_INVALID_VOLUME, f"Remaining volume would be below {spec.volume_min}")
            if price is None:
                opp = P.SIDE_SELL if pos.side == P.SIDE_BUY else P.SIDE_BUY
                price = self._fill_price(spec, opp)
            part = volume != pos.volume
            commission = fills.commission_share(pos.commission, volume, pos.volume)
            profit = _q(self._pnl(Position(pos.id, acc.uuid, pos.symbol, pos.side, volume, pos.open_price, 0), price), 2)
            oid = self._next_id()
            acc.balance += profit + commission
            acc.closed.append({
                "id": pos.id, "uid": acc.uuid, "closingOrderID": oid, "symbol": pos.symbol, "side": pos.side,
                "volume": volume, "openTime": pos.open_ms, "time": now_ms, "openPrice": pos.open_price,
                "closePrice": price, "profit": profit, "netProfit": profit + commission,
                "closeReason": P.CLOSE_REASON_PARTIAL if part else reason, "comment": pos.comment,
            })
            self.close_events.append((acc.uuid, acc.closed[-1]))
            if part:
                pos.volume -= volume
                pos.commission -= commission
            else:
                del acc.positions[pos.id]
                self.positions.pop(pos.id, None)
                self.by_symbol_pos.get(pos.symbol, set()).discard(pos.id)
            self.executions += 1
            acc.ledger.append({"kind": "execution", "action": "close_partial" if part else "close", "reason": reason,
                               "orderId": oid, "positionId": pos.id, "symbol": pos.symbol, "volume": str(volume),
                               "price": str(price), "profit": str(profit), "ts": now_ms})
            self.dirty.add(acc.uuid)
            return oid

    def create_pending(self, uuid: str, symbol, side: str, otype: str, volume: Decimal, price: Decimal,
                       sl: Decimal | None, tp: Decimal | None, now_ms: int) -> str:
        with self.lock:
            acc = self._account(uuid)
            spec = self._spec(symbol)
            self._check_volume(spec, volume)
            self._check_pending_price(spec, side, otype, price)
            self._check_stops(spec, side, price, sl, tp)
            o = PendingOrder(self._next_id(), acc.uuid, spec.symbol, side, otype, volume, price, now_ms, sl, tp)
            acc.orders[o.id] = o
            self.orders[o.id] = o
            self.by_symbol_ord.setdefault(spec.symbol, set()).add(o.id)
            acc.ledger.append({"kind": "execution", "action": "pending_create", "orderId": o.id, "symbol": o.symbol,
                               "side": side, "type": otype, "volume": str(volume), "price": str(price), "ts": now_ms})
            self.dirty.add(acc.uuid)
            return o.id

    def _check_pending_price(self, spec: Spec, side: str, otype: str, price: Decimal) -> None:
        bid, ask = self.prices[spec.symbol]
        ok = {
            (P.SIDE_BUY, P.ORDER_LIMIT): price < ask,
            (P.SIDE_BUY, P.ORDER_STOP): price > ask,
            (P.SIDE_SELL, P.ORDER_LIMIT): price > bid,
            (P.SIDE_SELL, P.ORDER_STOP): price < bid,
        }[(side, otype)]
        if not ok or price <= 0:
            raise Reject(P.REJECT_INVALID_STOPS, f"{side} {otype} price {price} on the wrong side of {bid}/{ask}")

    def _find_order(self, acc: Account, order_id) -> PendingOrder:
        o = acc.orders.get(str(order_id)) if order_id is not None else None
        if o is None:
            raise Reject(P.REJECT_ORDER_NOT_FOUND, f"Order {order_id!r} not found")
        return o

    def edit_pending(self, uuid: str, order_id, price: Decimal | None, volume: Decimal | None,
                     sl: Decimal | None, tp: Decimal | None, now_ms: int) -> str:
        with self.lock:
            acc = self._account(uuid)
            o = self._find_order(acc, order_id)
            spec = self._spec(o.symbol)
            new_price = price if price is not None else o.price
            new_volume = volume if volume is not None else o.volume
            self._check_volume(spec, new_volume)
            self._check_pending_price(spec, o.side, o.type, new_price)
            self._check_stops(spec, o.side, new_price, sl, tp)
            o.price, o.volume, o.sl, o.tp = new_price, new_volume, sl, tp
            acc.ledger.append({"kind": "execution", "action": "pending_edit", "orderId": o.id,
                               "price": str(new_price), "volume": str(new_volume), "ts": now_ms})
            self.dirty.add(acc.uuid)
            return o.id

    def cancel_pending(self, uuid: str, order_id, now_ms: int) -> str:
        with self.lock:
            acc = self._account(uuid)
            o = self._find_order(acc, order_id)
            self._remove_order(acc, o)
            acc.ledger.append({"kind": "execution", "action": "pending_cancel", "orderId": o.id, "ts": now_ms})
            return o.id

    def _remove_order(self, acc: Account, o: PendingOrder) -> None:
        acc.orders.pop(o.id, None)
        self.orders.pop(o.id, None)
        self.by_symbol_ord.get(o.symbol, set()).discard(o.id)
        self.dirty.add(acc.uuid)

    # -- market events -----------------------------------------------------------------------------
    def on_quote(self, symbol: str, bid: Decimal, ask: Decimal, now_ms: int) -> None:
        """New top of book: trigger pending orders, then SL/TP."""
        with self.lock:
            self.prices[symbol] = (bid, ask)
            for oid in list(self.by_symbol_ord.get(symbol, ())):
                o = self.orders[oid]
                buy = o.side == P.SIDE_BUY
                px = ask if buy else bid
                hit = (px <= o.price) if (o.type == P.ORDER_LIMIT) == buy else (px >= o.price)
                if not hit:
                    continue
                acc = self.accounts[o.account]
                self._remove_order(acc, o)
                try:
                    self._open(acc, self.specs[symbol], o.side, o.volume, px, o.sl, o.tp, now_ms,
                               reason=f"pending_{o.type.lower()}", order_id=o.id)
                except Reject as rej:
                    acc.ledger.append({"kind": "execution", "action": "pending_failed", "orderId": o.id,
                                       "code": rej.code, "ts": now_ms})
            for pid in list(self.by_symbol_pos.get(symbol, ())):
                pos = self.positions.get(pid)
                if pos is None or (pos.sl is None and pos.tp is None):
                    continue
                hit = fills.stop_trigger(pos.side, pos.sl, pos.tp, bid, ask)
                if hit is not None:
                    reason = P.CLOSE_REASON_SL if hit[0] == fills.REASON_SL else P.CLOSE_REASON_TP
                    self.close_position(pos.account, pid, None, now_ms, reason=reason, price=hit[1])

    def close_by_broker(self, position_id: str, now_ms: int) -> str:
        with self.lock:
            pos = self.positions.get(position_id)
            if pos is None:
                raise Reject(P.REJECT_POSITION_NOT_FOUND, f"Position {position_id!r} not found")
            return self.close_position(pos.account, position_id, None, now_ms, reason=P.CLOSE_REASON_BROKER,
                                       price=self._close_price(pos))

    # -- views (JSON-ready, numbers as strings like real brokers do, [doc §3](../../docs/match-trader-api.md)) --
    def position_json(self, pos: Position) -> dict:
        spec = self.specs[pos.symbol]
        cur = self._close_price(pos) if pos.symbol in self.prices else pos.open_price
        profit = _q(self._pnl(pos, cur), 2)
        return {
            "id": pos.id, "symbol": pos.symbol, "alias": pos.symbol, "side": pos.side, "volume": str(pos.volume),
            "openPrice": str(pos.open_price), "currentPrice": str(cur),
            "stopLoss": str(pos.sl) if pos.sl is not None else "0",
            "takeProfit": str(pos.tp) if pos.tp is not None else "0",
            "profit": str(profit), "netProfit": str(profit + pos.commission), "swap": "0",
            "commission": str(pos.commission), "openTime": _iso(pos.open_ms), "openTimeMillis": pos.open_ms,
            "contractSize": str(spec.contract_size),
        }

    def order_json(self, o: PendingOrder) -> dict:
        return {"id": o.id, "symbol": o.symbol, "alias": o.symbol, "side": o.side, "type": o.type,
                "volume": str(o.volume), "activationPrice": str(o.price), "creationTime": _iso(o.created_ms),
                "stopLoss": str(o.sl) if o.sl is not None else "0",
                "takeProfit": str(o.tp) if o.tp is not None else "0", "comment": ""}

    def positions_json(self, uuid: str) -> list[dict]:
        with self.lock:
            acc = self._account(uuid)
            return [self.position_json(p) for p in acc.positions.values()]

    def orders_json(self, uuid: str) -> list[dict]:
        with self.lock:
            return [self.order_json(o) for o in self._account(uuid).orders.values()]

    def closed_json(self, uuid: str, from_ms: int, to_ms: int, symbols: list[str] | None = None) -> list[dict]:
        with self.lock:
            return [closed_row_json(c) for c in self._account(uuid).closed
                    if from_ms <= c["time"] <= to_ms and (not symbols or c["symbol"] in symbols)]

    def drain_close_events(self) -> list[tuple[str, dict]]:
        with self.lock:
            out = list(self.close_events)
            self.close_events.clear()
            return out


def closed_row_json(c: dict) -> dict:
    """A closed-positions row as the broker sends it (numbers as strings, ISO times)."""
    d = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in c.items()}
    d["openTime"], d["time"] = _iso(c["openTime"]), _iso(c["time"])
    return d


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
