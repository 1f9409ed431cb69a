"""Small model factories for tests (plain functions: fewer moving parts than a factory library)."""

from __future__ import annotations

import itertools
from decimal import Decimal

_seq = itertools.count(1)


def make_symbol(name: str | None = None, **kw):
    from marketdata.models import Symbol

    defaults = dict(
        digits=5, tick_size=Decimal("0.00001"), lot_step=Decimal("0.01"), min_volume=Decimal("0.01"),
        max_volume=Decimal("100"), contract_size=Decimal("100000"), enabled=True,
        base_currency="EUR", quote_currency="USD",
    )
    defaults.update(kw)
    name = name or f"SYM{next(_seq)}"
    obj, _ = Symbol.objects.update_or_create(name=name, defaults=defaults)
    return obj


def make_account(name: str | None = None, **kw):
    from accounts.models import Account

    n = next(_seq)
    defaults = dict(
        platform_url="http://127.0.0.1:8900", broker_id="0", email=f"trader{n}@example.com",
        password="s3cret-pass", mode=Account.Mode.SIMULATION,
    )
    defaults.update(kw)
    return Account.objects.create(name=name or f"acct-{n}", **defaults)


def make_signal(symbol=None, **kw):
    from signals.models import Signal

    defaults = dict(side="BUY", strength=Decimal("0.8"), features={"ratio": 4.2})
    defaults.update(kw)
    return Signal.objects.create(symbol=symbol or make_symbol(), **defaults)


def make_order(account=None, signal=None, symbol=None, **kw):
    from orders.models import Order, idempotency_key_for

    symbol = symbol or (signal.symbol if signal else make_symbol())
    signal = signal or make_signal(symbol=symbol)
    account = account or make_account()
    defaults = dict(side=signal.side, volume=Decimal("0.10"))
    defaults.update(kw)
    return Order.objects.create(
        account=account, signal=signal, symbol=symbol,
        idempotency_key=idempotency_key_for(signal.pk, account.pk), **defaults,
    )
